import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createVm } from '../../../src/system/vm.js';

const MiB = 1024 * 1024;
const dirs: string[] = [];

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A VM with a 1 MiB raw node 'src' over a scratch file; qemu-io's stdout is collected. */
function vmWithRawNode() {
  const dir = mkdtempSync(join(tmpdir(), 'tsqemu-hmp-'));
  dirs.push(dir);
  const path = join(dir, 'src.raw');
  writeFileSync(path, new Uint8Array(MiB));
  const vm = createVm({ startStopped: true }, { cwd: dir });
  const stdout: string[] = [];
  const stderr: string[] = [];
  vm.services.set('stdout', (line: string) => stdout.push(line));
  vm.services.set('stderr', (line: string) => stderr.push(line));
  expect(vm.qmp('blockdev-add', { driver: 'raw', 'node-name': 'src', file: { driver: 'file', filename: path } })).toEqual({ return: {} });
  const hmp = (line: string) => vm.qmp('human-monitor-command', { 'command-line': line });
  return { vm, stdout, stderr, hmp };
}

describe('human-monitor-command qemu-io', () => {
  it('writes and reads a node as the guest; output goes to stdout, the reply is empty', () => {
    const { stdout, hmp } = vmWithRawNode();
    expect(hmp('qemu-io src "write -P 0x11 0 64k"')).toEqual({ return: '' });
    expect(stdout[0]).toBe('wrote 65536/65536 bytes at offset 0');
    stdout.length = 0;
    expect(hmp('qemu-io src "read -P 0x11 0 64k"')).toEqual({ return: '' });
    expect(stdout[0]).toBe('read 65536/65536 bytes at offset 0');
    stdout.length = 0;
    expect(hmp('qemu-io src "read -P 0x11 64k 64k"')).toEqual({ return: '' });
    expect(stdout[0]).toBe('Pattern verification failed at offset 65536, 65536 bytes');
    stdout.length = 0;
    expect(hmp('qemu-io src "write -z 0 64k"')).toEqual({ return: '' });
    stdout.length = 0;
    expect(hmp('qemu-io src "read -P 0 0 64k"')).toEqual({ return: '' });
    expect(stdout[0]).toBe('read 65536/65536 bytes at offset 0');
  });

  it('answers errors as HMP text, as QEMU 7.2; qemu-io complaints go to stderr', () => {
    const { hmp, stdout, stderr } = vmWithRawNode();
    expect(hmp('qemu-io src "write 0"')).toEqual({ return: '' });
    expect(hmp('qemu-io src "write -x 0 64k"')).toEqual({ return: '' });
    expect(hmp('qemu-io src "open foo"')).toEqual({ return: '' });
    expect(stderr).toEqual(['bad argument count 1 to write, expected at least 2 arguments', "write: invalid option -- 'x'", 'command "open" not found']);
    expect(stdout).toEqual(['write [-bcCfnquz] [-P pattern | -s source_file] off len -- writes a number of bytes at a specified offset']);
    expect(hmp('qemu-io snap "write 0 64k"')).toEqual({ return: "Error: Cannot find device='' nor node-name='snap'\r\n" });
    // Every reply below is what QEMU 7.2 answers (checked with qemu-system-riscv64 -M none).
    const hint = 'Try "help qemu-io" for more information\r\n';
    expect(hmp('info nothing')).toEqual({ return: "unknown command: 'info nothing'\r\n" });
    expect(hmp('foo')).toEqual({ return: "unknown command: 'foo'\r\n" });
    expect(hmp('qemu-io src "write 0 64k" x')).toEqual({ return: `qemu-io: extraneous characters at the end of line\r\n${hint}` });
    expect(hmp('qemu-io src "write 0 64k')).toEqual({ return: `qemu-io: string expected\r\n${hint}` });
    expect(stdout.at(-1)).toBe('unterminated string');
    expect(hmp('qemu-io')).toEqual({ return: `qemu-io: block device name expected\r\n${hint}` });
    expect(hmp('qemu-io src')).toEqual({ return: `qemu-io: string expected\r\n${hint}` });
    expect(hmp('qemu-io -x src "read 0 1"')).toEqual({ return: `qemu-io: unsupported option -x\r\n${hint}` });
    expect(hmp('qemu-io -d nodev "write 0 64k"')).toEqual({ return: "Error: Device 'nodev' not found\r\n" });
  });

  it('takes the write permission only for writing commands, and reports a refusal as error_report does', () => {
    const { vm, hmp, stdout } = vmWithRawNode();
    expect(vm.qmp('blockdev-add', { driver: 'raw', 'node-name': 'ro', 'read-only': true, file: 'src' })).toEqual({ return: {} });
    expect(hmp('qemu-io ro "read 0 64k"')).toEqual({ return: '' });
    expect(stdout[0]).toBe('read 65536/65536 bytes at offset 0');
    stdout.length = 0;
    expect(hmp('qemu-io ro "write 0 64k"')).toEqual({ return: 'Block node is read-only\r\n' });
    expect(stdout).toEqual([]);
  });

  it('refuses a write to the source under a backup filter exactly as QEMU 7.2, allows it through the filter and to the target', () => {
    const { vm, hmp, stdout } = vmWithRawNode();
    expect(vm.qmp('blockdev-add', { driver: 'null-co', 'node-name': 'tgt', size: MiB })).toEqual({ return: {} });
    expect(vm.qmp('blockdev-backup', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'none', 'filter-node-name': 'cbw' })).toEqual({ return: {} });
    expect(hmp('qemu-io src "write -P 0x22 0 64k"')).toEqual({
      return:
        "Permission conflict on node 'src': permissions 'write' are both required by an unnamed block device (uses node 'src' as 'root' child) and unshared by node 'cbw' (uses node 'src' as 'file' child).\r\n",
    });
    expect(stdout).toEqual([]);
    expect(hmp('qemu-io cbw "write -P 0x22 0 64k"')).toEqual({ return: '' });
    expect(hmp('qemu-io tgt "write -P 0x33 0 64k"')).toEqual({ return: '' });
    expect(stdout.filter((l) => l.startsWith('wrote'))).toHaveLength(2);
    vm.shutdown();
  });
});
