import { assert } from '../engine/assert.js';
import { BlkPerm, type ChildPerms, ChildRole, permNames } from './driver.js';
import { BlockError } from './error.js';
import type { BdrvChild, BlockDriverState } from './node.js';

/** Permissions a filter passes through to its child unchanged (DEFAULT_PERM_PASSTHROUGH). */
const PERM_PASSTHROUGH = BlkPerm.CONSISTENT_READ | BlkPerm.WRITE | BlkPerm.WRITE_UNCHANGED | BlkPerm.RESIZE;
/** Permissions a filter always shares (DEFAULT_PERM_UNCHANGED). */
const PERM_UNCHANGED = BlkPerm.ALL & ~PERM_PASSTHROUGH;

/** bdrv_filter_default_perms: a filter takes what its parents take and shares what they share. */
export function filterDefaultPerms(parentPerm: number, parentShared: number): ChildPerms {
  return {
    perm: parentPerm & PERM_PASSTHROUGH,
    shared: (parentShared & PERM_PASSTHROUGH) | PERM_UNCHANGED,
  };
}

/**
 * bdrv_default_perms_for_storage: a format driver's image file. With METADATA the driver writes
 * metadata whenever the node is writable, so it takes WRITE|RESIZE then and never shares them:
 * a second writable format node on the same file is refused.
 */
export function storageDefaultPerms(bs: BlockDriverState, role: number, parentPerm: number, parentShared: number): ChildPerms {
  let { perm, shared } = filterDefaultPerms(parentPerm, parentShared);
  if ((role & ChildRole.METADATA) !== 0) {
    if (!bs.readOnly) perm |= BlkPerm.WRITE | BlkPerm.RESIZE;
    perm |= BlkPerm.CONSISTENT_READ;
    shared &= ~(BlkPerm.WRITE | BlkPerm.RESIZE);
  }
  if ((role & ChildRole.DATA) !== 0) {
    // Guest writes reach the data child; a resize of the parent resizes it.
    if ((parentPerm & BlkPerm.WRITE) !== 0) perm |= BlkPerm.WRITE;
    if ((parentPerm & BlkPerm.RESIZE) !== 0) perm |= BlkPerm.RESIZE;
  }
  return { perm, shared };
}

/**
 * bdrv_default_perms_for_cow: a backing file is only read (copy-on-write source), and others may
 * write it (commit of an intermediate node) and resize it.
 */
export function cowDefaultPerms(parentShared: number): ChildPerms {
  return {
    perm: BlkPerm.CONSISTENT_READ,
    shared: (parentShared & BlkPerm.CONSISTENT_READ) | BlkPerm.WRITE | BlkPerm.WRITE_UNCHANGED | BlkPerm.RESIZE | BlkPerm.GRAPH_MOD,
  };
}

/** bdrv_default_perms: dispatches on the child's role. */
export function defaultChildPerms(bs: BlockDriverState, role: number, parentPerm: number, parentShared: number): ChildPerms {
  if ((role & ChildRole.FILTERED) !== 0) return filterDefaultPerms(parentPerm, parentShared);
  if ((role & ChildRole.COW) !== 0) return cowDefaultPerms(parentShared);
  if ((role & (ChildRole.DATA | ChildRole.METADATA)) !== 0) return storageDefaultPerms(bs, role, parentPerm, parentShared);
  return filterDefaultPerms(parentPerm, parentShared);
}

/** Bound on nodes visited by one permission update: far beyond any real graph. */
const MAX_PERM_UPDATE_STEPS = 1 << 16;

/**
 * bdrv_parent_perms_conflict: checks that no parent of `bs` takes a permission another parent
 * does not share, reading permissions through `get` (tentative values). Parents are visited
 * newest first (QEMU inserts at the head of the list), so the message names the same users in
 * the same roles as QEMU 7.2's.
 */
function checkParents(bs: BlockDriverState, get: (c: BdrvChild) => ChildPerms): BlockError | null {
  const parents = bs.parents;
  for (let i = parents.length - 1; i >= 0; i--) {
    const a = parents[i]!;
    const pa = get(a);
    for (let j = parents.length - 1; j >= 0; j--) {
      const b = parents[j]!;
      if (a === b) continue;
      const pb = get(b);
      const denied = pb.perm & ~pa.shared;
      if (denied !== 0) {
        return new BlockError(
          `Permission conflict on node '${bs.nodeName}': permissions '${permNames(denied)}' are both required by ${b.parent.parentDescription()} (uses node '${bs.nodeName}' as '${b.name}' child) and unshared by ${a.parent.parentDescription()} (uses node '${bs.nodeName}' as '${a.name}' child).`,
        );
      }
    }
  }
  return null;
}

/**
 * Applies new permissions to some edges and recomputes everything below them (each node's
 * children get `drv.childPerms` of the node's new cumulative permissions), checking every node
 * whose parents changed. All or nothing: on a conflict nothing changes and the error returns.
 * The walk is iterative (graphs come from user options and image data: no recursion).
 */
export function updatePerms(changes: ReadonlyMap<BdrvChild, ChildPerms>, recheck: readonly BlockDriverState[] = []): BlockError | null {
  const pending = new Map<BdrvChild, ChildPerms>(changes);
  const get = (c: BdrvChild): ChildPerms => pending.get(c) ?? { perm: c.perm, shared: c.shared };
  const queue: BlockDriverState[] = [];
  const queued = new Set<BlockDriverState>();
  const push = (bs: BlockDriverState): void => {
    if (queued.has(bs)) return;
    queued.add(bs);
    queue.push(bs);
  };
  for (const child of changes.keys()) push(child.bs);
  for (const bs of recheck) push(bs);
  let steps = 0;
  for (let head = 0; head < queue.length; head++) {
    steps++;
    assert(steps < MAX_PERM_UPDATE_STEPS, 'permission update does not terminate (graph cycle?)');
    const bs = queue[head]!;
    const conflict = checkParents(bs, get);
    if (conflict !== null) return conflict;
    let perm = 0;
    let shared = BlkPerm.ALL;
    for (const parent of bs.parents) {
      const p = get(parent);
      perm |= p.perm;
      shared &= p.shared;
    }
    if ((perm & BlkPerm.WRITE) !== 0 && bs.readOnly) return new BlockError('Block node is read-only');
    for (const child of bs.children) {
      const next = bs.drv.childPerms(bs, child, child.role, perm, shared);
      const now = get(child);
      if (next.perm !== now.perm || next.shared !== now.shared) {
        pending.set(child, next);
        // A node reached again with new input must be checked again.
        queued.delete(child.bs);
        push(child.bs);
      }
    }
  }
  for (const [child, perms] of pending) {
    child.perm = perms.perm;
    child.shared = perms.shared;
  }
  return null;
}
