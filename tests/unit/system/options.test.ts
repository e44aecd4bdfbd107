import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCommandLine } from '../../../src/system/options.js';
import { parseKeyval, UsageError } from '../../../src/system/keyval.js';
import { createVm } from '../../../src/system/vm.js';
import { PathPolicy } from '../../../src/monitor/path-policy.js';

function usage(argv: string[]): string {
  try {
    parseCommandLine(argv);
  } catch (error) {
    if (error instanceof UsageError) return error.message;
    throw error;
  }
  return 'no error';
}

describe('command line', () => {
  it('parses the QMP test setup QEMU users write', () => {
    const c = parseCommandLine(['-M', 'virt', '-S', '-display', 'none', '-nodefaults', '-qmp', 'unix:/tmp/x.sock,server=on,wait=off', '-m', '256M', '-seed', '42']);
    expect(c.machine.type).toBe('virt');
    expect(c.startStopped).toBe(true);
    expect(c.nodefaults).toBe(true);
    expect(c.memoryBytes).toBe(256 * 1024 * 1024);
    expect(c.seed).toBe(42);
    expect(c.monitors).toEqual([{ name: 'qmp0', chardev: { backend: 'socket-unix', path: '/tmp/x.sock', server: true, wait: false } }]);
  });

  it('refuses -s and -gdb with a clear message (there is no gdb stub yet)', () => {
    expect(() => parseCommandLine(['-s'])).toThrow('-s: tsqemu has no live gdb stub yet');
    expect(() => parseCommandLine(['-gdb', 'tcp::1234'])).toThrow('-gdb: tsqemu has no live gdb stub yet');
  });

  it('accepts -chardev + -mon, tcp and stdio monitors, and hands other options through', () => {
    const c = parseCommandLine(['--chardev', 'socket,id=m,host=127.0.0.1,port=4444,server=on,wait=off', '-mon', 'chardev=m,mode=control', '-qmp', 'stdio', '-kernel', 'k.elf', '-append', 'console=ttyS0', '-smp', '2', '-icount', 'shift=3', '-qtest', 'unix:/tmp/q', '-device', 'virtio-blk-device,drive=d0', '-accel', 'qtest', '-m', '64']);
    expect(c.monitors.map((m) => m.chardev.backend)).toEqual(['stdio', 'socket-tcp']);
    expect(c.kernel).toBe('k.elf');
    expect(c.devices).toEqual([{ driver: 'virtio-blk-device', drive: 'd0' }]);
    expect(c.accel).toEqual(['qtest']);
    expect(c.memoryBytes).toBe(64 * 1024 * 1024);
  });

  it('parses -blockdev as JSON and as dotted key=value', () => {
    const c = parseCommandLine(['-blockdev', '{"driver":"null-co","node-name":"a"}', '-blockdev', 'driver=qcow2,node-name=b,file.driver=file,file.filename=x,,y.qcow2']);
    expect(c.blockdevs).toEqual([{ driver: 'null-co', 'node-name': 'a' }, { driver: 'qcow2', 'node-name': 'b', file: { driver: 'file', filename: 'x,y.qcow2' } }]);
    expect(parseKeyval('driver=blkdebug,inject-error.0.event=read_aio,inject-error.1.event=flush_to_os')).toEqual({ driver: 'blkdebug', 'inject-error': [{ event: 'read_aio' }, { event: 'flush_to_os' }] });
  });

  it("reports errors with QEMU's wording", () => {
    expect(usage(['-foo'])).toBe('-foo: invalid option');
    expect(usage(['-m'])).toBe('-m: requires an argument');
    expect(usage(['-m', '1X'])).toMatch(/^-m 1X: Parameter 'size' expects a non-negative number below 2\^64/);
    expect(usage(['-qmp', 'bogus:x'])).toBe("-qmp bogus:x: 'bogus:x' is not a valid char driver");
    expect(usage(['-mon', 'chardev=zz,mode=control'])).toMatch(/chardev "zz" not found/);
    expect(usage(['-blockdev', '{"driver":'])).toMatch(/^-blockdev \{"driver":: JSON parse error/);
    expect(() => createVm({ machine: { type: 'foo', props: {} } })).toThrow('unsupported machine type');
    expect(() => createVm({ blockdevs: [{ driver: 'null-co', 'node-name': 'a', foo: 1 }] })).toThrow("Parameter 'foo' is unexpected");
  });
});

describe('--allow-path', () => {
  it('refuses paths outside the tree, .. escapes and symlinks out, without opening them', () => {
    const root = mkdtempSync(join(tmpdir(), 'tsqemu-allow-'));
    try {
      const inside = join(root, 'in');
      const outside = join(root, 'out');
      mkdirSync(inside);
      mkdirSync(outside);
      writeFileSync(join(outside, 'secret.img'), 'x');
      symlinkSync(join(outside, 'secret.img'), join(inside, 'link.img'));
      symlinkSync(outside, join(inside, 'dirlink'));
      const policy = new PathPolicy([inside], root);
      expect(() => policy.check(join(inside, 'new.img'))).not.toThrow();
      expect(() => policy.check('in/sub/new.img')).not.toThrow();
      expect(() => policy.check(join(outside, 'secret.img'))).toThrow(/outside the allowed directories/);
      expect(() => policy.check(join(inside, '..', 'out', 'secret.img'))).toThrow(/outside/);
      expect(() => policy.check(join(inside, 'link.img'))).toThrow(/outside/);
      expect(() => policy.check(join(inside, 'dirlink', 'new.img'))).toThrow(/outside/);
      const vm = createVm({ allowPaths: [inside] });
      expect(vm.qmp('blockdev-add', { driver: 'file', 'node-name': 'f', filename: join(inside, 'link.img') })).toEqual({ error: { class: 'GenericError', desc: `Could not open '${join(inside, 'link.img')}': path is outside the allowed directories (--allow-path)` } });
      expect(vm.qmp('blockdev-add', { driver: 'raw', 'node-name': 'r', file: { driver: 'file', filename: '../out/secret.img' } })).toMatchObject({ error: { class: 'GenericError' } });
      expect(vm.graph.nodes.size).toBe(0);
      vm.execute('blockdev-add', { driver: 'null-co', 'node-name': 'src', size: 65536 });
      const escape = { 'job-id': 'd', device: 'src', target: join(inside, 'dirlink', 'copy.raw'), sync: 'full', mode: 'existing' };
      expect(vm.qmp('drive-backup', escape)).toMatchObject({ error: { desc: expect.stringMatching(/outside the allowed directories/) } });
      expect(vm.qmp('transaction', { actions: [{ type: 'drive-backup', data: escape }] })).toMatchObject({ error: { desc: expect.stringMatching(/outside the allowed directories/) } });
      expect(vm.qmp('drive-mirror', { ...escape, 'job-id': 'm' })).toMatchObject({ error: { desc: expect.stringMatching(/outside the allowed directories/) } });
      expect(vm.execute('query-jobs')).toEqual([]);
      expect(new PathPolicy([], root).confined).toBe(false);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
