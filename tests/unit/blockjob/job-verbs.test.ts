import { describe, expect, it } from 'vitest';
import type { JobStatus } from '../../../src/blockjob/events.js';
import { JOB_STATUSES } from '../../../src/blockjob/job-status.js';
import { JOB_VERBS, applyVerb, type JobVerb } from '../../../src/blockjob/job-verbs.js';
import { JobError } from '../../../src/blockjob/job-errors.js';

const LETTERS: Record<string, JobStatus> = { C: 'created', R: 'running', P: 'paused', Y: 'ready', S: 'standby', W: 'waiting', D: 'pending', X: 'aborting', E: 'concluded', N: 'null', U: 'undefined' };
// jobs.md's verb table.
const REFERENCE: Record<JobVerb, string> = { 'cancel': 'CRPYSWD', 'pause': 'CRPYS', 'resume': 'CRPYS', 'set-speed': 'CRPYS', 'change': 'CRPYS', 'complete': 'YS', 'finalize': 'D', 'dismiss': 'E' };

describe('job verb table', () => {
  for (const verb of JOB_VERBS) {
    const accepted = new Set([...REFERENCE[verb]].map((l) => LETTERS[l]));
    for (const status of JOB_STATUSES) {
      it(`${verb} in ${status}: ${accepted.has(status) ? 'accepted' : 'refused'}`, () => {
        const job = Object.freeze({ id: 'job0', status });
        if (accepted.has(status)) {
          expect(() => applyVerb(job, verb)).not.toThrow();
        } else {
          let error: unknown;
          try {
            applyVerb(job, verb);
          } catch (e) {
            error = e;
          }
          expect(error).toBeInstanceOf(JobError);
          expect((error as JobError).errorClass).toBe('GenericError');
          expect((error as JobError).message).toBe(`Job 'job0' in state '${status}' cannot accept command verb '${verb}'`);
        }
      });
    }
  }
});
