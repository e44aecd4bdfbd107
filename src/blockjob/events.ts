import { assert } from '../engine/assert.js';
import type { Clocks } from '../engine/clock.js';

/** QAPI JobStatus names, in QEMU's order. */
export type JobStatus = 'undefined' | 'created' | 'running' | 'paused' | 'ready' | 'standby' | 'waiting' | 'pending' | 'aborting' | 'concluded' | 'null';

/** Data of BLOCK_JOB_COMPLETED / BLOCK_JOB_CANCELLED / BLOCK_JOB_READY (QEMU's member order). */
export interface BlockJobEventData {
  readonly type: string;
  readonly device: string;
  readonly len: number;
  readonly offset: number;
  readonly speed: number;
  readonly error?: string;
}

/**
 * Every event the bus carries, by QMP name. Upper layers add their own (STOP, RESUME, ...) by
 * declaration merging: `declare module '../blockjob/events.js' { interface EventMap { STOP: {} } }`.
 */
export interface EventMap {
  JOB_STATUS_CHANGE: { readonly id: string; readonly status: JobStatus };
  BLOCK_JOB_COMPLETED: BlockJobEventData;
  BLOCK_JOB_CANCELLED: Omit<BlockJobEventData, 'error'>;
  BLOCK_JOB_READY: Omit<BlockJobEventData, 'error'>;
  BLOCK_JOB_ERROR: { readonly device: string; readonly operation: 'read' | 'write'; readonly action: 'ignore' | 'report' | 'stop' };
  BLOCK_JOB_PENDING: { readonly type: string; readonly id: string };
}

export type EventName = keyof EventMap;

/** One emitted event with its position and the clocks at the moment it was emitted. */
export interface BusEvent<K extends EventName = EventName> {
  /** Emission order, from 0, per bus. */
  readonly seq: number;
  readonly event: K;
  readonly data: EventMap[K];
  /** QEMU_CLOCK_VIRTUAL at emission (QMP timestamps in deterministic mode). */
  readonly virtualNs: number;
  /** Master (realtime) clock at emission. */
  readonly realtimeNs: number;
}

export type AnyBusEvent = { [K in EventName]: BusEvent<K> }[EventName];

export type EventListener = (event: AnyBusEvent) => void;

/** Events kept for `history()`: enough for a test or a failure report, bounded for long runs. */
export const DEFAULT_EVENT_HISTORY = 4096;

/** Most listeners at once: more means subscribers leak. */
export const MAX_EVENT_LISTENERS = 1024;

/**
 * The one event bus of a machine: jobs (and later the rest of the system) emit here, in emission
 * order, stamped with the virtual and realtime clocks; the QMP layer subscribes and forwards.
 * Listeners run synchronously at emission, so they see events in exactly the order they happened.
 */
export class EventBus {
  private seq = 0;
  private readonly listeners: EventListener[] = [];
  private readonly ring: (AnyBusEvent | undefined)[];
  private head = 0;
  private count = 0;

  constructor(
    private readonly clocks: Clocks,
    readonly historyCapacity: number = DEFAULT_EVENT_HISTORY,
  ) {
    assert(Number.isSafeInteger(historyCapacity) && historyCapacity > 0 && historyCapacity <= 1 << 20, 'bad event history capacity');
    // Grows up to the capacity as events come (most buses see few events).
    this.ring = [];
  }

  /** Events emitted so far. */
  get emitted(): number {
    return this.seq;
  }

  emit<K extends EventName>(event: K, data: EventMap[K]): void {
    const stamped = { seq: this.seq++, event, data, virtualNs: this.clocks.virtualNs, realtimeNs: this.clocks.realtimeNs } as AnyBusEvent;
    if (this.ring.length < this.historyCapacity) this.ring.push(stamped);
    else this.ring[this.head] = stamped;
    this.head = (this.head + 1) % this.historyCapacity;
    if (this.count < this.historyCapacity) this.count++;
    // A listener that unsubscribes during delivery must not make us skip the next one.
    for (const listener of this.listeners.slice()) listener(stamped);
  }

  /** Adds a listener; returns the function that removes it. */
  subscribe(listener: EventListener): () => void {
    assert(this.listeners.length < MAX_EVENT_LISTENERS, 'too many event listeners');
    this.listeners.push(listener);
    return () => {
      const index = this.listeners.indexOf(listener);
      if (index >= 0) this.listeners.splice(index, 1);
    };
  }

  /** The most recent events, oldest first. */
  history(limit = this.historyCapacity): AnyBusEvent[] {
    const n = Math.min(limit, this.count);
    const out: AnyBusEvent[] = [];
    for (let i = n; i > 0; i--) {
      const event = this.ring[(this.head - i + this.historyCapacity) % this.historyCapacity];
      if (event !== undefined) out.push(event);
    }
    return out;
  }
}
