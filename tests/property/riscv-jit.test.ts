// JIT vs interpreter: random straight-line blocks closed by a counted self-loop run on two harts
// (one translating immediately, one interpreting); architectural state, memory and instret must
// match exactly, for any instruction budget (exact icount when a block does not fit the budget).
// Reproduce a failure with FC_SEED=<seed> FC_PATH=<path>; RISCV_JIT_RUNS=<n> runs more programs.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SpikeBus } from '../../src/engine/hw/spike/bus.js';
import { RiscvHart } from '../../src/engine/targets/riscv/hart.js';
import { RiscvJit } from '../../src/engine/targets/riscv/translate.js';
import { fcReplayParams } from '../support/fc-params.js';

const RAM_BASE = 0x80000000;
const DATA_OFF = 0x10000;
/** Bytes a program can occupy (24 body instructions + 3), rounded up. */
const CODE_BYTES = 0x200;
const numRuns = Number(process.env.RISCV_JIT_RUNS ?? 1500);
/**
 * Large runs (npm run jit-soak) are split into chunks of their own `it`, each with the next seed:
 * one synchronous property run of minutes would starve vitest's worker RPC. A failing chunk's
 * seed and path reproduce it with RISCV_JIT_RUNS at most one chunk.
 */
const CHUNK_RUNS = 10_000;
const chunks = Math.ceil(numRuns / CHUNK_RUNS);
const replay = fcReplayParams();
const baseSeed = replay.seed ?? fc.readConfigureGlobal().seed;

const r = (rd: number, f3: number, rs1: number, rs2: number, f7: number, op: number): number =>
  ((f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op) >>> 0;
const i = (rd: number, f3: number, rs1: number, imm: number, op: number): number => (((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op) >>> 0;
const s = (f3: number, rs1: number, rs2: number, imm: number): number =>
  ((((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 31) << 7) | 0x23) >>> 0;

/** Registers the generator may write (x30 = data base, x21 = loop counter are reserved). */
const reg = fc.integer({ min: 1, max: 20 });
const src = fc.integer({ min: 0, max: 20 });
const imm12 = fc.integer({ min: -2048, max: 2047 });
const BASE = 30;

const insnArb: fc.Arbitrary<number> = fc.oneof(
  // OP-IMM
  fc.tuple(reg, fc.constantFrom(0, 2, 3, 4, 6, 7), src, imm12).map(([rd, f3, rs1, imm]) => i(rd, f3, rs1, imm, 0x13)),
  fc.tuple(reg, src, fc.integer({ min: 0, max: 63 }), fc.constantFrom(0, 1, 2)).map(([rd, rs1, sh, k]) =>
    k === 0 ? i(rd, 1, rs1, sh, 0x13) : k === 1 ? i(rd, 5, rs1, sh, 0x13) : i(rd, 5, rs1, sh | 0x400, 0x13)),
  // OP and M
  fc.tuple(reg, fc.integer({ min: 0, max: 7 }), src, src, fc.constantFrom(0, 1, 0x20)).map(([rd, f3, rs1, rs2, f7]) =>
    r(rd, f3, rs1, rs2, f7 === 0x20 ? (f3 === 0 || f3 === 5 ? 0x20 : 0) : f7, 0x33)),
  // OP-32, OP-IMM-32
  fc.tuple(reg, fc.constantFrom(0, 1, 5), src, src, fc.constantFrom(0, 1, 0x20)).map(([rd, f3, rs1, rs2, f7]) =>
    r(rd, f3, rs1, rs2, f7 === 0x20 && f3 === 1 ? 0 : f7 === 1 && f3 !== 0 ? 0 : f7, 0x3b)),
  fc.tuple(reg, src, imm12).map(([rd, rs1, imm]) => i(rd, 0, rs1, imm, 0x1b)),
  fc.tuple(reg, src, fc.integer({ min: 0, max: 31 }), fc.constantFrom(0, 1, 2)).map(([rd, rs1, sh, k]) =>
    k === 0 ? i(rd, 1, rs1, sh, 0x1b) : k === 1 ? i(rd, 5, rs1, sh, 0x1b) : i(rd, 5, rs1, sh | 0x400, 0x1b)),
  // LUI / AUIPC
  fc.tuple(reg, fc.integer({ min: 0, max: 0xfffff }), fc.boolean()).map(([rd, u, a]) => (((u << 12) | (rd << 7) | (a ? 0x17 : 0x37)) >>> 0)),
  // loads and stores around the data base (misaligned included)
  fc.tuple(reg, fc.constantFrom(0, 1, 2, 3, 4, 5, 6), fc.integer({ min: 0, max: 2040 })).map(([rd, f3, off]) => i(rd, f3, BASE, off, 0x03)),
  fc.tuple(fc.constantFrom(0, 1, 2, 3), src, fc.integer({ min: 0, max: 2040 })).map(([f3, rs2, off]) => s(f3, BASE, rs2, off)),
  // a forward branch over the next instruction (stays in the block's straight line when not taken)
  fc.tuple(fc.integer({ min: 0, max: 7 }).filter((f) => f !== 2 && f !== 3), src, src).map(([f3, a, b]) =>
    (((8 >> 1) & 0xf) << 8 | (f3 << 12) | (a << 15) | (b << 20) | 0x63) >>> 0),
);

/** Program: body, `addi x21, x21, -1`, `bne x21, x0, start`, then `j .` */
function program(body: readonly number[]): Uint32Array {
  const words = [...body, i(21, 0, 21, -1, 0x13)];
  const back = -(words.length * 4);
  const b = back & 0x1fff;
  const bne = ((((b >> 12) & 1) << 31) | (((b >> 5) & 0x3f) << 25) | (0 << 20) | (21 << 15) | (1 << 12) | (((b >> 1) & 0xf) << 8) | (((b >> 11) & 1) << 7) | 0x63) >>> 0;
  words.push(bne, 0x0000006f);
  return Uint32Array.from(words);
}

function machine(jit: boolean): { hart: RiscvHart; ram: Uint8Array; jitter: RiscvJit | null } {
  const bus = new SpikeBus();
  const ram = new Uint8Array(1 << 20);
  bus.addRam({ name: 'ram', base: RAM_BASE, sizeBytes: ram.length, bytes: ram, readonly: false });
  const hart = new RiscvHart({ xlen: 64, hartId: 0, resetPc: RAM_BASE, memory: bus });
  let jitter: RiscvJit | null = null;
  if (jit) {
    jitter = new RiscvJit(1, 8); // a small jump cache: it is flushed for every program
    hart.attachJit(jitter);
  }
  return { hart, ram, jitter };
}

describe('RISC-V JIT vs interpreter (property)', () => {
  const a = machine(false);
  const b = machine(true);
  for (let chunk = 0; chunk < chunks; chunk++) {
    const runs = Math.min(CHUNK_RUNS, numRuns - chunk * CHUNK_RUNS);
    const seed = baseSeed === undefined ? undefined : baseSeed + chunk;
    it(`identical state and instret on ${runs} random blocks${chunks > 1 ? ` (chunk ${chunk + 1}/${chunks}, seed ${seed})` : ''}`, async () => {
      // Let vitest's worker answer its RPCs between chunks (each chunk holds the thread ~10 s).
      await new Promise((resolve) => setImmediate(resolve));
      let blocks = 0;
      fc.assert(
        fc.property(
          fc.array(insnArb, { minLength: 1, maxLength: 24 }),
          fc.array(fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }), { minLength: 21, maxLength: 21 }),
          fc.integer({ min: 1, max: 40 }),
          fc.integer({ min: 1, max: 3000 }),
          fc.uint8Array({ minLength: 64, maxLength: 64 }),
          (body, regs, loops, budget, seedBytes) => {
            const code = program(body);
            for (const m of [a, b]) {
              // Only the code (at most 27 instructions) and the data window are ever touched.
              m.ram.fill(0, 0, CODE_BYTES);
              new Uint8Array(m.ram.buffer, 0, code.byteLength).set(new Uint8Array(code.buffer));
              for (let k = 0; k < 0x1000; k++) m.ram[DATA_OFF + k] = seedBytes[k % 64]! ^ (k * 7);
              m.hart.reset();
              m.jitter?.flush();
              m.hart.codeEpoch++;
              for (let k = 1; k <= 20; k++) m.hart.x[k] = regs[k]!;
              m.hart.x[21] = BigInt(loops);
              m.hart.x[BASE] = BigInt(RAM_BASE + DATA_OFF);
            }
            // Run in a few slices so blocks meet budgets smaller than themselves.
            for (let left = budget; left > 0; ) {
              const slice = Math.min(left, 1 + ((left * 7919) % 97));
              a.hart.run(slice);
              b.hart.run(slice);
              left -= slice;
            }
            blocks++;
            // The digest covers registers, pc, icount and CSRs; the field-by-field expects (slow) run only
            // on a mismatch, to say what differs.
            const same = b.hart.stateDigest() === a.hart.stateDigest() && Buffer.compare(b.ram.subarray(DATA_OFF, DATA_OFF + 0x1000), a.ram.subarray(DATA_OFF, DATA_OFF + 0x1000)) === 0;
            if (!same) {
              expect(b.hart.icount).toBe(a.hart.icount);
              expect(b.hart.getPc()).toBe(a.hart.getPc());
              expect(Array.from(b.hart.xi)).toEqual(Array.from(a.hart.xi));
              expect(Buffer.compare(b.ram.subarray(DATA_OFF, DATA_OFF + 0x1000), a.ram.subarray(DATA_OFF, DATA_OFF + 0x1000))).toBe(0);
              expect(b.hart.stateDigest()).toBe(a.hart.stateDigest());
            }
          },
        ),
        { numRuns: runs, ...(seed !== undefined ? { seed } : {}), ...(replay.path !== undefined ? { path: replay.path } : {}) },
      );
      expect(blocks).toBeGreaterThanOrEqual(runs);
      expect(b.jitter!.compiled).toBeGreaterThan(0);
    }, 300_000);
  }
});
