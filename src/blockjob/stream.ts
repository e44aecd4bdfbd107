import { assert } from '../engine/assert.js';
import type { Co } from '../engine/coroutine.js';
import { BlockError } from '../block/error.js';
import { BlkPerm } from '../block/driver.js';
import type { BlockGraph } from '../block/graph.js';
import { type BdrvChild, type BlockDriverState, bdrvCoIsAllocated, bdrvCoIsAllocatedAbove, bdrvCoPreadv, bdrvCoPwritev } from '../block/node.js';
import { Errno } from '../block/errno.js';
import { type Job, type JobDriver, type JobManager, type OnError, createJob, earlyFailJob } from './job.js';
import { BlockJobNodes } from './block-job.js';

/** `block-stream` arguments. */
export interface BlockStreamArgs {
  readonly 'job-id'?: string;
  readonly 'device': string;
  readonly 'base'?: string;
  readonly 'base-node'?: string;
  readonly 'speed'?: number;
  readonly 'on-error'?: OnError;
  readonly 'auto-finalize'?: boolean;
  readonly 'auto-dismiss'?: boolean;
}

/** One copy-on-read step (STREAM_CHUNK is 512 KiB in QEMU). */
export const STREAM_CHUNK_BYTES = 512 * 1024;

export interface StreamState {
  readonly top: BlockDriverState;
  readonly topChild: BdrvChild;
  /** The first node not streamed (stays the backing file), or null to pull everything. */
  readonly base: BlockDriverState | null;
  readonly nodes: BlockJobNodes;
  readonly graph: BlockGraph;
  readonly onError: OnError;
  readonly lenBytes: number;
}

/**
 * bdrv_change_backing_file: `bs`'s image now names `backing` (its filename, or
 * `backingFileStr`, and its format) as its backing file; null removes the backing file.
 * Returns 0 or a negative errno (-ENOTSUP when the format cannot record one).
 */
export function* coChangeBackingFile(bs: BlockDriverState, backing: BlockDriverState | null, backingFileStr: string | null = null): Co<number> {
  const change = bs.drv.changeBackingFile;
  if (change === undefined) return -Errno.ENOTSUP;
  if (backing === null) return yield* change.call(bs.drv, bs, null, null);
  return yield* change.call(bs.drv, bs, backingFileStr ?? backing.filename, backing.drv.formatName);
}

/** The nodes of `top`'s backing chain, top first. */
export function backingChain(top: BlockDriverState): BlockDriverState[] {
  const chain: BlockDriverState[] = [];
  let bs: BlockDriverState | null = top;
  for (let guard = 0; bs !== null; guard++) {
    assert(guard < 4096, 'backing chain does not end');
    chain.push(bs);
    bs = bs.backing?.bs ?? null;
  }
  return chain;
}

function* streamChunk(job: Job<StreamState>, offset: number, bytes: number): Co<{ ret: number; isRead: boolean; copied: number }> {
  const s = job.state;
  const inTop = yield* bdrvCoIsAllocated(s.topChild, offset, bytes);
  if (inTop.ret < 0) return { ret: inTop.ret, isRead: true, copied: 0 };
  const n = Math.max(1, Math.min(bytes, inTop.pnum));
  if (inTop.ret === 1) return { ret: 0, isRead: true, copied: n };
  const backing = s.top.backing?.bs ?? null;
  if (backing === null) return { ret: 0, isRead: true, copied: n };
  // Only data above the base is pulled up; what the base holds stays there.
  const above = yield* bdrvCoIsAllocatedAbove(backing, s.base, false, offset, n);
  if (above.ret < 0) return { ret: above.ret, isRead: true, copied: 0 };
  const m = Math.max(1, Math.min(n, above.pnum));
  if (above.ret === 0) return { ret: 0, isRead: true, copied: m };
  const buf = new Uint8Array(m);
  let ret = yield* bdrvCoPreadv(s.topChild, offset, m, buf, 0);
  if (ret < 0) return { ret, isRead: true, copied: 0 };
  ret = yield* bdrvCoPwritev(s.topChild, offset, m, buf, 0);
  return { ret, isRead: false, copied: ret < 0 ? 0 : m };
}

/** The stream job driver: copy-on-read of everything above `base`, then drop those backing files. */
export const streamDriver: JobDriver<StreamState> = {
  jobType: 'stream',
  *run(job) {
    const s = job.state;
    job.progressSetRemaining(s.lenBytes);
    let offset = 0;
    for (let guard = 0; offset < s.lenBytes; guard++) {
      assert(guard < 1 << 30, 'stream does not terminate');
      if (job.isCancelled) return 0;
      const { ret, isRead, copied } = yield* streamChunk(job, offset, Math.min(STREAM_CHUNK_BYTES, s.lenBytes - offset));
      if (ret < 0) {
        const action = job.errorAction(s.onError, isRead, -ret);
        if (action === 'report') return ret;
        if (action === 'stop') yield* job.pausePoint();
        continue;
      }
      offset += copied;
      job.progressUpdate(copied);
      job.rateLimitProcessed(copied);
      yield* job.rateLimitSleep();
    }
    return 0;
  },
  prepare(job) {
    const s = job.state;
    // stream_prepare only touches a top that has a backing file at all.
    if (s.top.backing === null) return 0;
    try {
      // bdrv_set_backing_hd(top, base): the streamed images leave the chain.
      s.graph.setBacking(s.top, s.base);
    } catch (error) {
      if (!(error instanceof BlockError)) throw error;
      job.err = error.message;
      return -Errno.EPERM;
    }
    // bdrv_change_backing_file: the image on disk names the base (or nothing) from now on.
    return job.loop.runCoroutine('stream-change-backing-file', coChangeBackingFile(s.top, s.base));
  },
  clean(job) {
    job.state.nodes.removeAll();
  },
};

/** qmp_block_stream: validation and the job (CREATED; the caller starts it). */
export function streamJobCreate(jobs: JobManager, graph: BlockGraph, args: BlockStreamArgs): Job<StreamState> {
  const top = graph.lookupBs(args.device, args.device);
  if (args.base !== undefined && args['base-node'] !== undefined) throw new BlockError("'base' and 'base-node' cannot be specified at the same time");
  const chain = backingChain(top);
  let base: BlockDriverState | null = null;
  if (args['base-node'] !== undefined) {
    base = graph.lookupBs(null, args['base-node']);
    if (!chain.includes(base) || base === top) throw new BlockError(`Node '${base.nodeName}' is not a backing image of '${args.device}'`);
  } else if (args.base !== undefined) {
    base = chain.find((bs) => bs !== top && bs.filename === args.base) ?? null;
    if (base === null) throw new BlockError(`Can't find '${args.base}' in the backing chain`);
  }
  const blocked = top.opIsBlocked('stream');
  if (blocked !== null) throw blocked;
  const len = top.getLength();
  if (len < 0) throw BlockError.withErrno(`Unable to get length for '${top.nodeName}'`, -len);
  const job = createJob<StreamState>(jobs, {
    id: args['job-id'] ?? args.device,
    driver: streamDriver,
    state: null as unknown as StreamState,
    speed: args.speed ?? 0,
    autoFinalize: args['auto-finalize'] ?? true,
    autoDismiss: args['auto-dismiss'] ?? true,
  });
  const nodes = new BlockJobNodes(graph, job as Job);
  try {
    const topChild = nodes.add('top', top, BlkPerm.CONSISTENT_READ | BlkPerm.WRITE, BlkPerm.ALL);
    job.state = { top, topChild, base, nodes, graph, onError: args['on-error'] ?? 'report', lenBytes: len };
    return job;
  } catch (error) {
    nodes.removeAll();
    earlyFailJob(job as Job);
    throw error;
  }
}
