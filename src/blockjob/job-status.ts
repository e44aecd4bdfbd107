import { assert } from '../engine/assert.js';
import type { EventBus, JobStatus } from './events.js';

export type { JobStatus } from './events.js';

/** Every status, in QEMU's order (the column order of its state table). */
export const JOB_STATUSES: readonly JobStatus[] = ['undefined', 'created', 'running', 'paused', 'ready', 'standby', 'waiting', 'pending', 'aborting', 'concluded', 'null'];

/**
 * QEMU's JobSTT: for each status, the statuses it may move to. Anything else is a bug in tsqemu,
 * not a user error, so `transition()` asserts it.
 */
export const JOB_TRANSITIONS: Readonly<Record<JobStatus, readonly JobStatus[]>> = {
  undefined: ['created'],
  created: ['running', 'aborting', 'null'],
  running: ['paused', 'ready', 'waiting', 'aborting'],
  paused: ['running'],
  ready: ['standby', 'waiting', 'aborting'],
  standby: ['ready'],
  waiting: ['pending', 'aborting'],
  pending: ['aborting', 'concluded'],
  aborting: ['aborting', 'concluded'],
  concluded: ['null'],
  null: [],
};

export function isLegalTransition(from: JobStatus, to: JobStatus): boolean {
  return JOB_TRANSITIONS[from].includes(to);
}

/** The part of a job a status change touches. */
export interface JobStatusHolder {
  readonly id: string | null;
  status: JobStatus;
  readonly events: EventBus;
}

/** Observes every transition (the property tests check them); runs before the event is emitted. */
export type TransitionObserver = (job: JobStatusHolder, from: JobStatus, to: JobStatus) => void;

/**
 * job_state_transition: asserts the table, changes the status, and emits `JOB_STATUS_CHANGE`
 * for jobs with an id, on real changes only (aborting → aborting emits nothing).
 */
export function transition(job: JobStatusHolder, to: JobStatus, observer?: TransitionObserver): void {
  const from = job.status;
  assert(isLegalTransition(from, to), () => `illegal job transition '${from}' -> '${to}' for job '${job.id ?? '<internal>'}'`);
  job.status = to;
  observer?.(job, from, to);
  if (from !== to && job.id !== null) job.events.emit('JOB_STATUS_CHANGE', { id: job.id, status: to });
}

/** job_is_completed: the job's own work is over (it may still wait for its transaction). */
export function isCompletedStatus(status: JobStatus): boolean {
  return status === 'waiting' || status === 'pending' || status === 'aborting' || status === 'concluded' || status === 'null';
}

/** job_is_ready: READY, or READY and paused (STANDBY). */
export function isReadyStatus(status: JobStatus): boolean {
  return status === 'ready' || status === 'standby';
}
