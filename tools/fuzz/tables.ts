import type { JobStatus } from '../../src/blockjob/job-status.js';

/**
 * The legal job transitions, written down independently of the job core from
 * ../shared/reference/jobs.md, so the fuzzer is an oracle and not a copy of the code it checks.
 */
export const LEGAL_TRANSITIONS: Readonly<Record<string, readonly JobStatus[]>> = {
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

/** The QMP command and arguments of a job verb. */
export function VERB_QMP(verb: string, id: string): [string, Record<string, unknown>] {
  if (verb === 'set-speed') return ['block-job-set-speed', { device: id, speed: 65536 }];
  return [`job-${verb}`, { id }];
}
