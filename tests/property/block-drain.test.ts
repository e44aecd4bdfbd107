import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Co, sleep } from '../../src/engine/coroutine.js';
import { MainLoop } from '../../src/engine/main-loop.js';
import { BlockBackend, devicePerms } from '../../src/block/block-backend.js';
import { BlockGraph } from '../../src/block/graph.js';
import { bdrvDrainedBegin, bdrvDrainedEnd, bdrvIsBusy } from '../../src/block/io.js';
import { throttleGroupAdd } from '../../src/block/throttle-groups.js';
import { fcReplayParams } from '../support/fc-params.js';

// fast-check prints the seed and path of any failure; rerun one with
//   FC_SEED=<seed> FC_PATH=<path> npx vitest run tests/property/block-drain.test.ts
const params = { numRuns: 60, ...fcReplayParams() };

const SIZE = 1 << 20;

interface Req {
  readonly kind: 'read' | 'write' | 'zero' | 'discard' | 'flush';
  readonly startNs: number;
  readonly offset: number;
  readonly bytes: number;
}

const reqArb: fc.Arbitrary<Req> = fc.record({
  kind: fc.constantFrom('read' as const, 'write' as const, 'zero' as const, 'discard' as const, 'flush' as const),
  startNs: fc.integer({ min: 0, max: 200_000 }),
  offset: fc.integer({ min: 0, max: SIZE - 1 }),
  bytes: fc.integer({ min: 1, max: 70_000 }),
}).map((r) => ({ ...r, bytes: Math.min(r.bytes, SIZE - r.offset) }));

/** Drained sections: begin at `atNs`, nested `depth` times, each held for `holdNs`. */
const drainArb = fc.array(fc.record({ atNs: fc.integer({ min: 0, max: 250_000 }), depth: fc.integer({ min: 1, max: 3 }), holdNs: fc.integer({ min: 0, max: 50_000 }) }), { maxLength: 4 });

describe('drain (property): nothing is in flight inside a drained section, nothing leaks after', () => {
  it('random concurrent requests through throttle/raw/blkdebug/null-aio with random nested drains', () => {
    fc.assert(
      fc.property(fc.array(reqArb, { minLength: 1, maxLength: 24 }), drainArb, fc.integer({ min: 0, max: 1 << 30 }), (reqs, drains, seed) => {
        const loop = new MainLoop({ policy: 'explore', seed });
        const graph = new BlockGraph(loop);
        throttleGroupAdd(graph, 'tg', { limits: { 'iops-total': 20_000, 'bps-total': 200 * 1024 * 1024 } });
        const bs = graph.blockdevAdd({
          driver: 'throttle',
          'throttle-group': 'tg',
          file: {
            driver: 'raw',
            discard: 'unmap',
            file: {
              driver: 'blkdebug',
              align: 4096,
              discard: 'unmap',
              'inject-error': [{ event: 'pwritev_rmw_after_head', errno: 5, once: true }],
              image: { driver: 'null-aio', size: SIZE, 'latency-ns': 7_000, discard: 'unmap', 'read-zeroes': true },
            },
          },
        });
        const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
        let finished = 0;
        const completedInSection: number[] = [];
        let inSection = false;
        reqs.forEach((r, i) => {
          loop.spawn(`req${i}`, (function* (): Co {
            yield sleep(r.startNs);
            const buf = new Uint8Array(r.bytes);
            let ret: number;
            switch (r.kind) {
              case 'read':
                ret = yield* blk.coPreadv(r.offset, r.bytes, buf);
                break;
              case 'write':
                ret = yield* blk.coPwritev(r.offset, r.bytes, buf);
                break;
              case 'zero':
                ret = yield* blk.coPwriteZeroes(r.offset, r.bytes);
                break;
              case 'discard':
                ret = yield* blk.coPdiscard(r.offset, r.bytes);
                break;
              case 'flush':
                ret = yield* blk.coFlush();
                break;
            }
            expect(ret === 0 || ret === -5).toBe(true);
            if (inSection) completedInSection.push(i);
            finished++;
          })());
        });
        for (const d of [...drains].sort((a, b) => a.atNs - b.atNs)) {
          loop.runUntil(() => false, { untilNs: Math.max(loop.nowNs, d.atNs) });
          for (let k = 0; k < d.depth; k++) bdrvDrainedBegin(bs);
          expect(bdrvIsBusy(bs)).toBe(false);
          for (const node of graph.nodes.values()) expect(node.inFlight).toBe(0);
          inSection = true;
          loop.runUntil(() => false, { untilNs: loop.nowNs + d.holdNs });
          inSection = false;
          for (let k = 0; k < d.depth; k++) bdrvDrainedEnd(bs);
        }
        loop.runUntilIdle();
        expect(completedInSection).toEqual([]);
        expect(finished).toBe(reqs.length);
        for (const node of graph.nodes.values()) {
          expect(node.inFlight).toBe(0);
          expect(node.trackedRequests).toHaveLength(0);
          expect(node.quiesceCounter).toBe(0);
        }
        expect(blk.inFlight).toBe(0);
        expect(blk.quiesceCounter).toBe(0);
      }),
      params,
    );
  });
});
