import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createVm } from '../../src/system/vm.js';
import { caseArbWith } from '../fuzz/commands.js';
import { runCase } from '../fuzz/harness.js';
import type { BenchCase } from './types.js';

type ScenarioVm = ReturnType<typeof createVm>;

function scenarioVm(): ScenarioVm {
  const vm = createVm();
  vm.qmp('blockdev-add', { driver: 'null-co', 'node-name': 'e0', size: 0 });
  vm.qmp('blockdev-add', { driver: 'null-co', 'node-name': 'te', size: 0 });
  return vm;
}

const COMMIT = [{ type: 'blockdev-backup', data: { 'job-id': 'j0', device: 'e0', target: 'te', sync: 'full' } }];
const ABORT = [...COMMIT, { type: 'abort', data: {} }];

/**
 * One empty-backup transaction scenario on a running VM, as a QMP client drives QEMU: the
 * transaction (committed or aborted by an abort action), then the job's whole life to null.
 */
function emptyBackupScenario(vm: ScenarioVm, abort: boolean): void {
  vm.qmp('transaction', { actions: abort ? ABORT : COMMIT });
  vm.run();
}

function scenariosPerSecond(fresh: boolean): number {
  let vm = scenarioVm();
  const once = (i: number) => {
    if (fresh) vm = scenarioVm();
    emptyBackupScenario(vm, i % 2 === 0);
  };
  for (let i = 0; i < 500; i++) once(i); // warm up
  const start = performance.now();
  let n = 0;
  while (performance.now() - start < 1500) once(n++);
  return (n / (performance.now() - start)) * 1000;
}

/** Wall time for fast-check to find and shrink the legacy empty-backup race, per seed. */
function raceFindTimesMs(seeds: number): number[] {
  const dir = mkdtempSync(join(tmpdir(), 'bench-fuzz-'));
  const times: number[] = [];
  try {
    const property = fc.property(caseArbWith(3), (fuzzCase) => {
      runCase(fuzzCase, { dir, legacyStartInPrepare: true, ignore: ['txn-job-starts-only-after-commit', 'aborted-txn-never-starts-jobs'] });
    });
    for (let seed = 1; seed <= seeds; seed++) {
      const start = performance.now();
      const result = fc.check(property, { seed, numRuns: 5000 });
      times.push(result.failed ? performance.now() - start : Infinity);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return times.sort((a, b) => a - b);
}

export const benchCases: BenchCase[] = [
  {
    name: 'fuzz',
    group: 'fuzz',
    run() {
      const times = raceFindTimesMs(10);
      const median = (times[4]! + times[5]!) / 2;
      return [
        { name: 'empty-backup transaction scenarios (1 process)', value: scenariosPerSecond(false), unit: 'scenarios/s', note: 'one VM, half committed, half aborted; aim ≥ 10,000/s; QEMU over QMP ~600/s' },
        { name: 'same, each on a fresh VM (fuzzer case cost)', value: scenariosPerSecond(true), unit: 'scenarios/s' },
        { name: 'find + shrink legacy race (median, 10 seeds)', value: median, unit: 'ms', note: `all: ${times.map((t) => (Number.isFinite(t) ? t.toFixed(0) : 'not found')).join(', ')}` },
      ];
    },
  },
];
