/**
 * Test support for virt snapshots: the bundled demo guest built as the replay tools build it, and
 * a deterministic console driver (the demo tool's typing, without its host randomness) whose
 * own state can be copied, so a run restored from a snapshot can be driven exactly as the
 * original was.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConsoleCapture } from '../../src/engine/hw/virt/console-script.js';
import { Packr } from 'msgpackr';
import type { RiscvCpu } from '../../src/engine/targets/riscv/cpu.js';
import { RamPageProbe, type StateProbe, captureState } from '../../src/replay/state.js';
import { type VirtRun, type VirtRunSpec, buildVirtRun } from '../../src/replay/virt-run.js';
import { createVirtSnapshotter } from '../../src/replay/virt-snapshot.js';

const DEMO_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'fixtures', 'demo');

/** What `tsqemu-replay demo` runs: -M virt -m 64M -bios none -kernel demo.elf -drive demo-disk.img,if=virtio -icount shift=0. */
export function demoSpec(): VirtRunSpec {
  return {
    memoryBytes: 64 * 1024 * 1024,
    bios: 'none',
    kernel: join(DEMO_DIR, 'demo.elf'),
    append: null,
    drives: [{ id: 'drive0', file: join(DEMO_DIR, 'demo-disk.img'), format: 'raw' }],
    icountShift: 0,
    seed: 0,
    policy: 'fifo',
  };
}

export const DEMO_LINES = ['hello replay', 'timers and virtio work', 'quit'];

/** The driver's host-side state: copied with a snapshot, since it decides what is typed when. */
export interface DriverState {
  line: number;
  typing: number[];
  promptsSeen: number;
  /** Loop turns per runUntil call cycle through these (a fixed pattern instead of Math.random). */
  turn: number;
}

export function newDriverState(): DriverState {
  return { line: 0, typing: [], promptsSeen: 0, turn: 0 };
}

export function copyDriverState(s: DriverState): DriverState {
  return { line: s.line, typing: s.typing.slice(), promptsSeen: s.promptsSeen, turn: s.turn };
}

const TURNS = [1, 3, 2, 5, 4, 6];

/** A demo run with its console; `outputBefore` is console text produced before this run object existed (a restore). */
export class DemoConsole {
  readonly capture = new ConsoleCapture();
  readonly run: VirtRun;
  /** Console text of the timeline before the capture's part counts (set when a snapshot is restored). */
  private outputBefore = '';
  private captureFrom = 0;

  constructor() {
    this.run = buildVirtRun(demoSpec(), this.capture);
  }

  /** The console text of this timeline: what came before the restore point, then what the capture got since. */
  get output(): string {
    return this.outputBefore + this.capture.text.slice(this.captureFrom);
  }

  /** After a restore: the timeline's console text is `output` (what it was at the save point). */
  rewindOutput(output: string): void {
    this.outputBefore = output;
    this.captureFrom = this.capture.text.length;
  }

  get icount(): number {
    return this.run.loop.cpu?.icount ?? 0;
  }

  get done(): boolean {
    return this.run.machine.shutdown !== null;
  }

  /** One driver step: a few loop turns, then at most one typed byte (the demo tool's pattern). */
  step(state: DriverState, stop: () => boolean): void {
    const turns = TURNS[state.turn % TURNS.length]!;
    state.turn++;
    this.run.loop.runUntil(() => this.done || stop(), { maxTasks: turns });
    if (state.typing.length > 0) {
      this.run.loop.gate.offer({ channel: 'serial0', kind: 'chardev', data: new Uint8Array([state.typing.shift()!]) });
    } else if (state.line < DEMO_LINES.length && this.output.split('demo> ').length - 1 > state.promptsSeen) {
      state.promptsSeen++;
      state.typing = Array.from(new TextEncoder().encode(DEMO_LINES[state.line++] + '\r'));
    }
  }

  /** Drives until `icount` reaches `target` or the guest powers off; bounded. */
  driveTo(state: DriverState, target: number): void {
    for (let guard = 0; guard < 5_000_000 && !this.done && this.icount < target; guard++) this.step(state, () => this.icount >= target);
  }

  /** Re-bases the RAM probe after a restore (its shadow must be the restored RAM). */
  resyncProbes(): void {
    for (const probe of this.run.probes as readonly StateProbe[]) if (probe instanceof RamPageProbe) probe.resync();
  }
}

/** The replay log's msgpack options: what a stored snapshot goes through. */
export const snapshotPackr = new Packr({ useRecords: false, moreTypes: false, encodeUndefinedAsNil: true });

/** Everything the continuation of a run is judged by, from event `fromSeq` and output offset `outputFrom` on. */
export function observe(c: DemoConsole, fromSeq: number, outputFrom: number) {
  const loop = c.run.loop;
  const cpu = loop.cpu as RiscvCpu;
  // The ring is not rewound by a restore: this timeline's events are the last ones emitted.
  const recent = loop.trace.recent();
  const ours = loop.trace.eventCount - fromSeq;
  if (ours > recent.length) throw new Error(`${ours} events since the save point, the ring holds ${recent.length}`);
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

export type Observation = ReturnType<typeof observe>;

/** Drives to `icount` (or a bit past it), then on to the first quiescent point; false if the guest finished first. */
export function driveToQuiescent(c: DemoConsole, state: DriverState, icount: number, notQuiescent: () => string | null): boolean {
  c.driveTo(state, icount);
  for (let guard = 0; guard < 100_000 && !c.done && notQuiescent() !== null; guard++) c.step(state, () => false);
  return !c.done && notQuiescent() === null;
}

export interface Continuations {
  /** Instruction count of the save point (null: the guest finished before a quiescent point). */
  readonly savedAt: number | null;
  readonly snapshotBytes: number;
  /** The original run, from the save point `distance` instructions on. */
  readonly first: Observation | null;
  /** The same machine restored from the snapshot and driven the same way. */
  readonly sameMachine: Observation | null;
  /** A second machine built from the same description, restored and driven the same way. */
  readonly freshMachine: Observation | null;
}

/**
 * Runs the demo to a quiescent point near `saveAt`, snapshots it through msgpack, runs on
 * `distance` instructions, then runs the same stretch again after restoring into the same machine
 * and into a fresh one. `track` registers every console built, so the caller closes them.
 */
export function continuations(saveAt: number, distance: number, track: (c: DemoConsole) => DemoConsole): Continuations {
  const a = track(new DemoConsole());
  const snap = createVirtSnapshotter(a.run.loop, a.run.machine, []);
  const driver = newDriverState();
  if (!driveToQuiescent(a, driver, saveAt, snap.notQuiescent)) return { savedAt: null, snapshotBytes: 0, first: null, sameMachine: null, freshMachine: null };
  captureState(a.run.probes); // the RAM probe's shadow becomes the RAM at the save point
  const packed = snapshotPackr.pack(snap.save());
  const snapshot: unknown = snapshotPackr.unpack(packed);
  const savedDriver = copyDriverState(driver);
  const output = a.output;
  const seq = a.run.loop.trace.eventCount;
  const savedAt = a.icount;
  const target = savedAt + distance;

  a.driveTo(driver, target);
  const first = observe(a, seq, output.length);

  snap.restore(snapshot);
  a.resyncProbes();
  a.rewindOutput(output);
  a.driveTo(copyDriverState(savedDriver), target);
  const sameMachine = observe(a, seq, output.length);

  const b = track(new DemoConsole());
  createVirtSnapshotter(b.run.loop, b.run.machine, []).restore(snapshotPackr.unpack(packed));
  b.resyncProbes();
  b.rewindOutput(output);
  b.driveTo(copyDriverState(savedDriver), target);
  const freshMachine = observe(b, seq, output.length);
  return { savedAt, snapshotBytes: packed.length, first, sameMachine, freshMachine };
}
