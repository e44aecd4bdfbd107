import { MainLoop } from '../../../src/engine/main-loop.js';
import type { Co } from '../../../src/engine/coroutine.js';
import type { AnyBusEvent } from '../../../src/blockjob/events.js';
import { type Job, type JobDriver, type JobHook, JobManager, createJob, type CreateJobOptions } from '../../../src/blockjob/job.js';
import type { JobStatus } from '../../../src/blockjob/events.js';
import type { JobTxn } from '../../../src/blockjob/job-txn.js';

/** Per-job knobs of the test driver. */
export interface TestJobState {
  /** Work units; each is one progress step of `chunkBytes` followed by a rate-limit sleep. */
  chunks: number;
  chunkBytes: number;
  /** Unit at which run() fails with -errno (after the error policy says report). */
  failAt: number | null;
  errno: number;
  /** Become READY after all chunks and idle until completed/cancelled (mirror-like). */
  ready: boolean;
  completeRequested: boolean;
  prepareRc: number;
  done: number;
  log: string[];
}

export function testState(overrides: Partial<TestJobState> = {}): TestJobState {
  return { chunks: 4, chunkBytes: 1024, failAt: null, errno: 5, ready: false, completeRequested: false, prepareRc: 0, done: 0, log: [], ...overrides };
}

/** A job driver that does plain, observable work: progress, rate limit, pause points, READY. */
export const testDriver: JobDriver<TestJobState> = {
  jobType: 'backup',
  *run(job: Job<TestJobState>): Co<number> {
    const s = job.state;
    job.progressSetRemaining(s.chunks * s.chunkBytes);
    while (s.done < s.chunks) {
      if (job.isCancelled) return 0;
      if (s.failAt === s.done) {
        const action = job.errorAction('report', true, s.errno);
        if (action === 'report') return -s.errno;
        if (action === 'stop') {
          s.failAt = null; // retried on resume and succeeds
          yield* job.pausePoint();
          continue;
        }
        s.failAt = null;
      }
      s.done++;
      job.progressUpdate(s.chunkBytes);
      job.rateLimitProcessed(s.chunkBytes);
      yield* job.rateLimitSleep();
    }
    if (s.ready) {
      job.transitionToReady();
      for (let guard = 0; guard < 1000; guard++) {
        if (job.cancelRequested || s.completeRequested) break;
        yield* job.yieldJob();
      }
    }
    return 0;
  },
  prepare(job) {
    job.state.log.push('prepare');
    return job.state.prepareRc;
  },
  commit(job) {
    job.state.log.push('commit');
  },
  abort(job) {
    job.state.log.push('abort');
  },
  clean(job) {
    job.state.log.push('clean');
  },
  complete(job) {
    job.state.completeRequested = true;
    job.enter();
  },
  cancel(job, force) {
    return force || !job.isReady;
  },
};

export interface Harness {
  loop: MainLoop;
  manager: JobManager;
  events: AnyBusEvent[];
  transitions: { job: string; from: JobStatus; to: JobStatus }[];
  hooks: { job: string; hook: JobHook }[];
  create(id: string, state?: Partial<TestJobState>, options?: Partial<CreateJobOptions<TestJobState>> & { txn?: JobTxn }): Job<TestJobState>;
  /** Events as compact strings: `JOB_STATUS_CHANGE a running`, `BLOCK_JOB_COMPLETED a`. */
  eventLines(): string[];
}

export function harness(): Harness {
  const loop = new MainLoop();
  const manager = new JobManager(loop);
  const events: AnyBusEvent[] = [];
  const transitions: Harness['transitions'] = [];
  const hooks: Harness['hooks'] = [];
  manager.events.subscribe((e) => events.push(e));
  manager.observe({
    transition: (job, from, to) => transitions.push({ job: job.id ?? job.name, from, to }),
    hook: (job, hook) => hooks.push({ job: job.id ?? job.name, hook }),
  });
  return {
    loop,
    manager,
    events,
    transitions,
    hooks,
    create: (id, state = {}, options = {}) => createJob(manager, { id, driver: testDriver, state: testState(state), ...options }),
    eventLines: () =>
      events.map((e) => {
        switch (e.event) {
          case 'JOB_STATUS_CHANGE':
            return `${e.event} ${e.data.id} ${e.data.status}`;
          case 'BLOCK_JOB_ERROR':
            return `${e.event} ${e.data.device} ${e.data.operation} ${e.data.action}`;
          case 'BLOCK_JOB_PENDING':
            return `${e.event} ${e.data.id}`;
          case 'BLOCK_JOB_COMPLETED':
            return `${e.event} ${e.data.device}${e.data.error !== undefined ? ` error=${e.data.error}` : ''}`;
          case 'BLOCK_JOB_CANCELLED':
          case 'BLOCK_JOB_READY':
            return `${e.event} ${e.data.device}`;
          default:
            return e.event;
        }
      }),
  };
}
