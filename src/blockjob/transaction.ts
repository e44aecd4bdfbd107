import { assert } from '../engine/assert.js';
import type { BlockGraph } from '../block/graph.js';
import type { JobManager } from './job.js';
import { JobTxn } from './job-txn.js';
import { JobError } from './job-errors.js';
import { bitmapActions } from './bitmap-actions.js';
import { backupActions } from './backup-actions.js';

declare module '../engine/trace.js' {
  interface TraceEventMap {
    'txn.phase': { txn: number; action: string; index: number; phase: string };
  }
}

/** ActionCompletionMode. */
export type CompletionMode = 'individual' | 'grouped';

export interface TransactionProperties {
  readonly 'completion-mode'?: CompletionMode;
}

/** One element of `transaction.actions`: `{type, data}` after QMP validated it. */
export interface ActionSpec {
  readonly type: string;
  readonly data: unknown;
}

/** What transaction actions reach the machine through. */
export interface TransactionEnv {
  readonly jobs: JobManager;
  readonly graph: BlockGraph;
  /**
   * TEST-ONLY. Restores QEMU's behaviour from before the 2016 fix (block_job_start): backup
   * actions start their job during prepare instead of commit, so an empty backup can finish
   * (and report COMPLETED) while a later action of the same transaction is still preparing and
   * then fails. It exists so the race tests can prove they catch that bug; never enable it
   * anywhere else.
   */
  readonly legacyStartInPrepare?: boolean;
}

/** What an action's callbacks get besides their own state. */
export interface ActionContext {
  readonly env: TransactionEnv;
  /** The shared JobTxn of a grouped transaction, else null (each job gets its own). */
  readonly jobTxn: JobTxn | null;
  /**
   * Flushes the main loop's pending work at the current instant, as QEMU's drain does
   * (bdrv_drain_poll_top_level runs pending bottom halves before it checks for requests).
   */
  poll(): void;
}

/**
 * One kind of transaction action (TransactionActionDrv). `prepare` may throw a user error; the
 * state it got is still handed to `abort` and `clean`, so it must record what it did as it goes.
 */
export interface ActionDriver<D = never, S = unknown> {
  readonly type: string;
  /** Allowed in a completion-mode = grouped transaction (only backups are). */
  readonly grouped: boolean;
  newState(): S;
  prepare(ctx: ActionContext, data: D, state: S): void;
  commit?(ctx: ActionContext, state: S): void;
  abort?(ctx: ActionContext, state: S): void;
  clean?(ctx: ActionContext, state: S): void;
}

/** The `abort` action: always fails its prepare. */
export const abortAction: ActionDriver<Record<string, never>, null> = {
  type: 'abort',
  grouped: false,
  newState: () => null,
  prepare() {
    throw new JobError('Transaction aborted using Abort action');
  },
};

/** Every action type the engine knows; more (backup, snapshot) are added with `registerAction`. */
const ACTIONS = new Map<string, ActionDriver<never, unknown>>();

export function registerAction(driver: ActionDriver<never, unknown>): void {
  assert(!ACTIONS.has(driver.type), () => `transaction action '${driver.type}' registered twice`);
  ACTIONS.set(driver.type, driver);
}

export function actionTypes(): string[] {
  return [...ACTIONS.keys()];
}

registerAction(abortAction as ActionDriver<never, unknown>);
for (const action of bitmapActions) registerAction(action as ActionDriver<never, unknown>);
for (const action of backupActions) registerAction(action as ActionDriver<never, unknown>);

/** Most actions in one transaction. */
export const MAX_TRANSACTION_ACTIONS = 1 << 12;

/** Bound on tasks one drain poll may run. */
export const POLL_MAX_TASKS = 10_000_000;

/** Observes the phases of transactions (tests and the fuzzer). */
export interface TransactionObserver {
  phase(txnSerial: number, action: string, index: number, phase: 'prepare' | 'prepare-failed' | 'commit' | 'abort' | 'clean'): void;
}

/** Serial numbers count per machine (JobManager): a run's trace must not depend on other VMs in the process. */
const txnSerials = new WeakMap<object, number>();
const observers: TransactionObserver[] = [];

export function observeTransactions(observer: TransactionObserver): () => void {
  observers.push(observer);
  return () => {
    const index = observers.indexOf(observer);
    if (index >= 0) observers.splice(index, 1);
  };
}

/** Runs ready work at the current instant (no time passes). */
export function pollPending(env: TransactionEnv): void {
  const loop = env.jobs.loop;
  loop.runUntil(() => loop.readyCount === 0, { untilNs: loop.nowNs, maxTasks: POLL_MAX_TASKS });
}

/**
 * qmp_transaction: checks completion-mode, drains, runs every action's prepare in order until one
 * fails, then commits all of them (or aborts all, the failing one included), then cleans all,
 * commit/abort/clean each in reverse order of the actions. Throws the first prepare error after
 * the rollback. Runs from the main loop, outside any coroutine, like a QMP command.
 */
export function runTransaction(env: TransactionEnv, actions: readonly ActionSpec[], properties: TransactionProperties = {}): void {
  const loop = env.jobs.loop;
  assert(loop.current === null, 'runTransaction inside a coroutine');
  if (actions.length > MAX_TRANSACTION_ACTIONS) throw new JobError(`Too many transaction actions (at most ${MAX_TRANSACTION_ACTIONS})`);
  const drivers: ActionDriver<never, unknown>[] = [];
  for (const action of actions) {
    const driver = ACTIONS.get(action.type);
    if (driver === undefined) throw new JobError(`Invalid parameter '${action.type}'`);
    drivers.push(driver);
  }
  const mode = properties['completion-mode'] ?? 'individual';
  if (mode !== 'individual') {
    for (const driver of drivers) {
      if (!driver.grouped) throw new JobError(`Action '${driver.type}' does not support Transaction property completion-mode = ${mode}`);
    }
  }
  const serial = (txnSerials.get(env.jobs) ?? 0) + 1;
  txnSerials.set(env.jobs, serial);
  const ctx: ActionContext = { env, jobTxn: mode === 'grouped' ? new JobTxn() : null, poll: () => pollPending(env) };
  const note = (index: number, phase: 'prepare' | 'prepare-failed' | 'commit' | 'abort' | 'clean') => {
    const type = drivers[index]!.type;
    loop.trace.emit('txn.phase', { txn: serial, action: type, index, phase });
    for (const observer of observers) observer.phase(serial, type, index, phase);
  };
  // bdrv_drain_all: nothing is in flight when the first action looks at the graph.
  ctx.poll();
  const states: unknown[] = [];
  let failure: unknown = null;
  for (let i = 0; i < drivers.length; i++) {
    const driver = drivers[i]!;
    const state = driver.newState();
    states.push(state);
    note(i, 'prepare');
    try {
      driver.prepare(ctx, actions[i]!.data as never, state);
    } catch (error) {
      if (!isUserError(error)) throw error;
      note(i, 'prepare-failed');
      failure = error;
      break;
    }
  }
  for (let i = states.length - 1; i >= 0; i--) {
    const driver = drivers[i]!;
    if (failure === null) {
      note(i, 'commit');
      driver.commit?.(ctx, states[i]);
    } else {
      note(i, 'abort');
      driver.abort?.(ctx, states[i]);
    }
  }
  for (let i = states.length - 1; i >= 0; i--) {
    note(i, 'clean');
    drivers[i]!.clean?.(ctx, states[i]);
  }
  if (failure !== null) throw failure;
}

/** Errors a user can cause (typed, with a QMP class); anything else is a bug and propagates. */
export function isUserError(error: unknown): error is Error & { errorClass: string } {
  return error instanceof Error && typeof (error as { errorClass?: unknown }).errorClass === 'string';
}
