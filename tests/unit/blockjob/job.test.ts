import { describe, expect, it } from 'vitest';
import { harness } from './helpers.js';
import { createJob, startJob, JobManager, earlyFailJob } from '../../../src/blockjob/job.js';
import { JobTxn } from '../../../src/blockjob/job-txn.js';
import { JobError } from '../../../src/blockjob/job-errors.js';
import { MainLoop } from '../../../src/engine/main-loop.js';

function refusal(fn: () => void): JobError {
  try {
    fn();
  } catch (e) {
    if (e instanceof JobError) return e;
    throw e;
  }
  throw new Error('expected a JobError');
}

describe('job life cycle', () => {
  it('create leaves the job CREATED, paused with count 1, and runs nothing', () => {
    const h = harness();
    const job = h.create('a');
    expect(job.status).toBe('created');
    expect(job.pauseCount).toBe(1);
    expect(job.toBlockJobInfo()).toEqual({
      'type': 'backup', 'device': 'a', 'len': 0, 'offset': 0, 'busy': false, 'paused': true, 'speed': 0,
      'io-status': 'ok', 'ready': false, 'status': 'created', 'auto-finalize': true, 'auto-dismiss': true,
    });
    h.loop.runUntilIdle();
    expect(job.status).toBe('created');
    expect(job.state.done).toBe(0);
    expect(h.eventLines()).toEqual(['JOB_STATUS_CHANGE a created']);
  });

  it('start runs to completion with the reference event order', () => {
    const h = harness();
    const job = h.create('a');
    startJob(job);
    h.loop.runUntilIdle();
    expect(job.state.log).toEqual(['prepare', 'commit', 'clean']);
    expect(h.eventLines()).toEqual([
      'JOB_STATUS_CHANGE a created', 'JOB_STATUS_CHANGE a running', 'JOB_STATUS_CHANGE a waiting',
      'JOB_STATUS_CHANGE a pending', 'BLOCK_JOB_COMPLETED a', 'JOB_STATUS_CHANGE a concluded', 'JOB_STATUS_CHANGE a null',
    ]);
    const completed = h.events.find((e) => e.event === 'BLOCK_JOB_COMPLETED')!;
    expect(completed.data).toEqual({ type: 'backup', device: 'a', len: 4096, offset: 4096, speed: 0 });
    expect(h.manager.queryJobs()).toEqual([]);
  });

  it('rejects bad and duplicate ids', () => {
    const h = harness();
    h.create('a');
    expect(refusal(() => h.create('a')).message).toBe("Job ID 'a' already in use");
    expect(refusal(() => h.create('1abc')).message).toBe("Invalid job ID '1abc'");
    expect(refusal(() => h.create('a b')).message).toBe("Invalid job ID 'a b'");
    expect(h.manager.jobs.length).toBe(1);
  });

  it('cancel of a running job: aborting, CANCELLED, concluded, null; abort + clean', () => {
    const h = harness();
    const job = h.create('a', { chunks: 100 });
    job.setSpeed(1024); // slow enough to still be running
    startJob(job);
    h.loop.step(150_000_000);
    expect(job.status).toBe('running');
    h.events.length = 0;
    job.userCancel(true);
    h.loop.runUntilIdle();
    expect(h.eventLines()).toEqual(['JOB_STATUS_CHANGE a aborting', 'BLOCK_JOB_CANCELLED a', 'JOB_STATUS_CHANGE a concluded', 'JOB_STATUS_CHANGE a null']);
    expect(job.state.log).toEqual(['abort', 'clean']);
  });

  it('cancel of a job that never started emits no CANCELLED/COMPLETED', () => {
    const h = harness();
    const job = h.create('a');
    job.userCancel(true);
    expect(h.eventLines()).toEqual(['JOB_STATUS_CHANGE a created', 'JOB_STATUS_CHANGE a aborting', 'JOB_STATUS_CHANGE a concluded', 'JOB_STATUS_CHANGE a null']);
    expect(job.state.log).toEqual(['abort', 'clean']);
  });

  it('user pause and resume with their refusals', () => {
    const h = harness();
    const job = h.create('a', { chunks: 50 });
    job.setSpeed(4096);
    startJob(job);
    h.loop.step(10_000_000);
    job.userPause();
    expect(refusal(() => job.userPause()).message).toBe('Job is already paused');
    h.loop.step(1_000_000_000);
    expect(job.status).toBe('paused');
    const done = job.state.done;
    h.loop.step(1_000_000_000);
    expect(job.state.done).toBe(done);
    expect(job.toBlockJobInfo().paused).toBe(true);
    expect(refusal(() => job.blockJobCancel(false)).message).toBe("The block job for device 'a' is currently paused");
    job.userResume();
    expect(refusal(() => job.userResume()).message).toBe("Can't resume a job that was not paused");
    h.loop.runUntilIdle();
    expect(job.status).toBe('null');
    expect(h.transitions.filter((t) => t.to === 'paused').length).toBe(1);
  });

  it('pause before start parks the job at its first pause point', () => {
    const h = harness();
    const job = h.create('a');
    job.userPause();
    expect(job.pauseCount).toBe(2);
    startJob(job);
    expect(job.status).toBe('paused');
    h.loop.runUntilIdle();
    expect(job.state.done).toBe(0);
    job.userResume();
    h.loop.runUntilIdle();
    expect(job.status).toBe('null');
  });

  it('set-speed limits in virtual time: 1 MiB at 64 KiB/s takes ~16 virtual seconds', () => {
    const h = harness();
    const job = h.create('a', { chunks: 16, chunkBytes: 65536 });
    job.setSpeed(65536);
    expect(job.toBlockJobInfo().speed).toBe(65536);
    startJob(job);
    h.loop.runUntilIdle();
    expect(job.status).toBe('null');
    const seconds = h.loop.nowNs / 1e9;
    expect(seconds).toBeGreaterThanOrEqual(15);
    expect(seconds).toBeLessThanOrEqual(16.2);
    expect(refusal(() => job.setSpeed(-1)).message).toContain("Job 'a' in state 'null'");
  });

  it('set-speed refuses negative speed without changing anything', () => {
    const h = harness();
    const job = h.create('a', {}, { speed: 100 });
    expect(refusal(() => job.setSpeed(-5)).message).toBe("Parameter 'speed' expects a non-negative value");
    expect(job.speed).toBe(100);
  });

  it('auto-finalize off: PENDING + BLOCK_JOB_PENDING, then finalize; auto-dismiss off: dismiss', () => {
    const h = harness();
    const job = h.create('a', {}, { autoFinalize: false, autoDismiss: false });
    startJob(job);
    h.loop.runUntilIdle();
    expect(job.status).toBe('pending');
    expect(h.eventLines().slice(-2)).toEqual(['JOB_STATUS_CHANGE a pending', 'BLOCK_JOB_PENDING a']);
    expect(refusal(() => job.dismiss()).message).toBe("Job 'a' in state 'pending' cannot accept command verb 'dismiss'");
    job.finalize();
    expect(job.status).toBe('concluded');
    expect(refusal(() => job.finalize()).message).toBe("Job 'a' in state 'concluded' cannot accept command verb 'finalize'");
    expect(h.manager.queryJobs()).toEqual([{ 'id': 'a', 'type': 'backup', 'status': 'concluded', 'current-progress': 4096, 'total-progress': 4096 }]);
    job.dismiss();
    expect(job.status).toBe('null');
    expect(h.manager.queryJobs()).toEqual([]);
  });

  it('complete is refused unless ready; a ready job completes; soft cancel of a ready job COMPLETES it', () => {
    const h = harness();
    const a = h.create('a', { ready: true });
    expect(refusal(() => a.complete()).message).toBe("Job 'a' in state 'created' cannot accept command verb 'complete'");
    startJob(a);
    h.loop.runUntilIdle();
    expect(a.status).toBe('ready');
    expect(h.eventLines()).toContain('BLOCK_JOB_READY a');
    expect(a.toBlockJobInfo().ready).toBe(true);
    a.complete();
    h.loop.runUntilIdle();
    expect(a.status).toBe('null');
    expect(h.eventLines()).toContain('BLOCK_JOB_COMPLETED a');

    const b = h.create('b', { ready: true });
    startJob(b);
    h.loop.runUntilIdle();
    b.blockJobCancel(false);
    h.loop.runUntilIdle();
    expect(h.eventLines().filter((l) => l.endsWith(' b') && l.startsWith('BLOCK_JOB_'))).toEqual(['BLOCK_JOB_READY b', 'BLOCK_JOB_COMPLETED b']);
    expect(b.state.log).toEqual(['prepare', 'commit', 'clean']);

    const c = h.create('c', { ready: true });
    startJob(c);
    h.loop.runUntilIdle();
    c.userCancel(true);
    h.loop.runUntilIdle();
    expect(h.eventLines().filter((l) => l.endsWith(' c') && l.startsWith('BLOCK_JOB_'))).toEqual(['BLOCK_JOB_READY c', 'BLOCK_JOB_CANCELLED c']);
  });

  it('complete is refused after a cancel request and for drivers without complete', () => {
    const h = harness();
    const a = h.create('a', { ready: true });
    startJob(a);
    h.loop.runUntilIdle();
    a.userPause();
    h.loop.runUntilIdle();
    expect(a.status).toBe('standby');
    a.userResume();
    h.loop.runUntilIdle();
    expect(a.status).toBe('ready');
    a.cancelled = true; // soft-cancel request in flight
    expect(refusal(() => a.complete()).message).toBe("The active block job 'a' cannot be completed");
  });

  it('error policy report: BLOCK_JOB_ERROR then COMPLETED with error', () => {
    const h = harness();
    const job = h.create('a', { failAt: 2 });
    startJob(job);
    h.loop.runUntilIdle();
    expect(h.eventLines().slice(-5)).toEqual([
      'BLOCK_JOB_ERROR a read report', 'JOB_STATUS_CHANGE a aborting', 'BLOCK_JOB_COMPLETED a error=Input/output error',
      'JOB_STATUS_CHANGE a concluded', 'JOB_STATUS_CHANGE a null',
    ]);
    expect(job.state.log).toEqual(['abort', 'clean']);
  });

  it('error actions per policy and io-status', () => {
    const h = harness();
    const job = h.create('a');
    expect(job.errorAction('ignore', false, 5)).toBe('ignore');
    expect(job.errorAction('report', false, 5)).toBe('report');
    expect(job.errorAction('enospc', true, 5)).toBe('report');
    expect(job.errorAction('auto', true, 5)).toBe('report');
    expect(job.ioStatus).toBe('ok');
    expect(job.errorAction('enospc', false, 28)).toBe('stop');
    expect(job.ioStatus).toBe('nospace');
    expect(job.userPaused).toBe(true);
    expect(job.errorAction('stop', true, 5)).toBe('stop');
    expect(job.pauseCount).toBe(2); // created + one user pause, not two
    expect(job.ioStatus).toBe('nospace');
    job.userResume();
    expect(job.ioStatus).toBe('ok');
    expect(h.eventLines().filter((l) => l.startsWith('BLOCK_JOB_ERROR'))).toEqual([
      'BLOCK_JOB_ERROR a write ignore', 'BLOCK_JOB_ERROR a write report', 'BLOCK_JOB_ERROR a read report',
      'BLOCK_JOB_ERROR a read report', 'BLOCK_JOB_ERROR a write stop', 'BLOCK_JOB_ERROR a read stop',
    ]);
  });

  it('a paused-on-error job refuses dismiss and resumes on user resume', () => {
    const h = harness();
    const job = h.create('a');
    startJob(job);
    job.errorAction('stop', true, 5);
    h.loop.runUntilIdle();
    expect(job.status).toBe('paused');
    expect(job.toBlockJobInfo()['io-status']).toBe('failed');
    expect(refusal(() => job.dismiss()).message).toBe("Job 'a' in state 'paused' cannot accept command verb 'dismiss'");
    job.userResume();
    h.loop.runUntilIdle();
    expect(job.status).toBe('null');
  });

  it('grouped txn: a failing job cancels its sibling; every job gets abort + clean', () => {
    const h = harness();
    const txn = new JobTxn();
    const a = h.create('a', { chunks: 100 }, { txn });
    const b = h.create('b', { failAt: 1 }, { txn });
    a.setSpeed(4096);
    startJob(a);
    startJob(b);
    h.loop.runUntilIdle();
    expect(a.state.log).toEqual(['abort', 'clean']);
    expect(b.state.log).toEqual(['abort', 'clean']);
    const lines = h.eventLines().filter((l) => l.startsWith('BLOCK_JOB_'));
    expect(lines).toEqual(['BLOCK_JOB_ERROR b read report', 'BLOCK_JOB_CANCELLED a', 'BLOCK_JOB_COMPLETED b error=Input/output error']);
  });

  it('grouped txn: the first finisher waits for the others, then all commit', () => {
    const h = harness();
    const txn = new JobTxn();
    const a = h.create('a', { chunks: 1 }, { txn });
    const b = h.create('b', { chunks: 8 }, { txn });
    b.setSpeed(1024);
    startJob(a);
    startJob(b);
    h.loop.step(1_000_000);
    expect(a.status).toBe('waiting');
    h.loop.runUntilIdle();
    expect(a.state.log).toEqual(['prepare', 'commit', 'clean']);
    expect(b.state.log).toEqual(['prepare', 'commit', 'clean']);
  });

  it('grouped txn: a failing prepare aborts every job', () => {
    const h = harness();
    const txn = new JobTxn();
    const a = h.create('a', {}, { txn });
    const b = h.create('b', { prepareRc: -22 }, { txn });
    startJob(a);
    startJob(b);
    h.loop.runUntilIdle();
    expect(a.state.log).toEqual(['prepare', 'abort', 'clean']);
    expect(b.state.log).toEqual(['prepare', 'abort', 'clean']);
    expect(h.eventLines().filter((l) => l.startsWith('BLOCK_JOB_'))).toEqual(['BLOCK_JOB_CANCELLED a', 'BLOCK_JOB_COMPLETED b error=Invalid argument']);
  });

  it('cancel of a never-started job in a txn cancels the started sibling', () => {
    const h = harness();
    const txn = new JobTxn();
    const a = h.create('a', { chunks: 50 }, { txn });
    const b = h.create('b', {}, { txn });
    a.setSpeed(1024);
    startJob(a);
    h.loop.step(1_000_000);
    b.userCancel(true);
    h.loop.runUntilIdle();
    expect(a.status).toBe('null');
    expect(h.eventLines().filter((l) => l.startsWith('BLOCK_JOB_'))).toEqual(['BLOCK_JOB_CANCELLED a']);
  });

  it('queries list newest first and skip internal jobs', () => {
    const h = harness();
    h.create('a');
    h.create('b');
    createJob(h.manager, { id: null, internal: true, driver: h.manager.jobs[0]!.driver, state: h.manager.jobs[0]!.state });
    expect(h.manager.queryBlockJobs().map((j) => j.device)).toEqual(['b', 'a']);
    expect(h.manager.queryJobs().map((j) => j.id)).toEqual(['b', 'a']);
  });

  it('unknown ids: DeviceNotActive for block-job-*, GenericError for job-*', () => {
    const manager = new JobManager(new MainLoop());
    const e1 = refusal(() => manager.findBlockJob('nope'));
    expect([e1.errorClass, e1.message]).toEqual(['DeviceNotActive', "Block job 'nope' not found"]);
    const e2 = refusal(() => manager.find('nope'));
    expect([e2.errorClass, e2.message]).toEqual(['GenericError', 'Job not found']);
  });

  it('explicit id rules and early fail', () => {
    const h = harness();
    expect(refusal(() => createJob(h.manager, { id: null, driver: h.create('x').driver, state: h.manager.jobs[0]!.state })).message).toBe('An explicit job ID is required');
    const job = h.create('y');
    earlyFailJob(job);
    expect(job.status).toBe('null');
    expect(h.eventLines().slice(-1)).toEqual(['JOB_STATUS_CHANGE y null']);
  });
});
