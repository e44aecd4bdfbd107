import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createVm } from '../../src/system/vm.js';

const dir = mkdtempSync(join(tmpdir(), 'rr-qmp-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const tsqemu = join(process.cwd(), 'dist/tools/tsqemu.js');
const base = ['-M', 'virt', '-m', '64M', '-bios', 'none', '-kernel', 'fixtures/demo/demo.elf', '-drive', 'file=fixtures/demo/demo-disk.img,if=virtio,format=raw', '-nographic'];

/** A line-oriented QMP client over a unix socket. */
async function qmpClient(path: string): Promise<{ cmd: (execute: string, args?: object) => Promise<Record<string, unknown>>; event: (name: string) => Promise<Record<string, unknown>>; close: () => void }> {
  for (let attempt = 0; ; attempt++) {
    try {
      const socket = await new Promise<ReturnType<typeof connect>>((resolve, reject) => {
        const s = connect(path, () => resolve(s));
        s.once('error', reject);
      });
      const lines: Record<string, unknown>[] = [];
      const waiters: (() => void)[] = [];
      let buffer = '';
      socket.on('data', (chunk) => {
        buffer += chunk.toString('utf8');
        for (let at = buffer.indexOf('\n'); at >= 0; at = buffer.indexOf('\n')) {
          lines.push(JSON.parse(buffer.slice(0, at)) as Record<string, unknown>);
          buffer = buffer.slice(at + 1);
        }
        for (const w of waiters.splice(0)) w();
      });
      const next = async (match: (m: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> => {
        for (;;) {
          const index = lines.findIndex(match);
          if (index >= 0) return lines.splice(index, 1)[0]!;
          await new Promise<void>((resolve) => waiters.push(resolve));
        }
      };
      await next((m) => 'QMP' in m);
      return {
        cmd: async (execute, args) => {
          socket.write(JSON.stringify(args === undefined ? { execute } : { execute, arguments: args }) + '\n');
          return next((m) => 'return' in m || 'error' in m);
        },
        event: (name) => next((m) => m['event'] === name),
        close: () => socket.end(),
      };
    } catch (error) {
      if (attempt > 100) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

describe('QMP replay commands', () => {
  it('without record/replay: QEMU 7.2 answers (mode none, the play-mode-only errors)', () => {
    const vm = createVm();
    expect(vm.qmp('query-replay')).toEqual({ return: { icount: 0, mode: 'none' } });
    expect(vm.qmp('replay-break', { icount: 5 })).toEqual({ error: { class: 'GenericError', desc: 'setting the breakpoint is allowed only in play mode' } });
    expect(vm.qmp('replay-delete-break')).toEqual({ error: { class: 'GenericError', desc: 'replay breakpoints are allowed only in play mode' } });
    expect(vm.qmp('replay-seek', { icount: 5 })).toEqual({ error: { class: 'GenericError', desc: 'replay must be enabled to seek' } });
    expect(vm.qmp('replay-seek', {})).toEqual({ error: { class: 'GenericError', desc: "Parameter 'icount' is missing" } });
    expect(vm.qmp('replay-seek', { icount: 'x' })).toEqual({ error: { class: 'GenericError', desc: "Invalid parameter type for 'icount', expected: integer" } });
  });

  it('tsqemu rr=replay with -replay-qmp: starts paused, breaks, seeks back through a snapshot, plays to the end, quits', async () => {
    const log = join(dir, 'demo.tsqr');
    const rec = spawnSync(process.execPath, [tsqemu, ...base, '-icount', `shift=0,rr=record,rrfile=${log}`], { input: 'hello there\rquit\r', encoding: 'utf8', timeout: 60_000 });
    expect(rec.status, rec.stderr).toBe(0);
    expect(rec.stdout).toContain('you typed: hello there');
    const sock = join(dir, 'ctl.sock');
    const child = spawn(process.execPath, [tsqemu, ...base, '-icount', `shift=0,rr=replay,rrfile=${log}`, '-replay-qmp', `unix:${sock},server=on,wait=off`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const qmp = await qmpClient(sock);
      expect(await qmp.cmd('qmp_capabilities')).toEqual({ return: {} });
      expect(await qmp.cmd('query-status')).toEqual({ return: { status: 'prelaunch', singlestep: false, running: false } });
      expect(await qmp.cmd('query-replay')).toEqual({ return: { icount: 0, mode: 'play', filename: log } });
      expect(await qmp.cmd('replay-break', { icount: 15_000 })).toEqual({ return: {} });
      expect(await qmp.cmd('cont')).toEqual({ return: {} });
      await qmp.event('STOP');
      expect(await qmp.cmd('query-replay')).toEqual({ return: { icount: 15_000, mode: 'play', filename: log } });
      expect(await qmp.cmd('replay-break', { icount: 100 })).toEqual({ error: { class: 'GenericError', desc: 'cannot set breakpoint at the instruction in the past' } });
      // Back in time: the nearest snapshot (the start, at least) and forward to the instruction.
      expect(await qmp.cmd('replay-seek', { icount: 3_000 })).toEqual({ return: {} });
      expect(await qmp.cmd('query-replay')).toEqual({ return: { icount: 3_000, mode: 'play', filename: log } });
      expect((await qmp.cmd('replay-seek', { icount: 1e12 })) as { error?: { desc: string } }).toMatchObject({ error: { class: 'GenericError' } });
      expect(await qmp.cmd('system_reset')).toEqual({ error: { class: 'CommandNotFound', desc: 'The command system_reset has not been found' } });
      expect(await qmp.cmd('cont')).toEqual({ return: {} });
      await qmp.event('STOP');
      const end = (await qmp.cmd('query-replay')) as { return: { icount: number } };
      expect(end.return.icount).toBeGreaterThan(15_000);
      expect(await qmp.cmd('quit')).toEqual({ return: {} });
      qmp.close();
      expect(await exited, stderr).toBe(0);
      expect(stderr).not.toContain('DIVERGENCE');
      expect(stdout).toContain('you typed: hello there');
    } finally {
      child.kill();
    }
  }, 60_000);
});
