import type { QtestClient } from './client.js';
import { type ScriptStep, type StepResult, runScript } from './script.js';

/** Everything a command produced: its IRQ lines, then its reply. */
export function stepOutput(r: Pick<StepResult, 'irqs' | 'reply'>): string {
  return [...r.irqs, r.reply].join(' | ');
}

export interface Difference {
  /** 0-based index of the step. */
  readonly index: number;
  readonly step: ScriptStep;
  readonly reference: StepResult;
  readonly candidate: StepResult;
}

/**
 * Runs the steps on both clients in lock step and stops at the first command whose output differs
 * (so a reproducer is the script up to there). Returns null when all agree.
 */
export async function firstDifference(steps: readonly ScriptStep[], reference: QtestClient, candidate: QtestClient): Promise<Difference | null> {
  for (let index = 0; index < steps.length; index++) {
    const step = steps[index]!;
    const [ref] = await runScript(reference, [step]);
    const [cand] = await runScript(candidate, [step]);
    if (stepOutput(ref!) !== stepOutput(cand!)) return { index, step, reference: ref!, candidate: cand! };
  }
  return null;
}
