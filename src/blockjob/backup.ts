import { assert } from '../engine/assert.js';
import type { Co } from '../engine/coroutine.js';
import { BlockError } from '../block/error.js';
import { BlkPerm } from '../block/driver.js';
import type { BlockGraph } from '../block/graph.js';
import { type BlockDriverState, type WriteRequestInfo, bdrvDrainedBegin, bdrvDrainedEnd } from '../block/node.js';
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
import { BLOCK_COPY_MAX_BUFFER, BlockCopyState, type CopyCall } from './block-copy.js';

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
  removeHook: (() => void) | null;
  /** drive-backup's target: an implicit node closed with the job. */
  readonly closeTarget: boolean;
  /** copy-before-write failures on guest writes (the write fails with the error). */
  cbwErrors: number;
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
    const chunks = Math.ceil(s.bcs.copyBitmap.count / s.bcs.maxChunkBytes);
    if (chunks === 0 && s.bcs.inFlight === 0) return 0;
    const call = s.bcs.startCall(Math.max(1, Math.min(s.workers, chunks)), job.limit, () => job.loop.clocks.realtimeNs, () => job.enter());
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
    // bdrv_cbw_drop drains: guest writes still copying their old data must finish first.
    bdrvDrainedBegin(s.source);
    try {
      s.removeHook?.();
      s.removeHook = null;
      s.bcs.dispose();
      s.nodes.removeAll();
    } finally {
      bdrvDrainedEnd(s.source);
    }
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

/** The copy-before-write step for a guest write on the source (break-guest-write on error). */
function* copyBeforeWrite(s: BackupState, req: WriteRequestInfo): Co<number> {
  let offset = req.offset;
  let bytes = req.bytes;
  if (req.kind === 'truncate') {
    offset = Math.min(req.offset, s.lenBytes);
    bytes = s.lenBytes - offset;
  }
  if (offset >= s.lenBytes || bytes === 0) return 0;
  const result = yield* s.bcs.copyRange(offset, Math.min(bytes, s.lenBytes - offset));
  if (result.ret < 0) s.cbwErrors++;
  return result.ret;
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

/** block_copy_calculate_cluster_size: the target's cluster size, at least 64 KiB. */
function clusterSizeFor(target: BlockDriverState): number {
  const info = target.drv.getInfo?.(target) ?? null;
  const cluster = info !== null ? info.clusterSize : 0;
  return Math.max(BACKUP_CLUSTER_SIZE_DEFAULT, cluster);
}

/**
 * backup_job_create: checks, freezes the sync bitmap, sets up block-copy with its copy bitmap
 * as of now (the point in time the target will show), hooks copy-before-write onto the source,
 * and creates the job (status CREATED; it does not start).
 */
export function backupJobCreate(jobs: JobManager, graph: BlockGraph, bs: BlockDriverState, target: BlockDriverState, p: BackupJobParams): Job<BackupState> {
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
  let bcs: BlockCopyState | null = null;
  let nodes: BlockJobNodes | null = null;
  try {
    const len = bs.getLength();
    if (len < 0) throw BlockError.withErrno(`Unable to get length for '${bs.nodeName}'`, -len);
    const targetLen = target.getLength();
    if (targetLen < 0) throw BlockError.withErrno(`Unable to get length for '${target.nodeName}'`, -targetLen);
    if (targetLen !== len) throw new BlockError('Source and target image have different sizes');
    const cluster = clusterSizeFor(target);
    if (maxChunk !== 0 && maxChunk < cluster) throw new BlockError(`Required max-chunk (${maxChunk}) is less than backup cluster size (${cluster})`);
    const chunk = maxChunk === 0 ? Math.max(cluster, BLOCK_COPY_MAX_BUFFER) : Math.floor(maxChunk / cluster) * cluster;
    // The edges exist before the job so a permission conflict leaves nothing behind.
    const job = createJob<BackupState>(jobs, {
      id: p.jobId,
      driver: backupDriver,
      state: null as unknown as BackupState,
      txn: p.txn,
      autoFinalize: p.autoFinalize,
      autoDismiss: p.autoDismiss,
      speed: p.speed,
    });
    try {
      nodes = new BlockJobNodes(graph, job as Job);
      const sourceChild = nodes.add('source', bs, BlkPerm.CONSISTENT_READ, BlkPerm.ALL, false);
      const targetChild = nodes.add('target', target, BlkPerm.WRITE, BlkPerm.CONSISTENT_READ | BlkPerm.WRITE_UNCHANGED | BlkPerm.WRITE | BlkPerm.GRAPH_MOD);
      bcs = new BlockCopyState(sourceChild, targetChild, cluster, len, chunk);
      if (p.syncMode === 'bitmap') {
        assert(p.syncBitmap !== null, 'sync=bitmap without a bitmap');
        bcs.copyBitmap.orFrom(p.syncBitmap);
      } else {
        bcs.copyBitmap.setAll();
      }
    } catch (error) {
      nodes?.removeAll();
      if (bcs !== null) bcs.dispose();
      bcs = null;
      // job_early_fail: the job never existed for anyone but its JOB_STATUS_CHANGE listeners.
      earlyFailJob(job as Job);
      throw error;
    }
    const state: BackupState = {
      source: bs,
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
      removeHook: null,
      closeTarget: p.closeTarget ?? false,
      cbwErrors: 0,
    };
    job.state = state;
    bcs.progress = (bytes) => job.progressUpdate(bytes);
    // The source stays usable by other jobs (QEMU blocks the filter node, not the source).
    state.removeHook = bs.addWriteHook({ name: `copy-before-write:${job.name}`, before: (req) => copyBeforeWrite(state, req) });
    return job;
  } catch (error) {
    if (p.syncBitmap !== null && p.syncBitmap.successor !== null) bdrvReclaimDirtyBitmap(p.syncBitmap);
    throw error;
  }
}

/**
 * do_backup_common: the QMP-level checks of a backup (in QEMU's order) and the job creation.
 * `txn` is the grouped transaction's JobTxn, or null.
 */
export function doBackupCommon(jobs: JobManager, graph: BlockGraph, args: BackupCommonArgs, bs: BlockDriverState, target: BlockDriverState, txn: JobTxn | null, closeTarget = false): Job<BackupState> {
  if (args['filter-node-name'] !== undefined) throw new BlockError("Parameter 'filter-node-name' is not supported: tsqemu's backup copies before writes without a filter node");
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
  });
}
