// Snapshots of the virt demo guest at random quiescent points: after a restore (into the same
// machine and into a freshly built one) the run must continue exactly as it did, for any save
// point and distance: same probes, digest, events, output and counters.
// Reproduce a failure with FC_SEED=<seed> FC_PATH=<path>; VIRT_SNAPSHOT_RUNS=<n> tries more points.
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { fcReplayParams } from '../support/fc-params.js';
import { DemoConsole, continuations } from '../support/virt-snapshot-demo.js';

const numRuns = Number(process.env.VIRT_SNAPSHOT_RUNS ?? 12);
/** The demo guest retires about 24k instructions from reset to poweroff with the driver's typing. */
const DEMO_INSNS = 26_000;

const open: DemoConsole[] = [];
const track = (c: DemoConsole): DemoConsole => {
  open.push(c);
  return c;
};
afterEach(() => {
  for (const c of open.splice(0)) c.run.close();
});

describe('virt snapshots (property)', () => {
  it('any quiescent save point, any distance: the restored runs equal the original', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: DEMO_INSNS }), fc.integer({ min: 1, max: DEMO_INSNS }), (saveAt, distance) => {
        try {
          const result = continuations(saveAt, distance, track);
          if (result.savedAt === null) return; // the guest powered off before a quiescent point
          expect(result.sameMachine).toEqual(result.first);
          expect(result.freshMachine).toEqual(result.first);
        } finally {
          for (const c of open.splice(0)) c.run.close();
        }
      }),
      { numRuns, ...fcReplayParams() },
    );
  }, 300_000);
});
