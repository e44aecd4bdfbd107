import type { BlockDriverState } from '../block/node.js';
import { bdrvDrain, bdrvDrainedBegin, bdrvDrainedEnd } from '../block/node.js';
import { type Job, startJob } from './job.js';
import { type BackupState, type BlockdevBackupArgs, doBackupCommon } from './backup.js';
import type { ActionContext, ActionDriver, TransactionEnv } from './transaction.js';
import { type DriveBackupArgs, effectiveDriveSync, openDriveBackupTarget } from './drive-backup.js';

interface BackupActionState {
  bs: BlockDriverState | null;
  drained: boolean;
  job: Job<BackupState> | null;
}

/** bdrv_get_device_name: the BlockBackend a node is the root of, or "". */
function deviceName(env: TransactionEnv, bs: BlockDriverState): string {
  for (const backend of env.graph.backends.values()) if (backend.rootNode === bs) return backend.name;
  return '';
}

/**
 * blockdev-backup as a transaction action: prepare looks the nodes up, drains the source (held
 * until clean, so nothing writes to it between the point in time and the start) and creates the
 * job; commit starts it; abort force-cancels it. With the TEST-ONLY `legacyStartInPrepare` it
 * behaves as QEMU did before 2016: the job starts in prepare and no drained section is held.
 */
export const blockdevBackupAction: ActionDriver<BlockdevBackupArgs, BackupActionState> = {
  type: 'blockdev-backup',
  grouped: true,
  newState: () => ({ bs: null, drained: false, job: null }),
  prepare(ctx: ActionContext, data, state) {
    const graph = ctx.env.graph;
    const bs = graph.lookupBs(data.device, data.device);
    const target = graph.lookupBs(data.target, data.target);
    state.bs = bs;
    // QEMU's drain runs pending bottom halves before it waits for requests.
    ctx.poll();
    if (ctx.env.legacyStartInPrepare === true) {
      bdrvDrain(bs);
    } else {
      bdrvDrainedBegin(bs);
      state.drained = true;
    }
    const args = data['job-id'] === undefined ? { ...data, 'job-id': deviceName(ctx.env, bs) } : data;
    state.job = doBackupCommon(ctx.env.jobs, graph, args, bs, target, ctx.jobTxn);
    if (ctx.env.legacyStartInPrepare === true) startJob(state.job as Job);
  },
  commit(ctx, state) {
    if (state.job !== null && ctx.env.legacyStartInPrepare !== true) startJob(state.job as Job);
  },
  abort(_ctx, state) {
    if (state.job !== null) state.job.cancelSync(true);
  },
  clean(_ctx, state) {
    if (state.drained && state.bs !== null) bdrvDrainedEnd(state.bs);
    state.drained = false;
  },
};

interface DriveBackupState extends BackupActionState {
  target: BlockDriverState | null;
}

/** drive-backup: as blockdev-backup, with the target file opened (or created) in prepare. */
export const driveBackupAction: ActionDriver<DriveBackupArgs, DriveBackupState> = {
  type: 'drive-backup',
  grouped: true,
  newState: () => ({ bs: null, drained: false, job: null, target: null }),
  prepare(ctx: ActionContext, data, state) {
    const graph = ctx.env.graph;
    const bs = graph.lookupBs(data.device, data.device);
    state.bs = bs;
    ctx.poll();
    if (ctx.env.legacyStartInPrepare === true) {
      bdrvDrain(bs);
    } else {
      bdrvDrainedBegin(bs);
      state.drained = true;
    }
    state.target = openDriveBackupTarget((options) => graph.blockdevAdd(options as never), bs, data);
    const sync = effectiveDriveSync(bs, data.sync);
    const args = { ...data, sync, ...(data['job-id'] === undefined ? { 'job-id': deviceName(ctx.env, bs) } : {}) };
    state.job = doBackupCommon(ctx.env.jobs, graph, args, bs, state.target, ctx.jobTxn, true);
    if (ctx.env.legacyStartInPrepare === true) startJob(state.job as Job);
  },
  commit: blockdevBackupAction.commit as (ctx: ActionContext, state: DriveBackupState) => void,
  abort(ctx, state) {
    blockdevBackupAction.abort?.(ctx, state);
    // No job took the target over: the implicit node goes away with the transaction.
    const target = state.target;
    if (target !== null && !target.closed && target.parents.length === 0) ctx.env.jobs.loop.runCoroutine('drive-backup-close', ctx.env.graph.coCloseTree(target));
  },
  clean: blockdevBackupAction.clean as (ctx: ActionContext, state: DriveBackupState) => void,
};

export const backupActions: readonly ActionDriver<never, unknown>[] = [blockdevBackupAction as ActionDriver<never, unknown>, driveBackupAction as ActionDriver<never, unknown>];
