import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QmpProcess, TSQEMU_BIN } from '../monitor/qmp-process.js';
import { TestQmpClient } from '../monitor/qmp-client.js';

const built = existsSync(TSQEMU_BIN);

function tsqemu(args: string[], input = ''): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [TSQEMU_BIN, ...args], { input, encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe.skipIf(!built)(`tsqemu command line (${built ? 'dist built' : 'needs npm run build'})`, () => {
  it('refuses bad options like QEMU, exit status 1', () => {
    expect(tsqemu(['-foo'])).toMatchObject({ status: 1, stderr: 'tsqemu: -foo: invalid option\n' });
    expect(tsqemu(['-M', 'virt', '-m'])).toMatchObject({ status: 1, stderr: 'tsqemu: -m: requires an argument\n' });
    expect(tsqemu(['-M', 'bogus']).stderr).toBe('tsqemu: unsupported machine type\nUse -machine help to list supported machines\n');
    expect(tsqemu(['-M', 'help']).stdout).toMatch(/^Supported machines are:\nvirt /);
  });

  it('serves QMP on stdio, writes -trace with the final digest, and runs -blockdev from the command line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsqemu-cli-'));
    try {
      const trace = join(dir, 'trace.txt');
      const script = '{"execute":"qmp_capabilities"}{"execute":"query-named-block-nodes"}{"execute":"quit"}';
      const args = ['-M', 'none', '-S', '-nodefaults', '-blockdev', 'driver=null-co,node-name=disk0,size=4M', '-qmp', 'stdio', '-trace', trace, '-seed', '7'];
      const first = tsqemu(args, script);
      expect(first.status).toBe(0);
      const lines = first.stdout.trim().split('\r\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines[0]).toHaveProperty('QMP');
      expect((lines[2]!['return'] as Record<string, unknown>[])[0]).toMatchObject({ 'node-name': 'disk0', drv: 'null-co', image: { 'virtual-size': 4 * 1024 * 1024 } });
      expect(lines.at(-1)).toEqual({ return: {} });
      const text = readFileSync(trace, 'utf8');
      expect(text).toMatch(/qmp\.command monitor="qmp0" client=\d+ command="quit"/);
      const digest = /^digest ([0-9a-f]+)$/m.exec(text)?.[1];
      expect(digest).toBeDefined();
      // Same inputs, same seed: the same digest.
      tsqemu(args, script);
      expect(/^digest ([0-9a-f]+)$/m.exec(readFileSync(trace, 'utf8'))?.[1]).toBe(digest);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('serves a -chardev/-mon monitor beside a -qmp one, each with its own clients', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsqemu-mon-'));
    const second = join(dir, 'mon.sock');
    const p = await QmpProcess.start('tsqemu', ['-chardev', `socket,id=m,path=${second},server=on,wait=off`, '-mon', 'chardev=m,mode=control']);
    try {
      const other = await TestQmpClient.connect(second);
      await other.waitFor(1);
      expect(await other.command('qmp_capabilities')).toEqual({ return: {} });
      await p.client.command('cont');
      expect(await other.command('query-status')).toEqual({ return: { status: 'running', singlestep: false, running: true } });
      expect(other.events().map((e) => e['event'])).toContain('RESUME');
      other.close();
    } finally {
      await p.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('confines command-line and QMP file names with --allow-path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsqemu-allow-'));
    try {
      const r = tsqemu(['-M', 'none', '--allow-path', dir, '-blockdev', 'driver=file,node-name=f,filename=/etc/passwd']);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/path is outside the allowed directories/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
