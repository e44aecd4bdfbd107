import { assert } from '../engine/assert.js';
import type { Job } from './job.js';
import { updateRc } from './job.js';

/** Most jobs in one transaction. */
export const MAX_TXN_JOBS = 1 << 12;

/**
 * JobTxn: jobs that complete together. When all are done they are prepared, then each is
 * committed (or, if any failed, aborted), cleaned, reported and concluded; the failure or
 * force-cancel of one force-cancels the others.
 */
export class JobTxn {
  private readonly list: Job[] = [];
  aborting = false;

  get jobs(): readonly Job[] {
    return this.list;
  }

  add(job: Job): void {
    assert(job.txn === null, 'job already in a transaction');
    assert(this.list.length < MAX_TXN_JOBS, 'too many jobs in one transaction');
    this.list.push(job);
    job.txn = this;
  }

  remove(job: Job): void {
    if (job.txn !== this) return;
    const index = this.list.indexOf(job);
    assert(index >= 0, 'job not listed in its transaction');
    this.list.splice(index, 1);
    job.txn = null;
  }
}

/** job_txn_apply: runs `fn` over the job's transaction (a snapshot of it) until one returns non-zero. */
function txnApply(job: Job, fn: (job: Job) => number): number {
  const txn = job.txn;
  assert(txn !== null, 'job has no transaction');
  for (const other of txn.jobs.slice()) {
    const rc = fn(other);
    if (rc !== 0) return rc;
  }
  return 0;
}

/** job_completed: the job's run is over (or it was cancelled before starting). */
export function jobCompleted(job: Job): void {
  assert(job.txn !== null && !job.isCompleted, () => `completion of job '${job.name}' in status ${job.status}`);
  updateRc(job);
  if (job.ret === 0) completedTxnSuccess(job);
  else completedTxnAbort(job);
}

function completedTxnSuccess(job: Job): void {
  const txn = job.txn;
  assert(txn !== null, 'job has no transaction');
  job.setStatus('waiting');
  for (const other of txn.jobs) {
    if (!other.isCompleted) return;
    assert(other.ret === 0, 'a completed sibling of a successful job failed without aborting the transaction');
  }
  txnApply(job, (other) => {
    other.setStatus('pending');
    if (!other.autoFinalize && other.id !== null) other.events.emit('BLOCK_JOB_PENDING', { type: other.jobType, id: other.id });
    return 0;
  });
  if (txnApply(job, (other) => (other.autoFinalize ? 0 : 1)) === 0) doFinalize(job);
}

/**
 * job_completed_txn_abort: force-cancels every sibling, waits for each to finish and finalizes
 * all of them (each gets abort + clean). Re-entry from a sibling's own completion is a no-op.
 */
export function completedTxnAbort(job: Job): void {
  const txn = job.txn;
  assert(txn !== null, 'job has no transaction');
  if (txn.aborting) return;
  txn.aborting = true;
  for (const other of txn.jobs.slice()) {
    if (other !== job) other.cancelAsync(true);
  }
  for (let guard = 0; guard <= MAX_TXN_JOBS && txn.jobs.length > 0; guard++) {
    const other = txn.jobs[0]!;
    if (!other.isCompleted) {
      assert(other.cancelRequested, 'sibling of an aborting job was not cancelled');
      // A sibling that never started has nothing to wait for: it fails as cancelled right here.
      if (!other.started) updateRc(other);
      else other.finishSync();
    }
    finalizeSingle(other);
  }
  assert(txn.jobs.length === 0, 'transaction abort left jobs behind');
}

/** job_do_finalize: prepare every job; then finalize all, or abort all if one prepare failed. */
export function doFinalize(job: Job): void {
  assert(job.txn !== null, 'job has no transaction');
  const rc = txnApply(job, (other) => other.runPrepare());
  if (rc !== 0) completedTxnAbort(job);
  else txnApply(job, (other) => (finalizeSingle(other), 0));
}

/** job_finalize_single: commit or abort, clean, the completion event, conclude (and maybe dismiss). */
function finalizeSingle(job: Job): void {
  assert(job.isCompleted, () => `finalize of job '${job.name}' in status ${job.status}`);
  // A failure that came late (a sibling's prepare) still gets this job aborted.
  updateRc(job);
  job.runHook(job.ret === 0 ? 'commit' : 'abort');
  job.runHook('clean');
  // Events only for jobs that actually started.
  if (job.started && job.id !== null && job.isBlockJob) {
    if (job.isCancelled) {
      job.events.emit('BLOCK_JOB_CANCELLED', job.blockEventData());
    } else {
      const data = job.blockEventData();
      job.events.emit('BLOCK_JOB_COMPLETED', job.ret < 0 && job.err !== null ? { ...data, error: job.err } : data);
    }
  }
  job.txn?.remove(job);
  job.setStatus('concluded');
  if (job.autoDismiss || !job.started) doDismiss(job);
}

/** job_do_dismiss: CONCLUDED → NULL and off the job list. */
export function doDismiss(job: Job): void {
  job.busy = false;
  job.paused = false;
  job.deferredToMainLoop = true;
  job.txn?.remove(job);
  job.setStatus('null');
  job.manager.unregister(job);
}
