import { assert } from './assert.js';
import { Digest } from './digest.js';

/** Field values a trace event may carry: plain data only, so events serialize and digest alike. */
export type TraceValue = number | string | boolean | null;
export type TraceFields = Readonly<Record<string, TraceValue>>;

/**
 * Every trace event's name and payload. Subsystems add their own events by declaration merging:
 * `declare module '../engine/trace.js' { interface TraceEventMap { 'blk.read': {...} } }`.
 */
export interface TraceEventMap {
  'loop.bh': { name: string };
  'loop.timer': { name: string; clock: number };
  'loop.time-jump': { toNs: number };
  'choice': { label: string; count: number; pick: number };
  'input': { channel: string; kind: string; seq: number; icount: number };
  'co.spawn': { id: number; name: string };
  'co.done': { id: number; name: string };
}

export type TraceEventName = keyof TraceEventMap;

/**
 * Events kept in the ring for people but left out of the digest: they describe how the host
 * sliced the run (a time jump lands wherever a `runUntil` limit happened to fall), not what the
 * emulated system did, so two runs that differ only in slicing keep the same digest.
 */
const UNDIGESTED: ReadonlySet<string> = new Set(['loop.time-jump']);

export interface TraceEvent {
  readonly seq: number;
  readonly ns: number;
  readonly name: string;
  readonly fields: TraceFields;
}

/** What a machine snapshot keeps of the trace (see `Trace.saveState`). */
export interface TraceState {
  readonly seq: number;
  readonly digest: readonly [number, number];
}

export type TraceListener = (event: TraceEvent) => void;

/** Default ring capacity: enough to see what led up to a failure without unbounded growth. */
export const DEFAULT_TRACE_CAPACITY = 4096;

/**
 * Typed trace events from every subsystem, kept in a bounded ring buffer and folded into a
 * rolling 64-bit digest. Two runs with the same inputs and seed end with the same digest.
 */
export class Trace {
  readonly digest = new Digest();
  private readonly ring: (TraceEvent | undefined)[];
  private head = 0;
  private count = 0;
  private seq = 0;
  private readonly listeners: TraceListener[] = [];

  constructor(
    private readonly nowNs: () => number,
    readonly capacity: number = DEFAULT_TRACE_CAPACITY,
  ) {
    assert(Number.isSafeInteger(capacity) && capacity > 0 && capacity <= 1 << 24, 'bad trace capacity');
    this.ring = new Array<TraceEvent | undefined>(capacity);
  }

  get eventCount(): number {
    return this.seq;
  }

  /**
   * Snapshot state: the event sequence number and the digest lanes. The ring of recent events is
   * left alone (it is for people, and a restored run simply appends to it).
   */
  saveState(): TraceState {
    return { seq: this.seq, digest: this.digest.saveState() };
  }

  restoreState(state: TraceState): void {
    assert(Number.isSafeInteger(state.seq) && state.seq >= 0, () => `bad trace seq ${state.seq}`);
    this.digest.restoreState(state.digest);
    this.seq = state.seq;
  }

  emit<K extends TraceEventName>(name: K, fields: TraceEventMap[K]): void {
    const event: TraceEvent = { seq: this.seq++, ns: this.nowNs(), name, fields: fields as TraceFields };
    if (!UNDIGESTED.has(name)) {
      this.digest.string(name).number(event.ns);
      for (const key in event.fields) this.digest.value(event.fields[key]);
    }
    this.ring[this.head] = event;
    this.head = (this.head + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
    for (const listener of this.listeners) listener(event);
  }

  /** Folds a bare integer into the digest without an event: for hot paths such as task dispatch. */
  mix(value: number): void {
    this.digest.int(value);
  }

  onEvent(listener: TraceListener): () => void {
    this.listeners.push(listener);
    return () => {
      const index = this.listeners.indexOf(listener);
      if (index >= 0) this.listeners.splice(index, 1);
    };
  }

  /** The most recent events, oldest first. */
  recent(limit = this.capacity): TraceEvent[] {
    const n = Math.min(limit, this.count);
    const out: TraceEvent[] = [];
    for (let i = n; i > 0; i--) {
      const event = this.ring[(this.head - i + this.capacity) % this.capacity];
      if (event !== undefined) out.push(event);
    }
    return out;
  }

  digestHex(): string {
    return this.digest.hex();
  }
}

/** One line per event, for `-trace FILE` and failure reports. */
export function formatTraceEvent(event: TraceEvent): string {
  const fields = Object.entries(event.fields)
    .map(([key, value]) => `${key}=${typeof value === 'string' ? JSON.stringify(value) : String(value)}`)
    .join(' ');
  return `${event.ns} ${event.name}${fields ? ' ' + fields : ''}`;
}
