/**
 * What record and play need of a machine: its main loop (inputs cross its gate), the probes that
 * describe its state at checkpoints, and optionally snapshot support for seek.
 */
import type { MainLoop } from '../engine/main-loop.js';
import type { TraceEvent, TraceValue } from '../engine/trace.js';
import type { StateProbe } from './state.js';

/** Serializes and restores the whole machine at a quiescent point (no coroutine mid-flight). */
export interface MachineSnapshotter {
  /** Why a snapshot cannot be taken now (a coroutine is mid-flight), or null when it can. */
  notQuiescent(): string | null;
  /** Plain data (msgpack-able): CPU, RAM, devices, block overlays, kernel counters. */
  save(): unknown;
  restore(state: unknown): void;
}

/**
 * A piece of state a machine snapshot carries beside the board's own (the block layer's disk
 * overlays, ...). `save` returns plain msgpack-able data that does not alias live buffers;
 * `restore` puts the part back in place. `notQuiescent`, when present, vetoes a snapshot.
 */
export interface SnapshotPart {
  /** Unique among a snapshotter's parts; names the part's entry in the snapshot. */
  readonly name: string;
  save(): unknown;
  restore(state: unknown): void;
  notQuiescent?(): string | null;
}

export interface ReplayMachine {
  readonly loop: MainLoop;
  readonly probes: readonly StateProbe[];
  /** `-icount shift=N`: each instruction is 2^N ns. */
  readonly icountShift: number;
  readonly snapshotter?: MachineSnapshotter;
  /**
   * Guest I/O events that are not trace events (interrupt line changes): `--events` records them
   * and play checks them. Listening must not change the run. Called at most once per run.
   */
  attachEvents?(emit: (name: string, fields: Readonly<Record<string, TraceValue>>) => void): void;
}

/** Trace events that are kernel bookkeeping rather than guest I/O; `--events` leaves them out. */
const QUIET_EVENTS = new Set(['co.spawn', 'co.done', 'choice', 'loop.time-jump']);

/** Default filter for `--events`: interrupts, device accesses, block requests, jobs, timers. */
export function defaultEventFilter(event: TraceEvent): boolean {
  return !QUIET_EVENTS.has(event.name);
}

/** The timeline lane an event belongs to: its device, node, job or IRQ, else its name's prefix. */
export function eventLane(name: string, fields: Readonly<Record<string, unknown>>): string {
  for (const key of ['device', 'dev', 'node', 'job', 'irq', 'line', 'channel']) {
    const value = fields[key];
    if (typeof value === 'string' || typeof value === 'number') return `${name.split('.')[0]}:${String(value)}`;
  }
  if (name === 'loop.timer' || name === 'loop.bh') return name;
  return name.split('.')[0] ?? name;
}
