import { assert } from './assert.js';
import { ClockType } from './clock.js';
import type { Timer } from './timer.js';

/**
 * A coroutine body: a generator that yields wait requests. Call another coroutine with `yield*`.
 * No Promise sits on this path, so no microtask order can leak in.
 */
export type Co<T = void> = Generator<Wait, T, unknown>;

export const WaitKind = { Yield: 0, Sleep: 1, Queue: 2 } as const;

export type Wait = YieldWait | SleepWait | QueueWait;

export interface YieldWait {
  readonly kind: typeof WaitKind.Yield;
}

export interface SleepWait {
  readonly kind: typeof WaitKind.Sleep;
  readonly clock: ClockType;
  readonly deadlineNs: number;
  /** True when `deadlineNs` is relative to the clock's current value. */
  readonly relative: boolean;
}

export interface QueueWait {
  readonly kind: typeof WaitKind.Queue;
  readonly queue: WaitQueue;
}

/** Reschedules the caller behind every task that is ready now: a pause point. */
export const YIELD: YieldWait = { kind: WaitKind.Yield };

/** Sleeps `durationNs` on `clock` (qemu_co_sleep_ns). A wake-up ends the sleep early. */
export function sleep(durationNs: number, clock: ClockType = ClockType.Realtime): SleepWait {
  assert(Number.isSafeInteger(durationNs) && durationNs >= 0, `bad sleep ${durationNs}`);
  return { kind: WaitKind.Sleep, clock, deadlineNs: durationNs, relative: true };
}

/** Sleeps until an absolute deadline on `clock`. */
export function sleepUntil(deadlineNs: number, clock: ClockType = ClockType.Realtime): SleepWait {
  assert(Number.isSafeInteger(deadlineNs) && deadlineNs >= 0, `bad deadline ${deadlineNs}`);
  return { kind: WaitKind.Sleep, clock, deadlineNs, relative: false };
}

export type CoroutineState = 'ready' | 'running' | 'sleeping' | 'waiting' | 'done';

/** The part of the main loop a coroutine needs: making itself runnable again. */
export interface CoroutineHost {
  makeReady(co: Coroutine<unknown>): void;
  allocTaskId(): number;
}

/** Bound on waiters per queue: more means a leak, not a workload. */
export const MAX_QUEUE_WAITERS = 1 << 20;

/** Coroutines parked until someone wakes them (CoQueue's storage). First come, first woken. */
export class WaitQueue {
  private waiters: Coroutine<unknown>[] = [];

  get length(): number {
    return this.waiters.length;
  }

  get empty(): boolean {
    return this.waiters.length === 0;
  }

  /** The wait request to yield: `yield queue.wait()`. */
  wait(): QueueWait {
    return { kind: WaitKind.Queue, queue: this };
  }

  /** @internal used by the main loop when a coroutine yields `wait()`. */
  add(co: Coroutine<unknown>): void {
    assert(this.waiters.length < MAX_QUEUE_WAITERS, 'wait queue overflow');
    this.waiters.push(co);
  }

  /** @internal */
  remove(co: Coroutine<unknown>): void {
    const index = this.waiters.indexOf(co);
    if (index >= 0) this.waiters.splice(index, 1);
  }

  /** Wakes the first waiter; returns whether there was one. */
  wakeOne(value?: unknown): boolean {
    const co = this.waiters[0];
    if (co === undefined) return false;
    co.wake(value);
    return true;
  }

  wakeAll(value?: unknown): number {
    const woken = this.waiters;
    this.waiters = [];
    for (const co of woken) {
      co.waitingOn = null;
      co.wake(value);
    }
    return woken.length;
  }
}

/** A coroutine: a generator stepped by the main loop. Create it with `MainLoop.spawn`/`enter`. */
export class Coroutine<T = unknown> {
  readonly taskId: number;
  state: CoroutineState = 'ready';
  /** True while it sits in the main loop's ready queue. */
  queued = false;
  resumeValue: unknown = undefined;
  result: T | undefined = undefined;
  /** Woken with the result when the coroutine finishes. */
  readonly joiners = new WaitQueue();
  timer: Timer | null = null;
  waitingOn: WaitQueue | null = null;

  constructor(
    readonly host: CoroutineHost,
    readonly taskName: string,
    readonly generator: Co<T>,
  ) {
    this.taskId = host.allocTaskId();
  }

  get done(): boolean {
    return this.state === 'done';
  }

  /**
   * aio_co_wake: makes a sleeping or waiting coroutine runnable with `value` as the result of its
   * yield. Waking a ready or running coroutine is a no-op (as QEMU's wake of a coroutine that was
   * not waiting); waking a finished one is a bug.
   */
  wake(value?: unknown): void {
    assert(this.state !== 'done', () => `wake of finished coroutine '${this.taskName}'`);
    if (this.state === 'ready' || this.state === 'running') return;
    if (this.state === 'sleeping') this.timer?.del();
    if (this.waitingOn !== null) {
      this.waitingOn.remove(this);
      this.waitingOn = null;
    }
    this.resumeValue = value;
    this.state = 'ready';
    this.host.makeReady(this as Coroutine<unknown>);
  }

  /** Waits (from another coroutine) until this one finishes, and returns its result. */
  *join(): Co<T> {
    while (this.state !== 'done') yield this.joiners.wait();
    return this.result as T;
  }
}
