import { assert } from './assert.js';
import { CLOCK_NAMES, ClockType, Clocks } from './clock.js';
import { type Co, Coroutine, type CoroutineHost, type Wait, WaitKind } from './coroutine.js';
import { Chooser, type ChoicePolicy, explorePolicy, fifoPolicy } from './policy.js';
import { RngStreams } from './rng.js';
import { Trace } from './trace.js';
import { Timer, TimerList } from './timer.js';
import { InputGate } from './host/input-gate.js';

/** Anything the main loop can dispatch: a bottom half, a fired timer, a coroutine to resume. */
interface Task {
  readonly taskId: number;
  readonly taskName: string;
  queued: boolean;
}

/**
 * A CPU the main loop can run between tasks. The target layer implements it; the kernel only
 * needs to know whether it wants to run and how to let it run up to a deadline.
 */
export interface CpuDriver {
  /** True when it would execute instructions now (not halted in WFI). */
  readonly runnable: boolean;
  /** Instructions retired so far. */
  readonly icount: number;
  /**
   * Executes until master time reaches `untilNs`, an input is due, or the CPU halts or asks the
   * loop to run (it advances the clocks itself, exactly with its instruction count).
   */
  execute(untilNs: number): void;
}

/** A bottom half: a callback run at the next loop iteration. Scheduling twice runs it once. */
export class BottomHalf implements Task {
  readonly taskId: number;
  queued = false;
  scheduled = false;

  constructor(
    private readonly loop: MainLoop,
    readonly taskName: string,
    readonly callback: () => void,
    readonly oneshot = false,
  ) {
    this.taskId = loop.allocTaskId();
  }

  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.loop.enqueue(this);
  }

  cancel(): void {
    this.scheduled = false;
  }
}

/** Options for the loop. */
export interface MainLoopOptions {
  /** Root seed of every RNG stream (default 0). */
  readonly seed?: number;
  /** `fifo` (default), `explore` (seeded from `seed`), or a policy object (e.g. external). */
  readonly policy?: ChoicePolicy | 'fifo' | 'explore';
  readonly clocks?: Clocks;
  readonly gate?: InputGate;
  readonly traceCapacity?: number;
}

export interface RunLimits {
  /** Most tasks to dispatch before giving up (bounds a livelock). */
  readonly maxTasks?: number;
  /** Master-clock ns the run may not go past. */
  readonly untilNs?: number;
}

/** Default bound on tasks per run call: far beyond any legitimate burst, small enough to end a livelock. */
export const DEFAULT_MAX_TASKS = 100_000_000;

/** Longest slice the CPU runs before the loop looks at inputs and tasks again (master ns). */
export const CPU_SLICE_NS = 1_000_000;

/**
 * The AioContext: bottom halves, timer lists, the input gate and the coroutine scheduler in one
 * deterministic loop. Every ordering decision with more than one legal answer is a choice point
 * answered by the policy; under `fifo` the order is QEMU's natural one.
 */
export class MainLoop implements CoroutineHost {
  readonly clocks: Clocks;
  readonly trace: Trace;
  readonly chooser: Chooser;
  readonly gate: InputGate;
  readonly timerLists: readonly TimerList[];
  readonly rng: RngStreams;
  /** Frozen time (`-accel qtest`): only `step()`/`clockSet()` move the clocks. */
  frozen = false;
  cpu: CpuDriver | null = null;

  private ready: Task[] = [];
  private readyHead = 0;
  private nextTaskId = 1;
  private stepCount = 0;
  private currentCo: Coroutine<unknown> | null = null;

  constructor(options: MainLoopOptions = {}) {
    this.clocks = options.clocks ?? new Clocks();
    this.rng = new RngStreams(options.seed ?? 0);
    const policy = options.policy === 'explore' ? explorePolicy(this.rng.stream('schedule')) : options.policy === 'fifo' || options.policy === undefined ? fifoPolicy : options.policy;
    this.trace = new Trace(() => this.clocks.realtimeNs, options.traceCapacity);
    this.chooser = new Chooser(policy, (label, count, pick) => this.trace.emit('choice', { label, count, pick }));
    this.gate = options.gate ?? new InputGate();
    this.gate.stampNow = () => ({ step: this.stepCount, icount: this.cpu?.icount ?? 0, ns: this.clocks.realtimeNs });
    this.timerLists = [new TimerList(ClockType.Realtime), new TimerList(ClockType.Virtual), new TimerList(ClockType.Host)];
  }

  /** Tasks dispatched so far: the main-loop position inputs are stamped with. */
  get steps(): number {
    return this.stepCount;
  }

  get nowNs(): number {
    return this.clocks.realtimeNs;
  }

  /** The coroutine running now, if any. */
  get current(): Coroutine<unknown> | null {
    return this.currentCo;
  }

  /** Nothing to run now, no CPU that wants to run, and no timer that may fire without outside help. */
  get idle(): boolean {
    if (this.readyCount > 0 || this.gate.hasPending) return false;
    if (this.cpu !== null && this.cpu.runnable && this.clocks.running && !this.frozen) return false;
    return this.frozen || this.nextDeadlineNs() === Infinity;
  }

  get readyCount(): number {
    return this.ready.length - this.readyHead;
  }

  /** @internal */
  allocTaskId(): number {
    return this.nextTaskId++;
  }

  setPolicy(policy: ChoicePolicy): void {
    this.chooser.policy = policy;
  }

  /** Answers a choice point with the loop's policy (block drivers use it for I/O latency). */
  choose(label: string, count: number): number {
    return this.chooser.choose(label, count);
  }

  // ---- bottom halves and timers -------------------------------------------------------------

  newBh(name: string, callback: () => void): BottomHalf {
    return new BottomHalf(this, name, callback);
  }

  /** aio_bh_schedule_oneshot. */
  oneshot(name: string, callback: () => void): void {
    new BottomHalf(this, name, callback, true).schedule();
  }

  newTimer(clock: ClockType, name: string, callback: () => void): Timer {
    const list = this.timerLists[clock];
    assert(list !== undefined, `no clock ${clock}`);
    return new Timer(list, name, callback, this.allocTaskId());
  }

  /** Earliest armed deadline on the master clock, or Infinity. */
  nextDeadlineNs(): number {
    let best = Infinity;
    for (const list of this.timerLists) {
      if (list.size === 0) continue;
      const master = this.clocks.toMasterDeadline(list.clock, list.nextDeadlineNs);
      if (master < best) best = master;
    }
    return best;
  }

  // ---- coroutines -----------------------------------------------------------------------------

  /** Creates a coroutine and queues it to run (it starts at a later dispatch). */
  spawn<T>(name: string, body: Co<T>): Coroutine<T> {
    const co = new Coroutine<T>(this, name, body);
    this.trace.emit('co.spawn', { id: co.taskId, name });
    this.makeReady(co as Coroutine<unknown>);
    return co;
  }

  /**
   * qemu_coroutine_enter: creates a coroutine and runs it right now until its first wait, then
   * returns to the caller (which may itself be a coroutine).
   */
  enter<T>(name: string, body: Co<T>): Coroutine<T> {
    const co = new Coroutine<T>(this, name, body);
    this.trace.emit('co.spawn', { id: co.taskId, name });
    this.resume(co as Coroutine<unknown>);
    return co;
  }

  /** @internal CoroutineHost: queue a woken coroutine. */
  makeReady(co: Coroutine<unknown>): void {
    co.state = 'ready';
    this.enqueue(co);
  }

  /** Runs a coroutine to completion from outside any coroutine, polling the loop (bdrv_poll_co). */
  runCoroutine<T>(name: string, body: Co<T>, limits: RunLimits = {}): T {
    assert(this.currentCo === null, 'runCoroutine from inside a coroutine: use yield* instead');
    const co = this.enter(name, body);
    if (!co.done) this.runUntil(() => co.done, limits);
    assert(co.done, () => `coroutine '${name}' did not finish (deadlock or limit reached at ${this.nowNs} ns)`);
    return co.result as T;
  }

  private resume(co: Coroutine<unknown>): void {
    assert(co.state === 'ready', () => `resume of coroutine '${co.taskName}' in state ${co.state}`);
    const outer = this.currentCo;
    this.currentCo = co;
    co.state = 'running';
    const value = co.resumeValue;
    co.resumeValue = undefined;
    let step: IteratorResult<Wait, unknown>;
    try {
      step = co.generator.next(value);
    } finally {
      this.currentCo = outer;
    }
    if (step.done === true) {
      co.state = 'done';
      co.result = step.value;
      co.timer?.del();
      this.trace.emit('co.done', { id: co.taskId, name: co.taskName });
      co.joiners.wakeAll();
      return;
    }
    this.park(co, step.value);
  }

  private park(co: Coroutine<unknown>, wait: Wait): void {
    switch (wait.kind) {
      case WaitKind.Yield:
        co.state = 'ready';
        this.enqueue(co);
        return;
      case WaitKind.Sleep: {
        co.state = 'sleeping';
        if (co.timer === null) {
          const sleeper = co;
          co.timer = this.newTimer(wait.clock, `sleep:${co.taskName}`, () => sleeper.wake());
        } else if (co.timer.clock !== wait.clock) {
          co.timer.del();
          const sleeper = co;
          co.timer = this.newTimer(wait.clock, `sleep:${co.taskName}`, () => sleeper.wake());
        }
        const deadline = wait.relative ? this.clocks.read(wait.clock) + wait.deadlineNs : wait.deadlineNs;
        co.timer.mod(deadline);
        return;
      }
      case WaitKind.Queue:
        co.state = 'waiting';
        co.waitingOn = wait.queue;
        wait.queue.add(co);
        return;
    }
  }

  // ---- the ready queue ------------------------------------------------------------------------

  /** @internal */
  enqueue(task: Task): void {
    if (task.queued) return;
    task.queued = true;
    this.ready.push(task);
  }

  private takeReady(): Task | undefined {
    const count = this.ready.length - this.readyHead;
    if (count === 0) return undefined;
    let task: Task;
    if (count === 1 || this.chooser.isFifo) {
      task = this.ready[this.readyHead++]!;
    } else {
      const pick = this.chooser.choose('ready', count);
      if (pick === 0) {
        task = this.ready[this.readyHead++]!;
      } else {
        task = this.ready.splice(this.readyHead + pick, 1)[0]!;
      }
    }
    if (this.readyHead === this.ready.length) {
      this.ready.length = 0;
      this.readyHead = 0;
    } else if (this.readyHead > 4096 && this.readyHead * 2 > this.ready.length) {
      this.ready = this.ready.slice(this.readyHead);
      this.readyHead = 0;
    }
    task.queued = false;
    return task;
  }

  private dispatch(task: Task): void {
    this.stepCount++;
    this.trace.mix(task.taskId);
    if (task instanceof Coroutine) {
      if (task.state === 'ready') this.resume(task);
      return;
    }
    if (task instanceof BottomHalf) {
      if (!task.scheduled) return;
      task.scheduled = false;
      if (!task.oneshot) this.trace.emit('loop.bh', { name: task.taskName });
      task.callback();
      return;
    }
    const timer = task as Timer;
    if (!timer.firing) return; // re-armed or deleted after it expired
    timer.firing = false;
    this.trace.emit('loop.timer', { name: timer.name, clock: timer.clock });
    timer.callback();
  }

  /** Moves every timer due now into the ready queue, in deadline order. */
  private expireTimers(): void {
    for (const list of this.timerLists) {
      if (list.size === 0) continue;
      const now = this.clocks.read(list.clock);
      for (let guard = 0; guard < 1 << 20; guard++) {
        const timer = list.popExpired(now);
        if (timer === undefined) break;
        timer.firing = true;
        this.enqueue(timer);
      }
    }
  }

  // ---- running --------------------------------------------------------------------------------

  /**
   * One iteration: deliver due inputs, expire timers, then run one ready task, or let the CPU run,
   * or (nothing runnable, time not frozen) jump to the next deadline. Returns false when idle.
   */
  iterate(untilNs = Infinity): boolean {
    const delivered = this.gate.poll();
    this.expireTimers();
    const task = this.takeReady();
    if (task !== undefined) {
      this.dispatch(task);
      return true;
    }
    const deadline = Math.min(this.nextDeadlineNs(), untilNs, this.gate.nextDueNs);
    const cpu = this.cpu;
    if (cpu !== null && cpu.runnable && this.clocks.running && !this.frozen) {
      cpu.execute(Math.min(deadline, this.nowNs + CPU_SLICE_NS));
      return true;
    }
    if (this.frozen || deadline === Infinity || deadline <= this.nowNs) {
      // An input delivered is progress: more may be waiting (one per channel per poll).
      return delivered > 0 || (deadline <= this.nowNs && this.gate.hasPending);
    }
    this.trace.emit('loop.time-jump', { toNs: deadline });
    this.clocks.advance(deadline - this.nowNs);
    return true;
  }

  /** Runs until nothing is runnable and no timer can fire (time jumps to deadlines unless frozen). */
  runUntilIdle(limits: RunLimits = {}): number {
    const maxTasks = limits.maxTasks ?? DEFAULT_MAX_TASKS;
    const untilNs = limits.untilNs ?? Infinity;
    const startSteps = this.stepCount;
    for (let i = 0; i < maxTasks; i++) {
      if (!this.iterate(untilNs)) break;
      if (this.nowNs >= untilNs && this.readyCount === 0) break;
    }
    return this.stepCount - startSteps;
  }

  /**
   * Advances the clocks by exactly `ns` (qtest's clock_step), running every task and timer due on
   * the way, frozen or not.
   */
  step(ns: number, limits: RunLimits = {}): number {
    assert(Number.isSafeInteger(ns) && ns >= 0, `bad step ${ns}`);
    const target = this.nowNs + ns;
    const wasFrozen = this.frozen;
    this.frozen = false;
    try {
      this.runUntilIdle({ maxTasks: limits.maxTasks, untilNs: target });
      if (this.nowNs < target) this.clocks.advance(target - this.nowNs);
      this.runUntilIdle({ maxTasks: limits.maxTasks, untilNs: target });
    } finally {
      this.frozen = wasFrozen;
    }
    return this.nowNs;
  }

  /** qtest's clock_set: moves time forward to `targetNs` (never back). */
  clockSet(targetNs: number): number {
    if (targetNs > this.nowNs) this.step(targetNs - this.nowNs);
    return this.nowNs;
  }

  /** Runs until `predicate` holds, the loop goes idle or a limit is reached; returns `predicate()`. */
  runUntil(predicate: () => boolean, limits: RunLimits = {}): boolean {
    const maxTasks = limits.maxTasks ?? DEFAULT_MAX_TASKS;
    const untilNs = limits.untilNs ?? Infinity;
    for (let i = 0; i < maxTasks && !predicate(); i++) {
      if (!this.iterate(untilNs)) break;
      if (this.nowNs >= untilNs && this.readyCount === 0) break;
    }
    return predicate();
  }

  /** Name of a clock, for messages. */
  static clockName(clock: ClockType): string {
    return CLOCK_NAMES[clock] ?? String(clock);
  }
}
