import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { caseArb, type FuzzCase } from './commands.js';
import { InvariantError, runCase } from './harness.js';

/** Cases per fast-check run: small, so progress is reported often and every batch has its own seed. */
export const BATCH_RUNS = 25;

/** Where a shard's batch k starts: disjoint seed streams per shard, no coordinator needed. */
export function batchSeed(rootSeed: number, shard: number, shards: number, batch: number): number {
  return (Math.imul(rootSeed ^ 0x9e3779b9, 0x85ebca6b) + batch * shards + shard) >>> 0;
}

export interface Failure {
  readonly format: 'tsqemu-fuzz-failure';
  readonly version: 1;
  readonly seed: number;
  readonly path: string;
  readonly legacyStartInPrepare: boolean;
  readonly invariant: string;
  readonly message: string;
  readonly fuzzCase: FuzzCase;
}

export interface BatchResult {
  readonly cases: number;
  readonly coverage: string[];
  readonly failure: Failure | null;
}

/** One fast-check run of BATCH_RUNS cases from `seed`; a failure comes back shrunk. */
export class Campaign {
  private readonly dir = mkdtempSync(join(tmpdir(), 'tsqemu-fuzz-'));
  private readonly coverage = new Set<string>();

  constructor(private readonly legacyStartInPrepare: boolean) {}

  runBatch(seed: number, runs = BATCH_RUNS): BatchResult {
    let cases = 0;
    const before = this.coverage.size;
    const fresh: string[] = [];
    const property = fc.property(caseArb, (fuzzCase) => {
      cases++;
      const report = runCase(fuzzCase, { dir: this.dir, legacyStartInPrepare: this.legacyStartInPrepare });
      for (const key of report.coverage) {
        if (!this.coverage.has(key)) {
          this.coverage.add(key);
          fresh.push(key);
        }
      }
    });
    const result = fc.check(property, { seed, numRuns: runs });
    let failure: Failure | null = null;
    if (result.failed) {
      const [fuzzCase] = result.counterexample as [FuzzCase];
      const error = result.errorInstance;
      failure = {
        format: 'tsqemu-fuzz-failure',
        version: 1,
        seed: result.seed,
        path: result.counterexamplePath ?? '',
        legacyStartInPrepare: this.legacyStartInPrepare,
        invariant: error instanceof InvariantError ? error.invariant : 'exception',
        message: error instanceof Error ? (error.stack ?? error.message) : String(error),
        fuzzCase,
      };
    }
    void before;
    return { cases, coverage: fresh, failure };
  }

  close(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
