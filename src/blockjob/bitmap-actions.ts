import { assert } from '../engine/assert.js';
import type { Co } from '../engine/coroutine.js';
import type { MainLoop } from '../engine/main-loop.js';
import { BlockError } from '../block/error.js';
import type { BlockDriverState } from '../block/node.js';
import {
  type BdrvDirtyBitmap,
  type BitmapBackup,
  BitmapCheck,
  bdrvClearDirtyBitmap,
  bdrvCreateDirtyBitmap,
  bdrvEnableDirtyBitmap,
  bdrvMergeDirtyBitmap,
  bdrvReleaseDirtyBitmap,
  bdrvRestoreDirtyBitmap,
  coBlockDirtyBitmapAdd,
} from '../block/dirty-bitmap.js';
import type { ActionContext, ActionDriver, TransactionEnv } from './transaction.js';

/** `block-dirty-bitmap-add` arguments. */
export interface BitmapAddData {
  readonly node: string;
  readonly name: string;
  readonly granularity?: number;
  readonly persistent?: boolean;
  readonly disabled?: boolean;
}

/** `block-dirty-bitmap-{remove,clear,enable,disable}` arguments. */
export interface BitmapNameData {
  readonly node: string;
  readonly name: string;
}

/** `block-dirty-bitmap-merge` arguments: sources are names on `node` or {node, name}. */
export interface BitmapMergeData {
  readonly node: string;
  readonly target: string;
  readonly bitmaps: readonly (string | BitmapNameData)[];
}

/** bdrv_lookup_bs(device, node): QEMU's error when neither names anything. */
export function lookupBs(env: TransactionEnv, device: string, node: string = device): BlockDriverState {
  return env.graph.lookupBs(device, node);
}

/** block_dirty_bitmap_lookup. */
export function lookupBitmap(env: TransactionEnv, node: string, name: string): { bs: BlockDriverState; bitmap: BdrvDirtyBitmap } {
  let bs: BlockDriverState;
  try {
    bs = env.graph.lookupBs(node, node);
  } catch (error) {
    if (!(error instanceof BlockError)) throw error;
    throw new BlockError(`Node '${node}' not found`);
  }
  const bitmap = bs.findDirtyBitmap(name);
  if (bitmap === undefined) throw new BlockError(`Dirty bitmap '${name}' not found`);
  return { bs, bitmap };
}

/** Runs a block-layer coroutine to completion from the main loop, turning its user error into a throw. */
export function runBlockCo<T>(loop: MainLoop, name: string, body: Co<T>): T {
  const outcome = loop.runCoroutine(
    name,
    (function* (): Co<{ ok: true; value: T } | { ok: false; error: unknown }> {
      try {
        return { ok: true, value: yield* body };
      } catch (error) {
        if (!(error instanceof BlockError)) throw error;
        return { ok: false, error };
      }
    })(),
  );
  if (!outcome.ok) throw outcome.error;
  return outcome.value;
}

/** qmp_block_dirty_bitmap_add, also the QMP command. */
export function blockDirtyBitmapAdd(env: TransactionEnv, data: BitmapAddData): BdrvDirtyBitmap {
  if (data.name === '') throw new BlockError('Bitmap name cannot be empty');
  const bs = lookupBs(env, data.node);
  return runBlockCo(env.jobs.loop, 'block-dirty-bitmap-add', coBlockDirtyBitmapAdd(bs, data));
}

/**
 * block_dirty_bitmap_remove with release = false: checks, drops a persistent bitmap from the
 * image (as QEMU does, already in prepare), and returns the bitmap for the caller to release.
 */
function bitmapRemoveCheck(env: TransactionEnv, data: BitmapNameData): BdrvDirtyBitmap {
  const { bs, bitmap } = lookupBitmap(env, data.node, data.name);
  const error = bitmap.check(BitmapCheck.BUSY | BitmapCheck.RO);
  if (error !== null) throw error;
  if (bitmap.persistent && bs.drv.removePersistentDirtyBitmap !== undefined) {
    const remove = bs.drv.removePersistentDirtyBitmap;
    const failure = runBlockCo(env.jobs.loop, 'bitmap-remove-persistent', remove.call(bs.drv, bs, data.name));
    if (failure !== null) throw failure;
  }
  return bitmap;
}

/** block-dirty-bitmap-remove (the QMP command). */
export function blockDirtyBitmapRemove(env: TransactionEnv, data: BitmapNameData): void {
  bdrvReleaseDirtyBitmap(bitmapRemoveCheck(env, data));
}

/** block-dirty-bitmap-merge: merges all sources into an anonymous bitmap first, so a bad source changes nothing. */
export function blockDirtyBitmapMerge(env: TransactionEnv, data: BitmapMergeData): BitmapBackup {
  const { bs, bitmap: dest } = lookupBitmap(env, data.node, data.target);
  const destError = dest.check(BitmapCheck.DEFAULT);
  if (destError !== null) throw destError;
  const anon = bdrvCreateDirtyBitmap(bs, dest.granularity, null);
  try {
    for (const source of data.bitmaps) {
      let src: BdrvDirtyBitmap | undefined;
      if (typeof source === 'string') {
        src = bs.findDirtyBitmap(source);
        if (src === undefined) throw new BlockError(`Dirty bitmap '${source}' not found`);
      } else {
        src = lookupBitmap(env, source.node, source.name).bitmap;
      }
      bdrvMergeDirtyBitmap(anon, src);
    }
    return bdrvMergeDirtyBitmap(dest, anon);
  } finally {
    bdrvReleaseDirtyBitmap(anon);
  }
}

interface AddState {
  prepared: boolean;
  data: BitmapAddData | null;
}

const addAction: ActionDriver<BitmapAddData, AddState> = {
  type: 'block-dirty-bitmap-add',
  grouped: false,
  newState: () => ({ prepared: false, data: null }),
  prepare(ctx: ActionContext, data, state) {
    blockDirtyBitmapAdd(ctx.env, data);
    state.data = data;
    state.prepared = true;
  },
  abort(ctx, state) {
    // The bitmap was created in prepare: an aborted transaction takes it away again. By name, as
    // QEMU's qmp_block_dirty_bitmap_remove: a backup of this transaction that used the bitmap
    // (aborted before us, actions abort in reverse) may have replaced the object with its
    // successor (bitmap-mode=always abdicates), and that one carries the name now.
    if (!state.prepared || state.data === null) return;
    try {
      blockDirtyBitmapRemove(ctx.env, state.data);
    } catch (error) {
      assert(!(error instanceof BlockError), () => `bitmap '${state.data!.name}' added by the transaction cannot be removed on abort: ${(error as Error).message}`);
      throw error;
    }
  },
};

interface RemoveState {
  bitmap: BdrvDirtyBitmap | null;
}

const removeAction: ActionDriver<BitmapNameData, RemoveState> = {
  type: 'block-dirty-bitmap-remove',
  grouped: false,
  newState: () => ({ bitmap: null }),
  prepare(ctx, data, state) {
    const bitmap = bitmapRemoveCheck(ctx.env, data);
    // Busy until commit, so no other action (or job) of this transaction can use it.
    bitmap.busy = true;
    state.bitmap = bitmap;
  },
  commit(_ctx, state) {
    if (state.bitmap === null) return;
    state.bitmap.busy = false;
    bdrvReleaseDirtyBitmap(state.bitmap);
  },
  abort(_ctx, state) {
    if (state.bitmap !== null) state.bitmap.busy = false;
  },
};

interface BackupState {
  backup: BitmapBackup | null;
}

const clearAction: ActionDriver<BitmapNameData, BackupState> = {
  type: 'block-dirty-bitmap-clear',
  grouped: false,
  newState: () => ({ backup: null }),
  prepare(ctx, data, state) {
    const { bitmap } = lookupBitmap(ctx.env, data.node, data.name);
    state.backup = bdrvClearDirtyBitmap(bitmap);
  },
  abort(_ctx, state) {
    if (state.backup !== null) bdrvRestoreDirtyBitmap(state.backup);
  },
  commit(_ctx, state) {
    state.backup = null;
  },
};

interface EnableState {
  bitmap: BdrvDirtyBitmap | null;
  wasEnabled: boolean;
}

function enableAction(enable: boolean): ActionDriver<BitmapNameData, EnableState> {
  return {
    type: enable ? 'block-dirty-bitmap-enable' : 'block-dirty-bitmap-disable',
    grouped: false,
    newState: () => ({ bitmap: null, wasEnabled: false }),
    prepare(ctx, data, state) {
      const { bitmap } = lookupBitmap(ctx.env, data.node, data.name);
      const wasEnabled = !bitmap.disabled;
      bdrvEnableDirtyBitmap(bitmap, enable);
      state.bitmap = bitmap;
      state.wasEnabled = wasEnabled;
    },
    abort(_ctx, state) {
      if (state.bitmap !== null) state.bitmap.disabled = !state.wasEnabled;
    },
  };
}

const mergeAction: ActionDriver<BitmapMergeData, BackupState> = {
  type: 'block-dirty-bitmap-merge',
  grouped: false,
  newState: () => ({ backup: null }),
  prepare(ctx, data, state) {
    state.backup = blockDirtyBitmapMerge(ctx.env, data);
  },
  abort(_ctx, state) {
    if (state.backup !== null) bdrvRestoreDirtyBitmap(state.backup);
  },
  commit(_ctx, state) {
    state.backup = null;
  },
};

/** The bitmap transaction actions, each undone by its abort. */
export const bitmapActions: readonly ActionDriver<never, unknown>[] = [
  addAction as ActionDriver<never, unknown>,
  removeAction as ActionDriver<never, unknown>,
  clearAction as ActionDriver<never, unknown>,
  enableAction(true) as ActionDriver<never, unknown>,
  enableAction(false) as ActionDriver<never, unknown>,
  mergeAction as ActionDriver<never, unknown>,
];
