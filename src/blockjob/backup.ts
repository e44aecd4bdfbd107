import { assert } from '../engine/assert.js';
import type { Co } from '../engine/coroutine.js';
import { BlockError } from '../block/error.js';
import { BlkPerm } from '../block/driver.js';
import type { BlockGraph } from '../block/graph.js';
import type { BlockDriverState } from '../block/node.js';
import type { BlockCopyState } from '../block/block-copy.js';
import { bdrvCbwAppend, bdrvCbwDrop, cbwBlockCopyState } from '../block/drivers/copy-before-write.js';
import {
  type BdrvDirtyBitmap,
  BitmapCheck,
  bdrvDirtyBitmapAbdicate,
  bdrvDirtyBitmapCreateSuccessor,
  bdrvReclaimDirtyBitmap,
} from '../block/dirty-bitmap.js';
import { type Job, type JobDriver, type JobManager, type OnError, createJob, earlyFailJob } from './job.js';
import type { JobTxn } from './job-txn.js';
import { BlockJobNodes } from './block-job.js';
import { type CopyCall, blockCopyAsync } from './block-copy.js';

/** Largest chunk one copy task moves without x-perf max-chunk (BLOCK_COPY_MAX_BUFFER). */
const BLOCK_COPY_MAX_BUFFER = 1 << 20;

/** MirrorSyncMode as backup uses it. */
export type BackupSyncMode = 'full' | 'top' | 'none' | 'incremental' | 'bitmap';

/** BitmapSyncMode. */
export type BitmapSyncMode = 'on-success' | 'never' | 'always';

/** BackupPerf (`x-perf`). */
export interface BackupPerf {
  readonly 'use-copy-range'?: boolean;
  readonly 'max-workers'?: number;
  readonly 'max-chunk'?: number;
}

/** BackupCommon: what blockdev-backup and drive-backup share. */
export interface BackupCommonArgs {
  readonly 'job-id'?: string;
  readonly 'device': string;
  readonly 'sync': BackupSyncMode;
  readonly 'speed'?: number;
  readonly 'bitmap'?: string;
  readonly 'bitmap-mode'?: BitmapSyncMode;
  readonly 'compress'?: boolean;
  readonly 'on-source-error'?: OnError;
  readonly 'on-target-error'?: OnError;
  readonly 'auto-finalize'?: boolean;
  readonly 'auto-dismiss'?: boolean;
  readonly 'filter-node-name'?: string;
  readonly 'x-perf'?: BackupPerf;
}

/** `blockdev-backup` arguments. */
export interface BlockdevBackupArgs extends BackupCommonArgs {
  readonly target: string;
}

/** Smallest cluster block-copy works in (BLOCK_COPY_CLUSTER_SIZE_DEFAULT). */
export const BACKUP_CLUSTER_SIZE_DEFAULT = 64 * 1024;

/** Default number of parallel copy tasks (BackupPerf max-workers). */
export const BACKUP_DEFAULT_WORKERS = 64;

/** The state of one backup job. */
export interface BackupState {
  readonly source: BlockDriverState;
  /** The copy-before-write filter above the source; every parent of the source writes through it. */
  readonly filter: BlockDriverState;
  readonly target: BlockDriverState;
  readonly nodes: BlockJobNodes;
  readonly bcs: BlockCopyState;
  readonly syncMode: 'full' | 'top' | 'none' | 'bitmap';
  readonly syncBitmap: BdrvDirtyBitmap | null;
  readonly bitmapMode: BitmapSyncMode;
  readonly onSourceError: OnError;
  readonly onTargetError: OnError;
  readonly workers: number;
  readonly lenBytes: number;
  call: CopyCall | null;
  /** Set once clean dropped the filter. */
  filterDropped: boolean;
  /** drive-backup's target: an implicit node closed with the job. */
  readonly closeTarget: boolean;
}

/** backup_cleanup_sync_bitmap: hand the frozen bitmap back according to bitmap-mode. */
function cleanupSyncBitmap(s: BackupState, ret: number): void {
  const bitmap = s.syncBitmap;
  if (bitmap === null) return;
  const sync = (ret === 0 || s.bitmapMode === 'always') && s.bitmapMode !== 'never';
  // Success (or always): the successor, holding only writes made since the job began, takes over.
  // Failure (or never): the successor is merged back, so nothing recorded is lost.
  const result = sync ? bdrvDirtyBitmapAbdicate(bitmap) : bdrvReclaimDirtyBitmap(bitmap);
  if (ret < 0 && s.bitmapMode === 'always') result.orFrom(s.bcs.copyBitmap);
}

function* backupLoop(job: Job<BackupState>): Co<number> {
  const s = job.state;
  for (let attempt = 0; attempt < 1 << 30; attempt++) {
    // Nothing (left) to copy: no workers needed. Copy-before-write may still be busy, but the
    // clean-up drains the source before the state goes away.
    // A claimed chunk shrinks to one block-status extent and gives the rest back, so there may be
    // up to one task per cluster: as many workers as that, up to max-workers (QEMU's task pool).
    const clusters = Math.ceil(s.bcs.copyBitmap.count / s.bcs.clusterSize);
    if (clusters === 0 && s.bcs.tasksInFlight === 0) return 0;
    const call = blockCopyAsync(s.bcs, Math.max(1, Math.min(s.workers, clusters)), job.limit, () => job.loop.clocks.realtimeNs, () => job.enter());
    s.call = call;
    for (let guard = 0; !call.finished && !job.isCancelled; guard++) {
      assert(guard < 1 << 30, 'backup wait does not terminate');
      yield* job.yieldJob();
    }
    if (!call.finished) {
      // Force-cancelled: stop the workers and wait until the last one is out.
      call.cancel();
      for (let guard = 0; !call.finished; guard++) {
        assert(guard < 1 << 24, 'backup cancel does not terminate');
        yield* job.waitForEnter();
      }
      s.call = null;
      return 0;
    }
    s.call = null;
    if (job.isCancelled || call.succeeded) return 0;
    // A pause cancelled the call: start a new one for what is left.
    if (call.cancelled && call.ret === 0) continue;
    const action = job.errorAction(call.errorIsRead ? s.onSourceError : s.onTargetError, call.errorIsRead, -call.ret);
    if (action === 'report') return call.ret;
    if (action === 'stop') yield* job.pausePoint();
  }
  assert(false, 'backup loop does not terminate');
}

/** Bytes still to copy, counting the last (partial) cluster only up to the end of the node. */
function remainingBytes(s: BackupState): number {
  const bitmap = s.bcs.copyBitmap;
  let bytes = bitmap.count;
  const cluster = s.bcs.clusterSize;
  const tail = s.lenBytes % cluster;
  if (tail !== 0 && bitmap.get(s.lenBytes - tail)) bytes -= cluster - tail;
  return bytes;
}

/** The backup job driver. */
export const backupDriver: JobDriver<BackupState> = {
  jobType: 'backup',
  *run(job) {
    const s = job.state;
    if (s.syncMode === 'top') {
      const ret = yield* s.bcs.resetUnallocated(() => job.isCancelled);
      if (ret < 0) return ret;
    }
    job.progressSetRemaining(remainingBytes(s));
    if (s.syncMode === 'none') {
      // Only copy-before-write works; the job never finishes by itself.
      for (let guard = 0; !job.isCancelled; guard++) {
        assert(guard < 1 << 30, 'sync=none wait does not terminate');
        yield* job.yieldJob();
      }
      return 0;
    }
    return yield* backupLoop(job);
  },
  commit(job) {
    cleanupSyncBitmap(job.state, 0);
  },
  abort(job) {
    cleanupSyncBitmap(job.state, job.ret);
  },
  clean(job) {
    const s = job.state;
    // bdrv_cbw_drop drains (guest writes still copying their old data finish first), moves the
    // filter's parents back onto the source and closes the filter. It goes first: the filter's
    // write edge on the target must be gone before the job's edges are dropped, since dropping
    // one re-checks the target's permissions.
    dropFilter(s);
    s.nodes.removeAll();
    if (s.closeTarget && !s.target.closed && s.target.parents.length === 0) {
      const graph = s.nodes.graph;
      if (job.loop.current === null) job.loop.runCoroutine('backup-close-target', graph.coCloseTree(s.target));
      else job.loop.spawn('backup-close-target', graph.coCloseTree(s.target));
    }
  },
  pause(job) {
    const call = job.state.call;
    if (call !== null && !call.finished) call.cancel();
  },
  cancel(job) {
    job.state.call?.cancel();
    return true;
  },
  setSpeed(job) {
    // Also called from createJob, before the state exists.
    (job.state as BackupState | null)?.call?.kick();
  },
};

function dropFilter(s: BackupState): void {
  if (s.filterDropped) return;
  s.filterDropped = true;
  if (!s.filter.closed) bdrvCbwDrop(s.nodes.graph, s.filter);
}

/** What backup_job_create needs beyond the nodes. */
export interface BackupJobParams {
  readonly jobId: string | null;
  readonly speed: number;
  readonly syncMode: 'full' | 'top' | 'none' | 'bitmap';
  readonly syncBitmap: BdrvDirtyBitmap | null;
  readonly bitmapMode: BitmapSyncMode;
  readonly compress: boolean;
  readonly perf: BackupPerf;
  readonly onSourceError: OnError;
  readonly onTargetError: OnError;
  readonly autoFinalize: boolean;
  readonly autoDismiss: boolean;
  readonly txn: JobTxn | null;
  /** Close the target node when the job ends (drive-backup's implicit target). */
  readonly closeTarget?: boolean;
}

/**
 * backup_job_create: checks, freezes the sync bitmap, sets up block-copy with its copy bitmap
 * as of now (the point in time the target will show), hooks copy-before-write onto the source,
 * and creates the job (status CREATED; it does not start).
 */
export function backupJobCreate(jobs: JobManager, graph: BlockGraph, bs: BlockDriverState, target: BlockDriverState, p: BackupJobParams, filterNodeName: string | null = null): Job<BackupState> {
  if (bs === target) throw new BlockError('Source and target cannot be the same');
  if (bs.closed) throw new BlockError(`Device is not inserted: ${bs.nodeName}`);
  if (target.closed) throw new BlockError(`Device is not inserted: ${target.nodeName}`);
  if (p.compress) throw new BlockError(`Compression is not supported for this drive ${target.nodeName}`);
  const blockedSource = bs.opIsBlocked('backup-source');
  if (blockedSource !== null) throw blockedSource;
  const blockedTarget = target.opIsBlocked('backup-target');
  if (blockedTarget !== null) throw blockedTarget;
  const workers = p.perf['max-workers'] ?? BACKUP_DEFAULT_WORKERS;
  if (!Number.isSafeInteger(workers) || workers < 1 || workers > 0x7fffffff) throw new BlockError('max-workers must be between 1 and 2147483647');
  const maxChunk = p.perf['max-chunk'] ?? 0;
  if (maxChunk < 0) throw new BlockError('max-chunk must be zero (which means no limit) or positive');
  if (p.syncBitmap !== null) {
    if (p.bitmapMode !== 'never') {
      const error = p.syncBitmap.check(BitmapCheck.DEFAULT);
      if (error !== null) throw error;
    }
    bdrvDirtyBitmapCreateSuccessor(p.syncBitmap);
  }
  let filter: BlockDriverState | null = null;
  try {
    const len = bs.getLength();
    if (len < 0) throw BlockError.withErrno(`Unable to get length for '${bs.nodeName}'`, -len);
    const targetLen = target.getLength();
    if (targetLen < 0) throw BlockError.withErrno(`Unable to get length for '${target.nodeName}'`, -targetLen);
    if (targetLen !== len) throw new BlockError('Source and target image have different sizes');
    // bdrv_cbw_append: from now on every write of a parent of the source copies the old data
    // first, so the target is the image as of this moment.
    filter = bdrvCbwAppend(graph, bs, target, filterNodeName);
    const bcs: BlockCopyState = cbwBlockCopyState(filter);
    const cluster = bcs.clusterSize;
    if (maxChunk !== 0 && maxChunk < cluster) throw new BlockError(`Required max-chunk (${maxChunk}) is less than backup cluster size (${cluster})`);
    bcs.maxChunkBytes = maxChunk === 0 ? Math.max(cluster, BLOCK_COPY_MAX_BUFFER) : Math.floor(maxChunk / cluster) * cluster;
    if (p.syncMode === 'bitmap') {
      assert(p.syncBitmap !== null, 'sync=bitmap without a bitmap');
      bcs.copyBitmap.resetAll();
      bcs.copyBitmap.orFrom(p.syncBitmap);
    } else {
      bcs.copyBitmap.setAll();
    }
    const job = createJob<BackupState>(jobs, {
      id: p.jobId,
      driver: backupDriver,
      state: null as unknown as BackupState,
      txn: p.txn,
      autoFinalize: p.autoFinalize,
      autoDismiss: p.autoDismiss,
      speed: p.speed,
    });
    let nodes: BlockJobNodes | null = null;
    try {
      nodes = new BlockJobNodes(graph, job as Job);
      // The job's main node is the filter; the filter's own edges hold the permissions (the
      // target child writes, and unshares writes of others).
      nodes.add('source', filter, 0, BlkPerm.ALL);
      nodes.add('target', target, 0, BlkPerm.ALL);
    } catch (error) {
      nodes?.removeAll();
      // job_early_fail: the job never existed for anyone but its JOB_STATUS_CHANGE listeners.
      earlyFailJob(job as Job);
      throw error;
    }
    const state: BackupState = {
      source: bs,
      filter,
      target,
      nodes,
      bcs,
      syncMode: p.syncMode,
      syncBitmap: p.syncBitmap,
      bitmapMode: p.bitmapMode,
      onSourceError: p.onSourceError,
      onTargetError: p.onTargetError,
      workers,
      lenBytes: len,
      call: null,
      filterDropped: false,
      closeTarget: p.closeTarget ?? false,
    };
    job.state = state;
    bcs.onProgress = (bytes) => job.progressUpdate(bytes);
    return job;
  } catch (error) {
    if (filter !== null && !filter.closed) bdrvCbwDrop(graph, filter);
    if (p.syncBitmap !== null && p.syncBitmap.successor !== null) bdrvReclaimDirtyBitmap(p.syncBitmap);
    throw error;
  }
}

/**
 * do_backup_common: the QMP-level checks of a backup (in QEMU's order) and the job creation.
 * `txn` is the grouped transaction's JobTxn, or null.
 */
export function doBackupCommon(jobs: JobManager, graph: BlockGraph, args: BackupCommonArgs, bs: BlockDriverState, target: BlockDriverState, txn: JobTxn | null, closeTarget = false): Job<BackupState> {
  let sync: BackupSyncMode = args.sync;
  let bitmapMode = args['bitmap-mode'];
  if (sync === 'bitmap' || sync === 'incremental') {
    if (args.bitmap === undefined) throw new BlockError(`must provide a valid bitmap name for '${sync}' sync mode`);
  }
  if (sync === 'incremental') {
    if (bitmapMode !== undefined && bitmapMode !== 'on-success') throw new BlockError("Bitmap sync mode must be 'on-success' when using sync mode 'incremental'");
    sync = 'bitmap';
    bitmapMode = 'on-success';
  }
  let bitmap: BdrvDirtyBitmap | null = null;
  if (args.bitmap !== undefined) {
    bitmap = bs.findDirtyBitmap(args.bitmap) ?? null;
    if (bitmap === null) throw new BlockError(`Bitmap '${args.bitmap}' could not be found`);
    if (bitmapMode === undefined) throw new BlockError('Bitmap sync mode must be given when providing a bitmap');
    const error = bitmap.check(BitmapCheck.ALLOW_RO);
    if (error !== null) throw error;
    if (sync === 'none') throw new BlockError("sync mode 'none' does not produce meaningful bitmap outputs");
    if (bitmapMode === 'never' && sync !== 'bitmap') throw new BlockError(`Bitmap sync mode 'never' has no meaningful effect when combined with sync mode '${sync}'`);
  }
  if (args.bitmap === undefined && bitmapMode !== undefined) throw new BlockError('Cannot specify bitmap sync mode without a bitmap');
  return backupJobCreate(jobs, graph, bs, target, {
    // block_job_create: without job-id the job is named after the device.
    jobId: args['job-id'] ?? args.device,
    speed: args.speed ?? 0,
    syncMode: sync,
    syncBitmap: bitmap,
    bitmapMode: bitmapMode ?? 'on-success',
    compress: args.compress ?? false,
    perf: args['x-perf'] ?? {},
    onSourceError: args['on-source-error'] ?? 'report',
    onTargetError: args['on-target-error'] ?? 'report',
    autoFinalize: args['auto-finalize'] ?? true,
    autoDismiss: args['auto-dismiss'] ?? true,
    txn,
    closeTarget,
  }, args['filter-node-name'] ?? null);
}
