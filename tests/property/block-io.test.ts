import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import type { Co } from '../../src/engine/coroutine.js';
import { MainLoop } from '../../src/engine/main-loop.js';
import { BlockBackend, devicePerms } from '../../src/block/block-backend.js';
import { BlockGraph } from '../../src/block/graph.js';
import type { BlockdevOptions } from '../../src/block/options.js';
import { throttleGroupAdd } from '../../src/block/throttle-groups.js';
import { fcReplayParams } from '../support/fc-params.js';

// fast-check prints the seed and path of any failure; rerun one with
//   FC_SEED=<seed> FC_PATH=<path> npx vitest run tests/property/block-io.test.ts
const params = { numRuns: 40, ...fcReplayParams() };

const SIZE = 64 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'tsqemu-prop-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileCounter = 0;

type Op =
  | { kind: 'write'; offset: number; bytes: number; fill: number }
  | { kind: 'zero'; offset: number; bytes: number; unmap: boolean }
  | { kind: 'discard'; offset: number; bytes: number }
  | { kind: 'read'; offset: number; bytes: number }
  | { kind: 'flush' }
  /** Writes issued together: they may overlap within a block but never byte-wise. */
  | { kind: 'concurrent'; writes: { offset: number; bytes: number; fill: number }[] };

const range = fc.integer({ min: 0, max: SIZE - 1 }).chain((offset) => fc.integer({ min: 1, max: Math.min(SIZE - offset, 9000) }).map((bytes) => ({ offset, bytes })));

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(range, fc.integer({ min: 1, max: 255 })).map(([r, fill]) => ({ kind: 'write' as const, ...r, fill })) },
  { weight: 2, arbitrary: fc.tuple(range, fc.boolean()).map(([r, unmap]) => ({ kind: 'zero' as const, ...r, unmap })) },
  { weight: 1, arbitrary: range.map((r) => ({ kind: 'discard' as const, ...r })) },
  { weight: 3, arbitrary: range.map((r) => ({ kind: 'read' as const, ...r })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'flush' as const }) },
  {
    weight: 2,
    arbitrary: fc.array(fc.tuple(fc.integer({ min: 0, max: SIZE / 256 - 1 }), fc.integer({ min: 1, max: 255 })), { minLength: 2, maxLength: 6 }).map((slots) => {
      // Distinct 256-byte slots, each written partly: byte-disjoint, often sharing 4 KiB blocks.
      const seen = new Set<number>();
      const writes = [];
      for (const [slot, fill] of slots) {
        if (seen.has(slot)) continue;
        seen.add(slot);
        writes.push({ offset: slot * 256 + (fill % 64), bytes: 100 + (fill % 100), fill });
      }
      return { kind: 'concurrent' as const, writes };
    }),
  },
);

type Stack = 'file' | 'raw-file' | 'raw-blkdebug-align' | 'throttle-raw-file' | 'null';

function stackOptions(stack: Stack, path: string): BlockdevOptions {
  // no-flush: a flush still runs the generic path but skips fdatasync, which can take 100s of ms
  // on a busy disk (the unit tests cover a real one).
  const file = { driver: 'file', filename: path, cache: { 'no-flush': true } };
  switch (stack) {
    case 'file':
      return { ...file, discard: 'unmap' };
    case 'raw-file':
      return { driver: 'raw', file, discard: 'unmap', 'detect-zeroes': 'unmap' };
    case 'raw-blkdebug-align':
      return { driver: 'raw', discard: 'unmap', file: { driver: 'blkdebug', align: 4096, discard: 'unmap', image: file } };
    case 'throttle-raw-file':
      return { driver: 'throttle', 'throttle-group': 'tg', file: { driver: 'raw', file, 'detect-zeroes': 'on' } };
    case 'null':
      return { driver: 'null-aio', size: SIZE, 'read-zeroes': true, 'latency-ns': 3000 };
  }
}

function runOps(stack: Stack, ops: Op[], seed: number): void {
  const path = join(dir, `img${fileCounter++}.raw`);
  const model = new Uint8Array(SIZE);
  for (let i = 0; i < SIZE; i++) model[i] = (i * 31 + 7) & 0xff;
  // After a discard the contents are unspecified: `known` says which bytes the model vouches for.
  const known = new Uint8Array(SIZE).fill(1);
  const isNull = stack === 'null';
  if (isNull) model.fill(0);
  writeFileSync(path, model);
  const loop = new MainLoop({ policy: 'explore', seed });
  const graph = new BlockGraph(loop);
  throttleGroupAdd(graph, 'tg', { limits: { 'bps-total': 64 * 1024 * 1024, 'iops-total': 2000 } });
  const bs = graph.blockdevAdd(stackOptions(stack, path));
  const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
  const check = (offset: number, buf: Uint8Array): void => {
    for (let i = 0; i < buf.length; i++) {
      if (known[offset + i] === 1 && buf[i] !== model[offset + i]) {
        throw new Error(`byte ${offset + i}: read ${buf[i]}, model ${model[offset + i]}`);
      }
    }
  };
  loop.runCoroutine('ops', (function* (): Co {
    for (const op of ops) {
      switch (op.kind) {
        case 'write': {
          const ret = yield* blk.coPwritev(op.offset, op.bytes, new Uint8Array(op.bytes).fill(op.fill));
          expect(ret).toBe(0);
          if (!isNull) {
            model.fill(op.fill, op.offset, op.offset + op.bytes);
            known.fill(1, op.offset, op.offset + op.bytes);
          }
          break;
        }
        case 'zero': {
          expect(yield* blk.coPwriteZeroes(op.offset, op.bytes, op.unmap ? 4 : 0)).toBe(0);
          model.fill(0, op.offset, op.offset + op.bytes);
          known.fill(1, op.offset, op.offset + op.bytes);
          break;
        }
        case 'discard':
          expect(yield* blk.coPdiscard(op.offset, op.bytes)).toBe(0);
          known.fill(0, op.offset, op.offset + op.bytes);
          break;
        case 'read': {
          const buf = new Uint8Array(op.bytes).fill(0xee);
          expect(yield* blk.coPreadv(op.offset, op.bytes, buf)).toBe(0);
          check(op.offset, buf);
          break;
        }
        case 'flush':
          expect(yield* blk.coFlush()).toBe(0);
          break;
        case 'concurrent': {
          const cos = op.writes.map((w, i) =>
            loop.spawn(`cw${i}`, blk.coPwritev(w.offset, w.bytes, new Uint8Array(w.bytes).fill(w.fill))),
          );
          for (const co of cos) expect(yield* co.join()).toBe(0);
          if (!isNull) {
            for (const w of op.writes) {
              model.fill(w.fill, w.offset, w.offset + w.bytes);
              known.fill(1, w.offset, w.offset + w.bytes);
            }
          }
          break;
        }
      }
    }
    const all = new Uint8Array(SIZE);
    expect(yield* blk.coPreadv(0, SIZE, all)).toBe(0);
    check(0, all);
  })());
  for (const node of graph.nodes.values()) {
    expect(node.inFlight).toBe(0);
    expect(node.trackedRequests).toHaveLength(0);
  }
  expect(blk.inFlight).toBe(0);
  blk.dispose();
  graph.closeAll();
  expect(graph.nodes.size).toBe(0);
  rmSync(path, { force: true });
}

describe('block I/O (property): random writes, zero writes and discards read back like a model', () => {
  for (const stack of ['file', 'raw-file', 'raw-blkdebug-align', 'throttle-raw-file', 'null'] as const) {
    it(stack, () => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 1, maxLength: 25 }), fc.integer({ min: 0, max: 1 << 30 }), (ops, seed) => {
          runOps(stack, ops, seed);
        }),
        params,
      );
    });
  }
});
