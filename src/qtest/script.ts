import type { QtestClient } from './client.js';

/**
 * Plain qtest scripts, as QEMU's fuzzer writes reproducers: one command per line, sent verbatim.
 * Blank lines and `#` comments are skipped, except two checks on the previous command:
 *   `# expect: <reply>`      its reply must be exactly this (a FAIL that is expected is fine);
 *   `# expect-irq: <line>`   it must have produced this `IRQ raise N` / `IRQ lower N` line.
 */
export interface ScriptStep {
  /** 1-based line number in the script. */
  readonly line: number;
  readonly command: string;
  readonly expect: string | null;
  readonly expectIrqs: readonly string[];
}

export interface StepResult {
  readonly step: ScriptStep;
  readonly reply: string;
  readonly irqs: readonly string[];
  /** Why this step failed, or null. */
  readonly problem: string | null;
}

export class QtestScriptError extends Error {
  override readonly name = 'QtestScriptError';
}

/** Longest script accepted, in lines (a bound, as every loop over outside data has). */
export const MAX_SCRIPT_LINES = 1 << 22;

export function parseScript(text: string): ScriptStep[] {
  const lines = text.split('\n');
  if (lines.length > MAX_SCRIPT_LINES) throw new QtestScriptError(`script has ${lines.length} lines (at most ${MAX_SCRIPT_LINES})`);
  const steps: { line: number; command: string; expect: string | null; expectIrqs: string[] }[] = [];
  lines.forEach((raw, i) => {
    const text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    const check = /^#\s*(expect|expect-irq):\s?(.*)$/.exec(text);
    if (check !== null) {
      const last = steps.at(-1);
      if (last === undefined) throw new QtestScriptError(`line ${i + 1}: '# ${check[1]}:' before any command`);
      if (check[1] === 'expect') {
        if (last.expect !== null) throw new QtestScriptError(`line ${i + 1}: a second '# expect:' for the command on line ${last.line}`);
        last.expect = check[2]!;
      } else {
        last.expectIrqs.push(check[2]!);
      }
      return;
    }
    if (text.trim() === '' || text.startsWith('#')) return;
    steps.push({ line: i + 1, command: text, expect: null, expectIrqs: [] });
  });
  return steps;
}

function failed(reply: string): boolean {
  return !(reply === 'OK' || reply.startsWith('OK '));
}

/** Runs the steps in order; a failed step does not stop the script (the server keeps serving). */
export async function runScript(client: QtestClient, steps: readonly ScriptStep[], onResult?: (r: StepResult) => void): Promise<StepResult[]> {
  const results: StepResult[] = [];
  client.takeIrqEvents();
  for (const step of steps) {
    const reply = await client.raw(step.command);
    const irqs = client.takeIrqEvents();
    let problem: string | null = null;
    if (step.expect !== null && reply !== step.expect) problem = `expected '${step.expect}'`;
    else if (step.expect === null && failed(reply)) problem = 'command failed';
    else {
      const missing = step.expectIrqs.find((e) => !irqs.includes(e));
      if (missing !== undefined) problem = `expected '${missing}'`;
    }
    const result = { step, reply, irqs, problem };
    results.push(result);
    onResult?.(result);
  }
  return results;
}
