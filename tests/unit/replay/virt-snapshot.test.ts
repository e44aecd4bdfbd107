import { Packr } from 'msgpackr';
import { afterEach, describe, expect, test } from 'vitest';
import { KernelSnapshotError } from '../../../src/engine/main-loop.js';
import { RiscvCpu } from '../../../src/engine/targets/riscv/cpu.js';
import { RiscvHart } from '../../../src/engine/targets/riscv/hart.js';
import { hartFieldClass } from '../../../src/engine/targets/riscv/hart-state.js';
import { captureState } from '../../../src/replay/state.js';
import { type SnapshotPart, NotQuiescentError, SnapshotFormatError, type VirtSnapshot, createVirtSnapshotter } from '../../../src/replay/virt-snapshot.js';
import { DemoConsole, type DriverState, copyDriverState, newDriverState } from './virt-snapshot-driver.js';

/** The replay log's msgpack options: what a stored snapshot goes through. */
const packr = new Packr({ useRecords: false, moreTypes: false, encodeUndefinedAsNil: true });
const roundTrip = (value: unknown): unknown => packr.unpack(packr.pack(value));

const open: DemoConsole[] = [];
function demo(): DemoConsole {
  const c = new DemoConsole();
  open.push(c);
  return c;
}
afterEach(() => {
  for (const c of open.splice(0)) c.run.close();
});

/** Everything the continuation of a run is judged by. */
function observe(c: DemoConsole, fromSeq: number, outputFrom: number) {
  const loop = c.run.loop;
  const cpu = loop.cpu as RiscvCpu;
  // The ring is not rewound by a restore: this timeline's events are the last ones emitted.
  const recent = loop.trace.recent();
  const ours = loop.trace.eventCount - fromSeq;
  expect(ours).toBeLessThanOrEqual(recent.length);
  return {
    probes: captureState(c.run.probes),
    digest: loop.trace.digestHex(),
    eventCount: loop.trace.eventCount,
    events: recent.slice(recent.length - ours).map((e) => ({ seq: e.seq, ns: e.ns, name: e.name, fields: e.fields })),
    output: c.output.slice(outputFrom),
    icount: c.icount,
    nowNs: loop.nowNs,
    virtualNs: loop.clocks.virtualNs,
    steps: loop.steps,
    hart: cpu.hart.stateDigest(),
    devices: c.run.machine.deviceStateDigest(),
    shutdown: c.run.machine.shutdown,
  };
}

/** Drives to `icount` (or a bit past it), then on to the first quiescent point; returns false if the guest finished first. */
function driveToQuiescent(c: DemoConsole, state: DriverState, icount: number, notQuiescent: () => string | null): boolean {
  c.driveTo(state, icount);
  for (let guard = 0; guard < 100_000 && !c.done && notQuiescent() !== null; guard++) c.step(state, () => false);
  return !c.done && notQuiescent() === null;
}

interface SavePoint {
  readonly snapshot: unknown;
  readonly driver: DriverState;
  readonly output: string;
  readonly seq: number;
  readonly icount: number;
}

/** Runs a demo to a quiescent point near `icount`, snapshots it (msgpack round trip), and checks the continuation three ways. */
function checkContinuation(saveAt: number, distance: number): { point: SavePoint; first: ReturnType<typeof observe> } {
  const a = demo();
  const snap = createVirtSnapshotter(a.run.loop, a.run.machine, []);
  const driver = newDriverState();
  expect(driveToQuiescent(a, driver, saveAt, snap.notQuiescent)).toBe(true);
  captureState(a.run.probes); // the RAM probe's shadow becomes the RAM at the save point
  const packed = packr.pack(snap.save());
  const point: SavePoint = { snapshot: packr.unpack(packed), driver: copyDriverState(driver), output: a.output, seq: a.run.loop.trace.eventCount, icount: a.icount };
  const target = point.icount + distance;

  a.driveTo(driver, target);
  const first = observe(a, point.seq, point.output.length);

  // 1. Back into the same machine, forward again.
  snap.restore(point.snapshot);
  a.resyncProbes();
  expect(a.icount).toBe(point.icount);
  expect(a.run.loop.trace.eventCount).toBe(point.seq);
  a.rewindOutput(point.output);
  const again = copyDriverState(point.driver);
  a.driveTo(again, target);
  expect(observe(a, point.seq, point.output.length)).toEqual(first);

  // 2. Into a second machine built from the same description (another session).
  const b = demo();
  const snapB = createVirtSnapshotter(b.run.loop, b.run.machine, []);
  snapB.restore(roundTrip(point.snapshot));
  b.resyncProbes();
  b.rewindOutput(point.output);
  const third = copyDriverState(point.driver);
  b.driveTo(third, target);
  expect(observe(b, point.seq, point.output.length)).toEqual(first);
  return { point, first };
}

describe('virt snapshots of the demo guest', () => {
  test('a restored run continues exactly: in the same machine and in a fresh one', () => {
    // During the timer ticks (CLINT timer armed), around the virtio read, and at the prompt.
    for (const [saveAt, distance] of [
      [3_000, 9_000],
      [9_000, 4_000],
      [14_000, 6_000],
      [20_000, 100_000],
    ] as const) {
      checkContinuation(saveAt, distance);
    }
  });

  test('restore then run to poweroff ends with the digest of the uninterrupted run', () => {
    // The same driving without any snapshot: taking one must not change the run either.
    const plain = demo();
    const plainDriver = newDriverState();
    expect(driveToQuiescent(plain, plainDriver, 5_000, () => plain.run.loop.notQuiescent())).toBe(true);
    plain.driveTo(plainDriver, Number.MAX_SAFE_INTEGER);
    expect(plain.done).toBe(true);
    const { first } = checkContinuation(5_000, Number.MAX_SAFE_INTEGER);
    expect(first.shutdown).toEqual({ kind: 'poweroff', exitCode: 0 });
    expect(first.digest).toBe(plain.run.loop.trace.digestHex());
    expect(first.icount).toBe(plain.icount);
  });

  test('an armed timer keeps its deadline and order across a restore', () => {
    const a = demo();
    const snap = createVirtSnapshotter(a.run.loop, a.run.machine, []);
    const driver = newDriverState();
    expect(driveToQuiescent(a, driver, 2_000, snap.notQuiescent)).toBe(true);
    const state = roundTrip(snap.save()) as VirtSnapshot;
    // Before the third tick the guest has armed mtimecmp: the snapshot must carry that timer.
    expect(state.kernel.timers.length).toBeGreaterThan(0);
    expect(state.board.clint.mtimecmp[0]).not.toBe('0');
  });

  test('a request in flight is not quiescent: save and restore refuse, with the reason', () => {
    const a = demo();
    const snap = createVirtSnapshotter(a.run.loop, a.run.machine, []);
    const early = snap.save();
    expect(a.run.loop.runUntil(() => a.run.machine.requestsInFlight > 0, { maxTasks: 100_000 })).toBe(true);
    expect(snap.notQuiescent()).toMatch(/coroutine.*virtio-blk0:req/);
    expect(() => snap.save()).toThrow(NotQuiescentError);
    expect(() => snap.restore(early)).toThrow(KernelSnapshotError);
    // Once the request completed the machine is quiescent again and the restore works.
    expect(a.run.loop.runUntil(() => snap.notQuiescent() === null, { maxTasks: 100_000 })).toBe(true);
    snap.restore(early);
    expect(a.icount).toBe(0);
  });

  test('input waiting in the gate is not quiescent', () => {
    const a = demo();
    const snap = createVirtSnapshotter(a.run.loop, a.run.machine, []);
    a.run.loop.gate.offer({ channel: 'serial0', kind: 'chardev', data: new Uint8Array([0x41]) });
    expect(snap.notQuiescent()).toBe('1 input(s) wait in the input gate');
  });

  test('extra parts are saved and restored by name', () => {
    const a = demo();
    let value = 1;
    const restored: unknown[] = [];
    const part: SnapshotPart = { name: 'counter', save: () => ({ value }), restore: (s) => restored.push(s) };
    const snap = createVirtSnapshotter(a.run.loop, a.run.machine, [part]);
    const state = roundTrip(snap.save());
    value = 2;
    snap.restore(state);
    expect(restored).toEqual([{ value: 1 }]);
    const vetoed = createVirtSnapshotter(a.run.loop, a.run.machine, [{ ...part, notQuiescent: () => 'busy' }]);
    expect(vetoed.notQuiescent()).toBe('counter: busy');
    const other = createVirtSnapshotter(a.run.loop, a.run.machine, []);
    expect(() => other.restore(state)).toThrow(/part 'counter'/);
    expect(() => createVirtSnapshotter(a.run.loop, a.run.machine, [part, part])).toThrow(/two snapshot parts/);
  });

  test('a snapshot does not alias live RAM or registers', () => {
    const a = demo();
    const snap = createVirtSnapshotter(a.run.loop, a.run.machine, []);
    const state = snap.save() as VirtSnapshot;
    const ram = a.run.machine.as.allRegions.find((r) => r.kind === 'ram' && !r.block.readonly);
    expect(ram?.kind).toBe('ram');
    if (ram?.kind !== 'ram') return;
    expect(state.ram[0]!.data.buffer).not.toBe(ram.block.bytes.buffer);
    // Sparse: the pages the demo's image covers, not 64 MiB of zeroes.
    expect(state.ram[0]!.pages.length).toBeGreaterThan(0);
    expect(state.ram[0]!.data.length).toBeLessThan(ram.block.bytes.length / 64);
    const hart = (a.run.loop.cpu as RiscvCpu).hart;
    expect(state.harts[0]!.x.buffer).not.toBe(hart.x.buffer);
  });

  test('foreign or damaged snapshots are clear errors', () => {
    const a = demo();
    const snap = createVirtSnapshotter(a.run.loop, a.run.machine, []);
    const good = snap.save() as VirtSnapshot;
    expect(() => snap.restore({})).toThrow(SnapshotFormatError);
    expect(() => snap.restore({ ...good, version: 99 })).toThrow(/version 99/);
    expect(() => snap.restore({ ...good, ram: [] })).toThrow(/RAM blocks/);
    expect(() => snap.restore({ ...good, rom: good.rom.map((r) => ({ ...r, digest: '0' })) })).toThrow(/ROM/);
    expect(() => snap.restore({ ...good, harts: [] })).toThrow(/harts/);
  });

  test('every RiscvHart field is either saved or classified as configuration or derived', () => {
    const hart = new RiscvHart({ xlen: 64, hartId: 0, resetPc: 0x1000, memory: demo().run.machine.as });
    const unknown = Object.keys(hart).filter((name) => hartFieldClass(name) === 'unknown');
    expect(unknown).toEqual([]);
    expect(hartFieldClass('mstatus')).toBe('saved');
    expect(hartFieldClass('tlbTag')).toBe('derived');
  });

  test('size and speed of a demo snapshot', () => {
    const a = demo();
    const snap = createVirtSnapshotter(a.run.loop, a.run.machine, []);
    const driver = newDriverState();
    expect(driveToQuiescent(a, driver, 15_000, snap.notQuiescent)).toBe(true);
    const rounds = 5;
    let saveMs = Infinity;
    let restoreMs = Infinity;
    let packMs = Infinity;
    let bytes = 0;
    for (let i = 0; i < rounds; i++) {
      let t = performance.now();
      const state = snap.save();
      saveMs = Math.min(saveMs, performance.now() - t);
      t = performance.now();
      const packed = packr.pack(state);
      packMs = Math.min(packMs, performance.now() - t);
      bytes = packed.length;
      const unpacked = packr.unpack(packed);
      t = performance.now();
      snap.restore(unpacked);
      restoreMs = Math.min(restoreMs, performance.now() - t);
    }
    console.log(`virt demo snapshot (64 MiB RAM): ${bytes} bytes msgpack, save ${saveMs.toFixed(2)} ms, pack ${packMs.toFixed(2)} ms, restore ${restoreMs.toFixed(2)} ms (best of ${rounds})`);
    expect(bytes).toBeGreaterThan(4096);
    expect(bytes).toBeLessThan(4 * 1024 * 1024);
  });
});
