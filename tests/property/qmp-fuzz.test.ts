import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { caseArb, caseArbWith, type FuzzCase } from '../../tools/fuzz/commands.js';
import { InvariantError, runCase } from '../../tools/fuzz/harness.js';
import { fcReplayParams } from '../support/fc-params.js';

// The QMP-level race suite (issue 7). Every failure prints fast-check's seed and path; reproduce
// one with FC_SEED=<seed> FC_PATH=<path> npx vitest run tests/property/qmp-fuzz.test.ts, or save
// it with `tsqemu-fuzz --seed <seed>` and replay it with `tsqemu-fuzz replay FILE`.
const dir = mkdtempSync(join(tmpdir(), 'qmp-fuzz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const seed = process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : undefined;
const path = process.env.FC_PATH;

const property = (legacy: boolean, ignore: readonly string[] = []) =>
  // The race lives inside one transaction: the teeth tests search short cases.
  fc.property(legacy ? caseArbWith(3) : caseArb, (fuzzCase: FuzzCase) => {
    runCase(fuzzCase, { dir, legacyStartInPrepare: legacy, ignore });
  });

function findRace(ignore: readonly string[]): { counterexample: FuzzCase; error: InvariantError } {
  const result = fc.check(property(true, ignore), { numRuns: 2000, seed: seed ?? 7, path });
  expect(result.failed).toBe(true);
  const [counterexample] = result.counterexample as [FuzzCase];
  console.log(`legacy race: seed ${result.seed}, path ${result.counterexamplePath}, ${counterexample.commands.length} command(s): ${JSON.stringify(counterexample.commands)}\n${String(result.errorInstance)}`);
  expect(result.errorInstance).toBeInstanceOf(InvariantError);
  return { counterexample, error: result.errorInstance as InvariantError };
}

describe('QMP transactions and block jobs under scheduler exploration (property)', () => {
  it('every invariant holds on random QMP sessions', () => {
    fc.assert(property(false), { numRuns: 300, ...fcReplayParams() });
  });

  it('with legacy start-in-prepare, a job starting in prepare is caught at once', () => {
    const { counterexample, error } = findRace([]);
    expect(['txn-job-starts-only-after-commit', 'aborted-txn-never-starts-jobs']).toContain(error.invariant);
    expect(counterexample.commands.length).toBeLessThanOrEqual(2);
  });

  it('with legacy start-in-prepare, the empty-backup race itself is found and shrunk: an empty backup completes in an aborted transaction', () => {
    // Blind the two structural checks so only the consequence can fail the property.
    const { counterexample, error } = findRace(['txn-job-starts-only-after-commit', 'aborted-txn-never-starts-jobs']);
    expect(error.invariant).toBe('aborted-txn-never-completes-jobs');
    expect(counterexample.commands.length).toBeLessThanOrEqual(2);
    const txn = counterexample.commands.find((c) => c.cmd === 'txn');
    expect(txn?.cmd).toBe('txn');
    if (txn?.cmd !== 'txn') return;
    // The shrunk transaction: an empty backup (e0 → te) followed by an action that fails.
    expect(txn.actions.length).toBeGreaterThanOrEqual(2);
    const backup = txn.actions[0];
    expect(backup?.type === 'blockdev-backup' && backup.pair === 2).toBe(true);
  });
});
