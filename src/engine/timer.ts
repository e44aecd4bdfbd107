import { assert, assertNs } from './assert.js';
import { ClockType } from './clock.js';

/**
 * A QEMUTimer: a callback due at a deadline on one clock. Create it with `MainLoop.newTimer`,
 * arm it with `mod`, disarm with `del`. Timers due at the same instant fire in arming order
 * (`seq`) unless the scheduler's policy picks otherwise.
 */
export class Timer {
  /** True while it sits in the main loop's ready queue. */
  queued = false;
  /** Set when it expires; cleared if it is re-armed or deleted before its callback runs. */
  firing = false;
  /** Position in the owning heap, -1 when not armed. */
  heapIndex = -1;
  deadlineNs = 0;
  seq = 0;

  constructor(
    readonly list: TimerList,
    readonly name: string,
    readonly callback: () => void,
    /** Task identity for the main loop's digest, allocated per loop so runs stay comparable. */
    readonly taskId: number = 0,
  ) {}

  get taskName(): string {
    return this.name;
  }

  get clock(): ClockType {
    return this.list.clock;
  }

  get pending(): boolean {
    return this.heapIndex >= 0;
  }

  /** timer_mod: (re)arms the timer at an absolute deadline on its clock. */
  mod(deadlineNs: number): void {
    assertNs(deadlineNs, `deadline of timer '${this.name}'`);
    this.list.arm(this, deadlineNs);
  }

  /** timer_del: disarms; harmless when not armed. */
  del(): void {
    this.list.disarm(this);
  }
}

/** Upper bound on armed timers per clock, so a runaway device cannot eat the host's memory. */
export const MAX_TIMERS_PER_CLOCK = 1 << 20;

/** A binary min-heap of armed timers on one clock, ordered by (deadline, arming sequence). */
export class TimerList {
  private readonly heap: Timer[] = [];
  private seqCounter = 0;
  /** Bumped whenever the earliest deadline may have changed, so callers can cache it. */
  generation = 0;

  constructor(readonly clock: ClockType) {}

  get size(): number {
    return this.heap.length;
  }

  /** Earliest armed deadline, or Infinity. */
  get nextDeadlineNs(): number {
    const first = this.heap[0];
    return first === undefined ? Infinity : first.deadlineNs;
  }

  peek(): Timer | undefined {
    return this.heap[0];
  }

  arm(timer: Timer, deadlineNs: number): void {
    assert(timer.list === this, 'timer armed on a foreign list');
    timer.firing = false;
    if (timer.heapIndex >= 0) this.removeAt(timer.heapIndex);
    assert(this.heap.length < MAX_TIMERS_PER_CLOCK, 'too many armed timers');
    timer.deadlineNs = deadlineNs;
    timer.seq = this.seqCounter++;
    timer.heapIndex = this.heap.length;
    this.heap.push(timer);
    this.siftUp(timer.heapIndex);
    this.generation++;
  }

  disarm(timer: Timer): void {
    timer.firing = false;
    if (timer.heapIndex < 0) return;
    assert(this.heap[timer.heapIndex] === timer, 'timer heap index out of sync');
    this.removeAt(timer.heapIndex);
    this.generation++;
  }

  /** Snapshot: the arming counter (ties between equal deadlines are broken by it). */
  get seqCount(): number {
    return this.seqCounter;
  }

  /** Every armed timer, in no particular order (the heap's order). */
  armedTimers(): readonly Timer[] {
    return this.heap;
  }

  /**
   * Snapshot restore: disarms everything, then arms exactly `armed` with their saved deadlines and
   * arming sequence numbers, and sets the arming counter, so the firing order (deadline, seq) and
   * every later arming continue as they did when the snapshot was taken.
   */
  restoreArmed(armed: readonly { readonly timer: Timer; readonly deadlineNs: number; readonly seq: number }[], seqCounter: number): void {
    assert(Number.isSafeInteger(seqCounter) && seqCounter >= 0, () => `bad timer seq counter ${seqCounter}`);
    assert(armed.length <= MAX_TIMERS_PER_CLOCK, 'too many armed timers in a snapshot');
    for (const timer of this.heap) timer.heapIndex = -1;
    this.heap.length = 0;
    const seen = new Set<number>();
    for (const entry of armed) {
      const timer = entry.timer;
      assert(timer.list === this, () => `timer '${timer.name}' restored on a foreign list`);
      assert(timer.heapIndex < 0, () => `timer '${timer.name}' restored twice`);
      assertNs(entry.deadlineNs, `restored deadline of timer '${timer.name}'`);
      assert(Number.isSafeInteger(entry.seq) && entry.seq >= 0 && entry.seq < seqCounter, () => `timer '${timer.name}' seq ${entry.seq} is not below the counter ${seqCounter}`);
      assert(!seen.has(entry.seq), () => `two restored timers share seq ${entry.seq}`);
      seen.add(entry.seq);
      timer.deadlineNs = entry.deadlineNs;
      timer.seq = entry.seq;
      timer.heapIndex = this.heap.length;
      this.heap.push(timer);
      this.siftUp(timer.heapIndex);
    }
    this.seqCounter = seqCounter;
    this.generation++;
  }

  /** Removes and returns the earliest timer if it is due at `nowNs`. */
  popExpired(nowNs: number): Timer | undefined {
    const first = this.heap[0];
    if (first === undefined || first.deadlineNs > nowNs) return undefined;
    this.removeAt(0);
    this.generation++;
    return first;
  }

  private removeAt(index: number): void {
    const removed = this.heap[index];
    assert(removed !== undefined, 'heap index out of range');
    const last = this.heap.pop();
    assert(last !== undefined, 'heap underflow');
    removed.heapIndex = -1;
    if (last === removed) return;
    this.heap[index] = last;
    last.heapIndex = index;
    this.siftDown(index);
    this.siftUp(last.heapIndex);
  }

  private less(a: Timer, b: Timer): boolean {
    return a.deadlineNs < b.deadlineNs || (a.deadlineNs === b.deadlineNs && a.seq < b.seq);
  }

  private siftUp(start: number): void {
    let index = start;
    const heap = this.heap;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      const node = heap[index]!;
      const up = heap[parent]!;
      if (!this.less(node, up)) break;
      heap[index] = up;
      up.heapIndex = index;
      heap[parent] = node;
      node.heapIndex = parent;
      index = parent;
    }
  }

  private siftDown(start: number): void {
    let index = start;
    const heap = this.heap;
    const length = heap.length;
    for (;;) {
      const left = 2 * index + 1;
      if (left >= length) break;
      const right = left + 1;
      let smallest = left;
      if (right < length && this.less(heap[right]!, heap[left]!)) smallest = right;
      const node = heap[index]!;
      const child = heap[smallest]!;
      if (!this.less(child, node)) break;
      heap[index] = child;
      child.heapIndex = index;
      heap[smallest] = node;
      node.heapIndex = smallest;
      index = smallest;
    }
  }
}
