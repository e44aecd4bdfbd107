/**
 * The player: feeds the gate the logged inputs at their logged points (it is the gate's
 * `InputSource`), takes checkpoints at the same positions as the recorder, and compares each with
 * the log. The first difference stops the run with a report of what differs.
 */
import { type InputSource, ReplayMismatchError, type StampedInput } from '../engine/host/input-gate.js';
import type { TraceEvent } from '../engine/trace.js';
import type { CheckpointRecord, EndRecord, EventRecord, InputRecord, LoggedRecord, ParsedLog, RunPoint } from './log-format.js';
import { type ReplayMachine, defaultEventFilter } from './machine.js';
import { RunHooks } from './run-hooks.js';
import { SnapshotStore, type SnapshotFileWriter, type StoredSnapshot, materialize } from './snapshot-store.js';
import { type StateDifference, captureState, diffState } from './state.js';

export type DivergenceKind = 'checkpoint' | 'input' | 'event' | 'end' | 'stuck';

/** The first point where play differs from the recording. */
export interface Divergence {
  readonly kind: DivergenceKind;
  /** Where play was when it noticed. */
  readonly at: RunPoint;
  /** What the log says should have happened there. */
  readonly expected?: RunPoint;
  readonly checkpoint?: number;
  readonly message: string;
  readonly differences: readonly StateDifference[];
  readonly recordedTrace?: string;
  readonly replayedTrace?: string;
  /** The last inputs delivered before the divergence, oldest first. */
  readonly lastInputs: readonly InputRecord[];
  /** The last trace events before the divergence (what led up to it). */
  readonly recentEvents: readonly string[];
}

export interface PlayOptions {
  /** Stop at this instruction count (or main-loop step without a CPU) instead of the log's end. */
  readonly until?: number;
  /** Check event records as extra checkpoints (default: when the log has them). */
  readonly checkEvents?: boolean;
  readonly eventFilter?: (event: TraceEvent) => boolean;
  /** Bound on loop iterations (a livelocked replay ends with a 'stuck' divergence). */
  readonly maxIterations?: number;
  /**
   * Instructions between snapshots for seek (taken at checkpoints where the machine is
   * quiescent); default one checkpoint interval. 0 turns snapshots off.
   */
  readonly snapshotInterval?: number;
  /** Snapshots kept in memory (older ones are thinned out evenly). */
  readonly maxSnapshots?: number;
  /** Also append every snapshot to this file (`tsqemu-replay play --snapshots F`). */
  readonly snapshotFile?: SnapshotFileWriter;
}

/** A seek that cannot be done (QEMU's wording where it has one). */
export class SeekError extends Error {
  override readonly name = 'SeekError';
}

export interface PlayResult {
  readonly divergence: Divergence | null;
  readonly point: RunPoint;
  readonly inputs: number;
  readonly checkpoints: number;
  readonly events: number;
  /** True when play reached the log's end record (or the last complete record of a cut log). */
  readonly reachedEnd: boolean;
  readonly finalTrace: string;
  /** The log's own final trace digest, when it ended cleanly. */
  readonly recordedTrace: string | null;
}

const LAST_INPUTS = 8;
const DEFAULT_MAX_ITERATIONS = 200_000_000;

function samePoint(a: RunPoint, b: RunPoint): boolean {
  return a.step === b.step && a.icount === b.icount && a.ns === b.ns;
}

export function formatPoint(p: RunPoint): string {
  return `icount ${p.icount}, step ${p.step}, ${p.ns} ns`;
}

export class Player implements InputSource {
  private readonly inputs: InputRecord[];
  private readonly checkpointRecords: CheckpointRecord[];
  private readonly eventRecords: EventRecord[];
  private readonly end: EndRecord | null;
  private inputIndex = 0;
  private checkpointIndex = 0;
  private eventIndex = 0;
  private readonly hooks: RunHooks;
  private readonly delivered: InputRecord[] = [];
  private divergenceValue: Divergence | null = null;
  private readonly checkEvents: boolean;
  private readonly filter: (event: TraceEvent) => boolean;
  private started = false;
  /** Replay point of the last record of a log cut short (no end record). */
  private readonly lastPoint: RunPoint;
  /** Snapshots taken so far (seek restores the nearest). */
  readonly snapshots: SnapshotStore;
  private readonly snapshotInterval: number;
  private nextSnapshotAt = 0;
  /** Why the last snapshot due could not be taken (a coroutine mid-flight...), for reports. */
  lastSnapshotRefusal: string | null = null;
  /** A checkpoint passed inside the CPU's slice: snapshot once the iteration returns. */
  private snapshotDue = false;
  /** replay-break / seek: play pauses when the instruction count reaches this. */
  private breakIcount: number | null = null;
  /** Where play ends (the log's end or --until), as an instruction count; Infinity without a CPU. */
  private endStop = Infinity;

  constructor(
    private readonly machine: ReplayMachine,
    readonly log: ParsedLog,
    private readonly options: PlayOptions = {},
  ) {
    const records = log.records;
    this.inputs = records.filter((r): r is LoggedRecord & InputRecord => r.type === 'input');
    this.checkpointRecords = records.filter((r): r is LoggedRecord & CheckpointRecord => r.type === 'checkpoint');
    this.eventRecords = records.filter((r): r is LoggedRecord & EventRecord => r.type === 'event');
    this.end = (records.find((r) => r.type === 'end') as EndRecord | undefined) ?? null;
    const last = records[records.length - 1];
    this.lastPoint = last === undefined ? { step: 0, icount: 0, ns: 0 } : { step: last.step, icount: last.icount, ns: last.ns };
    this.checkEvents = (options.checkEvents ?? true) && log.header.events;
    this.filter = options.eventFilter ?? defaultEventFilter;
    this.hooks = new RunHooks(machine.loop, {
      unit: log.header.checkpointUnit,
      interval: log.header.checkpointInterval,
      icountShift: log.header.icountShift,
      onCheckpoint: () => this.checkpoint(false),
    });
    this.snapshots = new SnapshotStore(options.maxSnapshots ?? 32);
    const interval = options.snapshotInterval ?? log.header.checkpointInterval;
    this.snapshotInterval = machine.snapshotter !== undefined && log.header.checkpointUnit === 'icount' ? interval : 0;
  }

  get divergence(): Divergence | null {
    return this.divergenceValue;
  }

  /** Where play stops: `--until`, else the end record, else the last complete record. */
  get target(): RunPoint {
    const until = this.options.until;
    if (until !== undefined) {
      return this.log.header.checkpointUnit === 'icount' ? { step: 0, icount: until, ns: 0 } : { step: until, icount: 0, ns: 0 };
    }
    return this.end ?? this.lastPoint;
  }

  // ---- InputSource ---------------------------------------------------------------------------

  peek(): StampedInput | undefined {
    const next = this.inputs[this.inputIndex];
    if (next === undefined) return undefined;
    return { channel: next.channel, kind: next.kind, data: next.data, step: next.step, icount: next.icount, ns: next.ns, seq: this.inputIndex };
  }

  take(): StampedInput {
    const input = this.peek();
    if (input === undefined) throw new ReplayMismatchError('replay asked for an input past the end of the log');
    this.inputIndex++;
    return input;
  }

  // ---- running -------------------------------------------------------------------------------

  /** Connects to the machine: the gate replays from this player, checkpoints and events are checked. */
  start(): void {
    if (this.started) return;
    this.started = true;
    const loop = this.machine.loop;
    loop.gate.replayFrom(this);
    loop.gate.observe((input) => this.onDelivered(input));
    if (this.checkEvents) {
      loop.trace.onEvent((event) => this.onEvent(event));
      this.machine.attachEvents?.((name, fields) => this.onEvent({ seq: -1, ns: loop.nowNs, name, fields }, true));
    }
    this.hooks.install();
    const target = this.target;
    if (this.log.header.checkpointUnit === 'icount' && target.icount > 0) this.endStop = target.icount;
    this.applyStop();
    // The state before the first instruction: seek can always go back to the start.
    this.maybeSnapshot();
  }

  private applyStop(): void {
    this.hooks.stopIcount = Math.min(this.endStop, this.breakIcount ?? Infinity);
  }

  // ---- breakpoints, snapshots and seek ----------------------------------------------------------

  /** The replayed machine's main loop. */
  get machineLoop(): ReplayMachine['loop'] {
    return this.machine.loop;
  }

  /** The instruction count play stands at. */
  get icount(): number {
    return this.machine.loop.cpu?.icount ?? 0;
  }

  /** The breakpoint (replay-break), or null. */
  get breakpoint(): number | null {
    return this.breakIcount;
  }

  /** True while play stands at its breakpoint: `advance` does nothing until it is moved or deleted. */
  get paused(): boolean {
    return this.breakIcount !== null && this.icount >= this.breakIcount;
  }

  /** replay-break: pause when the instruction count reaches `icount` (null deletes it). */
  setBreak(icount: number | null): void {
    if (icount !== null) {
      if (this.log.header.checkpointUnit !== 'icount') throw new SeekError('breakpoints need a recording with a CPU (they count instructions)');
      if (!Number.isSafeInteger(icount) || icount < this.icount) throw new SeekError('cannot set breakpoint at the instruction in the past');
    }
    this.breakIcount = icount;
    this.applyStop();
  }

  /** The instruction count of the log's end (or of its last record when cut short). */
  get endIcount(): number {
    return (this.end ?? this.lastPoint).icount;
  }

  /**
   * replay-seek: makes play stand at `icount` once `advance` has run: restores the nearest
   * snapshot when the target is behind play (or a snapshot is nearer than play), then sets the
   * breakpoint there. Returns the point restored, or null when play just runs forward.
   */
  seek(icount: number): RunPoint | null {
    if (this.log.header.checkpointUnit !== 'icount') throw new SeekError('seek needs a recording with a CPU (it counts instructions)');
    if (this.divergenceValue !== null) throw new SeekError(`play has diverged at ${formatPoint(this.divergenceValue.at)}; seeking would replay a different run`);
    if (!Number.isSafeInteger(icount) || icount < 0 || icount > this.endIcount) throw new SeekError(`cannot seek to the specified instruction count: the recording spans instructions 0..${this.endIcount}`);
    this.start();
    const now = this.icount;
    const snapshot = this.snapshots.nearest(icount);
    let restored: RunPoint | null = null;
    if (snapshot !== undefined && (icount < now || now < snapshot.point.icount)) {
      this.restore(snapshot);
      restored = snapshot.point;
    } else if (icount < now) {
      throw new SeekError(`cannot seek to the specified instruction count: no snapshot at or before ${icount}${this.lastSnapshotRefusal !== null ? ` (${this.lastSnapshotRefusal})` : ''}`);
    }
    this.breakIcount = icount;
    this.applyStop();
    return restored;
  }

  /** Restores a snapshot taken by this player or read from a snapshot file of the same log. */
  restore(snapshot: StoredSnapshot): void {
    const snapshotter = this.machine.snapshotter;
    if (snapshotter === undefined) throw new SeekError('this machine cannot restore snapshots');
    this.start();
    snapshotter.restore(materialize(snapshot));
    this.inputIndex = snapshot.position.inputIndex;
    this.checkpointIndex = snapshot.position.checkpointIndex;
    this.eventIndex = snapshot.position.eventIndex;
    this.delivered.length = 0;
    for (const probe of this.machine.probes) probe.resync?.();
    this.hooks.resync();
    this.finishedResult = null;
    this.snapshotDue = false;
    this.snapshots.add(snapshot.point, snapshot.position, snapshot.state);
    this.nextSnapshotAt = snapshot.point.icount + this.snapshotInterval;
  }

  /** Takes a snapshot when one is due and the machine is quiescent (at checkpoints and at the start). */
  private maybeSnapshot(): void {
    const snapshotter = this.machine.snapshotter;
    if (snapshotter === undefined || this.snapshotInterval <= 0 || this.divergenceValue !== null) return;
    const point = this.hooks.point();
    if (point.icount < this.nextSnapshotAt) return;
    const why = snapshotter.notQuiescent();
    if (why !== null) {
      this.lastSnapshotRefusal = `no snapshot at icount ${point.icount}: ${why}`;
      return;
    }
    const stored = this.snapshots.add(point, { inputIndex: this.inputIndex, checkpointIndex: this.checkpointIndex, eventIndex: this.eventIndex }, snapshotter.save());
    this.options.snapshotFile?.write(stored);
    this.nextSnapshotAt = point.icount + this.snapshotInterval;
  }

  private reached(target: RunPoint): boolean {
    const now = this.hooks.point();
    return now.step >= target.step && now.icount >= target.icount && now.ns >= target.ns;
  }

  private iterations = 0;
  private finishedResult: PlayResult | null = null;

  /** Plays to the target (or the first divergence). */
  run(): PlayResult {
    for (;;) {
      const result = this.advance(Number.MAX_SAFE_INTEGER);
      if (result !== null) return result;
      if (this.paused) this.setBreak(null);
    }
  }

  /**
   * Plays at most `iterations` loop iterations; returns the result when play is over, else null
   * (so a host can stay responsive between slices).
   */
  advance(iterations: number): PlayResult | null {
    if (this.finishedResult !== null) return this.finishedResult;
    this.start();
    const loop = this.machine.loop;
    const target = this.target;
    const untilNs = target.ns > 0 ? target.ns : undefined;
    const maxIterations = this.options.maxIterations ?? DEFAULT_MAX_ITERATIONS;
    let reachedEnd = false;
    let over = false;
    for (let i = 0; i < iterations; i++) {
      if (this.paused) return null;
      if (this.divergenceValue !== null) {
        over = true;
        break;
      }
      if (this.reached(target)) {
        // Inputs logged at the very end point were delivered by a poll before the recording stopped.
        if (this.options.until === undefined) this.pollAtEnd();
        reachedEnd = true;
        over = true;
        break;
      }
      if (this.iterations++ >= maxIterations) {
        this.diverge('stuck', `play did not reach ${formatPoint(target)} within ${maxIterations} loop iterations`, []);
        over = true;
        break;
      }
      let progressed: boolean;
      try {
        progressed = loop.iterate(untilNs);
        if (this.snapshotDue) {
          this.snapshotDue = false;
          this.maybeSnapshot();
        }
      } catch (error) {
        if (!(error instanceof ReplayMismatchError)) throw error;
        if (this.end === null && this.inputIndex === this.inputs.length) {
          // A cut log: the run needs an input the recording never got to write. Play ends here.
          reachedEnd = true;
          over = true;
          break;
        }
        this.diverge('input', error.message, []);
        over = true;
        break;
      }
      if (!progressed && !loop.gate.hasPending && loop.readyCount === 0 && !this.reached(target)) {
        // Nothing ran and nothing can: the run cannot get to the next logged point (QEMU hangs here).
        const next = this.inputs[this.inputIndex];
        const why = next !== undefined ? `the next input (${next.kind} on '${next.channel}') is due at ${formatPoint(next)}, a point this run does not reach` : `${formatPoint(target)} is not reached`;
        this.diverge('stuck', `the run stopped making progress at ${formatPoint(this.hooks.point())}: ${why}`, [], next !== undefined ? { expected: next } : {});
        over = true;
        break;
      }
    }
    if (!over) return null;
    if (reachedEnd && this.options.until === undefined && this.divergenceValue === null) this.checkEnd();
    this.finishedResult = this.result(reachedEnd);
    return this.finishedResult;
  }

  private pollAtEnd(): void {
    try {
      this.machine.loop.gate.poll();
    } catch (error) {
      if (!(error instanceof ReplayMismatchError)) throw error;
      if (this.end === null && this.inputIndex === this.inputs.length) return;
      this.diverge('input', error.message, []);
    }
  }

  result(reachedEnd: boolean): PlayResult {
    return {
      divergence: this.divergenceValue,
      point: this.hooks.point(),
      inputs: this.inputIndex,
      checkpoints: this.checkpointIndex,
      events: this.eventIndex,
      reachedEnd,
      finalTrace: this.machine.loop.trace.digestHex(),
      recordedTrace: this.end?.trace ?? null,
    };
  }

  /** The end: the final checkpoint (written just before the end record) and the trace digest. */
  private checkEnd(): void {
    if (this.end === null) return;
    if (this.checkpointIndex < this.checkpointRecords.length) this.checkpoint(true);
    if (this.divergenceValue !== null) return;
    const trace = this.machine.loop.trace.digestHex();
    if (trace !== this.end.trace) {
      this.diverge('end', `the run ended with trace digest ${trace}; the recording ended with ${this.end.trace}`, [], { recordedTrace: this.end.trace, replayedTrace: trace, expected: this.end });
    } else if (this.inputIndex !== this.inputs.length) {
      this.diverge('end', `${this.inputs.length - this.inputIndex} logged inputs were never delivered`, []);
    }
  }

  private onDelivered(input: StampedInput): void {
    const recorded = this.inputs[input.seq];
    if (recorded === undefined) return;
    this.delivered.push(recorded);
    if (this.delivered.length > LAST_INPUTS) this.delivered.shift();
    if (this.divergenceValue !== null) return;
    if (!samePoint(recorded, input)) {
      this.diverge('input', `input #${input.seq} (${recorded.kind} on '${recorded.channel}') was recorded at ${formatPoint(recorded)} but play reached it at ${formatPoint(input)}`, [], { expected: recorded });
    }
  }

  private onEvent(event: TraceEvent, machineEvent = false): void {
    if (this.divergenceValue !== null || (!machineEvent && !this.filter(event))) return;
    const expected = this.eventRecords[this.eventIndex];
    const now: RunPoint = { step: this.machine.loop.steps, icount: this.machine.loop.cpu?.icount ?? 0, ns: event.ns };
    if (expected === undefined) {
      if (this.end !== null) this.diverge('event', `event ${event.name} happened after the last recorded event`, []);
      return;
    }
    this.eventIndex++;
    const same = expected.name === event.name && samePoint(expected, now) && JSON.stringify(expected.fields) === JSON.stringify(event.fields);
    if (!same) {
      this.diverge('event', `event #${this.eventIndex - 1}: recorded ${expected.name} ${JSON.stringify(expected.fields)} at ${formatPoint(expected)}; play saw ${event.name} ${JSON.stringify(event.fields)} at ${formatPoint(now)}`, [], { expected });
    }
  }

  private checkpoint(final: boolean): void {
    if (this.divergenceValue !== null) return;
    const expected = this.checkpointRecords[this.checkpointIndex];
    if (expected === undefined) return; // a cut log: nothing more to compare
    if (!final && expected === this.checkpointRecords[this.checkpointRecords.length - 1] && this.end !== null && samePoint(expected, this.end) && !samePoint(expected, this.hooks.point())) {
      // The recording's final checkpoint is at its end point, not on the interval: wait for it.
      return;
    }
    const index = this.checkpointIndex++;
    const now = this.hooks.point();
    const trace = this.machine.loop.trace.digestHex();
    const state = captureState(this.machine.probes);
    const differences = diffState(expected.state, state);
    if (!samePoint(expected, now)) {
      this.diverge('checkpoint', `checkpoint #${index} was recorded at ${formatPoint(expected)} but play took it at ${formatPoint(now)}`, differences, { checkpoint: index, expected, recordedTrace: expected.trace, replayedTrace: trace });
    } else if (differences.length > 0 || trace !== expected.trace) {
      const what = differences.length > 0 ? differences.map(describeDifference).slice(0, 3).join('; ') : `only the trace digest differs (${expected.trace} recorded, ${trace} now): the order of tasks or events changed`;
      this.diverge('checkpoint', `checkpoint #${index} at ${formatPoint(now)} differs: ${what}`, differences, { checkpoint: index, expected, recordedTrace: expected.trace, replayedTrace: trace });
    } else if (!final) {
      // Right after a capture the probes' "changed since the last checkpoint" state is empty, so
      // a restore here (with the probes resynced) compares the next checkpoint exactly as recorded.
      // The capture may run inside the CPU's slice; the snapshot waits for the slice to return
      // (nothing else runs in between: the iteration ends with the slice).
      this.snapshotDue = true;
    }
  }

  private diverge(kind: DivergenceKind, message: string, differences: readonly StateDifference[], extra: Partial<Divergence> = {}): void {
    if (this.divergenceValue !== null) return;
    const recent = this.machine.loop.trace.recent(12).map((e) => `${e.ns} ${e.name} ${JSON.stringify(e.fields)}`);
    this.divergenceValue = { kind, at: this.hooks.point(), message, differences, lastInputs: [...this.delivered], recentEvents: recent, ...extra };
  }
}

export function describeDifference(d: StateDifference): string {
  const show = (v: string | number | undefined): string => (v === undefined ? '(absent)' : typeof v === 'number' ? String(v) : v.length > 24 ? `${v.slice(0, 16)}…` : v);
  if (d.detail !== undefined) return `${d.probe} ${d.key}, ${d.detail} differ`;
  return `${d.probe} ${d.key}: recorded ${show(d.recorded)}, replayed ${show(d.replayed)}`;
}

/** A multi-line report of a divergence, for the CLI. */
export function formatDivergence(d: Divergence): string {
  const lines = [`DIVERGENCE (${d.kind}) at ${formatPoint(d.at)}`, `  ${d.message}`];
  if (d.differences.length > 0) {
    lines.push('  differences:');
    for (const diff of d.differences) lines.push(`    ${describeDifference(diff)}`);
  }
  if (d.recordedTrace !== undefined && d.recordedTrace !== d.replayedTrace) lines.push(`  trace digest: recorded ${d.recordedTrace}, replayed ${d.replayedTrace}`);
  if (d.lastInputs.length > 0) {
    lines.push('  last inputs before it:');
    for (const input of d.lastInputs) lines.push(`    ${formatPoint(input)}  ${input.kind} '${input.channel}' ${formatData(input.data)}`);
  }
  if (d.recentEvents.length > 0) {
    lines.push('  last trace events:');
    for (const event of d.recentEvents.slice(-6)) lines.push(`    ${event}`);
  }
  return lines.join('\n');
}

export function formatData(data: InputRecord['data']): string {
  if (data instanceof Uint8Array) {
    const text = Buffer.from(data).toString('latin1');
    return /^[\x20-\x7e\r\n\t]*$/.test(text) ? JSON.stringify(text) : `<${data.length} bytes ${Buffer.from(data.subarray(0, 16)).toString('hex')}${data.length > 16 ? '…' : ''}>`;
  }
  return JSON.stringify(data);
}
