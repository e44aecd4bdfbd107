import { assert } from '../engine/assert.js';
import { ClockType } from '../engine/clock.js';
import { type Co, type Coroutine, sleep } from '../engine/coroutine.js';
import { CoQueue } from '../engine/sync.js';
import type { BlockCopyState } from '../block/block-copy.js';
import type { RateLimit } from './ratelimit.js';

/**
 * A background copy of everything still dirty in a BlockCopyState (block_copy_async): workers,
 * rate limit, cancel, result. The copying itself (claiming clusters, waiting for copy-before-write
 * tasks in flight, giving bits back on failure) is the block layer's BlockCopyState, the one the
 * copy-before-write filter uses for guest writes.
 */
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
 * block_copy_async over the whole node with `workers` coroutines. `limit` (the job's rate limit)
 * is asked before each task; `onFinish` runs when the last worker is done.
 */
export function blockCopyAsync(bcs: BlockCopyState, workers: number, limit: RateLimit, nowNs: () => number, onFinish: () => void): CopyCall {
  assert(Number.isSafeInteger(workers) && workers >= 1, 'at least one worker');
  const call = new CopyCall(onFinish);
  const loop = bcs.source.bs.loop;
  call.workersLeft = workers;
  for (let i = 0; i < workers; i++) {
    call.workers.push(loop.spawn(`block-copy-worker${i}`, worker(bcs, call, i, limit, nowNs)));
  }
  return call;
}

function* worker(bcs: BlockCopyState, call: CopyCall, index: number, limit: RateLimit, nowNs: () => number): Co<void> {
  let cursor = 0;
  try {
    for (let guard = 0; guard < 1 << 30; guard++) {
      if (call.cancelled || call.ret < 0) return;
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
      const step = yield* bcs.copyNextChunk(cursor, (bytes) => limit.calculateDelay(nowNs(), bytes));
      if (step === null) return;
      if (step === 'waited') {
        cursor = 0;
        continue;
      }
      cursor = step.end;
      if (step.result.ret < 0 && call.ret === 0) {
        call.ret = step.result.ret;
        call.errorIsRead = step.result.errorIsRead;
      }
    }
  } finally {
    // Whoever waits for the rate limit must see that the work ran out (or failed) and leave too.
    call.limitWaiters.restartAll();
    call.workerDone();
  }
}
