import type { InputGate } from './input-gate.js';

/** What the host loop needs of the engine's main loop (the kernel's MainLoop provides it). */
export interface HostDrivenLoop {
  readonly gate: InputGate;
  readonly idle: boolean;
  runUntilIdle(limits: { maxTasks?: number }): number;
}

/** Tasks per slice before the host loop lets Node deliver socket and stdin events. */
export const DEFAULT_SLICE_TASKS = 50_000;

/**
 * Drives a deterministic main loop from Node's event loop: runs the engine in bounded slices, and
 * when it is idle waits for the input gate (a QMP line, a typed key) or a stop request. The engine
 * never sees host time; the host only decides *when* offered inputs get polled, and the gate
 * stamps each with the point it entered, so a recording replays exactly.
 */
export class HostLoop {
  private wake: (() => void) | null = null;
  private stopRequested = false;

  constructor(
    private readonly loop: HostDrivenLoop,
    private readonly sliceTasks = DEFAULT_SLICE_TASKS,
  ) {
    loop.gate.onOffer(() => this.kick());
  }

  /** Ends `run()` at its next turn. */
  stop(): void {
    this.stopRequested = true;
    this.kick();
  }

  /** Leaves an idle wait early (e.g. after a host-side change the engine should look at). */
  kick(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  /** Runs until `done()` holds or `stop()` is called. */
  async run(done: () => boolean = () => false): Promise<void> {
    this.stopRequested = false;
    while (!this.stopRequested && !done()) {
      this.loop.runUntilIdle({ maxTasks: this.sliceTasks });
      if (this.stopRequested || done()) break;
      if (this.loop.idle) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
      } else {
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
  }
}
