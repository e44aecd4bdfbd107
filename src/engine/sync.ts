import { assert } from './assert.js';
import { type Co, WaitQueue } from './coroutine.js';

/** CoQueue: coroutines wait until another party restarts them. */
export class CoQueue {
  private readonly queue = new WaitQueue();

  get empty(): boolean {
    return this.queue.empty;
  }

  get length(): number {
    return this.queue.length;
  }

  *wait(): Co<void> {
    yield this.queue.wait();
  }

  /** Restarts the first waiter (qemu_co_queue_next). */
  next(): boolean {
    return this.queue.wakeOne();
  }

  /** Restarts every waiter (qemu_co_queue_restart_all). */
  restartAll(): number {
    return this.queue.wakeAll();
  }
}

/**
 * CoMutex: a fair mutex for coroutines. Unlock hands the lock straight to the first waiter, so a
 * coroutine that keeps re-locking cannot starve the others.
 */
export class CoMutex {
  private isLocked = false;
  private readonly waiters = new WaitQueue();

  get locked(): boolean {
    return this.isLocked;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  *lock(): Co<void> {
    if (!this.isLocked) {
      this.isLocked = true;
      return;
    }
    // The unlocker keeps isLocked set and hands the lock over by waking us.
    yield this.waiters.wait();
    assert(this.isLocked, 'mutex woken without hand-over');
  }

  unlock(): void {
    assert(this.isLocked, 'unlock of a mutex that is not locked');
    if (!this.waiters.wakeOne()) this.isLocked = false;
  }
}

/**
 * A pause gate: coroutines pass `pausePoint()` freely until someone pauses the gate; then they
 * park there until every pause is matched by a resume (pause counts nest, as QEMU's do).
 */
export class PauseGate {
  private pauseCount = 0;
  private readonly parked = new WaitQueue();

  get paused(): boolean {
    return this.pauseCount > 0;
  }

  get count(): number {
    return this.pauseCount;
  }

  /** Number of coroutines parked at the gate. */
  get parkedCount(): number {
    return this.parked.length;
  }

  pause(): void {
    this.pauseCount++;
  }

  resume(): void {
    assert(this.pauseCount > 0, 'resume of a gate that is not paused');
    this.pauseCount--;
    if (this.pauseCount === 0) this.parked.wakeAll();
  }

  *pausePoint(): Co<void> {
    while (this.pauseCount > 0) yield this.parked.wait();
  }
}

/** A one-shot event coroutines can wait for (like QemuEvent, but for coroutines). */
export class CoEvent {
  private isSet = false;
  private readonly waiters = new WaitQueue();

  get set(): boolean {
    return this.isSet;
  }

  fire(): void {
    this.isSet = true;
    this.waiters.wakeAll();
  }

  reset(): void {
    this.isSet = false;
  }

  *wait(): Co<void> {
    while (!this.isSet) yield this.waiters.wait();
  }
}
