import { describe, expect, it } from 'vitest';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { EventBus, type JobStatus } from '../../../src/blockjob/events.js';
import { JOB_STATUSES, JOB_TRANSITIONS, isLegalTransition, transition } from '../../../src/blockjob/job-status.js';
import { AssertionError } from '../../../src/engine/assert.js';

const LETTERS: Record<string, JobStatus> = { U: 'undefined', C: 'created', R: 'running', P: 'paused', Y: 'ready', S: 'standby', W: 'waiting', D: 'pending', X: 'aborting', E: 'concluded', N: 'null' };
// jobs.md's table, written out independently of the source.
const REFERENCE = 'U:C C:RXN R:PYWX P:R Y:SWX S:Y W:DX D:XE X:XE E:N N:';
const allowed = new Set<string>();
for (const row of REFERENCE.split(' ')) {
  const [from, tos] = row.split(':') as [string, string];
  for (const to of tos) allowed.add(`${LETTERS[from]}>${LETTERS[to]}`);
}

describe('job status table', () => {
  it('lists the statuses in QEMU order', () => {
    expect(JOB_STATUSES).toEqual(Object.values(LETTERS));
  });

  for (const from of JOB_STATUSES) {
    for (const to of JOB_STATUSES) {
      const legal = allowed.has(`${from}>${to}`);
      it(`${from} -> ${to} is ${legal ? 'allowed' : 'an assertion failure'}`, () => {
        expect(isLegalTransition(from, to)).toBe(legal);
        const bus = new EventBus(new MainLoop().clocks);
        const seen: string[] = [];
        bus.subscribe((e) => seen.push(JSON.stringify(e.data)));
        const job = { id: 'j', status: from, events: bus };
        if (legal) {
          transition(job, to);
          expect(job.status).toBe(to);
          // A real change emits exactly one JOB_STATUS_CHANGE; X -> X emits nothing.
          expect(seen).toEqual(from === to ? [] : [JSON.stringify({ id: 'j', status: to })]);
        } else {
          expect(() => transition(job, to)).toThrow(AssertionError);
          expect(job.status).toBe(from);
          expect(seen).toEqual([]);
        }
      });
    }
  }

  it('table covers every status', () => {
    expect(Object.keys(JOB_TRANSITIONS).sort()).toEqual([...JOB_STATUSES].sort());
  });

  it('jobs without an id change status silently', () => {
    const bus = new EventBus(new MainLoop().clocks);
    const seen: unknown[] = [];
    bus.subscribe((e) => seen.push(e));
    const job = { id: null, status: 'undefined' as JobStatus, events: bus };
    transition(job, 'created');
    expect(job.status).toBe('created');
    expect(seen).toEqual([]);
  });
});
