import { assert } from '../engine/assert.js';
import { ClockType } from '../engine/clock.js';
import { type Co, type Coroutine, WaitQueue, sleepUntil } from '../engine/coroutine.js';
import type { MainLoop } from '../engine/main-loop.js';
import { EventBus, type BlockJobEventData, type JobStatus } from './events.js';
import { Errno, JobError, strerror } from './job-errors.js';
import { isCompletedStatus, isReadyStatus, transition } from './job-status.js';
import { applyVerb } from './job-verbs.js';
import { JobTxn, jobCompleted, completedTxnAbort, doDismiss, doFinalize } from './job-txn.js';
import { BLOCK_JOB_SLICE_NS, RateLimit } from './ratelimit.js';

declare module '../engine/trace.js' {
  interface TraceEventMap {
    'job.transition': { job: string; from: string; to: string };
    'job.hook': { job: string; hook: string };
  }
}

/** QAPI JobType names of the jobs tsqemu runs. */
export type JobType = 'commit' | 'stream' | 'mirror' | 'backup' | 'create' | 'amend' | 'snapshot-load' | 'snapshot-save' | 'snapshot-delete';

/** BlockdevOnError. */
export type OnError = 'report' | 'ignore' | 'enospc' | 'stop' | 'auto';

/** BlockErrorAction. */
export type ErrorAction = 'ignore' | 'report' | 'stop';

/** BlockDeviceIoStatus. */
export type IoStatus = 'ok' | 'failed' | 'nospace';

/** The lifecycle hooks a driver's transaction callbacks go through (observable for tests). */
export type JobHook = 'prepare' | 'commit' | 'abort' | 'clean';

/**
 * What a kind of job does (QEMU's JobDriver + BlockJobDriver). Drivers are `const` objects; the
 * per-job data lives in `job.state`.
 */
export interface JobDriver<S = unknown> {
  readonly jobType: JobType;
  /** The job's work, in its own coroutine. Returns 0 or a negative errno (set `job.err` for a custom message). */
  run(job: Job<S>): Co<number>;
  /** Called for every job of a transaction once all are done; a non-zero return aborts the transaction. */
  prepare?(job: Job<S>): number;
  commit?(job: Job<S>): void;
  abort?(job: Job<S>): void;
  /** Always called after commit or abort. */
  clean?(job: Job<S>): void;
  /** At a pause point, before the job parks. */
  pause?(job: Job<S>): void;
  /** At a pause point, after the job resumes. */
  resume?(job: Job<S>): void;
  /** When the user resumes the job (or a cancel lifts a user pause). */
  userResume?(job: Job<S>): void;
  /** `block-job-complete` on a ready job; throws a JobError to refuse. */
  complete?(job: Job<S>): void;
  /** Returns whether the cancel is to be treated as forced (absent: always forced). */
  cancel?(job: Job<S>, force: boolean): boolean;
  setSpeed?(job: Job<S>, speed: number): void;
  /** `block-job-change` (mirror's copy-mode); throws a JobError to refuse. */
  change?(job: Job<S>, options: Readonly<Record<string, unknown>>): void;
}

/** `query-block-jobs` element. */
export interface BlockJobInfo {
  type: string;
  device: string;
  len: number;
  offset: number;
  busy: boolean;
  paused: boolean;
  speed: number;
  'io-status': IoStatus;
  ready: boolean;
  status: JobStatus;
  'auto-finalize': boolean;
  'auto-dismiss': boolean;
  error?: string;
}

/** `query-jobs` element. */
export interface JobInfo {
  id: string;
  type: string;
  status: JobStatus;
  'current-progress': number;
  'total-progress': number;
  error?: string;
}

/** Receives every transition and driver hook of every job of a manager (tests, fuzzer, trace). */
export interface JobObserver {
  transition?(job: Job, from: JobStatus, to: JobStatus): void;
  hook?(job: Job, hook: JobHook): void;
  /** A job coroutine started running (job_start). */
  started?(job: Job): void;
}

/** Most jobs alive at once in one manager: more means jobs leak. */
export const MAX_JOBS = 1 << 16;

/** Bound on loop tasks a synchronous wait for a job (job_finish_sync) may take. */
export const FINISH_SYNC_MAX_TASKS = 50_000_000;

/** QEMU's id_wellformed. */
export function isWellFormedId(id: string): boolean {
  return /^[A-Za-z][A-Za-z0-9._-]*$/.test(id);
}

/**
 * The global job list of a machine (QEMU's `jobs`), with the loop the jobs run in and the event
 * bus they report on.
 */
export class JobManager {
  readonly events: EventBus;
  private readonly list: Job[] = [];
  private readonly observers: JobObserver[] = [];
  private serial = 0;

  constructor(
    readonly loop: MainLoop,
    events?: EventBus,
  ) {
    this.events = events ?? new EventBus(loop.clocks);
  }

  /** Live jobs, newest first (QEMU inserts at the head of its list). */
  get jobs(): readonly Job[] {
    return this.list.slice().reverse();
  }

  observe(observer: JobObserver): () => void {
    this.observers.push(observer);
    return () => {
      const index = this.observers.indexOf(observer);
      if (index >= 0) this.observers.splice(index, 1);
    };
  }

  /** job_get. */
  get(id: string): Job | undefined {
    return this.list.find((job) => job.id === id);
  }

  /** For `job-*` commands: unknown ids are GenericError `Job not found`. */
  find(id: string): Job {
    const job = this.get(id);
    if (job === undefined) throw new JobError('Job not found');
    return job;
  }

  /** For `block-job-*` commands: unknown ids are DeviceNotActive `Block job '<id>' not found`. */
  findBlockJob(id: string): Job {
    const job = this.get(id);
    if (job === undefined || !job.isBlockJob) throw new JobError(`Block job '${id}' not found`, 'DeviceNotActive');
    return job;
  }

  queryJobs(): JobInfo[] {
    return this.jobs.filter((job) => job.id !== null).map((job) => job.toJobInfo());
  }

  queryBlockJobs(): BlockJobInfo[] {
    return this.jobs.filter((job) => job.id !== null && job.isBlockJob).map((job) => job.toBlockJobInfo());
  }

  /** @internal */
  register(job: Job): number {
    assert(this.list.length < MAX_JOBS, 'too many jobs');
    this.list.push(job);
    return ++this.serial;
  }

  /** @internal */
  unregister(job: Job): void {
    const index = this.list.indexOf(job);
    assert(index >= 0, 'unregister of a job that is not listed');
    this.list.splice(index, 1);
  }

  /** @internal */
  notifyTransition(job: Job, from: JobStatus, to: JobStatus): void {
    this.loop.trace.emit('job.transition', { job: job.name, from, to });
    for (const observer of this.observers) observer.transition?.(job, from, to);
  }

  /** @internal */
  notifyHook(job: Job, hook: JobHook): void {
    this.loop.trace.emit('job.hook', { job: job.name, hook });
    for (const observer of this.observers) observer.hook?.(job, hook);
  }

  /** @internal */
  notifyStarted(job: Job): void {
    for (const observer of this.observers) observer.started?.(job);
  }
}

export interface CreateJobOptions<S> {
  /** The job id; null only for internal jobs (which emit no events). */
  readonly id: string | null;
  readonly driver: JobDriver<S>;
  readonly state: S;
  /** The transaction to join; absent: a transaction of its own (completion-mode individual). */
  readonly txn?: JobTxn | null;
  readonly internal?: boolean;
  readonly autoFinalize?: boolean;
  readonly autoDismiss?: boolean;
  /** Bytes per second, 0 = unlimited. */
  readonly speed?: number;
  /** True for block jobs (BLOCK_JOB_* events, query-block-jobs); default true. */
  readonly blockJob?: boolean;
}

/**
 * A job (QEMU's Job and BlockJob in one): status machine, pause counting, cancellation, rate
 * limit, progress, error policy. Create with `createJob`, run with `startJob`.
 */
export class Job<S = unknown> {
  readonly name: string;
  readonly events: EventBus;
  readonly loop: MainLoop;
  status: JobStatus = 'undefined';
  /** Pauses requested (user, drain, not started yet); the job parks at a pause point while > 0. */
  pauseCount = 1;
  /** Parked at a pause point. */
  paused = true;
  /** The coroutine is running or runnable (false while it sleeps or yields at a job yield point). */
  busy = false;
  userPaused = false;
  /** A cancel was requested (job_cancel_requested). */
  cancelled = false;
  forceCancel = false;
  /** run() returned; the rest happens in the main loop. */
  deferredToMainLoop = false;
  /** 0 or a negative errno. */
  ret = 0;
  /** The error text once the job failed. */
  err: string | null = null;
  progressCurrent = 0;
  progressTotal = 0;
  speed = 0;
  readonly limit = new RateLimit();
  ioStatus: IoStatus = 'ok';
  txn: JobTxn | null = null;
  co: Coroutine<void> | null = null;
  readonly autoFinalize: boolean;
  readonly autoDismiss: boolean;
  readonly isBlockJob: boolean;
  private readonly wakeQueue = new WaitQueue();
  /** @internal set by startJob. */
  startedFlag = false;
  /** Called whenever the job stops being busy (parks, sleeps, completes): drains wait for that. */
  onIdle: (() => void) | null = null;
  /** Set by the (one) driver hook being called; asserted so each hook runs at most once. */
  private readonly hooksRun = new Set<JobHook>();

  /** @internal use createJob. */
  constructor(
    readonly manager: JobManager,
    readonly id: string | null,
    readonly driver: JobDriver<S>,
    /** Driver data (set once, right after creation, by drivers that need the job to build it). */
    public state: S,
    options: CreateJobOptions<S>,
  ) {
    this.loop = manager.loop;
    this.events = manager.events;
    this.autoFinalize = options.autoFinalize ?? true;
    this.autoDismiss = options.autoDismiss ?? true;
    this.isBlockJob = options.blockJob ?? true;
    this.name = `${driver.jobType}#${manager.register(this as Job)}${id === null ? '' : `:${id}`}`;
  }

  get jobType(): JobType {
    return this.driver.jobType;
  }

  /** job_started: startJob was called (the coroutine may still be in its first run). */
  get started(): boolean {
    return this.startedFlag;
  }

  /** job_is_cancelled: force-cancelled (a soft cancel of a ready mirror is not). */
  get isCancelled(): boolean {
    return this.cancelled && this.forceCancel;
  }

  get cancelRequested(): boolean {
    return this.cancelled;
  }

  get isCompleted(): boolean {
    return isCompletedStatus(this.status);
  }

  get isReady(): boolean {
    return isReadyStatus(this.status);
  }

  get shouldPause(): boolean {
    return this.pauseCount > 0;
  }

  /** The sleep timer is armed: the job sleeps for the rate limit or a delay. */
  get timerPending(): boolean {
    return this.co !== null && !this.busy && this.co.state === 'sleeping';
  }

  /** The status now (a method, so a check after a call that may change it is not narrowed away). */
  currentStatus(): JobStatus {
    return this.status;
  }

  /** Asserting status change + JOB_STATUS_CHANGE + observers. */
  setStatus(to: JobStatus): void {
    const from = this.status;
    transition(this, to, () => this.manager.notifyTransition(this as Job, from, to));
  }

  /** @internal runs one lifecycle hook of the driver, at most once per job. */
  runHook(hook: JobHook): void {
    assert(!this.hooksRun.has(hook), () => `job '${this.name}': ${hook} called twice`);
    if (hook === 'commit') assert(!this.hooksRun.has('abort'), () => `job '${this.name}': commit after abort`);
    if (hook === 'abort') assert(!this.hooksRun.has('commit'), () => `job '${this.name}': abort after commit`);
    this.hooksRun.add(hook);
    this.manager.notifyHook(this as Job, hook);
    switch (hook) {
      case 'commit':
        this.driver.commit?.(this);
        return;
      case 'abort':
        this.driver.abort?.(this);
        return;
      case 'clean':
        this.driver.clean?.(this);
        return;
      case 'prepare':
        assert(false, 'prepare goes through runPrepare');
    }
  }

  /** @internal job_prepare. */
  runPrepare(): number {
    if (this.ret === 0 && this.driver.prepare !== undefined) {
      assert(!this.hooksRun.has('prepare'), () => `job '${this.name}': prepare called twice`);
      this.hooksRun.add('prepare');
      this.manager.notifyHook(this as Job, 'prepare');
      this.ret = this.driver.prepare(this);
      assert(this.ret <= 0, 'prepare returns 0 or a negative errno');
      updateRc(this as Job);
    }
    return this.ret;
  }

  // ---- progress ---------------------------------------------------------------------------------

  progressUpdate(doneBytes: number): void {
    assert(Number.isSafeInteger(doneBytes) && doneBytes >= 0, 'bad progress');
    this.progressCurrent += doneBytes;
  }

  progressSetRemaining(remainingBytes: number): void {
    assert(Number.isSafeInteger(remainingBytes) && remainingBytes >= 0, 'bad remaining');
    this.progressTotal = this.progressCurrent + remainingBytes;
  }

  progressIncreaseRemaining(deltaBytes: number): void {
    assert(Number.isSafeInteger(deltaBytes) && deltaBytes >= 0, 'bad delta');
    this.progressTotal += deltaBytes;
  }

  // ---- running: entering, pausing, sleeping ------------------------------------------------------

  /** job_enter_cond: wakes the job from a job yield point (not from I/O), if `condition` allows. */
  enterCond(condition?: (job: Job<S>) => boolean): void {
    if (!this.started || this.deferredToMainLoop) return;
    if (this.busy) return;
    if (condition !== undefined && !condition(this)) return;
    assert(this.co !== null, 'a started job that is not busy has a coroutine');
    this.busy = true;
    this.co.wake();
  }

  enter(): void {
    this.enterCond();
  }

  /** job_pause: one more pause (drain, error stop); the job parks at its next pause point. */
  pause(): void {
    this.pauseCount++;
    if (!this.paused) this.enterCond();
  }

  /** job_resume: lifts one pause; kicks the job only when it is not in a rate-limit sleep. */
  resume(): void {
    assert(this.pauseCount > 0, () => `resume of job '${this.name}' that is not paused`);
    this.pauseCount--;
    if (this.pauseCount > 0) return;
    this.enterCond((job) => !job.timerPending);
  }

  private *doYield(deadlineNs: number | null): Co<void> {
    assert(this.busy, 'job yields while not busy');
    this.busy = false;
    this.onIdle?.();
    if (deadlineNs === null) yield this.wakeQueue.wait();
    else yield sleepUntil(deadlineNs, ClockType.Realtime);
    // Whoever woke us (a timer or enterCond) leaves busy set or we set it: the job runs again.
    this.busy = true;
  }

  /** job_pause_point: parks here while the job should pause (unless force-cancelled). */
  *pausePoint(): Co<void> {
    if (!this.shouldPause || this.isCancelled) return;
    this.driver.pause?.(this);
    if (this.shouldPause && !this.isCancelled) {
      const status = this.status;
      this.setStatus(status === 'ready' ? 'standby' : 'paused');
      this.paused = true;
      // Parked until the pause is lifted or the job is force-cancelled: a kick for another reason
      // (a helper finishing) must not unpause it.
      for (let guard = 0; this.shouldPause && !this.isCancelled; guard++) {
        assert(guard < 1 << 24, 'pause point does not terminate');
        yield* this.doYield(null);
      }
      this.paused = false;
      this.setStatus(status);
    }
    this.driver.resume?.(this);
  }

  /** job_sleep_ns: sleeps on the realtime clock (cut short by enter/cancel), then a pause point. */
  *sleepNs(durationNs: number): Co<void> {
    assert(Number.isSafeInteger(durationNs) && durationNs >= 0, `bad sleep ${durationNs}`);
    if (!this.isCancelled) yield* this.doYield(this.loop.clocks.realtimeNs + durationNs);
    yield* this.pausePoint();
  }

  /** job_yield: waits until entered (a ready mirror idling, backup sync=none), then a pause point. */
  *yieldJob(): Co<void> {
    if (this.isCancelled) return;
    if (!this.shouldPause) yield* this.doYield(null);
    yield* this.pausePoint();
  }

  /**
   * Waits until entered even when force-cancelled (job_yield returns at once then): for a job
   * that must wait for its own helpers to stop before it may return.
   */
  *waitForEnter(): Co<void> {
    yield* this.doYield(null);
  }

  /** block_job_ratelimit_processed_bytes. */
  rateLimitProcessed(bytes: number): void {
    this.limit.calculateDelay(this.loop.clocks.realtimeNs, bytes);
  }

  /** block_job_ratelimit_sleep: sleeps at least once, as long as the rate limit asks. */
  *rateLimitSleep(): Co<void> {
    for (let guard = 0; guard < 1 << 30; guard++) {
      const delayNs = this.limit.calculateDelay(this.loop.clocks.realtimeNs, 0);
      yield* this.sleepNs(delayNs);
      if (delayNs === 0 || this.isCancelled) return;
    }
  }

  /** job_transition_to_ready + BLOCK_JOB_READY. */
  transitionToReady(): void {
    this.setStatus('ready');
    if (this.id !== null && this.isBlockJob) this.events.emit('BLOCK_JOB_READY', this.blockEventData());
  }

  // ---- errors ----------------------------------------------------------------------------------

  /**
   * block_job_error_action: picks the action for an I/O error of the job, emits BLOCK_JOB_ERROR,
   * and on `stop` pauses the job as a user pause (resumed from QMP) and sets the io-status.
   * `errno` is positive (EIO, ENOSPC, ...).
   */
  errorAction(onError: OnError, isRead: boolean, errno: number): ErrorAction {
    assert(errno > 0, 'errno is positive');
    let action: ErrorAction;
    switch (onError) {
      case 'enospc':
      case 'auto':
        action = errno === Errno.ENOSPC ? 'stop' : 'report';
        break;
      case 'stop':
        action = 'stop';
        break;
      case 'report':
        action = 'report';
        break;
      case 'ignore':
        action = 'ignore';
        break;
    }
    if (this.id !== null) this.events.emit('BLOCK_JOB_ERROR', { device: this.id, operation: isRead ? 'read' : 'write', action });
    if (action === 'stop') {
      if (!this.userPaused) {
        this.pause();
        this.userPaused = true;
      }
      if (this.ioStatus === 'ok') this.ioStatus = errno === Errno.ENOSPC ? 'nospace' : 'failed';
    }
    return action;
  }

  // ---- user verbs (each refuses before changing anything) ---------------------------------------

  /** job_user_pause. */
  userPause(): void {
    applyVerb(this, 'pause');
    if (this.userPaused) throw new JobError('Job is already paused');
    this.userPaused = true;
    this.pause();
  }

  /** job_user_resume. */
  userResume(): void {
    if (!this.userPaused) throw new JobError("Can't resume a job that was not paused");
    applyVerb(this, 'resume');
    this.driver.userResume?.(this);
    this.ioStatus = 'ok';
    this.userPaused = false;
    this.resume();
  }

  /** block_job_set_speed. */
  setSpeed(speed: number): void {
    applyVerb(this, 'set-speed');
    if (!Number.isSafeInteger(speed) || speed < 0) throw new JobError("Parameter 'speed' expects a non-negative value");
    const oldSpeed = this.speed;
    this.limit.setSpeed(speed, BLOCK_JOB_SLICE_NS);
    this.speed = speed;
    this.driver.setSpeed?.(this, speed);
    if (speed !== 0 && speed <= oldSpeed) return;
    // A faster (or unlimited) job should not finish the sleep the old speed asked for.
    this.enterCond((job) => job.timerPending);
  }

  /** `block-job-cancel {device, force}`: a soft cancel of a user-paused job is refused. */
  blockJobCancel(force: boolean): void {
    if (this.userPaused && !force) throw new JobError(`The block job for device '${this.id ?? ''}' is currently paused`);
    this.userCancel(force);
  }

  /** job_user_cancel (`job-cancel` is force = true). */
  userCancel(force: boolean): void {
    applyVerb(this, 'cancel');
    this.cancel(force);
  }

  /** job_complete. */
  complete(): void {
    applyVerb(this, 'complete');
    if (this.cancelRequested || this.driver.complete === undefined) {
      throw new JobError(`The active block job '${this.id ?? ''}' cannot be completed`);
    }
    this.driver.complete(this);
  }

  /** job_finalize. */
  finalize(): void {
    applyVerb(this, 'finalize');
    doFinalize(this as Job);
  }

  /** job_dismiss. */
  dismiss(): void {
    applyVerb(this, 'dismiss');
    doDismiss(this as Job);
  }

  /** job-change / block-job-change. */
  change(options: Readonly<Record<string, unknown>>): void {
    applyVerb(this, 'change');
    if (this.driver.change === undefined) throw new JobError(`Job type ${this.jobType} does not support changing options`);
    this.driver.change(this, options);
  }

  // ---- cancellation ----------------------------------------------------------------------------

  /** job_cancel_async: marks the job cancelled (lifting a user pause); the caller kicks it. */
  cancelAsync(force: boolean): void {
    const forced = this.driver.cancel !== undefined ? this.driver.cancel(this, force) : true;
    if (this.userPaused) {
      this.driver.userResume?.(this);
      this.userPaused = false;
      assert(this.pauseCount > 0, 'user-paused job with no pause count');
      this.pauseCount--;
    }
    // A soft cancel of a job that is already done is ignored.
    if (forced || !this.deferredToMainLoop) {
      this.cancelled = true;
      this.forceCancel ||= forced;
    }
  }

  /** job_cancel. */
  cancel(force: boolean): void {
    if (this.status === 'concluded') {
      doDismiss(this as Job);
      return;
    }
    this.cancelAsync(force);
    if (!this.started) {
      jobCompleted(this as Job);
    } else if (this.deferredToMainLoop) {
      if (this.isCancelled) completedTxnAbort(this as Job);
    } else {
      this.enterCond();
    }
  }

  /**
   * job_finish_sync: polls the loop until the job is completed (from outside the job's own
   * coroutine). Returns the job's result.
   */
  finishSync(): number {
    // One kick (QEMU kicks on every poll; with no blocking poll here that would livelock a job
    // that waits for its own helpers): cancel and resume kick it again when it matters.
    this.enter();
    const done = this.loop.runUntil(() => this.isCompleted, { maxTasks: FINISH_SYNC_MAX_TASKS });
    assert(done, () => `job '${this.name}' did not complete (status ${this.status}) at ${this.loop.nowNs} ns`);
    return this.isCancelled && this.ret === 0 ? -Errno.ECANCELED : this.ret;
  }

  /** job_cancel_sync. */
  cancelSync(force: boolean): number {
    if (this.status === 'null') return this.ret;
    this.cancel(force);
    const after: JobStatus = this.currentStatus();
    if (after === 'null' || after === 'concluded') return this.isCancelled && this.ret === 0 ? -Errno.ECANCELED : this.ret;
    return this.finishSync();
  }

  // ---- queries ---------------------------------------------------------------------------------

  /** Data of BLOCK_JOB_COMPLETED/CANCELLED/READY (without `error`). */
  blockEventData(): Omit<BlockJobEventData, 'error'> {
    return { type: this.jobType, device: this.id ?? '', len: this.progressTotal, offset: this.progressCurrent, speed: this.speed };
  }

  toBlockJobInfo(): BlockJobInfo {
    const info: BlockJobInfo = {
      'type': this.jobType,
      'device': this.id ?? '',
      'len': this.progressTotal,
      'offset': this.progressCurrent,
      'busy': this.busy,
      'paused': this.pauseCount > 0,
      'speed': this.speed,
      'io-status': this.ioStatus,
      'ready': this.isReady,
      'status': this.status,
      'auto-finalize': this.autoFinalize,
      'auto-dismiss': this.autoDismiss,
    };
    if (this.err !== null) info.error = this.err;
    return info;
  }

  toJobInfo(): JobInfo {
    const info: JobInfo = {
      'id': this.id ?? '',
      'type': this.jobType,
      'status': this.status,
      'current-progress': this.progressCurrent,
      'total-progress': this.progressTotal,
    };
    if (this.err !== null) info.error = this.err;
    return info;
  }
}

/** job_update_rc: a force-cancelled job fails with ECANCELED; a failed job goes to ABORTING. */
export function updateRc(job: Job): void {
  if (job.ret === 0 && job.isCancelled) job.ret = -Errno.ECANCELED;
  if (job.ret !== 0) {
    if (job.err === null) job.err = strerror(-job.ret);
    job.setStatus('aborting');
  }
}

/**
 * job_create: validates the id, registers the job in status CREATED, paused with count 1, in
 * `txn` (or a transaction of its own). Nothing runs until `startJob`.
 */
export function createJob<S>(manager: JobManager, options: CreateJobOptions<S>): Job<S> {
  const id = options.id;
  const internal = options.internal ?? false;
  if (id !== null) {
    if (internal) throw new JobError('Cannot specify job ID for internal job');
    if (!isWellFormedId(id)) throw new JobError(`Invalid job ID '${id}'`);
    if (manager.get(id) !== undefined) throw new JobError(`Job ID '${id}' already in use`);
  } else if (!internal) {
    throw new JobError('An explicit job ID is required');
  }
  const speed = options.speed ?? 0;
  if (!Number.isSafeInteger(speed) || speed < 0) throw new JobError("Parameter 'speed' expects a non-negative value");
  const job = new Job<S>(manager, id, options.driver, options.state, options);
  job.setStatus('created');
  const txn = options.txn ?? new JobTxn();
  txn.add(job as Job);
  if (speed !== 0) job.setSpeed(speed);
  return job;
}

/** job_early_fail: drops a job that was created but whose setup failed (CREATED → NULL). */
export function earlyFailJob(job: Job): void {
  assert(job.status === 'created' && !job.started, 'early fail of a job that is past creation');
  job.txn?.remove(job);
  job.setStatus('null');
  job.manager.unregister(job);
}

function* jobCoEntry(job: Job): Co<void> {
  yield* job.pausePoint();
  const ret = yield* job.driver.run(job);
  assert(Number.isSafeInteger(ret) && ret <= 0, () => `job '${job.name}' run returned ${ret}`);
  job.ret = ret;
  job.deferredToMainLoop = true;
  job.busy = true;
  job.loop.oneshot(`job_exit:${job.name}`, () => {
    // job_exit
    job.busy = false;
    jobCompleted(job);
    job.onIdle?.();
  });
}

/** job_start: CREATED → RUNNING and into the job's coroutine (now, up to its first wait). */
export function startJob(job: Job): void {
  assert(!job.started && job.status === 'created' && job.paused, () => `start of job '${job.name}' in status ${job.status}`);
  job.pauseCount--;
  job.busy = true;
  job.paused = false;
  job.startedFlag = true;
  job.setStatus('running');
  job.manager.notifyStarted(job);
  const body = jobCoEntry(job);
  // aio_co_enter: run now from the main loop; from inside a coroutine, queue behind it.
  job.co = job.loop.current === null ? job.loop.enter(`job:${job.name}`, body) : job.loop.spawn(`job:${job.name}`, body);
}
