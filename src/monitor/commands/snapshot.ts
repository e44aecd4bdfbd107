import { BlockError } from '../../block/error.js';
import { bdrvDrainedBegin, bdrvDrainedEnd } from '../../block/io.js';
import type { BlockDriverState } from '../../block/node.js';
import { HostFileIO } from '../../block/image/host-file.js';
import { createQcow2 } from '../../block/qcow2/create.js';
import type { BlockGraph } from '../../block/graph.js';
import { type ActionContext, type ActionDriver, actionTypes, registerAction } from '../../blockjob/transaction.js';

interface SnapshotData {
  readonly node: string;
  readonly overlay: string;
}

interface SnapshotState {
  bs: BlockDriverState | null;
  overlay: BlockDriverState | null;
  backingSet: boolean;
  replaced: boolean;
  /** snapshot-sync: the overlay node this action opened (closed again on abort). */
  opened: boolean;
}

/** bdrv_append: `overlay` gets `bs` as its backing file and takes over every parent of `bs`. */
function append(graph: BlockGraph, bs: BlockDriverState, overlay: BlockDriverState, state: SnapshotState): void {
  if (overlay.backing !== null) throw new BlockError('The overlay already has a backing image');
  if (overlay.drv.supportsBacking !== true) throw new BlockError('The overlay does not support backing images');
  graph.setBacking(overlay, bs);
  state.overlay = overlay;
  state.backingSet = true;
  graph.replaceNode(bs, overlay);
  state.replaced = true;
}

function undoAppend(ctx: ActionContext, state: SnapshotState): void {
  const { bs, overlay } = state;
  if (bs === null || overlay === null) return;
  if (state.replaced) ctx.env.graph.replaceNode(overlay, bs);
  if (state.backingSet) ctx.env.graph.setBacking(overlay, null);
  if (state.opened && !overlay.closed) ctx.env.jobs.loop.runCoroutine('snapshot-close', ctx.env.graph.coCloseTree(overlay));
}

/** The source node of a snapshot, drained until clean (external_snapshot_prepare's first half). */
function drainSource(ctx: ActionContext, device: string | null, nodeName: string | null, state: SnapshotState): BlockDriverState {
  const bs = ctx.env.graph.lookupBs(device, nodeName);
  const blocked = bs.opIsBlocked('external-snapshot');
  if (blocked !== null) throw blocked;
  ctx.poll();
  bdrvDrainedBegin(bs);
  state.bs = bs;
  return bs;
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
  newState: () => ({ bs: null, overlay: null, backingSet: false, replaced: false, opened: false }),
  prepare(ctx, data, state) {
    const graph = ctx.env.graph;
    drainSource(ctx, data.node, data.node, state);
    const overlay = graph.lookupBs(data.overlay, data.overlay);
    if (overlay.parents.some((c) => c.parentNode === null)) throw new BlockError('The overlay is already in use');
    const overlayBlocked = overlay.opIsBlocked('external-snapshot');
    if (overlayBlocked !== null) throw overlayBlocked;
    append(graph, state.bs!, overlay, state);
  },
  abort: undoAppend,
  clean(_ctx, state) {
    if (state.bs !== null) bdrvDrainedEnd(state.bs);
  },
};

interface SnapshotSyncData {
  readonly device?: string;
  readonly 'node-name'?: string;
  readonly 'snapshot-file': string;
  readonly 'snapshot-node-name'?: string;
  readonly format?: string;
  readonly mode?: 'existing' | 'absolute-paths';
}

/**
 * `blockdev-snapshot-sync`: with mode absolute-paths (the default) creates a qcow2 image backed by
 * the node's file, then opens it and appends it like blockdev-snapshot. The caller checked the
 * file name against --allow-path. An aborted transaction closes the new node (the file stays, as
 * in QEMU).
 */
export const blockdevSnapshotSyncAction: ActionDriver<SnapshotSyncData, SnapshotState> = {
  type: 'blockdev-snapshot-sync',
  grouped: false,
  newState: () => ({ bs: null, overlay: null, backingSet: false, replaced: false, opened: false }),
  prepare(ctx, data, state) {
    const graph = ctx.env.graph;
    const bs = drainSource(ctx, data.device ?? null, data['node-name'] ?? null, state);
    const format = data.format ?? 'qcow2';
    const file = data['snapshot-file'];
    if (format !== 'qcow2') throw new BlockError(`blockdev-snapshot-sync: format '${format}' is not supported (qcow2 only)`);
    const nodeName = data['snapshot-node-name'];
    if (nodeName !== undefined && graph.findNode(nodeName) !== undefined) throw new BlockError('New overlay node-name already in use');
    if ((data.mode ?? 'absolute-paths') === 'absolute-paths') {
      let io: HostFileIO;
      try {
        io = HostFileIO.open(file, { create: true });
      } catch (error) {
        throw new BlockError(`Could not create '${file}': ${(error as Error).message}`);
      }
      try {
        ctx.env.jobs.loop.runCoroutine('snapshot-create', createQcow2(io, { sizeBytes: bs.getLength(), backingFile: bs.filename, backingFormat: bs.drv.formatName }));
      } catch (error) {
        if (error instanceof Error && error.name === 'ImageError') throw new BlockError(`Could not create '${file}': ${error.message}`);
        throw error;
      } finally {
        io.close();
      }
    }
    const overlay = graph.blockdevAdd({ driver: format, ...(nodeName !== undefined ? { 'node-name': nodeName } : {}), file: { driver: 'file', filename: file }, backing: null }, { monitorOwned: false });
    state.opened = true;
    state.overlay = overlay;
    append(graph, bs, overlay, state);
  },
  abort: undoAppend,
  clean(ctx, state) {
    if (state.bs !== null) bdrvDrainedEnd(state.bs);
    // The action held the only reference to the new node: if nothing took it over (the old node
    // had no parents), it goes away now, as QEMU's bdrv_unref in external_snapshot_clean does.
    const overlay = state.overlay;
    if (state.opened && overlay !== null && !overlay.closed && overlay.parents.length === 0) {
      if (state.replaced) ctx.env.graph.setBacking(overlay, null);
      ctx.env.jobs.loop.runCoroutine('snapshot-unref', ctx.env.graph.coCloseTree(overlay));
    }
  },
};

/** Registers the action unless the job library already provides one. */
export function registerSnapshotAction(): void {
  for (const action of [blockdevSnapshotAction, blockdevSnapshotSyncAction] as ActionDriver<never, unknown>[]) {
    if (!actionTypes().includes(action.type)) registerAction(action);
  }
}
