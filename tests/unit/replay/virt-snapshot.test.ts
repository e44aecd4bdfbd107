import { existsSync } from 'node:fs';
import { afterEach, describe, expect, test } from 'vitest';
import type { RiscvCpu } from '../../../src/engine/targets/riscv/cpu.js';
import { RiscvHart } from '../../../src/engine/targets/riscv/hart.js';
import { hartFieldClass } from '../../../src/engine/targets/riscv/hart-state.js';
import { type VirtRun, type VirtRunSpec, buildVirtRun } from '../../../src/replay/virt-run.js';
import { type SnapshotPart, NotQuiescentError, SnapshotFormatError, type VirtSnapshot, createVirtSnapshotter } from '../../../src/replay/virt-snapshot.js';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { ConsoleCapture } from '../../../src/engine/hw/virt/console-script.js';
import { buildVirtMachine } from '../../../src/engine/hw/virt/machine.js';
import { RoundRobin, riscvCpuFactory } from '../../../src/engine/hw/virt/riscv-harts.js';
import { type Continuations, DemoConsole, demoSpec, driveToQuiescent, newDriverState, snapshotPackr as packr, continuations } from '../../support/virt-snapshot-demo.js';

const roundTrip = (value: unknown): unknown => packr.unpack(packr.pack(value));

const open: DemoConsole[] = [];
function track(c: DemoConsole): DemoConsole {
  open.push(c);
  return c;
}
const demo = (): DemoConsole => track(new DemoConsole());
afterEach(() => {
  for (const c of open.splice(0)) c.run.close();
});

/** The three runs from the save point on must be one and the same. */
function expectIdentical(result: Continuations): void {
  expect(result.savedAt).not.toBeNull();
  expect(result.first).not.toBeNull();
  expect(result.sameMachine).toEqual(result.first);
  expect(result.freshMachine).toEqual(result.first);
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
      expectIdentical(continuations(saveAt, distance, track));
    }
  });

  test('two harts (round-robin driver): the restored runs continue exactly', () => {
    const build = () => {
      const loop = new MainLoop({ seed: 3 });
      const capture = new ConsoleCapture();
      const machine = buildVirtMachine(loop, { ramSizeBytes: 64 * 1024 * 1024, kernel: demoSpec().kernel!, smp: 2, serialOutput: capture, cpu: riscvCpuFactory({ icountShift: 0 }) });
      return { loop, machine, capture, snap: createVirtSnapshotter(loop, machine, []) };
    };
    // Both harts run the demo (its start code does not park the second one): a race on shared
    // memory, deterministic all the same.
    const forward = (m: ReturnType<typeof build>, icount: number) => {
      for (let guard = 0; guard < 1_000_000 && m.loop.cpu!.icount < icount && m.machine.shutdown === null; guard++) m.loop.runUntil(() => m.loop.cpu!.icount >= icount, { maxTasks: 3 });
      const harts = (m.loop.cpu as RoundRobin).harts;
      return { digest: m.loop.trace.digestHex(), events: m.loop.trace.eventCount, icount: m.loop.cpu!.icount, harts: harts.map((c) => c.hart.stateDigest()), devices: m.machine.deviceStateDigest(), nowNs: m.loop.nowNs };
    };
    const a = build();
    forward(a, 5_000);
    for (let guard = 0; guard < 10_000 && a.snap.notQuiescent() !== null; guard++) a.loop.runUntil(() => false, { maxTasks: 1 });
    expect(a.snap.notQuiescent()).toBeNull();
    const state = roundTrip(a.snap.save()) as VirtSnapshot;
    expect(state.harts.length).toBe(2);
    expect(typeof state.roundRobinNext).toBe('number');
    const mark = a.capture.text.length;
    const target = a.loop.cpu!.icount + 20_000;
    const first = forward(a, target);
    const firstOutput = a.capture.text.slice(mark);
    expect(first.harts[0]).not.toBe(first.harts[1]);
    a.snap.restore(state);
    const mark2 = a.capture.text.length;
    expect(forward(a, target)).toEqual(first);
    expect(a.capture.text.slice(mark2)).toBe(firstOutput);
    const b = build();
    b.snap.restore(roundTrip(state));
    expect(forward(b, target)).toEqual(first);
    expect(b.capture.text).toBe(firstOutput);
  });

  test('restore then run to poweroff ends with the digest of the uninterrupted run', () => {
    // The same driving without any snapshot: taking one must not change the run either.
    const plain = demo();
    const plainDriver = newDriverState();
    expect(driveToQuiescent(plain, plainDriver, 5_000, () => plain.run.loop.notQuiescent())).toBe(true);
    plain.driveTo(plainDriver, Number.MAX_SAFE_INTEGER);
    expect(plain.done).toBe(true);
    const result = continuations(5_000, Number.MAX_SAFE_INTEGER, track);
    expectIdentical(result);
    const first = result.first!;
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

  test('a request in flight is not quiescent; a restore abandons it and the run goes on as from the snapshot', () => {
    const a = demo();
    const snap = createVirtSnapshotter(a.run.loop, a.run.machine, []);
    const early = roundTrip(snap.save());
    expect(a.run.loop.runUntil(() => a.run.machine.requestsInFlight > 0, { maxTasks: 100_000 })).toBe(true);
    expect(snap.notQuiescent()).toMatch(/coroutine.*virtio-blk0:req/);
    expect(() => snap.save()).toThrow(NotQuiescentError);
    snap.restore(early);
    expect(a.run.machine.requestsInFlight).toBe(0);
    expect(snap.notQuiescent()).toBeNull();
    expect(a.icount).toBe(0);
    a.resyncProbes();
    a.rewindOutput('');
    // From the restored start it behaves as a machine that never ran.
    const b = demo();
    for (const c of [a, b]) c.driveTo(newDriverState(), Number.MAX_SAFE_INTEGER);
    expect(a.output).toBe(b.output);
    expect(a.run.loop.trace.digestHex()).toBe(b.run.loop.trace.digestHex());
    expect(a.icount).toBe(b.icount);
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
    // A line level that does not match the hart's mip bit: pieces from different moments.
    const clint = { ...good.board.clint, mtip: [!good.board.clint.mtip[0]] };
    expect(() => snap.restore({ ...good, board: { ...good.board, clint } })).toThrow(/mtip line/);
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

const OPENSBI = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';
const UBOOT = '/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin';
const haveFirmware = existsSync(OPENSBI) && existsSync(UBOOT);

describe.skipIf(!haveFirmware)(`virt snapshots of OpenSBI + U-Boot${haveFirmware ? '' : ' (skipped: Debian opensbi and u-boot-qemu not installed)'}`, () => {
  test('a snapshot in the middle of the firmware boot continues exactly, in the same and a fresh machine', () => {
    const spec: VirtRunSpec = { memoryBytes: 128 * 1024 * 1024, bios: OPENSBI, kernel: UBOOT, append: null, drives: [], icountShift: 0, seed: 0, policy: 'fifo' };
    const build = () => {
      const capture = new ConsoleCapture();
      const run = buildVirtRun(spec, capture);
      runs.push(run);
      return { run, capture, snap: run.snapshotter ?? createVirtSnapshotter(run.loop, run.machine, []) };
    };
    const runs: VirtRun[] = [];
    const forward = (m: ReturnType<typeof build>, icount: number) => {
      m.run.loop.runUntil(() => m.run.loop.cpu!.icount >= icount, { maxTasks: 1_000_000 });
      return { digest: m.run.loop.trace.digestHex(), events: m.run.loop.trace.eventCount, icount: m.run.loop.cpu!.icount, nowNs: m.run.loop.nowNs, hart: (m.run.loop.cpu as RiscvCpu).hart.stateDigest(), devices: m.run.machine.deviceStateDigest() };
    };
    try {
      const a = build();
      forward(a, 20_000_000);
      expect(a.snap.notQuiescent()).toBeNull();
      let t = performance.now();
      const saved = a.snap.save();
      const saveMs = performance.now() - t;
      const packed = packr.pack(saved);
      const mark = a.capture.text.length;
      const target = a.run.loop.cpu!.icount + 5_000_000;
      const first = forward(a, target);
      const firstOutput = a.capture.text.slice(mark);
      expect(firstOutput.length).toBeGreaterThan(0);
      t = performance.now();
      const unpacked: unknown = packr.unpack(packed);
      const unpackMs = performance.now() - t;
      t = performance.now();
      a.snap.restore(unpacked);
      const restoreMs = performance.now() - t;
      const mark2 = a.capture.text.length;
      expect(forward(a, target)).toEqual(first);
      expect(a.capture.text.slice(mark2)).toBe(firstOutput);
      const b = build();
      b.snap.restore(packr.unpack(packed));
      expect(forward(b, target)).toEqual(first);
      expect(b.capture.text).toBe(firstOutput);
      console.log(`OpenSBI + U-Boot snapshot at ${(saved as VirtSnapshot).harts[0]!.numbers['icount']} instructions (128 MiB RAM): ${packed.length} bytes msgpack, save ${saveMs.toFixed(1)} ms, unpack ${unpackMs.toFixed(1)} ms, restore ${restoreMs.toFixed(1)} ms`);
    } finally {
      for (const run of runs) run.close();
    }
  }, 120_000);
});
