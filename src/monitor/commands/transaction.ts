import { type BitmapAddData, type BitmapMergeData, type BitmapNameData, blockDirtyBitmapAdd, blockDirtyBitmapMerge, blockDirtyBitmapRemove } from '../../blockjob/bitmap-actions.js';
import { type ActionSpec, type TransactionProperties, actionTypes, runTransaction } from '../../blockjob/transaction.js';
import { type CommandDef, type MonitorVm, defineCommand } from '../command.js';
import { type Schema, type StructSchema, bool, enumOf, int, listOf, str, struct, uint32, union } from '../schema.js';
import { blockEnv } from './block.js';
import { registerSnapshotAction } from './snapshot.js';

registerSnapshotAction();

const onError = enumOf('report', 'ignore', 'enospc', 'stop', 'auto');

/** BackupCommon, members in QAPI's order (the order "is missing" errors come in). */
const backupCommon: Record<string, Schema> = {
  'job-id?': str,
  device: str,
  sync: enumOf('full', 'top', 'none', 'incremental', 'bitmap'),
  'speed?': int,
  'bitmap?': str,
  'bitmap-mode?': enumOf('on-success', 'never', 'always'),
  'compress?': bool,
  'on-source-error?': onError,
  'on-target-error?': onError,
  'auto-finalize?': bool,
  'auto-dismiss?': bool,
  'filter-node-name?': str,
  'x-perf?': struct({ 'use-copy-range?': bool, 'max-workers?': int, 'max-chunk?': int }),
};

export const blockdevBackupArgs = struct({ ...backupCommon, target: str });
export const driveBackupArgs = struct({ ...backupCommon, target: str, 'format?': str, 'mode?': enumOf('existing', 'absolute-paths') });
const bitmapName = struct({ node: str, name: str });
const bitmapAdd = struct({ node: str, name: str, 'granularity?': uint32, 'persistent?': bool, 'disabled?': bool });
const bitmapMerge = struct({ node: str, target: str, bitmaps: listOf({ k: 'alternate', name: 'BlockDirtyBitmapOrStr', choices: [str, bitmapName] }) });
const snapshotSync = struct({ 'device?': str, 'node-name?': str, 'snapshot-file': str, 'snapshot-node-name?': str, 'format?': str, 'mode?': enumOf('existing', 'absolute-paths') });
const snapshot = struct({ node: str, overlay: str });

/** Every action's data schema (TransactionAction's variants). */
const ACTION_DATA: Readonly<Record<string, StructSchema>> = {
  abort: struct({}),
  'block-dirty-bitmap-add': bitmapAdd,
  'block-dirty-bitmap-remove': bitmapName,
  'block-dirty-bitmap-clear': bitmapName,
  'block-dirty-bitmap-enable': bitmapName,
  'block-dirty-bitmap-disable': bitmapName,
  'block-dirty-bitmap-merge': bitmapMerge,
  'blockdev-backup': blockdevBackupArgs,
  'drive-backup': driveBackupArgs,
  'blockdev-snapshot': snapshot,
  'blockdev-snapshot-sync': snapshotSync,
};

/**
 * The `transaction` schema from the actions the transaction engine implements: an action type it
 * lacks is refused by the schema ("Parameter 'type' does not accept value ..."), never half-run.
 */
function transactionArgs(): StructSchema {
  const known = actionTypes();
  const types = Object.keys(ACTION_DATA).filter((t) => known.includes(t));
  const variants: Record<string, Record<string, Schema>> = {};
  for (const t of types) variants[t] = { data: ACTION_DATA[t]! };
  return struct({
    actions: listOf(union({ type: enumOf(...types) }, 'type', variants)),
    'properties?': struct({ 'completion-mode?': enumOf('individual', 'grouped') }),
  });
}

/** Members of action data that name host files: confined by --allow-path before anything opens. */
const FILE_MEMBERS: Readonly<Record<string, string>> = { 'drive-backup': 'target', 'blockdev-snapshot-sync': 'snapshot-file' };

function checkActionFiles(vm: MonitorVm, actions: readonly ActionSpec[]): void {
  for (const action of actions) {
    const member = FILE_MEMBERS[action.type];
    const file = member !== undefined ? (action.data as Record<string, unknown>)[member] : undefined;
    if (typeof file === 'string') vm.paths.check(file);
  }
}

/** One-action transaction: how QEMU runs blockdev-backup and the bitmap commands. */
function single(type: string): CommandDef {
  return defineCommand<Record<string, unknown>>({
    name: type,
    args: ACTION_DATA[type]!,
    run: ({ vm }, args) => {
      const actions = [{ type, data: args }];
      checkActionFiles(vm, actions);
      runTransaction(blockEnv(vm), actions);
    },
  });
}

export function transactionCommands(): CommandDef[] {
  const known = actionTypes();
  const defs: CommandDef[] = [
    defineCommand<{ actions: ActionSpec[]; properties?: TransactionProperties }>({
      name: 'transaction',
      args: transactionArgs(),
      run: ({ vm }, args) => {
        checkActionFiles(vm, args.actions);
        runTransaction(blockEnv(vm), args.actions, args.properties ?? {});
      },
    }),
    defineCommand<BitmapAddData>({
      name: 'block-dirty-bitmap-add',
      args: bitmapAdd,
      run: ({ vm }, args) => {
        blockDirtyBitmapAdd(blockEnv(vm), args);
      },
    }),
    defineCommand<BitmapNameData>({ name: 'block-dirty-bitmap-remove', args: bitmapName, run: ({ vm }, args) => blockDirtyBitmapRemove(blockEnv(vm), args) }),
    defineCommand<BitmapMergeData>({
      name: 'block-dirty-bitmap-merge',
      args: bitmapMerge,
      run: ({ vm }, args) => {
        blockDirtyBitmapMerge(blockEnv(vm), args);
      },
    }),
  ];
  for (const type of ['block-dirty-bitmap-clear', 'block-dirty-bitmap-enable', 'block-dirty-bitmap-disable', 'blockdev-backup', 'drive-backup', 'blockdev-snapshot', 'blockdev-snapshot-sync']) {
    if (known.includes(type)) defs.push(single(type));
  }
  return defs;
}
