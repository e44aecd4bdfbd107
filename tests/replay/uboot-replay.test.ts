import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConsoleCapture } from '../../src/engine/hw/virt/console-script.js';
import { parseLog } from '../../src/replay/log-format.js';
import { Player, type PlayResult, formatDivergence } from '../../src/replay/player.js';
import { MemorySink, Recorder } from '../../src/replay/recorder.js';
import { captureState } from '../../src/replay/state.js';
import { type VirtRunSpec, buildVirtRun, virtSpecDigest } from '../../src/replay/virt-run.js';
import { typeSession } from './virt-session.js';

const FW = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';
const UBOOT = '/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin';
const haveFirmware = existsSync(FW) && existsSync(UBOOT);

const dir = mkdtempSync(join(tmpdir(), 'rr-uboot-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function makeDisk(path: string, patch?: number): void {
  const bytes = new Uint8Array(1024 * 1024);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + 7) & 0xff;
  bytes.set(new TextEncoder().encode('tsqemu replay disk, sector 0'), 0);
  if (patch !== undefined) bytes[patch] = bytes[patch]! ^ 0xff;
  writeFileSync(path, bytes);
}

/** The acceptance: the recording plays back identically ten times in a row. */
const PLAYS = 10;

const STEPS = [
  { expect: 'Hit any key to stop autoboot', send: ' ' },
  { expect: '=> ', send: 'virtio scan\r' },
  { expect: '=> ', send: 'virtio read 84000000 0 8\r' },
  { expect: '=> ', send: 'md.b 84000000 0x20\r' },
  { expect: '=> ', send: 'poweroff\r' },
];

describe.skipIf(!haveFirmware)('record/replay of an OpenSBI + U-Boot session (needs Debian opensbi, u-boot-qemu)', () => {
  const disk = join(dir, 'disk.raw');
  makeDisk(disk);
  const spec: VirtRunSpec = { memoryBytes: 128 << 20, bios: FW, kernel: UBOOT, append: null, drives: [{ id: 'hd0', file: disk, format: 'raw' }], icountShift: 3, seed: 0, policy: 'fifo' };
  let recorded: { log: Uint8Array; output: string; digest: string; icount: number } | null = null;

  async function play(log: Uint8Array): Promise<{ result: PlayResult; output: string }> {
    const capture = new ConsoleCapture();
    const run = buildVirtRun(spec, capture);
    try {
      const player = new Player(run, parseLog(log));
      for (;;) {
        const result = player.advance(2000);
        if (result !== null) return { result, output: capture.text };
        await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      run.close();
    }
  }

  it('records a typed session with virtio read and poweroff', async () => {
    const capture = new ConsoleCapture();
    const run = buildVirtRun(spec, capture);
    const sink = new MemorySink();
    const recorder = new Recorder(run, sink, { machine: 'virt', machineDigest: virtSpecDigest(spec), commandLine: ['-M', 'virt'], seed: 0, disks: run.disks, checkpointInterval: 1 << 22 });
    const steps = await typeSession(run, capture, STEPS, 1234, 10e9);
    const stats = recorder.finish('poweroff');
    run.close();
    expect(steps).toBe(STEPS.length);
    expect(capture.text).toContain('8 blocks read: OK');
    expect(run.machine.shutdown?.kind).toBe('poweroff');
    expect(stats.inputs).toBeGreaterThan(40);
    recorded = { log: sink.bytes(), output: capture.text, digest: run.loop.trace.digestHex(), icount: run.loop.cpu!.icount };
  }, 300_000);

  it('plays it back ten times in a row with no host input: same output, same final digest, every checkpoint matches', async () => {
    expect(recorded).not.toBeNull();
    for (let i = 0; i < PLAYS; i++) {
      const { result, output } = await play(recorded!.log);
      expect(result.divergence, result.divergence ? formatDivergence(result.divergence) : '').toBeNull();
      expect(output).toBe(recorded!.output);
      expect(result.finalTrace).toBe(recorded!.digest);
      expect(result.point.icount).toBe(recorded!.icount);
      expect(result.checkpoints).toBeGreaterThan(2);
    }
  }, 300_000);

  it('seek back into the session restores a snapshot and lands on the state a straight play reaches', async () => {
    expect(recorded).not.toBeNull();
    const log = parseLog(recorded!.log);
    const run = buildVirtRun(spec, new ConsoleCapture());
    const player = new Player(run, log);
    expect(player.run().divergence).toBeNull();
    expect(player.snapshots.snapshots.length).toBeGreaterThan(2);
    const target = Math.floor(recorded!.icount * 0.6) + 7;
    const from = player.seek(target);
    expect(from).not.toBeNull();
    expect(from!.icount).toBeGreaterThan(0);
    for (let guard = 0; !player.paused && guard < 1e7; guard++) player.advance(5000);
    expect(player.icount).toBe(target);
    const straight = buildVirtRun(spec, new ConsoleCapture());
    expect(new Player(straight, log, { until: target, snapshotInterval: 0 }).run().divergence).toBeNull();
    const state = (r: typeof run): string => JSON.stringify({ s: captureState(r.probes.filter((p) => p.name !== 'ram' && p.name !== 'disk')), t: r.loop.trace.digestHex(), n: r.loop.nowNs });
    expect(state(run)).toBe(state(straight));
    expect(Buffer.compare(run.machine.as.ramAt(0x80000000)!.bytes, straight.machine.as.ramAt(0x80000000)!.bytes)).toBe(0);
    // And on to the end from there, every checkpoint still matching.
    player.setBreak(null);
    const rest = player.run();
    expect(rest.divergence, rest.divergence ? formatDivergence(rest.divergence) : '').toBeNull();
    expect(rest.finalTrace).toBe(recorded!.digest);
    run.close();
    straight.close();
  }, 300_000);

  it('one changed disk byte is reported at the first checkpoint after the guest reads it, naming the RAM page', async () => {
    expect(recorded).not.toBeNull();
    makeDisk(disk, 0x123);
    try {
      const { result } = await play(recorded!.log);
      const d = result.divergence;
      expect(d).not.toBeNull();
      expect(d!.kind).toBe('checkpoint');
      const report = formatDivergence(d!);
      // U-Boot first reads sector 0 at `virtio scan` (partition probe) into its heap: a RAM page
      // differs at the first checkpoint after the scan command's Enter, and not before.
      expect(d!.differences[0]!.probe).toBe('ram');
      expect(report).toMatch(/ram page 0x[0-9a-f]+000, bytes 0x[0-9a-f]+\.\.0x[0-9a-f]+ \(page offset 0x[0-9a-f]+\)/);
      const log = parseLog(recorded!.log);
      const inputs = log.records.filter((r) => r.type === 'input');
      let typed = '';
      const enter = inputs.find((r) => {
        typed += r.data instanceof Uint8Array ? String.fromCharCode(...r.data) : '';
        return typed.endsWith('virtio scan\r');
      });
      const firstAfter = log.records.find((r) => r.type === 'checkpoint' && r.icount >= enter!.icount);
      expect(firstAfter?.type).toBe('checkpoint');
      expect(d!.checkpoint).toBe(firstAfter!.type === 'checkpoint' ? firstAfter!.index : -1);
    } finally {
      makeDisk(disk);
    }
  }, 300_000);
});
