import type { JobStatus } from './events.js';
import { JobError } from './job-errors.js';

/** QAPI JobVerb names. */
export type JobVerb = 'cancel' | 'pause' | 'resume' | 'set-speed' | 'complete' | 'dismiss' | 'finalize' | 'change';

export const JOB_VERBS: readonly JobVerb[] = ['cancel', 'pause', 'resume', 'set-speed', 'complete', 'dismiss', 'finalize', 'change'];

/** QEMU's JobVerbTable: for each verb, the statuses that accept it. */
export const JOB_VERB_TABLE: Readonly<Record<JobVerb, readonly JobStatus[]>> = {
  'cancel': ['created', 'running', 'paused', 'ready', 'standby', 'waiting', 'pending'],
  'pause': ['created', 'running', 'paused', 'ready', 'standby'],
  'resume': ['created', 'running', 'paused', 'ready', 'standby'],
  'set-speed': ['created', 'running', 'paused', 'ready', 'standby'],
  'change': ['created', 'running', 'paused', 'ready', 'standby'],
  'complete': ['ready', 'standby'],
  'finalize': ['pending'],
  'dismiss': ['concluded'],
};

export function verbAccepted(status: JobStatus, verb: JobVerb): boolean {
  return JOB_VERB_TABLE[verb].includes(status);
}

/**
 * job_apply_verb: throws QEMU's refusal (GenericError) when the job's status does not accept the
 * verb. It changes nothing either way.
 */
export function applyVerb(job: { readonly id: string | null; readonly status: JobStatus }, verb: JobVerb): void {
  if (verbAccepted(job.status, verb)) return;
  throw new JobError(`Job '${job.id ?? ''}' in state '${job.status}' cannot accept command verb '${verb}'`);
}
