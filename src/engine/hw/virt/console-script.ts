import type { MainLoop } from '../../main-loop.js';
import type { CharOutput } from '../char/ns16550a.js';

/** One step of a console conversation: wait for `expect` to appear in the output, then type `send`. */
export interface ConsoleStep {
  readonly expect: string;
  readonly send?: string;
}

/** Captures a UART's output as text (latin1, byte for byte). */
export class ConsoleCapture implements CharOutput {
  private readonly chunks: string[] = [];
  private joined = '';
  private dirty = false;
  /** Optional echo (a host terminal) for live runs. */
  tee: ((bytes: Uint8Array) => void) | null = null;

  write(bytes: Uint8Array): void {
    let s = '';
    for (const b of bytes) s += String.fromCharCode(b);
    this.chunks.push(s);
    this.dirty = true;
    this.tee?.(bytes);
  }

  get text(): string {
    if (this.dirty) {
      this.joined = this.chunks.join('');
      this.chunks.length = 0;
      this.chunks.push(this.joined);
      this.dirty = false;
    }
    return this.joined;
  }
}

export interface ConsoleScriptResult {
  /** Index of the step that did not complete, or -1 when all did. */
  readonly failedStep: number;
  /** Master ns at which each step's text appeared. */
  readonly stepNs: number[];
}

/**
 * Drives a guest console deterministically: waits until each step's text shows up in the output
 * after the previous step's point, then offers the step's input to the gate on `channel`. Inputs
 * enter at main-loop iteration boundaries decided only by the run itself, so two runs with the
 * same slicing are identical. `advance` runs a bounded slice, so a host loop can stay responsive.
 */
export class ConsoleScript {
  private step = 0;
  private from = 0;
  readonly stepNs: number[] = [];

  constructor(
    private readonly loop: MainLoop,
    private readonly capture: ConsoleCapture,
    private readonly channel: string,
    private readonly steps: readonly ConsoleStep[],
  ) {}

  get done(): boolean {
    return this.step >= this.steps.length;
  }

  /** The step being waited for. */
  get currentStep(): number {
    return this.step;
  }

  private seen(): boolean {
    const step = this.steps[this.step];
    return step !== undefined && this.capture.text.indexOf(step.expect, this.from) >= 0;
  }

  /** Runs until the script is done, `untilNs`, or `stop()`; returns `done`. */
  advance(untilNs: number, stop: () => boolean = () => false): boolean {
    for (let guard = 0; guard <= this.steps.length && !this.done; guard++) {
      this.loop.runUntil(() => this.seen() || stop(), { untilNs });
      if (!this.seen()) return false;
      const step = this.steps[this.step]!;
      this.stepNs.push(this.loop.nowNs);
      this.from = this.capture.text.indexOf(step.expect, this.from) + step.expect.length;
      if (step.send !== undefined && step.send !== '') this.loop.gate.offer({ channel: this.channel, kind: 'chardev', data: new TextEncoder().encode(step.send) });
      this.step++;
    }
    return this.done;
  }
}

/** Runs a whole console script in one call (see ConsoleScript). */
export function runConsoleScript(
  loop: MainLoop,
  capture: ConsoleCapture,
  channel: string,
  steps: readonly ConsoleStep[],
  limits: { readonly untilNs?: number; readonly stop?: () => boolean } = {},
): ConsoleScriptResult {
  const script = new ConsoleScript(loop, capture, channel, steps);
  script.advance(limits.untilNs ?? Infinity, limits.stop);
  return { failedStep: script.done ? -1 : script.currentStep, stepNs: script.stepNs };
}
