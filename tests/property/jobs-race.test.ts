import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { commandArb, runScenario, isInvariantFailure, type ScenarioCommand } from '../unit/blockjob/scenario.js';
import { fcReplayParams } from '../support/fc-params.js';

// Every failure prints fast-check's seed and path; reproduce one with
//   FC_SEED=<seed> FC_PATH=<path> npx vitest run tests/property/jobs-race.test.ts
const seed = process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : undefined;
const path = process.env.FC_PATH;

const scenarioArb = fc.record({
  commands: fc.array(commandArb, { minLength: 1, maxLength: 12 }),
  choices: fc.array(fc.nat({ max: 7 }), { maxLength: 16 }),
});

function property(legacy: boolean) {
  return fc.property(scenarioArb, ({ commands, choices }) => {
    try {
      runScenario(commands, { legacyStartInPrepare: legacy, choices });
      return true;
    } catch (error) {
      if (isInvariantFailure(error)) throw error;
      throw error;
    }
  });
}

describe('block jobs and transactions (property, scheduler in external mode)', () => {
  it('invariants hold: legal transitions, refused verbs change nothing, one commit/abort then clean, grouped all-or-none, point-in-time targets, aborted transactions never start or complete jobs', () => {
    fc.assert(property(false), { numRuns: Number(process.env.FC_RUNS ?? 120), ...fcReplayParams(), endOnFailure: false });
  });

  it('legacyStartInPrepare: the suite finds the empty-backup race and shrinks it to a few commands', () => {
    const result = fc.check(property(true), { numRuns: 2000, seed: seed ?? 42, path });
    expect(result.failed).toBe(true);
    const [counterexample] = result.counterexample as [{ commands: ScenarioCommand[]; choices: number[] }];
    const error = String(result.errorInstance);
    // Shown on every run so the shrunk scenario can be read in CI logs.
    console.log(`legacy race found after ${result.numRuns} runs (seed ${result.seed}, path ${result.counterexamplePath}):\n${JSON.stringify(counterexample.commands)}\n${error}`);
    expect(error).toContain("invariant 'aborted-txn-never-completes' broken");
    expect(counterexample.commands.length).toBeLessThanOrEqual(3);
    const txn = counterexample.commands.find((c) => c.cmd === 'txn');
    expect(txn !== undefined && txn.cmd === 'txn' && txn.actions.length >= 2).toBe(true);
  });
});
