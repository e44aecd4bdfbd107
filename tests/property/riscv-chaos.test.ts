// Chaos: fully random instruction words (any encoding, CSR writes, wild addresses, traps) never
// raise a host exception or hang, and the JIT and the interpreter still agree on the final
// architectural state and instret. Reproduce with FC_SEED=<seed> FC_PATH=<path>.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SpikeBus } from '../../src/engine/hw/spike/bus.js';
import { RiscvHart } from '../../src/engine/targets/riscv/hart.js';
import { RiscvJit } from '../../src/engine/targets/riscv/translate.js';
import { fcReplayParams } from '../support/fc-params.js';

const RAM_BASE = 0x80000000;
const params = { numRuns: 150, ...fcReplayParams() };

/** Trap handler at RAM_BASE + 0x1000: mepc += 4; mret (x31 is its scratch). */
const HANDLER = [0x34102ff3, 0x004f8f93, 0x341f9073, 0x30200073];

function machine(xlen: 32 | 64, jit: boolean): { hart: RiscvHart; ram: Uint8Array; j: RiscvJit | null } {
  const bus = new SpikeBus();
  const ram = new Uint8Array(1 << 16);
  bus.addRam({ name: 'ram', base: RAM_BASE, sizeBytes: ram.length, bytes: ram, readonly: false });
  const hart = new RiscvHart({ xlen, hartId: 0, resetPc: RAM_BASE, memory: bus, readTime: () => 0n });
  let j: RiscvJit | null = null;
  if (jit) {
    j = new RiscvJit(1);
    hart.attachJit(j);
  }
  return { hart, ram, j };
}

describe('RISC-V chaos (random encodings)', () => {
  for (const xlen of [64, 32] as const) {
    const a = machine(xlen, false);
    const b = machine(xlen, true);
    it(`rv${xlen}: no host exception, JIT == interpreter`, () => {
      fc.assert(
        fc.property(
          fc.array(fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffff })), { minLength: 1, maxLength: 40 }),
          fc.array(fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }), { minLength: 31, maxLength: 31 }),
          fc.integer({ min: 1, max: 2000 }),
          (words, regs, budget) => {
            for (const m of [a, b]) {
              m.ram.fill(0);
              const dv = new DataView(m.ram.buffer);
              words.forEach((w, k) => dv.setUint32(4 * k, w >>> 0, true));
              dv.setUint32(4 * words.length, 0x0000006f, true); // j . (spin)
              HANDLER.forEach((w, k) => dv.setUint32(0x1000 + 4 * k, w, true));
              m.hart.icount = 0;
              m.hart.reset();
              m.j?.flush();
              m.hart.codeEpoch++;
              for (let k = 1; k < 31; k++) m.hart.x[k] = xlen === 32 ? BigInt.asIntN(32, regs[k]!) : regs[k]!;
              m.hart.mtvec = BigInt(RAM_BASE + 0x1000);
              m.hart.mstatus |= 0x2000;
            }
            for (let left = budget; left > 0; ) {
              const slice = Math.min(left, 37);
              a.hart.run(slice);
              b.hart.run(slice);
              left -= slice;
            }
            expect(b.hart.icount).toBe(a.hart.icount);
            expect(b.hart.getPc()).toBe(a.hart.getPc());
            expect(Array.from(b.hart.xi)).toEqual(Array.from(a.hart.xi));
            expect(b.hart.stateDigest()).toBe(a.hart.stateDigest());
          },
        ),
        params,
      );
    });
  }
});
