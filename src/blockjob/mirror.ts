import { assert } from '../engine/assert.js';
import type { Co } from '../engine/coroutine.js';
import { CoQueue } from '../engine/sync.js';
import { BlockError } from '../block/error.js';
import { BlkPerm } from '../block/driver.js';
import type { BlockGraph } from '../block/graph.js';
import {
  type BdrvChild,
  type BlockDriverState,
  type WriteRequestInfo,
  bdrvCoIsAllocated,
  bdrvCoIsAllocatedAbove,
  bdrvCoPreadv,
  bdrvCoPwritev,
  bdrvCoTruncate,
  bdrvDrainedBegin,
  bdrvDrainedEnd,
} from '../block/node.js';
import { type BdrvDirtyBitmap, bdrvCreateDirtyBitmap, bdrvReleaseDirtyBitmap } from '../block/dirty-bitmap.js';
import { Errno } from '../block/errno.js';
import { type Job, type JobDriver, type JobManager, type OnError, createJob, earlyFailJob } from './job.js';
import { BlockJobNodes } from './block-job.js';
import { BLOCK_JOB_SLICE_NS } from './ratelimit.js';

/** MirrorCopyMode. */
export type MirrorCopyMode = 'background' | 'write-blocking';

/** `blockdev-mirror` arguments (the subset tsqemu implements). */
export interface BlockdevMirrorArgs {
  readonly 'job-id'?: string;
  readonly 'device': string;
  readonly 'target': string;
  readonly 'sync': 'full' | 'top' | 'none';
  readonly 'speed'?: number;
  readonly 'granularity'?: number;
  readonly 'buf-size'?: number;
  readonly 'on-source-error'?: OnError;
  readonly 'on-target-error'?: OnError;
  readonly 'copy-mode'?: MirrorCopyMode;
  readonly 'auto-finalize'?: boolean;
  readonly 'auto-dismiss'?: boolean;
}

/** Default size of one copy (DEFAULT_MIRROR_BUF_SIZE is 16 MiB in QEMU; a chunk is at most this). */
export const MIRROR_DEFAULT_CHUNK = 1 << 20;

/** The state of one mirror job. */
export interface MirrorState {
  readonly source: BlockDriverState;
  readonly target: BlockDriverState;
  readonly nodes: BlockJobNodes;
  readonly sourceChild: BdrvChild;
  readonly targetChild: BdrvChild;
  readonly graph: BlockGraph;
  /** Clusters of the source not yet (or no longer) equal on the target. */
  readonly dirty: BdrvDirtyBitmap;
  readonly syncMode: 'full' | 'top' | 'none';
  readonly copyMode: MirrorCopyMode;
  readonly chunkBytes: number;
  readonly onSourceError: OnError;
  readonly onTargetError: OnError;
  readonly lenBytes: number;
  /** sync=top copies what is allocated above this node (null: in the source alone). */
  readonly base: BlockDriverState | null;
  /** Called from clean (active commit puts a read-only base back). */
  readonly onClean: ((pivoted: boolean) => void) | null;
  /** block-job-complete was given: pivot once in sync. */
  shouldComplete: boolean;
  synced: boolean;
  /** Range being copied right now (a guest write there waits in write-blocking mode). */
  copying: { offset: number; bytes: number } | null;
  readonly copyDone: CoQueue;
  removeHook: (() => void) | null;
  pivoted: boolean;
}

function* copyChunk(job: Job<MirrorState>, offset: number, bytes: number): Co<{ ret: number; isRead: boolean }> {
  const s = job.state;
  s.copying = { offset, bytes };
  try {
    const buf = new Uint8Array(bytes);
    let ret = yield* bdrvCoPreadv(s.sourceChild, offset, bytes, buf, 0);
    if (ret < 0) return { ret, isRead: true };
    ret = yield* bdrvCoPwritev(s.targetChild, offset, bytes, buf, 0);
    return { ret, isRead: false };
  } finally {
    s.copying = null;
    s.copyDone.restartAll();
  }
}

/** Sets the bits of the initial copy: everything (full), what the top layer has (top), nothing (none). */
function* dirtyInit(job: Job<MirrorState>): Co<number> {
  const s = job.state;
  if (s.syncMode === 'none') return 0;
  if (s.syncMode === 'full') {
    s.dirty.setAll();
    return 0;
  }
  let offset = 0;
  for (let guard = 0; offset < s.lenBytes; guard++) {
    assert(guard < 1 << 26, 'allocation scan does not terminate');
    if (job.isCancelled) return 0;
    const { ret, pnum } =
      s.base === null ? yield* bdrvCoIsAllocated(s.sourceChild, offset, s.lenBytes - offset) : yield* bdrvCoIsAllocatedAbove(s.source, s.base, false, offset, s.lenBytes - offset);
    if (ret < 0) return ret;
    if (ret === 1) s.dirty.setRange(offset, pnum);
    offset += pnum;
  }
  return 0;
}

/**
 * mirror_run's size check: an active commit grows a smaller base to the top's length
 * (blk_truncate; a base that cannot grow fails the job with the truncate's errno); a mirror
 * whose target differs in size fails with "Source and target image have different sizes".
 */
function* matchTargetLength(job: Job<MirrorState>): Co<number> {
  const s = job.state;
  const targetLen = s.target.getLength();
  if (targetLen < 0) return targetLen;
  if (s.base === s.target) {
    if (s.lenBytes > targetLen) return Math.min(0, yield* bdrvCoTruncate(s.targetChild, s.lenBytes, false, 'off', 0));
    return 0;
  }
  if (s.lenBytes !== targetLen) {
    job.err = 'Source and target image have different sizes';
    return -Errno.EINVAL;
  }
  return 0;
}

/** The mirror job driver (background copy, READY once in sync, pivot on complete). */
export const mirrorDriver: JobDriver<MirrorState> = {
  jobType: 'mirror',
  *run(job) {
    const s = job.state;
    const sized = yield* matchTargetLength(job);
    if (sized < 0) return sized;
    const init = yield* dirtyInit(job);
    if (init < 0) return init;
    for (let guard = 0; guard < 1 << 30; guard++) {
      const count = s.dirty.count;
      job.progressSetRemaining(Math.min(count, s.lenBytes));
      if (job.isCancelled) return 0;
      if (count > 0) {
        const area = s.dirty.nextDirtyArea(0, s.lenBytes, s.chunkBytes);
        assert(area !== null, 'dirty count without a dirty area');
        const bytes = Math.min(area.bytes, s.lenBytes - area.offset);
        s.dirty.resetRange(area.offset, bytes);
        const { ret, isRead } = yield* copyChunk(job, area.offset, bytes);
        if (ret < 0) {
          s.dirty.setRange(area.offset, bytes);
          const action = job.errorAction(isRead ? s.onSourceError : s.onTargetError, isRead, -ret);
          if (action === 'report') return ret;
          if (action === 'stop') yield* job.pausePoint();
          continue;
        }
        job.progressUpdate(bytes);
        job.rateLimitProcessed(bytes);
        yield* job.rateLimitSleep();
        continue;
      }
      // In sync: READY once, then idle until completed or cancelled, copying new writes.
      if (!s.synced) {
        s.synced = true;
        job.transitionToReady();
      }
      if (s.shouldComplete || job.cancelRequested) return 0;
      yield* job.sleepNs(BLOCK_JOB_SLICE_NS);
    }
    assert(false, 'mirror loop does not terminate');
  },
  prepare(job) {
    const s = job.state;
    // Pivot only for a completed job: a soft cancel after READY leaves the source in place.
    if (!s.shouldComplete || job.cancelRequested) return 0;
    try {
      s.graph.replaceNode(s.source, s.target, [s.nodes]);
      s.pivoted = true;
      return 0;
    } catch (error) {
      if (!(error instanceof BlockError)) throw error;
      job.err = error.message;
      return -Errno.EPERM;
    }
  },
  clean(job) {
    const s = job.state;
    bdrvDrainedBegin(s.source);
    try {
      s.removeHook?.();
      s.removeHook = null;
      if (s.dirty.bs !== null) bdrvReleaseDirtyBitmap(s.dirty);
      s.nodes.removeAll();
    } finally {
      bdrvDrainedEnd(s.source);
    }
    s.onClean?.(s.pivoted);
  },
  complete(job) {
    job.state.shouldComplete = true;
    job.enter();
  },
  cancel(job, force) {
    // Before READY every cancel is forced; after it a soft cancel completes without a pivot.
    return force || !job.isReady;
  },
};

/** write-blocking: the guest write reaches the target before it completes. */
function* activeWrite(s: MirrorState, req: WriteRequestInfo): Co<number> {
  if (req.kind !== 'write' || req.buf === undefined || req.buf === null || req.offset >= s.lenBytes) return 0;
  for (let guard = 0; s.copying !== null && s.copying.offset < req.offset + req.bytes && req.offset < s.copying.offset + s.copying.bytes; guard++) {
    assert(guard < 1 << 24, 'active mirror wait does not terminate');
    yield* s.copyDone.wait();
  }
  const bytes = Math.min(req.bytes, s.lenBytes - req.offset);
  return yield* bdrvCoPwritev(s.targetChild, req.offset, bytes, req.buf.subarray(0, bytes), 0);
}

/** Active commit: a mirror of the active layer into its base that reports itself as a commit job. */
export const commitActiveDriver: JobDriver<MirrorState> = { ...mirrorDriver, jobType: 'commit' };

/** How active commit reuses the mirror. */
export interface MirrorVariant {
  readonly driver: JobDriver<MirrorState>;
  readonly base: BlockDriverState | null;
  readonly onClean: ((pivoted: boolean) => void) | null;
}

/** mirror_start_job: validation, the dirty bitmap (recording from now), the edges, the job (CREATED). */
export function mirrorJobCreate(jobs: JobManager, graph: BlockGraph, args: BlockdevMirrorArgs, variant: MirrorVariant = { driver: mirrorDriver, base: null, onClean: null }): Job<MirrorState> {
  const bs = graph.lookupBs(args.device, args.device);
  const target = graph.lookupBs(args.target, args.target);
  const granularity = args.granularity ?? 0;
  if (granularity !== 0 && (granularity < 512 || granularity > 64 * 1024 * 1024)) throw new BlockError("Parameter 'granularity' expects a value in range [512B, 64MB]");
  if ((granularity & (granularity - 1)) !== 0) throw new BlockError("Parameter 'granularity' expects a power of 2");
  const bufSize = args['buf-size'] ?? MIRROR_DEFAULT_CHUNK;
  if (bufSize < 0) throw new BlockError("Parameter 'buf-size' expects a non-negative value");
  if (bs === target) throw new BlockError("Can't mirror node into itself");
  // blockdev_mirror_common's checks; an active commit (commit_active_start) reaches
  // mirror_start_job without them: its base is a backing file, which refuses mirror-target.
  if (variant.driver === mirrorDriver) {
    const blocked = bs.opIsBlocked('mirror-source');
    if (blocked !== null) throw blocked;
    const blockedTarget = target.opIsBlocked('mirror-target');
    if (blockedTarget !== null) throw blockedTarget;
  }
  const len = bs.getLength();
  if (len < 0) throw BlockError.withErrno(`Unable to get length for '${bs.nodeName}'`, -len);
  // Sizes are compared when the job runs (mirror_run), not here: a mismatch fails the started job.
  // Active commit grows a smaller base instead, so its edge takes RESIZE (mirror_start_job).
  const targetIsBacking = variant.base === target;
  let targetPerm: number = BlkPerm.WRITE;
  if (targetIsBacking) {
    const targetLen = target.getLength();
    if (targetLen < 0) throw BlockError.withErrno('Could not inquire base image size', -targetLen);
    if (targetLen < len) targetPerm |= BlkPerm.RESIZE;
  }
  const clusterSize = target.drv.getInfo?.(target)?.clusterSize ?? 0;
  const gran = granularity !== 0 ? granularity : Math.max(4096, Math.min(65536, clusterSize || 65536));
  const job = createJob<MirrorState>(jobs, {
    id: args['job-id'] ?? args.device,
    driver: variant.driver,
    state: null as unknown as MirrorState,
    speed: args.speed ?? 0,
    autoFinalize: args['auto-finalize'] ?? true,
    autoDismiss: args['auto-dismiss'] ?? true,
  });
  const nodes = new BlockJobNodes(graph, job as Job);
  let dirty: BdrvDirtyBitmap | null = null;
  try {
    const sourceChild = nodes.add('source', bs, BlkPerm.CONSISTENT_READ, BlkPerm.ALL, false);
    const targetChild = nodes.add('target', target, targetPerm, BlkPerm.CONSISTENT_READ | BlkPerm.WRITE_UNCHANGED | BlkPerm.WRITE | BlkPerm.GRAPH_MOD);
    bs.opBlock('mirror-source', nodes.blocker);
    dirty = bdrvCreateDirtyBitmap(bs, gran, null);
    const state: MirrorState = {
      source: bs,
      target,
      nodes,
      sourceChild,
      targetChild,
      graph,
      dirty,
      syncMode: args.sync,
      copyMode: args['copy-mode'] ?? 'background',
      chunkBytes: Math.max(gran, Math.min(bufSize === 0 ? MIRROR_DEFAULT_CHUNK : bufSize, MIRROR_DEFAULT_CHUNK)),
      onSourceError: args['on-source-error'] ?? 'report',
      onTargetError: args['on-target-error'] ?? 'report',
      lenBytes: len,
      base: variant.base,
      onClean: variant.onClean,
      shouldComplete: false,
      synced: false,
      copying: null,
      copyDone: new CoQueue(),
      removeHook: null,
      pivoted: false,
    };
    job.state = state;
    const unblock = () => bs.opUnblock('mirror-source', nodes.blocker);
    if (state.copyMode === 'write-blocking') {
      // The bits stay set: a background copy racing with this write could otherwise leave the
      // target stale with a clean bit. Copying a granule twice is merely wasteful.
      const remove = bs.addWriteHook({ name: `mirror-active:${job.name}`, before: (req) => activeWrite(state, req) });
      state.removeHook = () => {
        remove();
        unblock();
      };
    } else {
      state.removeHook = unblock;
    }
    return job;
  } catch (error) {
    if (dirty !== null && dirty.bs !== null) bdrvReleaseDirtyBitmap(dirty);
    bs.opUnblock('mirror-source', nodes.blocker);
    nodes.removeAll();
    earlyFailJob(job as Job);
    throw error;
  }
}
