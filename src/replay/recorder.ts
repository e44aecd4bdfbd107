/**
 * The recorder: observes every input the gate delivers (with its stamp) and appends it to the log,
 * takes checkpoints at fixed positions of the run, and with `events` also writes guest I/O events.
 * It never changes the run: a recorded run has the same trace digest as a plain one.
 */
import type { ReplayByteSink } from '../engine/host/replay-file.js';
import type { StampedInput } from '../engine/host/input-gate.js';
import type { TraceEvent } from '../engine/trace.js';
import { type CheckpointUnit, type LogHeader, type LogRecord, TSQEMU_VERSION, encodeHeader, encodeRecord } from './log-format.js';
import { type ReplayMachine, defaultEventFilter } from './machine.js';
import { RunHooks } from './run-hooks.js';
import { captureState } from './state.js';

/** Default checkpoint spacing: with a CPU, in instructions; without, in main-loop steps. */
export const DEFAULT_CHECKPOINT_ICOUNT = 1 << 24;
export const DEFAULT_CHECKPOINT_STEPS = 1 << 12;

export interface RecordOptions {
  /** Machine name, config digest, command line, seed, disks: what the header says about the run. */
  readonly machine: string;
  readonly machineDigest: string;
  readonly commandLine: readonly string[];
  readonly seed: number;
  readonly disks?: LogHeader['disks'];
  readonly checkpointInterval?: number;
  readonly events?: boolean;
  readonly eventFilter?: (event: TraceEvent) => boolean;
}

export interface RecordStats {
  readonly inputs: number;
  readonly checkpoints: number;
  readonly events: number;
  readonly bytes: number;
}

export class Recorder {
  readonly header: LogHeader;
  private readonly hooks: RunHooks;
  private inputs = 0;
  private checkpoints = 0;
  private events = 0;
  private bytes = 0;
  private finished = false;
  private removeListener: (() => void) | null = null;

  constructor(
    private readonly machine: ReplayMachine,
    private readonly sink: ReplayByteSink,
    options: RecordOptions,
  ) {
    const loop = machine.loop;
    const unit: CheckpointUnit = loop.cpu !== null ? 'icount' : 'step';
    this.header = {
      tsqemuVersion: TSQEMU_VERSION,
      machine: options.machine,
      machineDigest: options.machineDigest,
      commandLine: [...options.commandLine],
      seed: options.seed,
      disks: options.disks ?? [],
      checkpointUnit: unit,
      checkpointInterval: options.checkpointInterval ?? (unit === 'icount' ? DEFAULT_CHECKPOINT_ICOUNT : DEFAULT_CHECKPOINT_STEPS),
      events: options.events ?? false,
      icountShift: machine.icountShift,
    };
    this.hooks = new RunHooks(loop, { unit, interval: this.header.checkpointInterval, icountShift: machine.icountShift, onCheckpoint: () => this.checkpoint() });
    this.write(encodeHeader(this.header));
    loop.gate.mode = 'record';
    loop.gate.observe((input) => this.onInput(input));
    this.hooks.install();
    if (this.header.events) {
      const filter = options.eventFilter ?? defaultEventFilter;
      this.removeListener = loop.trace.onEvent((event) => {
        if (!this.finished && filter(event)) this.onEvent(event);
      });
      machine.attachEvents?.((name, fields) => {
        if (!this.finished) this.onEvent({ seq: -1, ns: loop.nowNs, name, fields });
      });
    }
  }

  get stats(): RecordStats {
    return { inputs: this.inputs, checkpoints: this.checkpoints, events: this.events, bytes: this.bytes };
  }

  /** Final checkpoint and end record; the log is complete after this. Idempotent. */
  finish(reason: string): RecordStats {
    if (this.finished) return this.stats;
    this.checkpoint();
    this.finished = true;
    const point = this.hooks.point();
    this.append({ type: 'end', ...point, reason, trace: this.machine.loop.trace.digestHex(), inputs: this.inputs });
    this.removeListener?.();
    this.hooks.uninstall();
    this.sink.close();
    return this.stats;
  }

  private onInput(input: StampedInput): void {
    if (this.finished) return;
    this.inputs++;
    this.append({ type: 'input', step: input.step, icount: input.icount, ns: input.ns, channel: input.channel, kind: input.kind, data: input.data });
  }

  private onEvent(event: TraceEvent): void {
    this.events++;
    this.append({ type: 'event', step: this.machine.loop.steps, icount: this.machine.loop.cpu?.icount ?? 0, ns: event.ns, name: event.name, fields: event.fields });
  }

  private checkpoint(): void {
    if (this.finished) return;
    const state = captureState(this.machine.probes);
    this.append({ type: 'checkpoint', index: this.checkpoints++, ...this.hooks.point(), trace: this.machine.loop.trace.digestHex(), state });
  }

  private append(record: LogRecord): void {
    this.write(encodeRecord(record));
  }

  private write(bytes: Uint8Array): void {
    this.bytes += bytes.length;
    this.sink.append(bytes);
  }
}

/** A sink that keeps the log in memory (tests, benchmarks, `demo`). */
export class MemorySink implements ReplayByteSink {
  private readonly chunks: Uint8Array[] = [];
  private length = 0;
  closed = false;

  append(bytes: Uint8Array): void {
    this.chunks.push(bytes.slice());
    this.length += bytes.length;
  }

  close(): void {
    this.closed = true;
  }

  /** Everything appended so far, as one buffer. */
  bytes(): Uint8Array {
    const out = new Uint8Array(this.length);
    let offset = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    return out;
  }
}
