import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MainLoop } from '../../src/engine/main-loop.js';
import type { Co } from '../../src/engine/coroutine.js';
import { createQcow2 } from '../../src/block/qcow2/create.js';
import { MemoryByteIO } from '../../src/block/qcow2/io.js';
import { Qcow2Image, type BackingSource } from '../../src/block/qcow2/qcow2.js';
import { checkQcow2 } from '../../src/block/qcow2/check.js';
import { ImageError } from '../../src/block/qcow2/errors.js';
import { fcReplayParams } from '../support/fc-params.js';

// fast-check prints the seed and path of any failure; rerun one with
//   FC_SEED=<seed> FC_PATH=<path> npx vitest run tests/property/qcow2-model.test.ts
const params = { numRuns: Number(process.env.FC_RUNS ?? 60), ...fcReplayParams() };

type Op =
  | { kind: 'write'; offset: number; len: number; fill: number }
  | { kind: 'zero'; offset: number; len: number; unmap: boolean }
  | { kind: 'discard'; offset: number; len: number }
  | { kind: 'cwrite'; cluster: number; fill: number }
  | { kind: 'reopen' };

const SIZE = 512 * 1024;

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('write' as const), offset: fc.nat(SIZE - 1), len: fc.integer({ min: 1, max: 150_000 }), fill: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('zero' as const), offset: fc.nat(SIZE - 1), len: fc.integer({ min: 1, max: 150_000 }), unmap: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('discard' as const), offset: fc.nat(SIZE - 1), len: fc.integer({ min: 1, max: 200_000 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('cwrite' as const), cluster: fc.nat(1000), fill: fc.integer({ min: 0, max: 255 }) }) },
);

function run<T>(loop: MainLoop, co: Co<T>): T {
  return loop.runCoroutine('prop', co);
}

/** Varied, position-dependent bytes so misplaced data shows up. */
function fillBytes(len: number, fill: number, offset: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (fill + ((offset + i) >> 9)) & 0xff || 1;
  return b;
}

describe('qcow2 against an in-memory model (property)', () => {
  it('random writes, zero writes, discards and reopens read back like the model; check stays clean', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(512, 4096, 65536),
        fc.constantFrom('none' as const, 'raw' as const, 'qcow2' as const),
        fc.constantFrom('1.1', '0.10'),
        fc.array(opArb, { maxLength: 20 }),
        (clusterSize, backingKind, compat, ops) => {
          const loop = new MainLoop();
          // v2 discard exposes the backing file again; the model below covers v3 semantics for backing chains.
          const withBacking = backingKind !== 'none' && compat === '1.1';
          const baseData = new Uint8Array(SIZE);
          for (let i = 0; i < SIZE; i++) baseData[i] = (i * 7 + (i >> 12)) & 0xff;
          let backing: BackingSource | null = null;
          if (withBacking && backingKind === 'raw') {
            backing = { sizeBytes: SIZE, *read(off, buf) { buf.set(baseData.subarray(off, off + buf.length)); } };
          } else if (withBacking) {
            const bio = new MemoryByteIO('base.qcow2');
            run(loop, createQcow2(bio, { sizeBytes: SIZE, clusterSize: 4096 }));
            const base = run(loop, Qcow2Image.open(bio));
            run(loop, base.write(0, baseData));
            run(loop, base.close());
            const ro = run(loop, Qcow2Image.open(bio, { readOnly: true }));
            backing = { sizeBytes: SIZE, read: (off, buf) => ro.read(off, buf) };
          }
          const model = withBacking ? baseData.slice() : new Uint8Array(SIZE);
          const io = new MemoryByteIO('top.qcow2');
          run(loop, createQcow2(io, { sizeBytes: SIZE, clusterSize, compat, backingFile: withBacking ? 'base' : null, backingFormat: withBacking ? backingKind : null }));
          let img = run(loop, Qcow2Image.open(io, { backing }));
          for (const op of ops) {
            if (op.kind === 'reopen') {
              run(loop, img.close());
              img = run(loop, Qcow2Image.open(io, { backing }));
              continue;
            }
            if (op.kind === 'cwrite') {
              // Compressed writes only go to unallocated or zero clusters; elsewhere they fail (EIO).
              const offset = (op.cluster % (SIZE / clusterSize)) * clusterSize;
              const data = fillBytes(clusterSize, op.fill, offset);
              if (op.fill % 3 === 0) data.fill(op.fill, 0, clusterSize / 2); // compressible half
              try {
                run(loop, img.writeCompressed(offset, data));
                model.set(data, offset);
              } catch (e) {
                if (!(e instanceof ImageError) || e.errno !== 'EIO') throw e;
              }
              continue;
            }
            const len = Math.min(op.len, SIZE - op.offset);
            if (op.kind === 'write') {
              const data = fillBytes(len, op.fill, op.offset);
              run(loop, img.write(op.offset, data));
              model.set(data, op.offset);
            } else if (op.kind === 'zero') {
              run(loop, img.writeZeroes(op.offset, len, op.unmap));
              model.fill(0, op.offset, op.offset + len);
            } else {
              run(loop, img.discard(op.offset, len));
              // Whole clusters inside the range (or up to the end of the disk) read as zero afterwards.
              const start = Math.ceil(op.offset / clusterSize) * clusterSize;
              const end = op.offset + len === SIZE ? SIZE : Math.floor((op.offset + len) / clusterSize) * clusterSize;
              if (start < end) model.fill(0, start, end);
            }
          }
          const back = new Uint8Array(SIZE);
          run(loop, img.read(0, back));
          expect(Buffer.compare(back, model)).toBe(0);
          run(loop, img.close());
          const ro = run(loop, Qcow2Image.open(io, { readOnly: true, forCheck: true }));
          const r = run(loop, checkQcow2(ro, { leaks: false, errors: false }));
          expect({ corruptions: r.corruptions, leaks: r.leaks, checkErrors: r.checkErrors }).toEqual({ corruptions: 0, leaks: 0, checkErrors: 0 });
        },
      ),
      params,
    );
  });
});
