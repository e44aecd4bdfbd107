import { assert } from './assert.js';
import type { RngStream } from './rng.js';

/**
 * Answers choice points: every place where real QEMU could order two things differently.
 * `count` is at least 2 (a choice with one option is not asked); the answer is in [0, count).
 */
export interface ChoicePolicy {
  readonly kind: 'fifo' | 'explore' | 'external';
  choose(label: string, count: number): number;
}

/** QEMU's natural order: always the first option (oldest ready task, first waiter, base latency). */
export const fifoPolicy: ChoicePolicy = { kind: 'fifo', choose: () => 0 };

/** Seeded exploration of the legal orders. */
export function explorePolicy(rng: RngStream): ChoicePolicy {
  return { kind: 'explore', choose: (_label, count) => rng.int(count) };
}

/** A callback decides, e.g. fast-check's scheduler so that schedules shrink. */
export function externalPolicy(choose: (label: string, count: number) => number): ChoicePolicy {
  return { kind: 'external', choose };
}

/** Replays a recorded list of choices exactly; past its end, the natural order. */
export function replayPolicy(choices: readonly number[]): ChoicePolicy {
  let index = 0;
  return externalPolicy((_label, count) => {
    const pick = index < choices.length ? choices[index]! : 0;
    index++;
    return pick < count ? pick : count - 1;
  });
}

/** Most choices a run keeps for replay; past it the run still works but says its log is cut. */
export const MAX_RECORDED_CHOICES = 1 << 22;

/** Asks the policy, checks its answer and records every decision made. */
export class Chooser {
  readonly choices: number[] = [];
  truncated = false;

  constructor(
    public policy: ChoicePolicy,
    private readonly onChoice: (label: string, count: number, pick: number) => void = () => {},
  ) {}

  get isFifo(): boolean {
    return this.policy.kind === 'fifo';
  }

  choose(label: string, count: number): number {
    assert(Number.isSafeInteger(count) && count >= 1, `choice '${label}' needs at least one option`);
    if (count === 1) return 0;
    const pick = this.policy.choose(label, count);
    assert(Number.isInteger(pick) && pick >= 0 && pick < count, () => `policy answered ${pick} to '${label}' with ${count} options`);
    if (this.choices.length < MAX_RECORDED_CHOICES) this.choices.push(pick);
    else this.truncated = true;
    this.onChoice(label, count, pick);
    return pick;
  }
}
