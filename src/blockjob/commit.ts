import { assert } from '../engine/assert.js';
import { BlockError } from '../block/error.js';
import { BlkPerm } from '../block/driver.js';
import type { BlockGraph } from '../block/graph.js';
import { type BdrvChild, type BlockDriverState, bdrvCoIsAllocatedAbove, bdrvCoPreadv, bdrvCoPwritev } from '../block/node.js';
import { Errno } from '../block/errno.js';
import { type Job, type JobDriver, type JobManager, type OnError, createJob, earlyFailJob } from './job.js';
import { BlockJobNodes } from './block-job.js';
import { backingChain, coChangeBackingFile } from './stream.js';
import { type MirrorState, commitActiveDriver, mirrorJobCreate } from './mirror.js';

/** `block-commit` arguments. */
export interface BlockCommitArgs {
  readonly 'job-id'?: string;
  readonly 'device': string;
  readonly 'base-node'?: string;
  /** The base by filename (bdrv_find_backing_image below top). */
  readonly 'base'?: string;
  readonly 'top-node'?: string;
  /** The top by filename (bdrv_find_backing_image below the device). */
  readonly 'top'?: string;
  readonly 'speed'?: number;
  readonly 'on-error'?: OnError;
  readonly 'auto-finalize'?: boolean;
  readonly 'auto-dismiss'?: boolean;
}

/** One commit step (COMMIT_BUFFER_SIZE is 512 KiB in QEMU). */
export const COMMIT_CHUNK_BYTES = 512 * 1024;

export interface CommitState {
  readonly top: BlockDriverState;
  readonly base: BlockDriverState;
  /** The node whose backing file is `top`: it gets `base` as its backing file. */
  readonly overlay: BlockDriverState;
  readonly topChild: BdrvChild;
  readonly baseChild: BdrvChild;
  readonly nodes: BlockJobNodes;
  readonly graph: BlockGraph;
  readonly onError: OnError;
  readonly lenBytes: number;
  readonly baseWasReadOnly: boolean;
}

/** Intermediate commit: the data of top and everything between it and base goes into base. */
export const commitDriver: JobDriver<CommitState> = {
  jobType: 'commit',
  *run(job) {
    const s = job.state;
    job.progressSetRemaining(s.lenBytes);
    let offset = 0;
    for (let guard = 0; offset < s.lenBytes; guard++) {
      assert(guard < 1 << 30, 'commit does not terminate');
      if (job.isCancelled) return 0;
      const bytes = Math.min(COMMIT_CHUNK_BYTES, s.lenBytes - offset);
      const above = yield* bdrvCoIsAllocatedAbove(s.top, s.base, false, offset, bytes);
      let ret = above.ret;
      let isRead = true;
      const n = ret < 0 ? 0 : Math.max(1, Math.min(bytes, above.pnum));
      if (ret === 1) {
        const buf = new Uint8Array(n);
        ret = yield* bdrvCoPreadv(s.topChild, offset, n, buf, 0);
        if (ret >= 0) {
          isRead = false;
          ret = yield* bdrvCoPwritev(s.baseChild, offset, n, buf, 0);
        }
      }
      if (ret < 0) {
        const action = job.errorAction(s.onError, isRead, -ret);
        if (action === 'report') return ret;
        if (action === 'stop') yield* job.pausePoint();
        continue;
      }
      offset += n;
      job.progressUpdate(n);
      job.rateLimitProcessed(n);
      yield* job.rateLimitSleep();
    }
    return 0;
  },
  prepare(job) {
    const s = job.state;
    try {
      // bdrv_drop_intermediate: the overlay now reads from base; top..base leave the chain.
      s.graph.setBacking(s.overlay, s.base);
    } catch (error) {
      if (!(error instanceof BlockError)) throw error;
      job.err = error.message;
      return -Errno.EPERM;
    }
    // ...and its update_filename: the overlay's image on disk names base as its backing file.
    return job.loop.runCoroutine('commit-change-backing-file', coChangeBackingFile(s.overlay, s.base));
  },
  clean(job) {
    const s = job.state;
    s.nodes.removeAll();
    if (s.baseWasReadOnly && !s.base.closed) s.graph.reopenReadOnly(s.base, true);
  },
};

/** qmp_block_commit's bdrv_lookup_bs(device, device, NULL): an unknown name is DeviceNotFound. */
function lookupDevice(graph: BlockGraph, device: string): BlockDriverState {
  try {
    return graph.lookupBs(device, device);
  } catch (error) {
    if (!(error instanceof BlockError)) throw error;
    throw new BlockError(`Device '${device}' not found`, 'DeviceNotFound');
  }
}

/**
 * qmp_block_commit: an intermediate commit (top below the active layer) or, when top is the
 * active layer, an active commit (a mirror into base with READY and complete).
 */
export function commitJobCreate(jobs: JobManager, graph: BlockGraph, args: BlockCommitArgs): Job<CommitState> | Job<MirrorState> {
  const bs = lookupDevice(graph, args.device);
  // qmp_block_commit checks the device's node (the active layer), not top: an intermediate top
  // is a backing file, and those refuse every operation but commit-target, stream and backup.
  const blockedSource = bs.opIsBlocked('commit-source');
  if (blockedSource !== null) throw blockedSource;
  const chain = backingChain(bs);
  let top = bs;
  if (args['top-node'] !== undefined && args.top !== undefined) throw new BlockError("'top-node' and 'top' are mutually exclusive");
  if (args['top-node'] !== undefined) {
    top = graph.lookupBs(null, args['top-node']);
    if (!chain.includes(top)) throw new BlockError(`'${args['top-node']}' is not in this backing file chain`);
  } else if (args.top !== undefined) {
    const found = bs.filename === args.top ? bs : chain.find((c) => c !== bs && c.filename === args.top);
    if (found === undefined) throw new BlockError(`Top image file ${args.top} not found`);
    top = found;
  }
  const below = chain.slice(chain.indexOf(top));
  let base = below[below.length - 1]!;
  if (args['base-node'] !== undefined && args.base !== undefined) throw new BlockError("'base-node' and 'base' are mutually exclusive");
  if (args['base-node'] !== undefined) {
    base = graph.lookupBs(null, args['base-node']);
    if (!below.includes(base)) throw new BlockError(`'${args['base-node']}' is not in this backing file chain`);
  } else if (args.base !== undefined) {
    const found = below.find((c) => c !== top && c.filename === args.base);
    if (found === undefined) throw new BlockError(`Can't find '${args.base}' in the backing chain`);
    base = found;
  }
  for (const node of below.slice(0, below.indexOf(base) + 1)) {
    const blockedTarget = node.opIsBlocked('commit-target');
    if (blockedTarget !== null) throw blockedTarget;
  }
  if (top === base) throw new BlockError('cannot commit an image into itself');
  // A backing file is opened read-only (QEMU reopens it read-write for the commit). Nodes opened
  // as backing files may still say read-write while their host file is read-only: reopen through
  // read-only so the host file really becomes writable.
  const isBacking = base.parents.some((c) => c.name === 'backing');
  const baseWasReadOnly = base.readOnly || isBacking;
  const makeBaseWritable = (): void => {
    if (!base.readOnly) graph.reopenReadOnly(base, true);
    graph.reopenReadOnly(base, false);
  };
  const jobId = args['job-id'] ?? args.device;
  if (top === bs) {
    if (baseWasReadOnly) makeBaseWritable();
    try {
      return mirrorJobCreate(
        jobs,
        graph,
        { 'job-id': jobId, 'device': top.nodeName, 'target': base.nodeName, 'sync': 'top', 'speed': args.speed, 'on-source-error': args['on-error'], 'on-target-error': args['on-error'], 'auto-finalize': args['auto-finalize'], 'auto-dismiss': args['auto-dismiss'] },
        { driver: commitActiveDriver, base, onClean: (pivoted) => (!pivoted && baseWasReadOnly && !base.closed ? graph.reopenReadOnly(base, true) : undefined) },
      );
    } catch (error) {
      if (baseWasReadOnly) graph.reopenReadOnly(base, true);
      throw error;
    }
  }
  const overlay = chain[chain.indexOf(top) - 1];
  assert(overlay !== undefined, 'an intermediate top has an overlay');
  const len = top.getLength();
  if (len < 0) throw BlockError.withErrno(`Unable to get length for '${top.nodeName}'`, -len);
  if (baseWasReadOnly) makeBaseWritable();
  const job = createJob<CommitState>(jobs, {
    id: jobId,
    driver: commitDriver,
    state: null as unknown as CommitState,
    speed: args.speed ?? 0,
    autoFinalize: args['auto-finalize'] ?? true,
    autoDismiss: args['auto-dismiss'] ?? true,
  });
  const nodes = new BlockJobNodes(graph, job as Job);
  try {
    const topChild = nodes.add('top', top, BlkPerm.CONSISTENT_READ, BlkPerm.ALL);
    const baseChild = nodes.add('base', base, BlkPerm.CONSISTENT_READ | BlkPerm.WRITE, BlkPerm.ALL);
    job.state = { top, base, overlay, topChild, baseChild, nodes, graph, onError: args['on-error'] ?? 'report', lenBytes: len, baseWasReadOnly };
    return job;
  } catch (error) {
    nodes.removeAll();
    earlyFailJob(job as Job);
    if (baseWasReadOnly) graph.reopenReadOnly(base, true);
    throw error;
  }
}
