import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsoleCapture } from '../../src/engine/hw/virt/console-script.js';
import { type ParsedLog, parseLog } from '../../src/replay/log-format.js';
import { Player, SeekError, formatDivergence } from '../../src/replay/player.js';
import { MemorySink, Recorder } from '../../src/replay/recorder.js';
import { SnapshotFileWriter, readNearestSnapshot } from '../../src/replay/snapshot-store.js';
import { captureState } from '../../src/replay/state.js';
import { type VirtRun, type VirtRunSpec, buildVirtRun, virtSpecDigest } from '../../src/replay/virt-run.js';
import { typeSession } from './virt-session.js';

const DEMO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'fixtures', 'demo');
const spec: VirtRunSpec = {
  memoryBytes: 64 << 20,
  bios: 'none',
  kernel: join(DEMO, 'demo.elf'),
  append: null,
  drives: [{ id: 'drive0', file: join(DEMO, 'demo-disk.img'), format: 'raw' }],
  icountShift: 0,
  seed: 0,
  policy: 'fifo',
};
const STEPS = [
  { expect: 'demo> ', send: 'hello seek\r' },
  { expect: 'demo> ', send: 'second line\r' },
  { expect: 'demo> ', send: 'quit\r' },
];

let log: ParsedLog;
let recordedDigest = '';
let recordedOutput = '';
const dir = mkdtempSync(join(tmpdir(), 'rr-seek-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

beforeAll(async () => {
  const capture = new ConsoleCapture();
  const run = buildVirtRun(spec, capture);
  const sink = new MemorySink();
  const recorder = new Recorder(run, sink, { machine: 'virt', machineDigest: virtSpecDigest(spec), commandLine: [], seed: 0, disks: run.disks, checkpointInterval: 1 << 10, events: true });
  await typeSession(run, capture, STEPS, 77, 5e9);
  recorder.finish('poweroff');
  recordedDigest = run.loop.trace.digestHex();
  recordedOutput = capture.text;
  run.close();
  log = parseLog(sink.bytes());
}, 120_000);

/** Everything but RAM (which the probes report as changes since the last checkpoint). */
function stateAt(run: VirtRun): string {
  const map = captureState(run.probes.filter((p) => p.name !== 'ram' && p.name !== 'disk'));
  return JSON.stringify({ map, trace: run.loop.trace.digestHex(), steps: run.loop.steps, ns: run.loop.nowNs });
}

function ramDigest(run: VirtRun): string {
  return createHash('sha256').update(run.machine.as.ramAt(0x80000000)!.bytes).digest('hex');
}

function playTo(icount: number | undefined): { run: VirtRun; player: Player; capture: ConsoleCapture } {
  const capture = new ConsoleCapture();
  const run = buildVirtRun(spec, capture);
  const player = new Player(run, log, { until: icount });
  const result = player.run();
  expect(result.divergence, result.divergence ? formatDivergence(result.divergence) : '').toBeNull();
  return { run, player, capture };
}

describe('seek: snapshots taken during play, restored to go back', () => {
  it('takes snapshots at quiescent checkpoints, at most the configured number', () => {
    const { run, player } = playTo(undefined);
    // The demo's disk read sleeps ~20k of its ~30k instructions (20 µs of latency at shift 0):
    // checkpoints in that window are not quiescent and get no snapshot.
    expect(player.snapshots.snapshots.length).toBeGreaterThanOrEqual(2);
    expect(player.lastSnapshotRefusal).toMatch(/virtio-blk0:req/);
    expect(player.snapshots.snapshots[0]!.point.icount).toBe(0);
    const icounts = player.snapshots.snapshots.map((s) => s.point.icount);
    expect([...icounts].sort((a, b) => a - b)).toEqual(icounts);
    run.close();
  });

  it('seek back restores the nearest snapshot and lands on the same state as a straight play to that point; play then ends as recorded', () => {
    const end = log.records[log.records.length - 1]!.icount;
    const targets = [Math.floor(end * 0.3), Math.floor(end * 0.7) + 3, 1, end - 5];
    const { run, player, capture } = playTo(undefined);
    for (const target of targets) {
      const restored = player.seek(target);
      expect(restored === null || restored.icount <= target).toBe(true);
      for (let guard = 0; !player.paused && guard < 1e6; guard++) expect(player.advance(1000)).toBeNull();
      expect(player.icount).toBe(target);
      const straight = playTo(target);
      expect(stateAt(run)).toBe(stateAt(straight.run));
      expect(ramDigest(run)).toBe(ramDigest(straight.run));
      straight.run.close();
    }
    // Continue from the last seek to the end: every checkpoint and event still matches.
    player.setBreak(null);
    const result = player.run();
    expect(result.divergence, result.divergence ? formatDivergence(result.divergence) : '').toBeNull();
    expect(result.reachedEnd).toBe(true);
    expect(result.finalTrace).toBe(recordedDigest);
    // The console saw the run's output again after each restore (a restore does not unsay bytes).
    expect(capture.text.length).toBeGreaterThan(recordedOutput.length);
    run.close();
  });

  it('seek forward runs on without restoring; breakpoints pause play where asked', () => {
    const capture = new ConsoleCapture();
    const run = buildVirtRun(spec, capture);
    const player = new Player(run, log);
    player.start();
    player.setBreak(5000);
    for (let guard = 0; !player.paused && guard < 1e6; guard++) player.advance(1000);
    expect(player.icount).toBe(5000);
    expect(player.seek(9000)).toBeNull();
    for (let guard = 0; !player.paused && guard < 1e6; guard++) player.advance(1000);
    expect(player.icount).toBe(9000);
    expect(() => player.setBreak(100)).toThrow(new SeekError('cannot set breakpoint at the instruction in the past'));
    expect(() => player.seek(player.endIcount + 1)).toThrow(/cannot seek to the specified instruction count/);
    run.close();
  });

  it('snapshots written to a file restore into a fresh machine (tsqemu-replay seek --snapshots)', () => {
    const file = join(dir, 'demo.snap');
    const writer = new SnapshotFileWriter(file, 'log-1');
    const capture = new ConsoleCapture();
    const run = buildVirtRun(spec, capture);
    const player = new Player(run, log, { snapshotFile: writer });
    expect(player.run().divergence).toBeNull();
    writer.close();
    run.close();
    const end = log.records[log.records.length - 1]!.icount;
    const target = end - 5;
    const nearest = readNearestSnapshot(file, 'log-1', target);
    expect(nearest).toBeDefined();
    expect(nearest!.point.icount).toBeLessThanOrEqual(target);
    expect(nearest!.point.icount).toBeGreaterThan(0);
    const fresh = buildVirtRun(spec, new ConsoleCapture());
    const resumed = new Player(fresh, log);
    resumed.restore(nearest!);
    resumed.seek(target);
    for (let guard = 0; !resumed.paused && guard < 1e6; guard++) resumed.advance(1000);
    const straight = playTo(target);
    expect(stateAt(fresh)).toBe(stateAt(straight.run));
    expect(ramDigest(fresh)).toBe(ramDigest(straight.run));
    expect(() => readNearestSnapshot(file, 'another-log', target)).toThrow(/another log/);
    fresh.close();
    straight.run.close();
  });

  it('-smp 2: both harts are in every checkpoint, and seek works the same', async () => {
    const smpSpec: VirtRunSpec = { ...spec, smp: 2 };
    const capture = new ConsoleCapture();
    const run = buildVirtRun(smpSpec, capture);
    expect(run.probes.map((p) => p.name)).toEqual(['hart0', 'hart1', 'device', 'ram', 'disk']);
    const sink = new MemorySink();
    const recorder = new Recorder(run, sink, { machine: 'virt', machineDigest: virtSpecDigest(smpSpec), commandLine: [], seed: 0, disks: run.disks, checkpointInterval: 1 << 10 });
    await typeSession(run, capture, STEPS, 5, 5e9);
    recorder.finish('poweroff');
    run.close();
    const smpLog = parseLog(sink.bytes());
    const checkpoint = smpLog.records.find((r) => r.type === 'checkpoint');
    expect(Object.keys(checkpoint?.type === 'checkpoint' ? checkpoint.state : {})).toContain('hart1');
    const replay = buildVirtRun(smpSpec, new ConsoleCapture());
    const player = new Player(replay, smpLog);
    const result = player.run();
    expect(result.divergence, result.divergence ? formatDivergence(result.divergence) : '').toBeNull();
    const target = Math.floor(result.point.icount / 2);
    player.seek(target);
    for (let guard = 0; !player.paused && guard < 1e6; guard++) player.advance(1000);
    expect(player.icount).toBe(target);
    const straight = buildVirtRun(smpSpec, new ConsoleCapture());
    expect(new Player(straight, smpLog, { until: target }).run().divergence).toBeNull();
    expect(stateAt(replay)).toBe(stateAt(straight));
    replay.close();
    straight.close();
  });
});
