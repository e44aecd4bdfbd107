import { assert } from './assert.js';
import { CLOCK_NAMES, ClockType, Clocks, type ClocksState } from './clock.js';
import { type Co, Coroutine, type CoroutineHost, type Wait, WaitKind } from './coroutine.js';
import { Chooser, type ChoicePolicy, MAX_RECORDED_CHOICES, explorePolicy, fifoPolicy } from './policy.js';
import { type AleaState, RngStreams } from './rng.js';
import { Trace, type TraceState } from './trace.js';
import { Timer, TimerList } from './timer.js';
import { InputGate, type InputGateState } from './host/input-gate.js';

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

/** One armed timer in a kernel snapshot, named by its task id (timers are built with the machine). */
export interface ArmedTimerState {
  readonly taskId: number;
  readonly clock: ClockType;
  readonly deadlineNs: number;
  readonly seq: number;
}

/**
 * What a machine snapshot keeps of the kernel: everything that decides how the run continues
 * (clocks, counters that name tasks and number events, the digest, RNG streams, armed timers,
 * the input gate's counter, the choices made so far). Plain data.
 */
export interface KernelState {
  readonly clocks: ClocksState;
  readonly steps: number;
  readonly nextTaskId: number;
  readonly trace: TraceState;
  readonly rng: Readonly<Record<string, AleaState>>;
  /** Arming counter of each timer list, indexed by clock. */
  readonly timerSeq: readonly number[];
  readonly timers: readonly ArmedTimerState[];
  readonly gate: InputGateState;
  readonly choices: readonly number[];
  readonly choicesTruncated: boolean;
}

/** A kernel snapshot cannot be taken or restored now (the message says why). */
export class KernelSnapshotError extends Error {
  override readonly name = 'KernelSnapshotError';
}

/** Times a coroutine being unwound may wait in its finally blocks before that counts as a bug. */
const MAX_UNWIND_WAITS = 64;

/** Live coroutines named in a quiescence message before it says "and N more". */
const MAX_NAMED_COROUTINES = 3;

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
  /** Every timer by task id, so a snapshot can name the armed ones (coroutine sleep timers leave with their coroutine). */
  private readonly timersById = new Map<number, Timer>();
  /** Coroutines created and not finished: a snapshot needs none (a generator's stack cannot be saved). */
  private readonly liveCoroutines = new Set<Coroutine<unknown>>();
  /** What the loop is inside of right now (a task or the CPU), for the quiescence check. */
  private inside: string | null = null;

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
    const timer = new Timer(list, name, callback, this.allocTaskId());
    assert(!this.timersById.has(timer.taskId), () => `task id ${timer.taskId} of timer '${name}' is taken`);
    this.timersById.set(timer.taskId, timer);
    return timer;
  }

  /** A coroutine's sleep timer is done with: disarm it and forget it (the registry stays bounded). */
  private dropTimer(timer: Timer): void {
    timer.del();
    this.timersById.delete(timer.taskId);
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
    this.liveCoroutines.add(co as Coroutine<unknown>);
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
    this.liveCoroutines.add(co as Coroutine<unknown>);
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
    } catch (error) {
      // A generator that threw is closed: it is no longer alive for the quiescence check (its
      // state is left as it was; the error goes to whoever drives the loop).
      this.liveCoroutines.delete(co);
      if (co.timer !== null) this.dropTimer(co.timer);
      throw error;
    } finally {
      this.currentCo = outer;
    }
    if (step.done === true) {
      co.state = 'done';
      co.result = step.value;
      this.liveCoroutines.delete(co);
      if (co.timer !== null) this.dropTimer(co.timer);
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
          this.dropTimer(co.timer);
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
    const outer = this.inside;
    this.inside = task.taskName;
    try {
      this.dispatchTask(task);
    } finally {
      this.inside = outer;
    }
  }

  private dispatchTask(task: Task): void {
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
      this.inside = 'the CPU';
      try {
        cpu.execute(Math.min(deadline, this.nowNs + CPU_SLICE_NS));
      } finally {
        this.inside = null;
      }
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

  // ---- snapshots ------------------------------------------------------------------------------

  /** Coroutines created and not yet finished. */
  get liveCoroutineCount(): number {
    return this.liveCoroutines.size;
  }

  /**
   * Why the kernel cannot be snapshotted now, or null. Quiescent means: not inside a task or the
   * CPU, no coroutine alive (its generator's stack cannot be saved), nothing in the ready queue
   * (no scheduled bottom half, no expired timer waiting to fire), no live input waiting in the
   * gate. An armed timer whose deadline has come but that has not been expired yet is fine: it is
   * restored with its deadline and arming order and expires at the same point.
   */
  notQuiescent(): string | null {
    if (this.inside !== null) return `the loop is inside ${this.inside}`;
    if (this.currentCo !== null) return `coroutine '${this.currentCo.taskName}' is running`;
    if (this.liveCoroutines.size > 0) {
      const names: string[] = [];
      for (const co of this.liveCoroutines) {
        if (names.length === MAX_NAMED_COROUTINES) break;
        names.push(`'${co.taskName}' (${co.state})`);
      }
      const more = this.liveCoroutines.size - names.length;
      return `${this.liveCoroutines.size} coroutine(s) mid-flight: ${names.join(', ')}${more > 0 ? ` and ${more} more` : ''}`;
    }
    const ready = this.readyCount;
    if (ready > 0) return `${ready} task(s) ready to run, first '${this.ready[this.readyHead]!.taskName}'`;
    const pending = this.gate.pendingCount;
    if (pending > 0) return `${pending} input(s) wait in the input gate`;
    return null;
  }

  /** Saves the kernel's state (see `KernelState`); throws `KernelSnapshotError` unless quiescent. */
  saveKernelState(): KernelState {
    const reason = this.notQuiescent();
    if (reason !== null) throw new KernelSnapshotError(`no snapshot now: ${reason}`);
    const timers: ArmedTimerState[] = [];
    for (const list of this.timerLists) {
      for (const timer of list.armedTimers()) {
        assert(this.timersById.get(timer.taskId) === timer, () => `armed timer '${timer.name}' (task ${timer.taskId}) is not registered`);
        timers.push({ taskId: timer.taskId, clock: list.clock, deadlineNs: timer.deadlineNs, seq: timer.seq });
      }
    }
    // Sorted so two saves of one state are the same bytes (the heap's layout is not state).
    timers.sort((a, b) => a.clock - b.clock || a.seq - b.seq);
    return {
      clocks: this.clocks.saveState(),
      steps: this.stepCount,
      nextTaskId: this.nextTaskId,
      trace: this.trace.saveState(),
      rng: this.rng.saveState(),
      timerSeq: this.timerLists.map((list) => list.seqCount),
      timers,
      gate: this.gate.saveState(),
      choices: this.chooser.choices.slice(),
      choicesTruncated: this.chooser.truncated,
    };
  }

  /**
   * Abandons the current timeline's coroutines: each live one is unwound with `return()`, so its
   * `finally` blocks run (a device or the block layer gives back what the request held: in-flight
   * counts, locks), taken out of its wait queue and its sleep timer dropped. A finally block that
   * waits is unwound again, a bounded number of times. Every coroutine stays 'running' until all
   * are unwound, so a finally block that wakes another one is a harmless no-op. Whatever the
   * unwinding queues or emits is overwritten by the restore that follows. Returns how many.
   */
  private unwindCoroutines(): number {
    const victims = [...this.liveCoroutines];
    for (const co of victims) {
      co.waitingOn?.remove(co);
      co.waitingOn = null;
      if (co.timer !== null) this.dropTimer(co.timer);
      co.timer = null;
      co.state = 'running';
    }
    for (const co of victims) {
      this.currentCo = co;
      try {
        let step = co.generator.return(undefined);
        for (let guard = 0; step.done !== true; guard++) {
          assert(guard < MAX_UNWIND_WAITS, () => `coroutine '${co.taskName}' keeps waiting while it is unwound`);
          step = co.generator.return(undefined);
        }
      } finally {
        this.currentCo = null;
      }
      if (co.timer !== null) this.dropTimer(co.timer);
      co.timer = null;
    }
    for (const co of victims) {
      co.state = 'done';
      this.liveCoroutines.delete(co);
    }
    assert(this.liveCoroutines.size === 0, 'a coroutine was created while the timeline was unwound');
    return victims.length;
  }

  /**
   * Puts the kernel back to a saved state, in place (devices hold the timer and stream objects).
   * Live coroutines belong to the abandoned timeline and are unwound first (see
   * `unwindCoroutines`); the ready queue is emptied, every timer is disarmed and the saved ones
   * re-armed with their deadlines and arming order. Refused from inside a task or the CPU.
   */
  restoreKernelState(state: KernelState): void {
    if (this.inside !== null || this.currentCo !== null) throw new KernelSnapshotError(`cannot restore from inside ${this.inside ?? 'a coroutine'}`);
    assert(Number.isSafeInteger(state.steps) && state.steps >= 0, () => `bad restored step count ${state.steps}`);
    assert(Number.isSafeInteger(state.nextTaskId) && state.nextTaskId >= 1, () => `bad restored next task id ${state.nextTaskId}`);
    assert(state.timerSeq.length === this.timerLists.length, () => `snapshot has ${state.timerSeq.length} timer lists, the loop ${this.timerLists.length}`);
    assert(state.choices.length <= MAX_RECORDED_CHOICES, 'too many restored choices');
    // Resolve every armed timer before touching anything, so a bad snapshot leaves the loop as it was.
    const perList: { timer: Timer; deadlineNs: number; seq: number }[][] = this.timerLists.map(() => []);
    for (const entry of state.timers) {
      const timer = this.timersById.get(entry.taskId);
      if (timer === undefined) throw new KernelSnapshotError(`snapshot arms timer task ${entry.taskId}, which this machine does not have`);
      if (timer.clock !== entry.clock) throw new KernelSnapshotError(`timer '${timer.name}' (task ${entry.taskId}) is on clock ${timer.clock}, the snapshot says ${entry.clock}`);
      perList[entry.clock]!.push({ timer, deadlineNs: entry.deadlineNs, seq: entry.seq });
    }
    this.unwindCoroutines();
    for (let i = this.readyHead; i < this.ready.length; i++) {
      const task = this.ready[i]!;
      task.queued = false;
      if (task instanceof BottomHalf) task.scheduled = false;
      else if (task instanceof Timer) task.firing = false;
    }
    this.ready = [];
    this.readyHead = 0;
    this.clocks.restoreState(state.clocks);
    this.stepCount = state.steps;
    this.nextTaskId = state.nextTaskId;
    // Timers created after the snapshot was taken would share ids with the tasks the restored run
    // creates: forget them (the virt board creates all of its timers at build time).
    for (const [taskId, timer] of this.timersById) {
      if (taskId < state.nextTaskId) continue;
      timer.del();
      this.timersById.delete(taskId);
    }
    this.timerLists.forEach((list, i) => list.restoreArmed(perList[i]!, state.timerSeq[i]!));
    this.trace.restoreState(state.trace);
    this.rng.restoreState(state.rng);
    this.gate.restoreState(state.gate);
    this.chooser.choices.length = 0;
    for (const pick of state.choices) this.chooser.choices.push(pick);
    this.chooser.truncated = state.choicesTruncated;
    assert(this.notQuiescent() === null, 'a restored kernel is quiescent');
  }

  /** Name of a clock, for messages. */
  static clockName(clock: ClockType): string {
    return CLOCK_NAMES[clock] ?? String(clock);
  }
}
