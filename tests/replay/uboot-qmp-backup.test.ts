/**
 * The second acceptance case: an OpenSBI + U-Boot session typed on stdin at random host
 * moments, with a QMP client backing up the disk while it runs, recorded by
 * `tsqemu -icount shift=3,rr=record`, then played back with stdin closed and no client: the same
 * console output, no divergence (every checkpoint, every recorded QMP exchange, the final trace
 * digest), ten times in a row.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import seedrandom from 'seedrandom';
import { afterAll, describe, expect, it } from 'vitest';

const FW = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';
const UBOOT = '/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin';
const TSQEMU = join(process.cwd(), 'dist/tools/tsqemu.js');
const ready = existsSync(FW) && existsSync(UBOOT) && existsSync(TSQEMU);
const PLAYS = 10;

const dir = mkdtempSync(join(tmpdir(), 'rr-uboot-qmp-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const STEPS = [
  { expect: 'Hit any key to stop autoboot', send: ' ' },
  { expect: '=> ', send: 'virtio scan\r' },
  { expect: '=> ', send: 'virtio read 84000000 0 8\r' },
  { expect: '=> ', send: 'md.b 84000000 0x20\r' },
  { expect: '=> ', send: 'poweroff\r' },
];
/** The backup runs after this many steps have been typed (the disk has been scanned and read). */
const BACKUP_AFTER_STEP = 3;

function args(disk: string, sock: string, rr: string): string[] {
  return ['-M', 'virt', '-m', '128M', '-bios', FW, '-kernel', UBOOT, '-drive', `file=${disk},if=none,id=hd0,format=raw`, '-device', 'virtio-blk-device,drive=hd0', '-nographic', '-qmp', `unix:${sock},server=on,wait=off`, '-icount', `shift=3,${rr}`];
}

/** spawnSync would block the test worker for minutes (vitest's RPC times out): run asynchronously. */
function run(command: string, argv: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('latin1')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('exit', (status) => resolve({ status, stdout, stderr }));
  });
}

interface Qmp {
  cmd(execute: string, args?: object): Promise<Record<string, unknown>>;
  event(name: string): Promise<Record<string, unknown>>;
}

async function qmpConnect(path: string): Promise<Qmp> {
  for (let attempt = 0; ; attempt++) {
    try {
      const socket = await new Promise<ReturnType<typeof connect>>((resolve, reject) => {
        const s = connect(path, () => resolve(s));
        s.once('error', reject);
      });
      const messages: Record<string, unknown>[] = [];
      let wake: (() => void) | null = null;
      let buffer = '';
      socket.on('data', (chunk) => {
        buffer += chunk.toString('utf8');
        for (let at = buffer.indexOf('\n'); at >= 0; at = buffer.indexOf('\n')) {
          messages.push(JSON.parse(buffer.slice(0, at)) as Record<string, unknown>);
          buffer = buffer.slice(at + 1);
        }
        wake?.();
      });
      const next = async (match: (m: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> => {
        for (;;) {
          const index = messages.findIndex(match);
          if (index >= 0) return messages.splice(index, 1)[0]!;
          await new Promise<void>((resolve) => (wake = resolve));
        }
      };
      await next((m) => 'QMP' in m);
      return {
        cmd: async (execute, a) => {
          socket.write(JSON.stringify(a === undefined ? { execute } : { execute, arguments: a }) + '\n');
          return next((m) => 'return' in m || 'error' in m);
        },
        event: (name) => next((m) => m['event'] === name),
      };
    } catch (error) {
      if (attempt > 200) throw error;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
}

describe.skipIf(!ready)('record/replay of a U-Boot session with a QMP backup running (needs npm run build, opensbi, u-boot-qemu)', () => {
  const disk = join(dir, 'disk.raw');
  const image = new Uint8Array(1 << 20);
  for (let i = 0; i < image.length; i++) image[i] = (i * 13 + 5) & 0xff;
  writeFileSync(disk, image);
  const target = join(dir, 'backup.raw');
  const log = join(dir, 'session.tsqr');
  let recordedOutput = '';

  it('records: typed at random moments, the backup completes while U-Boot runs, the image is untouched', async () => {
    writeFileSync(target, new Uint8Array(1 << 20));
    const sock = join(dir, 'rec.sock');
    const child = spawn(process.execPath, [TSQEMU, ...args(disk, sock, `rr=record,rrfile=${log}`)], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('latin1')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const host = seedrandom.alea('uboot-qmp');
    const qmp = await qmpConnect(sock);
    expect(await qmp.cmd('qmp_capabilities')).toEqual({ return: {} });
    let from = 0;
    for (let step = 0; step < STEPS.length; step++) {
      const { expect: prompt, send } = STEPS[step]!;
      for (let guard = 0; ; guard++) {
        expect(guard, `waiting for '${prompt}'; output so far:\n${stdout}\n${stderr}`).toBeLessThan(4000);
        const at = stdout.indexOf(prompt, from);
        if (at >= 0) {
          from = at + prompt.length;
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      if (step === BACKUP_AFTER_STEP) {
        expect(await qmp.cmd('blockdev-add', { driver: 'raw', 'node-name': 'bk', file: { driver: 'file', filename: target } })).toEqual({ return: {} });
        expect(await qmp.cmd('blockdev-backup', { 'job-id': 'bk0', device: 'hd0', target: 'bk', sync: 'full' })).toEqual({ return: {} });
        const done = await qmp.event('BLOCK_JOB_COMPLETED');
        expect(done['data']).toMatchObject({ device: 'bk0', len: 1 << 20, offset: 1 << 20 });
      }
      // Random host delays between keys: the only thing that differs between two recordings.
      for (const key of send) {
        await new Promise((resolve) => setTimeout(resolve, Math.floor(host() * 30)));
        child.stdin.write(key);
      }
    }
    expect(await exited, stderr).toBe(0);
    expect(stdout).toContain('8 blocks read: OK');
    expect(Buffer.compare(readFileSync(target), Buffer.from(image))).toBe(0);
    expect(Buffer.compare(readFileSync(disk), Buffer.from(image))).toBe(0);
    recordedOutput = stdout;
  }, 300_000);

  it(`plays back ${PLAYS} times in a row with stdin closed and no QMP client: same output, no divergence, exit 0`, async () => {
    expect(recordedOutput).not.toBe('');
    for (let i = 0; i < PLAYS; i++) {
      writeFileSync(target, new Uint8Array(1 << 20));
      // Same command line as the recording (the socket path is part of it); nobody connects.
      const play = await run(process.execPath, [TSQEMU, ...args(disk, join(dir, 'rec.sock'), `rr=replay,rrfile=${log}`)]);
      expect(play.status, play.stderr).toBe(0);
      expect(play.stderr).not.toContain('DIVERGENCE');
      expect(play.stdout).toBe(recordedOutput);
      // The replayed QMP session ran the backup again, to the same bytes.
      expect(Buffer.compare(readFileSync(target), Buffer.from(image))).toBe(0);
    }
  }, 600_000);
});
