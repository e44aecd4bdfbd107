import { assert } from '../../engine/assert.js';
import type { Co } from '../../engine/coroutine.js';
import { BlockCopyState } from '../block-copy.js';
import type { BlockDriver, BlockStatusOut, ChildPerms, OpenContext } from '../driver.js';
import { BlkPerm, BlockStatus, ChildRole } from '../driver.js';
import { Errno } from '../errno.js';
import { BlockError } from '../error.js';
import type { BlockGraph } from '../graph.js';
import { bdrvCoPdiscard, bdrvCoPreadv, bdrvCoPwriteZeroes, bdrvCoPwritev, bdrvDrainedBegin, bdrvDrainedEnd } from '../io.js';
import type { BlockDriverState } from '../node.js';
import { OptionReader } from '../options.js';
import { defaultChildPerms } from '../perms.js';

/** on-cbw-error: fail the guest write, or let it through and break the snapshot instead. */
export type OnCbwError = 'break-guest-write' | 'break-snapshot';

interface CbwState {
  readonly bcs: BlockCopyState;
  readonly onCbwError: OnCbwError;
  /** Set once a copy failed under break-snapshot: the target is no longer a valid snapshot. */
  snapshotError: number;
}

function state(bs: BlockDriverState): CbwState {
  return bs.opaque as CbwState;
}

/**
 * cbw_do_copy_before_write: copies the old contents of the clusters a write will touch to the
 * target (unless already copied). Under break-snapshot a failure lets the write through.
 */
function* copyBeforeWrite(bs: BlockDriverState, offset: number, bytes: number): Co<number> {
  const s = state(bs);
  if (s.snapshotError !== 0) return 0;
  const ret = yield* s.bcs.copy(offset, bytes);
  if (ret >= 0) return 0;
  if (s.onCbwError === 'break-guest-write') return ret;
  s.snapshotError = ret;
  return 0;
}

/**
 * `copy-before-write`: a filter over `file` that, before any write, zero write or discard reaches
 * `file`, copies the old data of the affected clusters to `target` (once per cluster). The
 * target thus keeps the point-in-time image of the moment the filter was inserted. The optional
 * `bitmap` ({node, name}) limits copying to its dirty clusters. Its BlockCopyState is shared
 * with the backup job (`cbwBlockCopyState`).
 */
export const copyBeforeWriteDriver: BlockDriver = {
  formatName: 'copy-before-write',
  isFilter: true,
  supportedWriteFlags: 0x7ff,
  supportedZeroFlags: 0x7ff,

  *open(bs: BlockDriverState, opts: OptionReader, ctx: OpenContext): Co<void> {
    const file = yield* ctx.openChild(bs, opts, 'file', ChildRole.FILTERED | ChildRole.PRIMARY, { required: true });
    const target = yield* ctx.openChild(bs, opts, 'target', ChildRole.DATA, { required: true });
    const onCbwError = opts.enumOf('on-cbw-error', ['break-guest-write', 'break-snapshot'] as const, 'break-guest-write');
    const bitmapRef = opts.raw('bitmap');
    const bcs = new BlockCopyState(file!, target!);
    if (bitmapRef !== undefined) {
      if (typeof bitmapRef !== 'object' || bitmapRef === null || Array.isArray(bitmapRef)) throw opts.invalidType('bitmap', 'BlockDirtyBitmap');
      const r = new OptionReader(bitmapRef as Readonly<Record<string, unknown>>, `${opts.prefix}bitmap.`);
      const nodeName = r.str('node', true);
      const name = r.str('name', true);
      r.finish();
      const node = ctx.graph.lookupBs(nodeName, nodeName);
      const bitmap = node.findDirtyBitmap(name);
      if (bitmap === undefined) throw new BlockError(`Dirty bitmap '${name}' not found`);
      if (bitmap.sizeBytes !== bcs.lengthBytes) throw new BlockError("Bitmaps are incompatible and can't be merged");
      bcs.copyBitmap.resetAll();
      bcs.copyBitmap.orFrom(bitmap);
    }
    bs.opaque = { bcs, onCbwError, snapshotError: 0 } satisfies CbwState;
    bs.totalBytes = file!.bs.getLength();
  },

  getLength(bs: BlockDriverState): number {
    return bs.file === null ? -Errno.ENOMEDIUM : bs.file.bs.getLength();
  },

  *preadv(bs: BlockDriverState, offset: number, bytes: number, buf: Uint8Array, flags: number): Co<number> {
    return yield* bdrvCoPreadv(bs.file!, offset, bytes, buf, flags);
  },

  *pwritev(bs: BlockDriverState, offset: number, bytes: number, buf: Uint8Array, flags: number): Co<number> {
    const ret = yield* copyBeforeWrite(bs, offset, bytes);
    if (ret < 0) return ret;
    return yield* bdrvCoPwritev(bs.file!, offset, bytes, buf, flags);
  },

  *pwriteZeroes(bs: BlockDriverState, offset: number, bytes: number, flags: number): Co<number> {
    const ret = yield* copyBeforeWrite(bs, offset, bytes);
    if (ret < 0) return ret;
    return yield* bdrvCoPwriteZeroes(bs.file!, offset, bytes, flags);
  },

  *pdiscard(bs: BlockDriverState, offset: number, bytes: number): Co<number> {
    const ret = yield* copyBeforeWrite(bs, offset, bytes);
    if (ret < 0) return ret;
    return yield* bdrvCoPdiscard(bs.file!, offset, bytes);
  },

  *blockStatus(bs: BlockDriverState, _wantZero: boolean, offset: number, bytes: number, out: BlockStatusOut): Co<number> {
    out.pnum = bytes;
    out.map = offset;
    out.file = bs.file!.bs;
    return BlockStatus.RAW | BlockStatus.OFFSET_VALID;
  },

  getInfo(bs: BlockDriverState) {
    const below = bs.file?.bs;
    return below?.drv.getInfo?.(below) ?? null;
  },

  childPerms(bs, _child, role, parentPerm, parentShared): ChildPerms {
    if ((role & ChildRole.FILTERED) === 0) {
      // Target (cbw_child_perm): we write it; others may write it too (a guest disk may sit in
      // the target's backing chain), but nobody may resize it: its size was checked up front.
      return { perm: BlkPerm.WRITE, shared: BlkPerm.ALL & ~BlkPerm.RESIZE };
    }
    const perms = defaultChildPerms(bs, role, parentPerm, parentShared);
    if (bs.parents.length === 0) return perms;
    let perm = perms.perm;
    if ((parentPerm & BlkPerm.WRITE) !== 0) perm |= BlkPerm.CONSISTENT_READ;
    return { perm, shared: perms.shared & ~(BlkPerm.WRITE | BlkPerm.RESIZE) };
  },
};

/** The BlockCopyState of a copy-before-write node (the backup job drives it too). */
export function cbwBlockCopyState(bs: BlockDriverState): BlockCopyState {
  assert(bs.drv === copyBeforeWriteDriver, () => `${bs.nodeName} is not a copy-before-write node`);
  return state(bs).bcs;
}

/** Negative errno of the copy that broke the snapshot (on-cbw-error=break-snapshot), or 0. */
export function cbwSnapshotError(bs: BlockDriverState): number {
  return state(bs).snapshotError;
}

/**
 * bdrv_cbw_append: opens a copy-before-write filter over `source` writing to `target` and moves
 * every parent of `source` (devices, other nodes) onto the filter, inside a drained section.
 * Returns the filter; its BlockCopyState is `cbwBlockCopyState(filter)`. Call it from outside
 * coroutines (it drains and runs the loop). Throws BlockError
 * (e.g. a permission conflict: nothing is changed then).
 */
export function bdrvCbwAppend(graph: BlockGraph, source: BlockDriverState, target: BlockDriverState, filterNodeName: string | null, extra: Readonly<Record<string, unknown>> = {}): BlockDriverState {
  const options: Record<string, unknown> = { driver: 'copy-before-write', file: source.nodeName, target: target.nodeName, ...extra };
  if (filterNodeName !== null) options['node-name'] = filterNodeName;
  bdrvDrainedBegin(source);
  try {
    const filter = graph.blockdevAdd(options, { monitorOwned: false });
    try {
      graph.replaceNode(source, filter, [filter, ...nodesBelow(filter)]);
    } catch (error) {
      graph.loop.runCoroutine('cbw-undo', graph.coCloseNode(filter, false));
      throw error;
    }
    return filter;
  } finally {
    bdrvDrainedEnd(source);
  }
}

/**
 * Every node reachable from `top` through its children (should_update_child: a parent of the
 * source that sits below the filter, e.g. a fleecing target backed by the source, keeps its
 * edge, or the replacement would make a cycle).
 */
function nodesBelow(top: BlockDriverState): BlockDriverState[] {
  const seen = new Set<BlockDriverState>([top]);
  const queue: BlockDriverState[] = [top];
  for (let head = 0; head < queue.length; head++) {
    assert(head < 1 << 16, 'graph walk does not terminate');
    for (const child of queue[head]!.children) {
      if (seen.has(child.bs)) continue;
      seen.add(child.bs);
      queue.push(child.bs);
    }
  }
  return queue.slice(1);
}

/**
 * bdrv_cbw_drop: moves the filter's parents back onto its `file` child and closes the filter
 * (the target and source stay open). From outside a coroutine the close (with its flush) runs
 * to the end; inside one (a job's clean) the close starts now and finishes in its own coroutine,
 * after the filter is already out of the graph's parent chains.
 */
export function bdrvCbwDrop(graph: BlockGraph, filter: BlockDriverState): void {
  assert(filter.drv === copyBeforeWriteDriver, 'drop of a node that is not copy-before-write');
  const source = filter.file?.bs;
  assert(source !== undefined, 'copy-before-write without file');
  bdrvDrainedBegin(filter);
  try {
    graph.replaceNode(filter, source, []);
  } finally {
    bdrvDrainedEnd(filter);
  }
  if (graph.loop.current === null) graph.loop.runCoroutine('cbw-drop', graph.coCloseNode(filter));
  else graph.loop.enter('cbw-drop', graph.coCloseNode(filter, false));
}
