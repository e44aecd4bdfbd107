import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MainLoop } from '../../src/engine/main-loop.js';
import type { Co } from '../../src/engine/coroutine.js';
import { BlockGraph } from '../../src/block/graph.js';
import { bdrvCoPreadv, bdrvCoPwritev } from '../../src/block/io.js';
import '../../src/block/qcow2/driver.js';
import { createQcow2 } from '../../src/block/qcow2/create.js';
import { HostFileIO } from '../../src/block/image/host-file.js';
import { Qcow2Image } from '../../src/block/qcow2/qcow2.js';
import { checkQcow2 } from '../../src/block/qcow2/check.js';
import { fcReplayParams } from '../support/fc-params.js';

// fast-check prints the seed and path of any failure; rerun one with
//   FC_SEED=<seed> FC_PATH=<path> npx vitest run tests/property/qcow2-concurrency.test.ts
const params = { numRuns: Number(process.env.FC_RUNS ?? 25), ...fcReplayParams() };

const dir = mkdtempSync(join(tmpdir(), 'tsqemu-qcow2-conc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SIZE = 1 << 20;
const CS = 4096;
let counter = 0;

describe('qcow2 under concurrent requests (property, explore policy)', () => {
  it('concurrent sub-cluster writes into the same unallocated clusters all land; check is clean', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 30 }), fc.array(fc.record({ cluster: fc.nat(40), part: fc.nat(7) }), { minLength: 2, maxLength: 24 }), (seed, writes) => {
        const path = join(dir, `img${counter++}.qcow2`);
        const io = HostFileIO.open(path, { create: true });
        new MainLoop().runCoroutine('create', createQcow2(io, { sizeBytes: SIZE, clusterSize: CS }));
        io.close();
        const loop = new MainLoop({ seed, policy: 'explore' });
        const graph = new BlockGraph(loop);
        const bs = graph.blockdevAdd({ driver: 'qcow2', file: { driver: 'file', filename: path } });
        // Each (cluster, part) is an eighth of a cluster; duplicates write the same bytes, so any order is fine.
        const model = new Uint8Array(SIZE);
        const cos = writes.map(({ cluster, part }) => {
          const offset = cluster * CS + part * (CS / 8);
          const data = new Uint8Array(CS / 8).fill(1 + ((cluster * 8 + part) % 250));
          model.set(data, offset);
          return loop.spawn('w', (function* (): Co<number> {
            return yield* bdrvCoPwritev(bs, offset, data.length, data);
          })());
        });
        loop.runUntil(() => cos.every((c) => c.done));
        expect(cos.map((c) => c.result)).toEqual(cos.map(() => 0));
        const back = new Uint8Array(SIZE);
        expect(loop.runCoroutine('r', bdrvCoPreadv(bs, 0, SIZE, back))).toBe(0);
        expect(Buffer.compare(back, model)).toBe(0);
        loop.runCoroutine('close', graph.coCloseAll());
        const r = new MainLoop().runCoroutine('check', (function* () {
          const f = HostFileIO.open(path, { readOnly: true });
          const img = yield* Qcow2Image.open(f, { readOnly: true, forCheck: true });
          const res = yield* checkQcow2(img, { leaks: false, errors: false });
          f.close();
          return res;
        })());
        expect([r.corruptions, r.leaks, r.checkErrors]).toEqual([0, 0, 0]);
        rmSync(path);
      }),
      params,
    );
  });
});
