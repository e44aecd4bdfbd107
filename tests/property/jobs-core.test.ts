import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MainLoop } from '../../src/engine/main-loop.js';
import { externalPolicy } from '../../src/engine/policy.js';
import { type Job, JobManager, createJob, startJob } from '../../src/blockjob/job.js';
import { JobTxn } from '../../src/blockjob/job-txn.js';
import { JobError } from '../../src/blockjob/job-errors.js';
import { isLegalTransition } from '../../src/blockjob/job-status.js';
import { type TestJobState, testDriver, testState } from '../unit/blockjob/helpers.js';

// Failures print fast-check's seed and path; reproduce with
//   FC_SEED=<seed> FC_PATH=<path> npx vitest run tests/property/jobs-core.test.ts
const params = { numRuns: Number(process.env.FC_RUNS ?? 300), seed: process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : undefined, path: process.env.FC_PATH };

type Verb = 'cancel' | 'soft-cancel' | 'pause' | 'resume' | 'complete' | 'finalize' | 'dismiss' | 'set-speed' | 'start';
type Command =
  | { cmd: 'create'; group: number; ready: boolean; failAt: number | null; chunks: number; autoFinalize: boolean; autoDismiss: boolean; speed: number }
  | { cmd: 'verb'; job: number; verb: Verb }
  | { cmd: 'error-stop'; job: number }
  | { cmd: 'step'; ns: number };

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ cmd: fc.constant('create' as const), group: fc.integer({ min: 0, max: 3 }), ready: fc.boolean(), failAt: fc.option(fc.integer({ min: 0, max: 3 }), { freq: 3 }), chunks: fc.integer({ min: 0, max: 4 }), autoFinalize: fc.boolean(), autoDismiss: fc.boolean(), speed: fc.constantFrom(0, 1024) }),
  fc.record({ cmd: fc.constant('verb' as const), job: fc.nat({ max: 7 }), verb: fc.constantFrom<Verb>('start', 'start', 'cancel', 'soft-cancel', 'pause', 'resume', 'complete', 'finalize', 'dismiss', 'set-speed') }),
  fc.record({ cmd: fc.constant('error-stop' as const), job: fc.nat({ max: 7 }) }),
  fc.record({ cmd: fc.constant('step' as const), ns: fc.constantFrom(0, 1_000_000, 500_000_000, 5_000_000_000) }),
);

function snapshot(job: Job<TestJobState>): string {
  return JSON.stringify([job.status, job.pauseCount, job.userPaused, job.cancelled, job.forceCancel, job.speed, job.ret, job.ioStatus, job.state.completeRequested]);
}

function run(commands: readonly Command[], choices: readonly number[]): void {
  let pick = 0;
  const loop = new MainLoop({ policy: externalPolicy((_l, count) => (choices.length === 0 ? 0 : choices[pick++ % choices.length]! % count)) });
  const manager = new JobManager(loop);
  const jobs: Job<TestJobState>[] = [];
  const hooks = new Map<Job, string[]>();
  const events = new Map<string, string[]>();
  const groups = new Map<number, JobTxn>();
  const txnOf = new Map<Job, JobTxn>();
  const closed = new Set<JobTxn>();
  manager.observe({
    transition(job, from, to) {
      if (!isLegalTransition(from, to)) throw new Error(`illegal transition ${from} -> ${to}`);
    },
    hook(job, hook) {
      hooks.set(job, [...(hooks.get(job) ?? []), hook]);
    },
  });
  manager.events.subscribe((e) => {
    const id = 'id' in e.data ? String(e.data.id) : 'device' in e.data ? String(e.data.device) : '';
    events.set(id, [...(events.get(id) ?? []), e.event === 'JOB_STATUS_CHANGE' ? e.data.status : e.event]);
  });
  for (const command of commands) {
    switch (command.cmd) {
      case 'create': {
        // A group whose transaction already finished cannot take new jobs: start a new one.
        let txn = groups.get(command.group);
        // As in QEMU, jobs join a transaction only while it is being built (before any starts).
        if (txn === undefined || closed.has(txn)) txn = new JobTxn();
        groups.set(command.group, txn);
        const job = createJob(manager, {
          id: `j${jobs.length}`,
          driver: testDriver,
          state: testState({ ready: command.ready, failAt: command.failAt, chunks: command.chunks }),
          txn,
          autoFinalize: command.autoFinalize,
          autoDismiss: command.autoDismiss,
          speed: command.speed,
        });
        jobs.push(job);
        txnOf.set(job, txn);
        break;
      }
      case 'error-stop': {
        const job = jobs[command.job % Math.max(1, jobs.length)];
        if (job !== undefined && job.started && !job.isCompleted) job.errorAction('stop', true, 5);
        break;
      }
      case 'step':
        loop.step(command.ns);
        break;
      case 'verb': {
        const job = jobs[command.job % Math.max(1, jobs.length)];
        if (job === undefined || job.status === 'null') break;
        const before = snapshot(job);
        try {
          switch (command.verb) {
            case 'start':
              if (job.status === 'created' && !job.started && !job.cancelRequested) {
                closed.add(txnOf.get(job)!);
                startJob(job);
              }
              break;
            case 'cancel':
              closed.add(txnOf.get(job)!);
              job.userCancel(true);
              break;
            case 'soft-cancel':
              closed.add(txnOf.get(job)!);
              job.blockJobCancel(false);
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
              job.setSpeed(job.speed === 0 ? 1024 : 0);
              break;
          }
        } catch (error) {
          if (!(error instanceof JobError)) throw error;
          const after = snapshot(job);
          if (after !== before) throw new Error(`refused ${command.verb} changed ${job.id}: ${before} -> ${after}`);
        }
        break;
      }
    }
  }
  // Wind down: start, resume, complete, finalize, dismiss until every job is gone.
  for (let round = 0; round < 20 && jobs.some((j) => j.status !== 'null'); round++) {
    for (const job of jobs) {
      if (job.status === 'created' && !job.started) startJob(job);
      // A job may finish while user-paused (it never reached a pause point): resume is refused then.
      if (job.userPaused && ['created', 'running', 'paused', 'ready', 'standby'].includes(job.status)) job.userResume();
      if ((job.status === 'ready' || job.status === 'standby') && !job.cancelRequested) job.complete();
      if (job.status === 'pending') job.finalize();
      if (job.status === 'concluded') job.dismiss();
    }
    loop.runUntilIdle({ maxTasks: 1_000_000 });
  }
  for (const job of jobs) {
    expect(job.status, `${job.id} ends in null`).toBe('null');
    const h = hooks.get(job) ?? [];
    const outcome = h.filter((x) => x === 'commit' || x === 'abort');
    expect(outcome.length, `${job.id}: one of commit/abort (${h.join(',')})`).toBe(1);
    expect(h[h.length - 1], `${job.id}: clean last`).toBe('clean');
    expect(h.filter((x) => x === 'clean').length).toBe(1);
    const ev = events.get(job.id!) ?? [];
    const completions = ev.filter((x) => x === 'BLOCK_JOB_COMPLETED' || x === 'BLOCK_JOB_CANCELLED');
    expect(completions.length, `${job.id}: completion events ${ev.join(',')}`).toBe(job.started ? 1 : 0);
    if (completions.length === 1) {
      // The completion event comes after commit/abort and right before 'concluded'.
      const at = ev.indexOf(completions[0]!);
      expect(ev[at + 1], `${job.id}: ${ev.join(',')}`).toBe('concluded');
      if (completions[0] === 'BLOCK_JOB_CANCELLED') expect(ev[at - 1], `${job.id}: ${ev.join(',')}`).toBe('aborting');
    }
  }
  // Grouped completion: the jobs of one JobTxn all commit or all abort.
  const outcomes = new Map<JobTxn, Set<string>>();
  for (const job of jobs) {
    const txn = txnOf.get(job)!;
    const set = outcomes.get(txn) ?? new Set<string>();
    set.add((hooks.get(job) ?? []).find((x) => x === 'commit' || x === 'abort')!);
    outcomes.set(txn, set);
  }
  for (const [txn, set] of outcomes) expect([...set], `transaction of ${txn.jobs.length} live jobs`).toHaveLength(1);
}

describe('job core (property, scheduler in external mode)', () => {
  it('random job commands: legal transitions, refused verbs change nothing, one commit/abort then clean, one completion event per started job', () => {
    fc.assert(
      fc.property(fc.array(commandArb, { minLength: 1, maxLength: 25 }), fc.array(fc.nat({ max: 9 }), { maxLength: 12 }), (commands, choices) => {
        run(commands, choices);
      }),
      params,
    );
  });
});
