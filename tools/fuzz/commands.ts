import fc from 'fast-check';

/**
 * The fuzzer's vocabulary: QMP-level actions on a small fixed pool of nodes. Commands are plain
 * data (msgpack-able) so a failure can be saved, shrunk and replayed.
 *
 * Pool (created with every VM): data disks d0, d1 (raw files, 4 clusters of 64 KiB) with
 * targets t0, t1; an empty disk e0 (null-co, 0 bytes) with target te; a disk f0 whose first
 * data read fails (raw over blkdebug) with target tf.
 */
export const CLUSTER_BYTES = 65536;
export const DATA_CLUSTERS = 4;
export const DATA_BYTES = CLUSTER_BYTES * DATA_CLUSTERS;

export const DATA_NODES = ['d0', 'd1'] as const;
export const BITMAP_NODES = ['d0', 'd1', 'f0'] as const;
export const BITMAPS = ['b0', 'b1'] as const;
export const JOBS = ['j0', 'j1', 'j2'] as const;
export const SYNCS = ['full', 'top', 'none', 'incremental', 'bitmap'] as const;
export const BITMAP_MODES = ['on-success', 'never', 'always'] as const;
export const VERBS = ['pause', 'resume', 'cancel', 'complete', 'finalize', 'dismiss', 'set-speed'] as const;

/** Source → target pairs that fit; the last one is deliberately invalid (same node). */
export const BACKUP_PAIRS = [
  ['d0', 't0'],
  ['d1', 't1'],
  ['e0', 'te'],
  ['f0', 'tf'],
  ['d0', 't1'],
  ['d0', 'd0'],
] as const;

export type DataNode = (typeof DATA_NODES)[number];
export type BitmapNode = (typeof BITMAP_NODES)[number];
export type BitmapName = (typeof BITMAPS)[number];
export type JobName = (typeof JOBS)[number];
export type Verb = (typeof VERBS)[number];

export type TxnAction =
  | {
      readonly type: 'blockdev-backup';
      readonly job: JobName;
      readonly pair: number;
      readonly sync: (typeof SYNCS)[number];
      readonly bitmap: BitmapName | null;
      readonly mode: (typeof BITMAP_MODES)[number] | null;
      readonly autoFinalize: boolean;
      readonly speed: number;
    }
  | { readonly type: 'block-dirty-bitmap-add' | 'block-dirty-bitmap-clear' | 'block-dirty-bitmap-enable' | 'block-dirty-bitmap-disable' | 'block-dirty-bitmap-remove'; readonly node: BitmapNode; readonly name: BitmapName }
  | { readonly type: 'block-dirty-bitmap-merge'; readonly node: BitmapNode; readonly name: BitmapName; readonly from: BitmapName }
  | { readonly type: 'abort' };

export type FuzzCommand =
  | { readonly cmd: 'write'; readonly node: DataNode; readonly cluster: number; readonly pattern: number }
  | { readonly cmd: 'txn'; readonly actions: readonly TxnAction[]; readonly grouped: boolean }
  | { readonly cmd: 'verb'; readonly verb: Verb; readonly job: JobName }
  | { readonly cmd: 'step'; readonly ns: number }
  | { readonly cmd: 'run' };

const bitmapActionArb: fc.Arbitrary<TxnAction> = fc.oneof(
  fc.record({
    type: fc.constantFrom('block-dirty-bitmap-add', 'block-dirty-bitmap-clear', 'block-dirty-bitmap-enable', 'block-dirty-bitmap-disable', 'block-dirty-bitmap-remove'),
    node: fc.constantFrom(...BITMAP_NODES),
    name: fc.constantFrom(...BITMAPS),
  }),
  fc.record({ type: fc.constant('block-dirty-bitmap-merge' as const), node: fc.constantFrom(...BITMAP_NODES), name: fc.constantFrom(...BITMAPS), from: fc.constantFrom(...BITMAPS) }),
);

const backupArb: fc.Arbitrary<TxnAction> = fc
  .record({
    type: fc.constant('blockdev-backup' as const),
    job: fc.constantFrom(...JOBS),
    // Empty disks are where the 2016 race lives: give them a fair share of the backups.
    pair: fc.oneof({ weight: 2, arbitrary: fc.constant(2) }, { weight: 5, arbitrary: fc.nat({ max: BACKUP_PAIRS.length - 1 }) }),
    sync: fc.constantFrom(...SYNCS),
    bitmap: fc.option(fc.constantFrom(...BITMAPS), { nil: null }),
    mode: fc.option(fc.constantFrom(...BITMAP_MODES), { nil: null }),
    autoFinalize: fc.boolean(),
    speed: fc.constantFrom(0, 0, 65536),
  })
  .map((a) => (a.sync === 'incremental' || a.sync === 'bitmap' ? { ...a, bitmap: a.bitmap ?? 'b0', mode: a.sync === 'bitmap' ? (a.mode ?? 'on-success') : null } : a));

/** Transactions: mostly backups and bitmap actions, now and then an abort action. */
export const txnActionArb: fc.Arbitrary<TxnAction> = fc.oneof(
  { weight: 4, arbitrary: backupArb },
  { weight: 3, arbitrary: bitmapActionArb },
  { weight: 1, arbitrary: fc.constant({ type: 'abort' as const }) },
);

export const commandArb: fc.Arbitrary<FuzzCommand> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ cmd: fc.constant('write' as const), node: fc.constantFrom(...DATA_NODES), cluster: fc.nat({ max: DATA_CLUSTERS - 1 }), pattern: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 4, arbitrary: fc.record({ cmd: fc.constant('txn' as const), actions: fc.array(txnActionArb, { minLength: 1, maxLength: 5 }), grouped: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ cmd: fc.constant('verb' as const), verb: fc.constantFrom(...VERBS), job: fc.constantFrom(...JOBS) }) },
  { weight: 1, arbitrary: fc.record({ cmd: fc.constant('step' as const), ns: fc.constantFrom(0, 1000, 1_000_000, 100_000_000) }) },
  { weight: 1, arbitrary: fc.constant({ cmd: 'run' as const }) },
);

/** A case: commands plus the scheduler's answers (consumed in order; past the end, natural order). */
export interface FuzzCase {
  readonly commands: readonly FuzzCommand[];
  readonly choices: readonly number[];
}

/** Cases of up to `maxCommands` commands (short cases find transaction-local races faster). */
export function caseArbWith(maxCommands: number): fc.Arbitrary<FuzzCase> {
  return fc.record({
    commands: fc.array(commandArb, { minLength: 1, maxLength: maxCommands }),
    choices: fc.array(fc.nat({ max: 15 }), { maxLength: 24 }),
  });
}

export const caseArb: fc.Arbitrary<FuzzCase> = caseArbWith(10);

/** The QMP arguments of a transaction action. */
export function actionToQmp(action: TxnAction): { type: string; data: Record<string, unknown> } {
  switch (action.type) {
    case 'abort':
      return { type: 'abort', data: {} };
    case 'blockdev-backup': {
      const [device, target] = BACKUP_PAIRS[action.pair] ?? BACKUP_PAIRS[0];
      const data: Record<string, unknown> = { 'job-id': action.job, device, target, sync: action.sync, 'auto-finalize': action.autoFinalize };
      if (action.bitmap !== null) data['bitmap'] = action.bitmap;
      if (action.mode !== null) data['bitmap-mode'] = action.mode;
      if (action.speed > 0) data['speed'] = action.speed;
      return { type: 'blockdev-backup', data };
    }
    case 'block-dirty-bitmap-merge':
      return { type: action.type, data: { node: action.node, target: action.name, bitmaps: [action.from] } };
    case 'block-dirty-bitmap-add':
      return { type: action.type, data: { node: action.node, name: action.name, granularity: CLUSTER_BYTES } };
    default:
      return { type: action.type, data: { node: action.node, name: action.name } };
  }
}

/** One line per command, for reports. */
export function describeCommand(command: FuzzCommand): string {
  switch (command.cmd) {
    case 'write':
      return `guest write ${command.node} cluster ${command.cluster} pattern 0x${command.pattern.toString(16)}`;
    case 'txn':
      return `transaction${command.grouped ? ' (grouped)' : ''}: ${command.actions.map((a) => JSON.stringify(actionToQmp(a))).join(', ')}`;
    case 'verb':
      return `job-${command.verb} ${command.job}`;
    case 'step':
      return `clock step ${command.ns} ns`;
    case 'run':
      return 'run until idle';
  }
}
