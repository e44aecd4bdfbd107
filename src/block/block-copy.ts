import { assert } from '../engine/assert.js';
import type { Co } from '../engine/coroutine.js';
import { CoQueue } from '../engine/sync.js';
import { BdrvReq, BlockStatus } from './driver.js';
import { BdrvDirtyBitmap } from './dirty-bitmap.js';
import { bdrvCoBlockStatusAbove, bdrvCoIsAllocated, bdrvCoPreadv, bdrvCoPwriteZeroes, bdrvCoPwritev, isZeroBuffer } from './io.js';
import type { BdrvChild } from './node.js';

declare module '../engine/trace.js' {
  interface TraceEventMap {
    'block-copy.task': { source: string; offset: number; bytes: number; ret: number };
  }
}

/** Default cluster size of a copy (BLOCK_COPY_CLUSTER_SIZE_DEFAULT). */
export const BLOCK_COPY_CLUSTER_SIZE_DEFAULT = 65536;
/** Largest chunk one task copies (BLOCK_COPY_MAX_BUFFER). */
export const BLOCK_COPY_MAX_BYTES = 1 << 20;
/** Most tasks in flight at once per state: bounded like everything else. */
const MAX_TASKS = 1 << 16;

/** A range being copied right now: anyone else needing it waits for it. */
interface BlockCopyTask {
  readonly offset: number;
  /** Shrinks (never grows) once block status says how far the first extent goes. */
  bytes: number;
  finished: boolean;
  readonly waiters: CoQueue;
}

/** Outcome of a copy: 0 or a negative errno, and which side failed (BLOCK_JOB_ERROR.operation). */
export interface CopyResult {
  readonly ret: number;
  readonly errorIsRead: boolean;
}

const COPY_OK: CopyResult = { ret: 0, errorIsRead: false };

export interface BlockCopyOptions {
  /** Cluster size of the copy (power of two; default: 64 KiB or the target's cluster size). */
  readonly clusterSize?: number;
  /** Write compressed data to the target (BDRV_REQ_WRITE_COMPRESSED). */
  readonly compress?: boolean;
}

/**
 * BlockCopyState: copies clusters from `source` to `target` once each. `copyBitmap` holds the
 * clusters still to copy (all set for a full backup; the job may load another pattern). Both the
 * copy-before-write filter (for guest writes) and the backup job (its main loop) call `copy`;
 * a cluster is claimed (its bit cleared) before the first yield and in-flight tasks are awaited,
 * so no cluster is ever copied twice, and a failed copy sets its bits again.
 */
export class BlockCopyState {
  readonly clusterSize: number;
  /** Dirty = still to copy. Anonymous, on the source node, never recording guest writes. */
  readonly copyBitmap: BdrvDirtyBitmap;
  /** Skip clusters not allocated in the source's top layer (sync=top). */
  skipUnallocated = false;
  /** Called with the bytes of every finished copy (job progress). */
  onProgress: ((bytes: number) => void) | null = null;
  /** Hook a job uses for its speed limit: runs before each chunk is copied. */
  rateLimit: ((bytes: number) => Co<void>) | null = null;
  private readonly tasks: BlockCopyTask[] = [];
  private readonly compress: boolean;
  /** Bytes successfully copied so far. */
  copiedBytes = 0;
  /** Largest chunk one task copies (a backup's x-perf max-chunk; at least one cluster). */
  maxChunkBytes: number;

  constructor(
    readonly source: BdrvChild,
    readonly target: BdrvChild,
    options: BlockCopyOptions = {},
  ) {
    const targetCluster = target.bs.drv.getInfo?.(target.bs)?.clusterSize ?? 0;
    this.clusterSize = options.clusterSize ?? Math.max(BLOCK_COPY_CLUSTER_SIZE_DEFAULT, targetCluster);
    assert(this.clusterSize >= 512 && (this.clusterSize & (this.clusterSize - 1)) === 0, () => `bad block-copy cluster size ${this.clusterSize}`);
    this.compress = options.compress === true;
    // Not registered on the node: guest writes must not re-dirty clusters already copied.
    this.copyBitmap = new BdrvDirtyBitmap(null, null, this.clusterSize, source.bs.getLength());
    this.copyBitmap.setAll();
    this.maxChunkBytes = Math.max(this.clusterSize, BLOCK_COPY_MAX_BYTES);
  }

  /** Bytes of the source. */
  get lengthBytes(): number {
    return this.copyBitmap.sizeBytes;
  }

  /** Number of copies running now. */
  get tasksInFlight(): number {
    return this.tasks.length;
  }

  private overlappingTask(offset: number, end: number): BlockCopyTask | undefined {
    return this.tasks.find((t) => t.offset < end && offset < t.offset + t.bytes);
  }

  /**
   * block_copy: makes sure every cluster touched by [offset, offset+bytes) has been copied (or is
   * being copied by someone who finished successfully). Returns 0 or the first negative errno.
   */
  *copy(offset: number, bytes: number): Co<number> {
    return (yield* this.copyRange(offset, bytes)).ret;
  }

  /** `copy` that also tells whether the read of the source or the write of the target failed. */
  *copyRange(offset: number, bytes: number): Co<CopyResult> {
    const cs = this.clusterSize;
    const len = this.lengthBytes;
    const start = offset - (offset % cs);
    const end = Math.min(len, Math.ceil((offset + bytes) / cs) * cs);
    for (let guard = 0; start < end; guard++) {
      assert(guard < (1 << 24), 'block-copy loop does not terminate');
      const task = this.overlappingTask(start, end);
      if (task !== undefined) {
        // Someone is copying part of the range: wait, then look again (bits come back on failure).
        // It may also shrink and let go of the rest: wake-ups re-check either way.
        yield* task.waiters.wait();
        continue;
      }
      const area = this.copyBitmap.nextDirtyArea(start, end, this.maxChunkBytes);
      if (area === null) return COPY_OK;
      let areaBytes = Math.min(area.bytes, len - area.offset);
      if (this.skipUnallocated) {
        const claim = this.claim(area.offset, areaBytes);
        const alloc = yield* bdrvCoIsAllocated(this.source, area.offset, areaBytes);
        this.release(claim, 0);
        if (alloc.ret < 0) return { ret: alloc.ret, errorIsRead: true };
        const pnumClusters = Math.max(cs, Math.floor(alloc.pnum / cs) * cs);
        if (alloc.ret === 0) {
          // Unallocated in the top layer: nothing to copy; counts as done for progress.
          const skip = Math.min(pnumClusters, areaBytes);
          this.copyBitmap.resetRange(area.offset, skip);
          this.onProgress?.(skip);
          continue;
        }
        areaBytes = Math.min(areaBytes, pnumClusters);
      }
      const result = yield* this.copyArea(area.offset, areaBytes);
      if (result.ret < 0) return result;
    }
    return COPY_OK;
  }

  private claim(offset: number, bytes: number): BlockCopyTask {
    assert(this.tasks.length < MAX_TASKS, 'too many block-copy tasks');
    const task: BlockCopyTask = { offset, bytes, finished: false, waiters: new CoQueue() };
    this.tasks.push(task);
    return task;
  }

  private release(task: BlockCopyTask, ret: number): void {
    const index = this.tasks.indexOf(task);
    assert(index >= 0, 'release of an unknown block-copy task');
    this.tasks.splice(index, 1);
    task.finished = true;
    task.waiters.restartAll();
    this.source.bs.loop.trace.emit('block-copy.task', { source: this.source.bs.nodeName, offset: task.offset, bytes: task.bytes, ret });
  }

  /** Claims [offset, offset+bytes) (dirty), copies it, and gives the bits back on failure. */
  private *copyArea(offset: number, bytes: number): Co<CopyResult> {
    this.copyBitmap.resetRange(offset, bytes);
    return yield* this.copyClaimed(offset, bytes);
  }

  /** Copies [offset, offset+bytes), whose bits the caller already cleared; gives them back on failure. */
  private *copyClaimed(offset: number, claimedBytes: number): Co<CopyResult> {
    const task = this.claim(offset, claimedBytes);
    let bytes = claimedBytes;
    let ret = 0;
    let errorIsRead = false;
    try {
      // block_copy_block_status: one task covers one extent; a zero extent is written as
      // zeroes without reading the source at all.
      const status = yield* this.blockStatus(offset, bytes);
      if (status.bytes < bytes) {
        // block_copy_task_shrink: the rest goes back to be claimed by someone else.
        this.copyBitmap.setRange(offset + status.bytes, bytes - status.bytes);
        bytes = status.bytes;
        task.bytes = bytes;
        task.waiters.restartAll();
      }
      if (this.rateLimit !== null) yield* this.rateLimit(bytes);
      if (status.zero && !this.compress) {
        ret = yield* bdrvCoPwriteZeroes(this.target, offset, bytes, BdrvReq.MAY_UNMAP);
      } else {
        const buf = new Uint8Array(bytes);
        ret = yield* bdrvCoPreadv(this.source, offset, bytes, buf);
        if (ret < 0) {
          errorIsRead = true;
        } else if (!this.compress && isZeroBuffer(buf)) {
          ret = yield* bdrvCoPwriteZeroes(this.target, offset, bytes, BdrvReq.MAY_UNMAP);
        } else {
          ret = yield* bdrvCoPwritev(this.target, offset, bytes, buf, this.compress ? BdrvReq.WRITE_COMPRESSED : 0);
        }
      }
    } finally {
      if (ret < 0) this.copyBitmap.setRange(offset, bytes);
      this.release(task, ret);
    }
    if (ret < 0) return { ret, errorIsRead };
    this.copiedBytes += bytes;
    this.onProgress?.(bytes);
    return COPY_OK;
  }

  /**
   * block_copy_block_status: how many bytes from `offset` (whole clusters, at most `bytes`) share
   * one status, and whether they read as zeroes. A failed or sub-cluster answer falls back to
   * copying one cluster as data.
   */
  private *blockStatus(offset: number, bytes: number): Co<{ bytes: number; zero: boolean }> {
    const cs = this.clusterSize;
    const len = this.lengthBytes;
    const status = yield* bdrvCoBlockStatusAbove(this.source.bs, null, false, true, offset, bytes);
    if (status.ret < 0 || status.pnum < Math.min(cs, bytes)) return { bytes: Math.min(cs, bytes), zero: false };
    let num = offset + status.pnum >= len ? Math.ceil(status.pnum / cs) * cs : Math.floor(status.pnum / cs) * cs;
    num = Math.max(Math.min(num, bytes), Math.min(cs, bytes));
    return { bytes: num, zero: (status.ret & BlockStatus.ZERO) !== 0 };
  }

  /**
   * One step of a background copy (block_copy_async's workers): claims the next dirty chunk at or
   * after `cursor` (wrapping to 0) and copies it. Returns null when nothing is left to claim and
   * no task is in flight; `waited` when it only waited for a task in flight (whose bits may come
   * back if it fails); else the chunk's end and the copy's result. `beforeCopy` runs between the
   * claim and the I/O (the caller's rate-limit accounting).
   */
  *copyNextChunk(cursor: number, beforeCopy: (bytes: number) => void): Co<{ end: number; result: CopyResult } | 'waited' | null> {
    let area = this.claimNext(cursor);
    if (area === null && cursor > 0) area = this.claimNext(0);
    if (area === null) {
      const busy = this.tasks[0];
      if (busy === undefined) return null;
      yield* busy.waiters.wait();
      return 'waited';
    }
    beforeCopy(area.bytes);
    const result = yield* this.copyClaimed(area.offset, area.bytes);
    return { end: area.offset + area.bytes, result };
  }

  /** Claims (clears) the next dirty chunk in [offset, end of node), or null. */
  private claimNext(offset: number): { offset: number; bytes: number } | null {
    const len = this.lengthBytes;
    if (offset >= len) return null;
    const area = this.copyBitmap.nextDirtyArea(offset, len, this.maxChunkBytes);
    if (area === null) return null;
    const bytes = Math.min(area.bytes, len - area.offset);
    this.copyBitmap.resetRange(area.offset, bytes);
    return { offset: area.offset, bytes };
  }

  /**
   * block_copy_reset_unallocated over the whole node (sync=top): clusters the source's top layer
   * does not allocate are not copied. Stops early (returning 0) when `shouldStop` says so.
   */
  *resetUnallocated(shouldStop: () => boolean): Co<number> {
    const cs = this.clusterSize;
    const len = this.lengthBytes;
    let offset = 0;
    for (let guard = 0; offset < len; guard++) {
      assert(guard < 1 << 26, 'allocation scan does not terminate');
      if (shouldStop()) return 0;
      const { ret, pnum } = yield* bdrvCoIsAllocated(this.source, offset, len - offset);
      if (ret < 0) return ret;
      assert(pnum > 0, 'block status made no progress');
      if (ret === 1) {
        offset = Math.ceil((offset + pnum) / cs) * cs;
        continue;
      }
      const end = offset + pnum >= len ? len : Math.floor((offset + pnum) / cs) * cs;
      if (end > offset) {
        this.copyBitmap.resetRange(offset, end - offset);
        offset = end;
      } else {
        offset += cs;
      }
    }
    return 0;
  }

  /** Clusters still to copy, in bytes (block_copy_dirty_clusters). */
  get dirtyBytes(): number {
    return this.copyBitmap.count;
  }
}
