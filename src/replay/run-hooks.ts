/**
 * Points where record and play look at a run without changing it.
 *
 * Checkpoints must fall at exactly the same point of the run in record and in play, whatever the
 * host did: after main-loop step N (no CPU), or at instruction count N (with a CPU). A timer or a
 * bottom half would do it but would itself change the run (task ids and dispatches feed the trace
 * digest), so a recorded run would differ from a plain one. Instead the hooks wrap the loop's
 * `iterate` and the CPU driver: each iteration dispatches at most one task, so step N is seen
 * exactly, and the CPU is asked to stop at instruction N by lowering its deadline, which a correct
 * CPU honours to the instruction (splitting execution never changes what the guest sees).
 */
import { assert } from '../engine/assert.js';
import type { CpuDriver, MainLoop } from '../engine/main-loop.js';
import type { CheckpointUnit, RunPoint } from './log-format.js';

export interface RunHookOptions {
  readonly unit: CheckpointUnit;
  readonly interval: number;
  readonly icountShift: number;
  /** Called at every checkpoint position, with no task mid-dispatch. */
  readonly onCheckpoint: () => void;
}

/** The CPU as seen through the hooks: stops at the next checkpoint or stop point. */
class HookedCpu implements CpuDriver {
  constructor(
    readonly inner: CpuDriver,
    private readonly hooks: RunHooks,
  ) {}

  get runnable(): boolean {
    return this.inner.runnable;
  }

  get icount(): number {
    return this.inner.icount;
  }

  execute(untilNs: number): void {
    const target = this.hooks.nextIcountTarget();
    const left = target - this.inner.icount;
    let until = untilNs;
    if (left > 0 && target !== Infinity) until = Math.min(untilNs, this.hooks.loop.nowNs + left * 2 ** this.hooks.icountShift);
    this.inner.execute(until);
    this.hooks.afterCpu();
  }
}

export class RunHooks {
  private nextCheckpoint: number;
  private originalIterate: MainLoop['iterate'] | null = null;
  private originalCpu: CpuDriver | null = null;
  /** Play stops here (`--until`, the end of the log); Infinity when unset. */
  stopIcount = Infinity;
  readonly icountShift: number;

  constructor(
    readonly loop: MainLoop,
    private readonly options: RunHookOptions,
  ) {
    assert(Number.isSafeInteger(options.interval) && options.interval > 0, 'checkpoint interval must be a positive integer');
    assert(options.unit === 'step' || loop.cpu !== null, 'icount checkpoints need a CPU');
    this.nextCheckpoint = options.interval;
    this.icountShift = options.icountShift;
  }

  /** Where the run is now. */
  point(): RunPoint {
    return { step: this.loop.steps, icount: this.loop.cpu?.icount ?? 0, ns: this.loop.nowNs };
  }

  /** The next checkpoint's position on the unit's counter. */
  get nextCheckpointAt(): number {
    return this.nextCheckpoint;
  }

  install(): void {
    assert(this.originalIterate === null, 'run hooks installed twice');
    const loop = this.loop;
    const iterate = loop.iterate.bind(loop);
    this.originalIterate = iterate;
    const unit = this.options.unit;
    // Own-property override of the instance method: runUntilIdle/runUntil/step call this.iterate.
    loop.iterate = (untilNs?: number): boolean => {
      const result = iterate(untilNs);
      if (unit === 'step' && loop.steps >= this.nextCheckpoint) this.fire();
      return result;
    };
    if (loop.cpu !== null) {
      this.originalCpu = loop.cpu;
      loop.cpu = new HookedCpu(loop.cpu, this);
    }
  }

  uninstall(): void {
    if (this.originalIterate === null) return;
    delete (this.loop as { iterate?: unknown }).iterate;
    if (this.originalCpu !== null) this.loop.cpu = this.originalCpu;
    this.originalIterate = null;
    this.originalCpu = null;
  }

  /** @internal the CPU wrapper's stop target. */
  nextIcountTarget(): number {
    return Math.min(this.options.unit === 'icount' ? this.nextCheckpoint : Infinity, this.stopIcount);
  }

  /** @internal */
  afterCpu(): void {
    if (this.options.unit === 'icount' && (this.loop.cpu?.icount ?? 0) >= this.nextCheckpoint) this.fire();
  }

  /** After a snapshot restore: the next checkpoint follows the restored position. */
  resync(): void {
    const now = this.options.unit === 'icount' ? (this.loop.cpu?.icount ?? 0) : this.loop.steps;
    this.nextCheckpoint = (Math.floor(now / this.options.interval) + 1) * this.options.interval;
  }

  private fire(): void {
    this.nextCheckpoint += this.options.interval;
    this.options.onCheckpoint();
  }
}
