import { BlockError } from '../../block/error.js';
import { bdrvDrainedBegin, bdrvDrainedEnd } from '../../block/io.js';
import type { BlockDriverState } from '../../block/node.js';
import { type ActionDriver, actionTypes, registerAction } from '../../blockjob/transaction.js';

interface SnapshotData {
  readonly node: string;
  readonly overlay: string;
}

interface SnapshotState {
  bs: BlockDriverState | null;
  overlay: BlockDriverState | null;
  backingSet: boolean;
  replaced: boolean;
}

/**
 * `blockdev-snapshot {node, overlay}` as a transaction action (external_snapshot_prepare with an
 * existing overlay node, QEMU 7.2's checks and wording): prepare drains the node, makes it the
 * overlay's backing file and moves every parent of the node onto the overlay (bdrv_append);
 * abort moves them back and detaches the backing file; clean ends the drained section.
 */
export const blockdevSnapshotAction: ActionDriver<SnapshotData, SnapshotState> = {
  type: 'blockdev-snapshot',
  grouped: false,
  newState: () => ({ bs: null, overlay: null, backingSet: false, replaced: false }),
  prepare(ctx, data, state) {
    const graph = ctx.env.graph;
    const bs = graph.lookupBs(data.node, data.node);
    const blocked = bs.opIsBlocked('external-snapshot');
    if (blocked !== null) throw blocked;
    ctx.poll();
    bdrvDrainedBegin(bs);
    state.bs = bs;
    const overlay = graph.lookupBs(data.overlay, data.overlay);
    if (overlay.parents.some((c) => c.parentNode === null)) throw new BlockError('The overlay is already in use');
    const overlayBlocked = overlay.opIsBlocked('external-snapshot');
    if (overlayBlocked !== null) throw overlayBlocked;
    if (overlay.backing !== null) throw new BlockError('The overlay already has a backing image');
    if (overlay.drv.supportsBacking !== true) throw new BlockError('The overlay does not support backing images');
    graph.setBacking(overlay, bs);
    state.overlay = overlay;
    state.backingSet = true;
    graph.replaceNode(bs, overlay);
    state.replaced = true;
  },
  abort(ctx, state) {
    const { bs, overlay } = state;
    if (bs === null || overlay === null) return;
    if (state.replaced) ctx.env.graph.replaceNode(overlay, bs);
    if (state.backingSet) ctx.env.graph.setBacking(overlay, null);
  },
  clean(_ctx, state) {
    if (state.bs !== null) bdrvDrainedEnd(state.bs);
  },
};

/** Registers the action unless the job library already provides one. */
export function registerSnapshotAction(): void {
  if (!actionTypes().includes(blockdevSnapshotAction.type)) registerAction(blockdevSnapshotAction as ActionDriver<never, unknown>);
}
