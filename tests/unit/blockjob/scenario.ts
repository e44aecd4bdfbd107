import fc from 'fast-check';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { externalPolicy } from '../../../src/engine/policy.js';
import { AssertionError } from '../../../src/engine/assert.js';
import type { BlockBackend } from '../../../src/block/block-backend.js';
import { type ActionSpec, runTransaction, isUserError } from '../../../src/blockjob/transaction.js';
import { blockDirtyBitmapAdd } from '../../../src/blockjob/bitmap-actions.js';
import { isLegalTransition } from '../../../src/blockjob/job-status.js';
import type { Job } from '../../../src/blockjob/job.js';
import { blockRig, type BlockRig } from './block-helpers.js';

/** Cluster-sized units keep the model small: the source is 4 clusters of 64 KiB. */
export const CLUSTER = 65536;
export const CLUSTERS = 4;
export const SIZE = CLUSTER * CLUSTERS;
export const TARGETS = 3;

export type BackupKind = 'full' | 'incremental' | 'missing-bitmap';

export type ScenarioAction =
  | { type: 'backup'; target: number; kind: BackupKind; speed: number }
  | { type: 'bitmap-clear' }
  | { type: 'bitmap-add'; name: string }
  | { type: 'abort' };

export type ScenarioCommand =
  | { cmd: 'write'; cluster: number; offset: number; bytes: number; value: number }
  | { cmd: 'step'; ns: number }
  /** A guest flush: arms a one-shot EIO on the next read of the source (blkdebug, as iotests do). */
  | { cmd: 'flush' }
  /** Injects write errors on a target (EPERM: the node turns read-only) or lifts them. */
  | { cmd: 'fail-target'; target: number; failing: boolean }
  | { cmd: 'txn'; actions: ScenarioAction[]; grouped: boolean }
  | { cmd: 'verb'; job: number; verb: 'cancel' | 'pause' | 'resume' | 'complete' | 'finalize' | 'dismiss' | 'set-speed' };

export const actionArb: fc.Arbitrary<ScenarioAction> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ type: fc.constant('backup' as const), target: fc.integer({ min: 0, max: TARGETS - 1 }), kind: fc.constantFrom<BackupKind>('incremental', 'full', 'missing-bitmap'), speed: fc.constantFrom(0, 65536) }) },
  { weight: 1, arbitrary: fc.constant({ type: 'bitmap-clear' as const }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('bitmap-add' as const), name: fc.constantFrom('b1', 'b2') }) },
  { weight: 1, arbitrary: fc.constant({ type: 'abort' as const }) },
);

export const commandArb: fc.Arbitrary<ScenarioCommand> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ cmd: fc.constant('write' as const), cluster: fc.integer({ min: 0, max: CLUSTERS - 1 }), offset: fc.integer({ min: 0, max: CLUSTER - 1 }), bytes: fc.integer({ min: 1, max: 8192 }), value: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 2, arbitrary: fc.record({ cmd: fc.constant('step' as const), ns: fc.constantFrom(0, 1_000_000, 100_000_000, 2_000_000_000) }) },
  { weight: 1, arbitrary: fc.constant({ cmd: 'flush' as const }) },
  { weight: 1, arbitrary: fc.record({ cmd: fc.constant('fail-target' as const), target: fc.integer({ min: 0, max: TARGETS - 1 }), failing: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ cmd: fc.constant('txn' as const), actions: fc.array(actionArb, { minLength: 1, maxLength: 3 }), grouped: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ cmd: fc.constant('verb' as const), job: fc.integer({ min: 0, max: 5 }), verb: fc.constantFrom('cancel' as const, 'pause' as const, 'resume' as const, 'complete' as const, 'finalize' as const, 'dismiss' as const, 'set-speed' as const) }) },
);

/** A named invariant broke: the message says which and where. */
export class InvariantError extends Error {
  override readonly name = 'InvariantError';
}

interface TxnRecord {
  readonly index: number;
  readonly grouped: boolean;
  committed: boolean;
  /** False while runTransaction runs: nothing has decided yet whether the jobs may live. */
  decided: boolean;
  readonly jobIds: string[];
}

interface JobRecord {
  readonly id: string;
  readonly txn: TxnRecord;
  readonly kind: BackupKind;
  readonly target: number;
  /** Source bytes at the transaction's start (its point in time). */
  readonly snapshot: Uint8Array;
  /** Clusters the job had to copy (incremental: dirty in b0 at that point). */
  readonly clusters: boolean[];
  job: Job | null;
  hooks: string[];
  started: boolean;
  completedOk: boolean;
}

export interface ScenarioOptions {
  readonly legacyStartInPrepare: boolean;
  /** Answers for the scheduler's choice points (cycled; empty: natural order). */
  readonly choices: readonly number[];
}

/** Runs a command list against a fresh machine, checking every invariant after every step. */
export function runScenario(commands: readonly ScenarioCommand[], options: ScenarioOptions): void {
  let pick = 0;
  const policy = externalPolicy((_label, count) => {
    if (options.choices.length === 0) return 0;
    const answer = options.choices[pick % options.choices.length]! % count;
    pick++;
    return answer;
  });
  const rig = blockRig({ policy, legacyStartInPrepare: options.legacyStartInPrepare });
  try {
    runWithRig(rig, commands);
  } finally {
    rig.cleanup();
  }
}

function runWithRig(rig: BlockRig, commands: readonly ScenarioCommand[]): void {
  // The source is raw over blkdebug: a flush arms a one-shot read error (source-side I/O errors).
  const srcData = new Uint8Array(SIZE);
  for (let i = 0; i < SIZE; i++) srcData[i] = (i * 7 + 3) & 0xff;
  writeFileSync(join(rig.dir, 'src.img'), srcData);
  const src = rig.graph.blockdevAdd({
    'driver': 'raw',
    'node-name': 'src',
    'file': { 'driver': 'blkdebug', 'image': { driver: 'file', filename: join(rig.dir, 'src.img') }, 'inject-error': [{ event: 'flush_to_disk', iotype: 'read', errno: 5, once: true }] },
  });
  for (let t = 0; t < TARGETS; t++) rig.fileNode(`t${t}`, SIZE);
  const blk: BlockBackend = rig.backend(src, 'drive0');
  blockDirtyBitmapAdd(rig.env, { node: 'src', name: 'b0', granularity: CLUSTER });
  const records = new Map<string, JobRecord>();
  const txns: TxnRecord[] = [];
  let jobSerial = 0;
  const fail = (name: string, detail: string) => {
    throw new InvariantError(`invariant '${name}' broken: ${detail}`);
  };

  rig.jobs.observe({
    transition(job, from, to) {
      if (!isLegalTransition(from, to)) fail('legal-transitions', `${job.id ?? job.name}: ${from} -> ${to}`);
    },
    hook(job, hook) {
      records.get(job.id ?? '')?.hooks.push(hook);
    },
    started(job) {
      const record = records.get(job.id ?? '');
      if (record !== undefined) record.started = true;
    },
  });
  rig.jobs.events.subscribe((event) => {
    if (event.event !== 'BLOCK_JOB_COMPLETED' || event.data.error !== undefined) return;
    const record = records.get(event.data.device);
    if (record === undefined) return;
    record.completedOk = true;
    if (!record.txn.committed) fail('aborted-txn-never-completes', `job '${record.id}' completed although its transaction (#${record.txn.index}) aborted`);
    // Completing before the transaction is decided is the same race: a later action's failure
    // could no longer stop the job (its grouped siblings may then end the other way).
    if (!record.txn.decided) fail('aborted-txn-never-completes', `job '${record.id}' completed before its transaction (#${record.txn.index}) was decided`);
    // Point in time: every cluster the job had to copy holds the source as of the transaction.
    const target = new Uint8Array(readFileSync(join(rig.dir, `t${record.target}.img`)));
    for (let c = 0; c < CLUSTERS; c++) {
      if (!record.clusters[c]) continue;
      const a = target.subarray(c * CLUSTER, (c + 1) * CLUSTER);
      const b = record.snapshot.subarray(c * CLUSTER, (c + 1) * CLUSTER);
      if (Buffer.compare(a, b) !== 0) fail('point-in-time', `job '${record.id}': cluster ${c} of t${record.target} differs from the source at its start`);
    }
  });

  const jobList = () => [...records.values()].filter((r) => r.job !== null);

  for (const [step, command] of commands.entries()) {
    switch (command.cmd) {
      case 'write': {
        const offset = Math.min(command.cluster * CLUSTER + command.offset, SIZE - command.bytes);
        rig.write(blk, offset, new Uint8Array(command.bytes).fill(command.value));
        break;
      }
      case 'step':
        rig.loop.step(command.ns);
        break;
      case 'flush':
        rig.loop.runCoroutine('guest-flush', blk.coFlush());
        break;
      case 'fail-target':
        rig.graph.lookupNode(`t${command.target}`).readOnly = command.failing;
        break;
      case 'txn': {
        const record: TxnRecord = { index: step, grouped: command.grouped, committed: false, decided: false, jobIds: [] };
        txns.push(record);
        const snapshot = rig.fileBytes('src');
        const b0 = src.findDirtyBitmap('b0');
        let b0Cleared = false;
        const specs: ActionSpec[] = command.actions.map((action) => {
          switch (action.type) {
            case 'backup': {
              const id = `j${jobSerial++}`;
              record.jobIds.push(id);
              const clusters = Array.from({ length: CLUSTERS }, (_, c) => action.kind === 'full' || (!b0Cleared && b0 !== undefined && !b0.busy && b0.get(c * CLUSTER)));
              records.set(id, { id, txn: record, kind: action.kind, target: action.target, snapshot, clusters, job: null, hooks: [], started: false, completedOk: false });
              const sync = action.kind === 'full' ? { sync: 'full' } : { 'sync': 'incremental', 'bitmap': action.kind === 'missing-bitmap' ? 'missing' : 'b0' };
              return { type: 'blockdev-backup', data: { 'device': 'src', 'target': `t${action.target}`, 'job-id': id, 'speed': action.speed, ...sync } };
            }
            case 'bitmap-clear':
              b0Cleared = true;
              return { type: 'block-dirty-bitmap-clear', data: { node: 'src', name: 'b0' } };
            case 'bitmap-add':
              return { type: 'block-dirty-bitmap-add', data: { node: 'src', name: action.name } };
            case 'abort':
              return { type: 'abort', data: {} };
          }
        });
        // Jobs get their record before the transaction so that events during it find them.
        try {
          record.committed = true;
          runTransaction(rig.env, specs, command.grouped ? { 'completion-mode': 'grouped' } : {});
        } catch (error) {
          record.committed = false;
          if (!isUserError(error)) throw error;
        } finally {
          record.decided = true;
        }
        for (const id of record.jobIds) {
          const r = records.get(id)!;
          r.job = rig.jobs.get(id) ?? null;
          if (!record.committed && r.started && !options_legacy(rig)) fail('aborted-txn-never-starts', `job '${id}' started in aborted transaction #${step}`);
          if (!record.committed && r.completedOk) fail('aborted-txn-never-completes', `job '${id}' completed although its transaction (#${step}) aborted`);
        }
        if (!record.committed) {
          // Its jobs are gone: keep no handle on them.
          for (const id of record.jobIds) records.get(id)!.job = null;
        }
        break;
      }
      case 'verb': {
        const list = jobList();
        const record = list[command.job % Math.max(1, list.length)];
        const job = record?.job;
        if (job === undefined || job === null || job.status === 'null') break;
        const before = jobSnapshot(job);
        try {
          switch (command.verb) {
            case 'cancel':
              job.userCancel(true);
              break;
            case 'pause':
              job.userPause();
              break;
            case 'resume':
              job.userResume();
              break;
            case 'complete':
              job.complete();
              break;
            case 'finalize':
              job.finalize();
              break;
            case 'dismiss':
              job.dismiss();
              break;
            case 'set-speed':
              job.setSpeed(job.speed === 0 ? 65536 : 0);
              break;
          }
        } catch (error) {
          if (!isUserError(error)) throw error;
          if (jobSnapshot(job) !== before) fail('refused-verb-changes-nothing', `${command.verb} on '${job.id}': ${before} -> ${jobSnapshot(job)}`);
        }
        break;
      }
    }
  }

  // Wind down: lift injected errors, resume and finish whatever is left, then account for all.
  for (let t = 0; t < TARGETS; t++) rig.graph.lookupNode(`t${t}`).readOnly = false;
  for (const record of jobList()) {
    const job = record.job!;
    if (job.status === 'null') continue;
    if (job.userPaused) job.userResume();
  }
  rig.loop.runUntil(() => jobList().every((r) => r.job!.status === 'null' || r.job!.status === 'concluded'), { untilNs: rig.loop.nowNs + 3_600_000_000_000 });
  for (const record of jobList()) {
    const job = record.job!;
    if (job.status !== 'null' && job.status !== 'concluded') job.cancelSync(true);
  }
  rig.loop.runUntilIdle({ maxTasks: 10_000_000 });
  for (const record of records.values()) {
    if (!rig.jobs.jobs.every((j) => j.status !== 'aborting')) fail('jobs-finish', 'a job is stuck in aborting');
    const job = record.job;
    if (job === null && record.hooks.length === 0) continue; // refused in prepare before creation
    const outcome = record.hooks.filter((h) => h === 'commit' || h === 'abort');
    if (outcome.length !== 1 || record.hooks[record.hooks.length - 1] !== 'clean' || record.hooks.filter((h) => h === 'clean').length !== 1) {
      fail('commit-or-abort-then-clean', `job '${record.id}' hooks: ${record.hooks.join(',')}`);
    }
  }
  for (const txn of txns) {
    if (!txn.grouped || !txn.committed) continue;
    const outcomes = new Set(txn.jobIds.map((id) => records.get(id)!.hooks.find((h) => h === 'commit' || h === 'abort')));
    if (outcomes.size > 1) fail('grouped-all-or-none', `transaction #${txn.index}: ${[...outcomes].join(' and ')}`);
  }
  if (src.quiesceCounter !== 0) fail('no-leaked-drain', `source still drained (${src.quiesceCounter})`);
}

function options_legacy(rig: BlockRig): boolean {
  return rig.env.legacyStartInPrepare === true;
}

function jobSnapshot(job: Job): string {
  return JSON.stringify([job.status, job.pauseCount, job.userPaused, job.cancelled, job.forceCancel, job.speed, job.ret, job.ioStatus]);
}

/** True for the failures the property suite is after (not crashes of the harness itself). */
export function isInvariantFailure(error: unknown): boolean {
  return error instanceof InvariantError || error instanceof AssertionError;
}
