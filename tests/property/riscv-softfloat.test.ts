// Soft-float: the binary64/binary32 RNE fast paths agree bit for bit (and in NX) with the exact
// BigInt path, and the exact path agrees with the host's IEEE doubles for RNE results.
// Reproduce with FC_SEED=<seed> FC_PATH=<path>.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as sf from '../../src/engine/targets/riscv/softfloat.js';
import { fcReplayParams } from '../support/fc-params.js';

const params = { numRuns: 3000, ...fcReplayParams() };
const f64 = new Float64Array(1);
const u64 = new BigUint64Array(f64.buffer);
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bits64 = (x: number): bigint => ((f64[0] = x), u64[0]!);
const bits32 = (x: number): bigint => ((f32[0] = x), BigInt(u32[0]!));

/** Doubles that hit interesting cases: short mantissas (exact ops), random bits, extremes. */
const dbl = fc.oneof(
  fc.integer({ min: -4096, max: 4096 }).map((n) => n / 64),
  fc.constantFrom(0, -0), // zero operands and exact zero results take the fast paths too
  fc.double({ noNaN: true }),
  fc.double({ min: 1e-300, max: 1e300, noNaN: true }),
);
const flt = fc.oneof(
  fc.integer({ min: -4096, max: 4096 }).map((n) => Math.fround(n / 64)),
  fc.float({ noNaN: true }).map((x) => Math.fround(x)),
);
const slow64 = [sf.fadd, sf.fsub, sf.fmul, sf.fdiv];

describe('soft-float fast paths', () => {
  it('binary64 + - * / sqrt and fma', () => {
    fc.assert(
      fc.property(dbl, dbl, dbl, fc.integer({ min: 0, max: 4 }), (a, b, c, op) => {
        sf.fpState.flags = 0;
        const fast = sf.fastOp64(op as 0 | 1 | 2 | 3 | 4, a, b);
        const fastFlags = sf.fpState.flags;
        sf.fpState.flags = 0;
        const slow = op === 4 ? sf.fsqrt(bits64(a), sf.F64, sf.Rm.RNE) : slow64[op]!(bits64(a), bits64(b), sf.F64, sf.Rm.RNE);
        const slowFlags = sf.fpState.flags;
        if (fast !== undefined) {
          expect(bits64(fast)).toBe(slow);
          expect(fastFlags).toBe(slowFlags);
        }
        // The exact path's RNE result equals the host's double arithmetic when that is not NaN.
        const host = [a + b, a - b, a * b, a / b, Math.sqrt(a)][op]!;
        if (!Number.isNaN(host)) expect(slow).toBe(bits64(host));
        sf.fpState.flags = 0;
        const ff = sf.fastFma64(a, b, c);
        const ffFlags = sf.fpState.flags;
        sf.fpState.flags = 0;
        const sfma = sf.ffma(bits64(a), bits64(b), bits64(c), false, false, sf.F64, sf.Rm.RNE);
        if (ff !== undefined) {
          expect(bits64(ff)).toBe(sfma);
          expect(ffFlags).toBe(sf.fpState.flags);
        }
      }),
      params,
    );
  });

  it('binary32 + - * / sqrt', () => {
    fc.assert(
      fc.property(flt, flt, fc.integer({ min: 0, max: 4 }), (a, b, op) => {
        sf.fpState.flags = 0;
        const fast = sf.fastOp32(op as 0 | 1 | 2 | 3 | 4, a, b);
        const fastFlags = sf.fpState.flags;
        sf.fpState.flags = 0;
        const slow = op === 4 ? sf.fsqrt(bits32(a), sf.F32, sf.Rm.RNE) : slow64[op]!(bits32(a), bits32(b), sf.F32, sf.Rm.RNE);
        if (fast !== undefined) {
          expect(bits32(fast)).toBe(slow);
          expect(fastFlags).toBe(sf.fpState.flags);
        }
      }),
      params,
    );
  });
});
