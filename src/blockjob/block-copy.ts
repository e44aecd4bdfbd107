import { assert } from '../engine/assert.js';
import { ClockType } from '../engine/clock.js';
import { type Co, type Coroutine, sleep } from '../engine/coroutine.js';
import { CoQueue } from '../engine/sync.js';
import { type BdrvDirtyBitmap, bdrvCreateDirtyBitmap, bdrvReleaseDirtyBitmap } from '../block/dirty-bitmap.js';
import { type BdrvChild, bdrvCoIsAllocated, bdrvCoPreadv, bdrvCoPwritev } from '../block/node.js';
import type { RateLimit } from './ratelimit.js';

/** Largest chunk one copy task moves (BLOCK_COPY_MAX_BUFFER). */
export const BLOCK_COPY_MAX_BUFFER = 1 << 20;

/** Bound on tasks in flight at once (background workers + copy-before-write). */
export const MAX_COPY_TASKS = 1 << 14;

/** Outcome of a copy: 0 or a negative errno, and which side failed. */
export interface CopyResult {
  readonly ret: number;
  readonly errorIsRead: boolean;
}

const OK: CopyResult = { ret: 0, errorIsRead: false };

interface CopyTask {
  readonly offset: number;
  readonly bytes: number;
  readonly waiters: CoQueue;
}

/** A background copy of everything still dirty (block_copy_async): workers, cancel, result. */
export class CopyCall {
  ret = 0;
  errorIsRead = false;
  cancelled = false;
  finished = false;
  workersLeft = 0;
  readonly workers: Coroutine<void>[] = [];
  /** The one worker that sleeps out a rate-limit delay; the others wait for it in `limitWaiters`. */
  sleeperIndex = -1;
  readonly limitWaiters = new CoQueue();

  constructor(private readonly onFinish: () => void) {}

  get succeeded(): boolean {
    return this.finished && !this.cancelled && this.ret === 0;
  }

  /** The speed changed: every worker looks at the rate limit again now. */
  kick(): void {
    this.wakeSleeper();
    this.limitWaiters.restartAll();
  }

  /** Ends the rate-limit sleep (only that one: a worker asleep inside an I/O keeps its latency). */
  private wakeSleeper(): void {
    const sleeper = this.sleeperIndex >= 0 ? this.workers[this.sleeperIndex] : undefined;
    if (sleeper !== undefined && sleeper.state === 'sleeping') sleeper.wake();
  }

  /** block_copy_call_cancel: workers stop after their current task (a rate-limit sleep ends now). */
  cancel(): void {
    this.cancelled = true;
    this.wakeSleeper();
    this.limitWaiters.restartAll();
  }

  /** @internal */
  workerDone(): void {
    assert(this.workersLeft > 0, 'worker count underflow');
    this.workersLeft--;
    if (this.workersLeft === 0) {
      this.finished = true;
      this.onFinish();
    }
  }
}

/**
 * BlockCopyState: copies clusters from `source` to `target`, each at most once. A cluster is
 * "to copy" while its bit is set in `copyBitmap`; a task claims a range by clearing its bits and
 * gives them back if it fails. Copy-before-write and the background copy share the state, so a
 * guest write waits for a task in flight on its clusters and never copies twice.
 */
export class BlockCopyState {
  readonly copyBitmap: BdrvDirtyBitmap;
  private readonly tasks: CopyTask[] = [];
  /** Counts bytes as they reach the target (the job's progress). */
  progress: (bytes: number) => void = () => {};
  /** Bytes copied since creation (background and copy-before-write). */
  copiedBytes = 0;
  private disposed = false;

  constructor(
    readonly source: BdrvChild,
    readonly target: BdrvChild,
    readonly clusterSize: number,
    readonly lenBytes: number,
    readonly maxChunkBytes: number = BLOCK_COPY_MAX_BUFFER,
  ) {
    assert(clusterSize > 0 && (clusterSize & (clusterSize - 1)) === 0, 'cluster size is a power of two');
    assert(maxChunkBytes >= clusterSize, 'chunk smaller than a cluster');
    this.copyBitmap = bdrvCreateDirtyBitmap(source.bs, clusterSize, null);
    // Only the copy itself changes this bitmap, never a guest write.
    this.copyBitmap.disabled = true;
  }

  get inFlight(): number {
    return this.tasks.length;
  }

  dispose(): void {
    if (this.disposed) return;
    assert(this.tasks.length === 0, 'block-copy state disposed with tasks in flight');
    this.disposed = true;
    if (this.copyBitmap.bs !== null) bdrvReleaseDirtyBitmap(this.copyBitmap);
  }

  private overlapping(offset: number, bytes: number): CopyTask | undefined {
    return this.tasks.find((t) => t.offset < offset + bytes && offset < t.offset + t.bytes);
  }

  /** Copies [offset, offset+bytes) (claimed: bits already cleared by the caller). */
  private *copyTask(offset: number, bytes: number): Co<CopyResult> {
    assert(this.tasks.length < MAX_COPY_TASKS, 'too many copy tasks');
    const task: CopyTask = { offset, bytes, waiters: new CoQueue() };
    this.tasks.push(task);
    let result: CopyResult = OK;
    try {
      const buf = new Uint8Array(bytes);
      let ret = yield* bdrvCoPreadv(this.source, offset, bytes, buf, 0);
      if (ret < 0) {
        result = { ret, errorIsRead: true };
      } else {
        ret = yield* bdrvCoPwritev(this.target, offset, bytes, buf, 0);
        if (ret < 0) result = { ret, errorIsRead: false };
      }
    } finally {
      this.tasks.splice(this.tasks.indexOf(task), 1);
      if (result.ret < 0) {
        if (!this.disposed) this.copyBitmap.setRange(offset, bytes);
      } else {
        this.copiedBytes += bytes;
        this.progress(bytes);
      }
      task.waiters.restartAll();
    }
    return result;
  }

  /** Claims the next dirty area in [offset, end) not in flight, or null. */
  private claim(offset: number, end: number): { offset: number; bytes: number } | null {
    const area = this.copyBitmap.nextDirtyArea(offset, Math.min(end, this.lenBytes), this.maxChunkBytes);
    if (area === null) return null;
    const bytes = Math.min(area.bytes, this.lenBytes - area.offset);
    this.copyBitmap.resetRange(area.offset, bytes);
    return { offset: area.offset, bytes };
  }

  /**
   * block_copy: makes sure [offset, offset+bytes) is on the target (copy-before-write). Waits for
   * tasks in flight there, copies what is still dirty, and returns the first error.
   */
  *copyRange(offset: number, bytes: number): Co<CopyResult> {
    const start = Math.floor(offset / this.clusterSize) * this.clusterSize;
    const end = Math.min(this.lenBytes, Math.ceil((offset + bytes) / this.clusterSize) * this.clusterSize);
    for (let guard = 0; guard < 1 << 24; guard++) {
      if (start >= end || this.disposed) return OK;
      const busy = this.overlapping(start, end - start);
      if (busy !== undefined) {
        // The task may fail and give its bits back: look again once it is over.
        yield* busy.waiters.wait();
        continue;
      }
      const area = this.claim(start, end);
      if (area === null) return OK;
      const result = yield* this.copyTask(area.offset, area.bytes);
      if (result.ret < 0) return result;
    }
    assert(false, 'copy-before-write does not terminate');
  }

  /** block_copy_reset_unallocated over the whole node (sync=top): clusters the top layer lacks are not copied. */
  *resetUnallocated(shouldStop: () => boolean): Co<number> {
    let offset = 0;
    for (let guard = 0; offset < this.lenBytes; guard++) {
      assert(guard < 1 << 26, 'allocation scan does not terminate');
      if (shouldStop()) return 0;
      const { ret, pnum } = yield* bdrvCoIsAllocated(this.source, offset, this.lenBytes - offset);
      if (ret < 0) return ret;
      assert(pnum > 0, 'block status made no progress');
      if (ret === 1) {
        offset = Math.ceil((offset + pnum) / this.clusterSize) * this.clusterSize;
        continue;
      }
      const end = offset + pnum >= this.lenBytes ? this.lenBytes : Math.floor((offset + pnum) / this.clusterSize) * this.clusterSize;
      if (end > offset) {
        this.copyBitmap.resetRange(offset, end - offset);
        offset = end;
      } else {
        offset += this.clusterSize;
      }
    }
    return 0;
  }

  /**
   * block_copy_async over the whole node with `workers` coroutines. `limit` (the job's rate limit)
   * is asked before each task; `onFinish` runs when the last worker is done.
   */
  startCall(workers: number, limit: RateLimit, nowNs: () => number, onFinish: () => void): CopyCall {
    assert(Number.isSafeInteger(workers) && workers >= 1, 'at least one worker');
    const call = new CopyCall(onFinish);
    const loop = this.source.bs.loop;
    call.workersLeft = workers;
    for (let i = 0; i < workers; i++) {
      call.workers.push(loop.spawn(`block-copy-worker${i}`, this.worker(call, i, limit, nowNs)));
    }
    return call;
  }

  private *worker(call: CopyCall, index: number, limit: RateLimit, nowNs: () => number): Co<void> {
    let cursor = 0;
    try {
      for (let guard = 0; guard < 1 << 30; guard++) {
        if (call.cancelled || call.ret < 0 || this.disposed) return;
        const delayNs = limit.calculateDelay(nowNs(), 0);
        if (delayNs > 0) {
          // One worker sleeps; the rest wait for it, so a slow job costs one wake-up per slice.
          if (call.sleeperIndex < 0) {
            call.sleeperIndex = index;
            yield sleep(delayNs, ClockType.Realtime);
            call.sleeperIndex = -1;
            // Hand over to one waiter: a slice's quota rarely needs more than the sleeper, and
            // waking all of them every slice made a slow job cost 64 switches per 100 ms.
            call.limitWaiters.next();
          } else {
            yield* call.limitWaiters.wait();
          }
          continue;
        }
        let area = this.claim(cursor, this.lenBytes);
        if (area === null && cursor > 0) area = this.claim(0, this.lenBytes);
        if (area === null) {
          // Nothing left to claim; a task in flight may still fail and give bits back.
          const busy = this.tasks[0];
          if (busy === undefined) return;
          yield* busy.waiters.wait();
          cursor = 0;
          continue;
        }
        cursor = area.offset + area.bytes;
        limit.calculateDelay(nowNs(), area.bytes);
        const result = yield* this.copyTask(area.offset, area.bytes);
        if (result.ret < 0 && call.ret === 0) {
          call.ret = result.ret;
          call.errorIsRead = result.errorIsRead;
        }
      }
    } finally {
      // Whoever waits for the rate limit must see that the work ran out (or failed) and leave too.
      call.limitWaiters.restartAll();
      call.workerDone();
    }
  }
}
