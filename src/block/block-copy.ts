import { assert } from '../engine/assert.js';
import type { Co } from '../engine/coroutine.js';
import { CoQueue } from '../engine/sync.js';
import { BdrvReq } from './driver.js';
import { BdrvDirtyBitmap } from './dirty-bitmap.js';
import { bdrvCoIsAllocated, bdrvCoPreadv, bdrvCoPwriteZeroes, bdrvCoPwritev, isZeroBuffer } from './io.js';
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
  readonly bytes: number;
  finished: boolean;
  readonly waiters: CoQueue;
}

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
    const cs = this.clusterSize;
    const len = this.lengthBytes;
    const start = offset - (offset % cs);
    const end = Math.min(len, Math.ceil((offset + bytes) / cs) * cs);
    for (let guard = 0; start < end; guard++) {
      assert(guard < (1 << 24), 'block-copy loop does not terminate');
      const task = this.overlappingTask(start, end);
      if (task !== undefined) {
        // Someone is copying part of the range: wait, then look again (bits come back on failure).
        while (!task.finished) yield* task.waiters.wait();
        continue;
      }
      const area = this.copyBitmap.nextDirtyArea(start, end, Math.max(cs, BLOCK_COPY_MAX_BYTES));
      if (area === null) return 0;
      let areaBytes = Math.min(area.bytes, len - area.offset);
      if (this.skipUnallocated) {
        const claim = this.claim(area.offset, areaBytes);
        const alloc = yield* bdrvCoIsAllocated(this.source, area.offset, areaBytes);
        this.release(claim, 0);
        if (alloc.ret < 0) return alloc.ret;
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
      const ret = yield* this.copyArea(area.offset, areaBytes);
      if (ret < 0) return ret;
    }
    return 0;
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
  private *copyArea(offset: number, bytes: number): Co<number> {
    this.copyBitmap.resetRange(offset, bytes);
    const task = this.claim(offset, bytes);
    let ret = 0;
    try {
      if (this.rateLimit !== null) yield* this.rateLimit(bytes);
      const buf = new Uint8Array(bytes);
      ret = yield* bdrvCoPreadv(this.source, offset, bytes, buf);
      if (ret >= 0) {
        if (!this.compress && isZeroBuffer(buf)) ret = yield* bdrvCoPwriteZeroes(this.target, offset, bytes, BdrvReq.MAY_UNMAP);
        else ret = yield* bdrvCoPwritev(this.target, offset, bytes, buf, this.compress ? BdrvReq.WRITE_COMPRESSED : 0);
      }
    } finally {
      if (ret < 0) this.copyBitmap.setRange(offset, bytes);
      this.release(task, ret);
    }
    if (ret >= 0) {
      this.copiedBytes += bytes;
      this.onProgress?.(bytes);
    }
    return ret;
  }

  /** Clusters still to copy, in bytes (block_copy_dirty_clusters). */
  get dirtyBytes(): number {
    return this.copyBitmap.count;
  }
}
