import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BdrvDirtyBitmap } from '../../src/block/dirty-bitmap.js';
import { fcReplayParams } from '../support/fc-params.js';

// fast-check prints the seed and path of any failure; rerun one with
//   FC_SEED=<seed> FC_PATH=<path> npx vitest run tests/property/block-dirty-bitmap.test.ts
const params = { numRuns: 300, ...fcReplayParams() };

type Op =
  | { kind: 'set'; offset: number; bytes: number }
  | { kind: 'reset'; granule: number; count: number }
  | { kind: 'setAll' }
  | { kind: 'resetAll' }
  | { kind: 'truncate'; size: number }
  | { kind: 'merge'; granularityShift: number; ranges: [number, number][] }
  | { kind: 'roundtrip' }
  | { kind: 'restore' };

const MAX_SIZE = 1 << 20;

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(fc.integer({ min: 0, max: MAX_SIZE }), fc.integer({ min: 0, max: 200_000 })).map(([offset, bytes]) => ({ kind: 'set' as const, offset, bytes })) },
  { weight: 3, arbitrary: fc.tuple(fc.integer({ min: 0, max: 2100 }), fc.integer({ min: 0, max: 300 })).map(([granule, count]) => ({ kind: 'reset' as const, granule, count })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'setAll' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'resetAll' as const }) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: MAX_SIZE }).map((size) => ({ kind: 'truncate' as const, size })) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.integer({ min: 0, max: 4 }), fc.array(fc.tuple(fc.integer({ min: 0, max: MAX_SIZE }), fc.integer({ min: 1, max: 100_000 })), { maxLength: 5 }))
      .map(([granularityShift, ranges]) => ({ kind: 'merge' as const, granularityShift, ranges })),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'roundtrip' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'restore' as const }) },
);

/** The model: one boolean per granule. */
class Model {
  bits: boolean[];
  constructor(
    readonly granularity: number,
    public size: number,
  ) {
    this.bits = new Array<boolean>(Math.ceil(size / granularity)).fill(false);
  }
  set(offset: number, bytes: number, value: boolean): void {
    if (bytes === 0 || offset >= this.size) return;
    const end = Math.min(this.size, offset + bytes);
    for (let g = Math.floor(offset / this.granularity); g < Math.ceil(end / this.granularity); g++) this.bits[g] = value;
  }
  truncate(size: number): void {
    const n = Math.ceil(size / this.granularity);
    const next = new Array<boolean>(n).fill(false);
    for (let i = 0; i < Math.min(n, this.bits.length); i++) next[i] = this.bits[i]!;
    this.bits = next;
    this.size = size;
  }
  get count(): number {
    return this.bits.filter(Boolean).length * this.granularity;
  }
  get(offset: number): boolean {
    return offset < this.size && this.bits[Math.floor(offset / this.granularity)] === true;
  }
  next(offset: number, value: boolean): number {
    for (let g = Math.floor(offset / this.granularity); g < this.bits.length; g++) {
      if (this.bits[g] === value) return Math.max(offset, g * this.granularity);
    }
    return -1;
  }
}

describe('dirty bitmap (property): operations match a one-bit-per-granule model', () => {
  it('count, get, next dirty/zero and areas agree after every operation', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 9, max: 16 }),
        fc.integer({ min: 0, max: MAX_SIZE }),
        fc.array(opArb, { maxLength: 30 }),
        fc.array(fc.integer({ min: 0, max: MAX_SIZE }), { minLength: 4, maxLength: 4 }),
        (shift, size, ops, probes) => {
          const granularity = 2 ** shift;
          const bitmap = new BdrvDirtyBitmap(null, 'b', granularity, size);
          const model = new Model(granularity, size);
          let saved: { words: Uint32Array; bits: boolean[]; size: number } | null = null;
          for (const op of ops) {
            switch (op.kind) {
              case 'set':
                bitmap.setRange(op.offset, op.bytes);
                model.set(op.offset, op.bytes, true);
                break;
              case 'reset':
                bitmap.resetRange(op.granule * granularity, op.count * granularity);
                model.set(op.granule * granularity, op.count * granularity, false);
                break;
              case 'setAll':
                bitmap.setAll();
                model.set(0, model.size, true);
                break;
              case 'resetAll':
                bitmap.resetAll();
                model.set(0, model.size, false);
                break;
              case 'truncate':
                bitmap.truncate(op.size);
                model.truncate(op.size);
                saved = null;
                break;
              case 'merge': {
                const other = new BdrvDirtyBitmap(null, 'o', 2 ** (9 + op.granularityShift * 2), model.size);
                for (const [offset, bytes] of op.ranges) other.setRange(offset, bytes);
                bitmap.orFrom(other);
                for (let g = 0; g * other.granularity < model.size; g++) {
                  if (other.get(g * other.granularity)) model.set(g * other.granularity, other.granularity, true);
                }
                break;
              }
              case 'roundtrip': {
                const copy = new BdrvDirtyBitmap(null, 'c', granularity, model.size);
                copy.deserialize(bitmap.serialize().bits);
                expect(copy.count).toBe(bitmap.count);
                bitmap.deserialize(copy.serialize().bits);
                saved = { words: bitmap.copyBits(), bits: model.bits.slice(), size: model.size };
                break;
              }
              case 'restore':
                if (saved !== null && saved.size === model.size) {
                  bitmap.restoreBits(saved.words);
                  model.bits = saved.bits.slice();
                }
                break;
            }
            expect(bitmap.count).toBe(model.count);
            expect(bitmap.sizeBytes).toBe(model.size);
          }
          for (const raw of probes) {
            const p = Math.min(raw, Math.max(0, model.size - 1));
            expect(bitmap.get(p)).toBe(model.get(p));
            expect(bitmap.nextDirty(p)).toBe(model.size === 0 ? -1 : model.next(p, true));
            expect(bitmap.nextZero(p)).toBe(model.size === 0 ? -1 : model.next(p, false));
            const area = bitmap.nextDirtyArea(p, model.size, 3 * granularity);
            const start = model.size === 0 ? -1 : model.next(p, true);
            if (start < 0) expect(area).toBe(null);
            else {
              expect(area?.offset).toBe(start);
              let end = start;
              while (end < Math.min(model.size, start + 3 * granularity) && model.get(end)) end = Math.min(model.size, (Math.floor(end / granularity) + 1) * granularity);
              expect(area?.bytes).toBe(Math.min(end, start + 3 * granularity) - start);
            }
          }
          let counted = 0;
          for (let g = 0; g < model.bits.length; g++) if (model.bits[g]) counted += bitmap.countRange(g * granularity, granularity);
          expect(counted).toBe(model.count);
        },
      ),
      params,
    );
  });
});
