import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { programArb, runProgram, type Program } from '../support/kernel-programs.js';
import { replayPolicy } from '../../src/engine/policy.js';
import { fcReplayParams } from '../support/fc-params.js';

// fast-check prints the seed and path of any failure; rerun one with
//   npx vitest run tests/property/kernel.test.ts -t '<name>' and FC_SEED=<seed> FC_PATH=<path>
const params = { numRuns: 150, ...fcReplayParams() };

describe('kernel determinism (property)', () => {
  it('same program, same seed: same log and trace digest', () => {
    fc.assert(
      fc.property(programArb, fc.integer({ min: 0, max: 1 << 30 }), fc.constantFrom('fifo' as const, 'explore' as const), (program, seed, policy) => {
        const a = runProgram(program, { seed, policy });
        const b = runProgram(program, { seed, policy });
        expect(b.log).toEqual(a.log);
        expect(b.digest).toBe(a.digest);
      }),
      params,
    );
  });

  it('virtual time never goes backwards', () => {
    fc.assert(
      fc.property(programArb, fc.integer({ min: 0, max: 1 << 30 }), (program, seed) => {
        const { times } = runProgram(program, { seed, policy: 'explore' });
        for (let i = 1; i < times.length; i++) expect(times[i]!).toBeGreaterThanOrEqual(times[i - 1]!);
      }),
      params,
    );
  });

  it('external policy replays a recorded list of choices exactly', () => {
    fc.assert(
      fc.property(programArb, fc.integer({ min: 0, max: 1 << 30 }), (program, seed) => {
        const explored = runProgram(program, { seed, policy: 'explore' });
        const replayed = runProgram(program, { policy: replayPolicy(explored.choices) });
        expect(replayed.log).toEqual(explored.log);
        expect(replayed.choices).toEqual(explored.choices);
      }),
      params,
    );
  });

  it('explore finds at least two orders of a racy program', () => {
    const racy: Program = [
      [{ op: 'bh' }, { op: 'yield' }, { op: 'bh' }],
      [{ op: 'bh' }, { op: 'yield' }, { op: 'bh' }],
      [{ op: 'timer', ns: 0 }, { op: 'timer', ns: 0 }],
    ];
    const orders = new Set<string>();
    for (let seed = 0; seed < 32; seed++) orders.add(runProgram(racy, { seed, policy: 'explore' }).log.join(' '));
    expect(orders.size).toBeGreaterThanOrEqual(2);
    expect(new Set([0, 1, 2].map(() => runProgram(racy, { policy: 'fifo' }).log.join(' '))).size).toBe(1);
  });
});
