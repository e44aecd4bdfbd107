// LR/SC across harts: a store by another hart to the reserved bytes breaks the reservation, so the
// SC fails even when the store wrote the value LR read (QEMU 7.2's cmpxchg would let it succeed).
// Run on the virt board with -smp 2 (round-robin harts) and on two bare harts sharing one bus.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { SpikeBus } from '../../../src/engine/hw/spike/bus.js';
import { startVirtFromCli } from '../../../src/engine/hw/virt/virt-cli.js';
import { RiscvHart } from '../../../src/engine/targets/riscv/hart.js';
import { RiscvJit } from '../../../src/engine/targets/riscv/translate.js';

const dir = mkdtempSync(join(tmpdir(), 'lr-sc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const A0 = 10;
const T0 = 5;
const T1 = 6;
const T2 = 7;
const T3 = 28;
const T4 = 29;
const T5 = 30;
const lui = (rd: number, imm20: number): number => ((imm20 << 12) | (rd << 7) | 0x37) >>> 0;
const auipc = (rd: number, imm20: number): number => ((imm20 << 12) | (rd << 7) | 0x17) >>> 0;
const addi = (rd: number, rs1: number, imm: number): number => (((imm & 0xfff) << 20) | (rs1 << 15) | (rd << 7) | 0x13) >>> 0;
const store = (f3: number, rs2: number, rs1: number, imm: number): number =>
  ((((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 0x1f) << 7) | 0x23) >>> 0;
const bne = (rs1: number, rs2: number, off: number): number =>
  ((((off >> 12) & 1) << 31) | (((off >> 5) & 0x3f) << 25) | (rs2 << 20) | (rs1 << 15) | (1 << 12) | (((off >> 1) & 0xf) << 8) | (((off >> 11) & 1) << 7) | 0x63) >>> 0;
const lrD = (rd: number, rs1: number): number => ((0b00010 << 27) | (rs1 << 15) | (3 << 12) | (rd << 7) | 0x2f) >>> 0;
const scD = (rd: number, rs2: number, rs1: number): number => ((0b00011 << 27) | (rs2 << 20) | (rs1 << 15) | (3 << 12) | (rd << 7) | 0x2f) >>> 0;
const CSRR_A0_MHARTID = 0xf1402573;
const J_SELF = 0x0000006f;

function words(insns: readonly number[]): Uint8Array {
  const out = new Uint8Array(insns.length * 4);
  const v = new DataView(out.buffer);
  insns.forEach((insn, i) => v.setUint32(4 * i, insn, true));
  return out;
}

/**
 * Hart 0: LR the doubleword X, spin ~2 M instructions (several round-robin quanta), SC the same
 * value back; exit 0 (test finisher PASS) if the SC failed, exit 1 if it succeeded. Hart 1: store
 * the value X already holds (zero) to X, then spin.
 */
function kernel(): string {
  const insns = [
    auipc(T0, 0x10), // 0: X = the load address + 64 KiB (RAM, zero, 8-byte aligned)
    CSRR_A0_MHARTID, // 4
    bne(A0, 0, 60 - 8), // 8: hart 1 -> 60
    lrD(T1, T0), // 12
    lui(T2, 0x100), // 16: 1 M iterations
    addi(T2, T2, -1), // 20
    bne(T2, 0, -4), // 24
    scD(T3, T1, T0), // 28
    lui(T4, 0x100), // 32: the test finisher
    lui(T5, 0x5), // 36
    addi(T5, T5, 0x555), // 40: PASS (exit 0)
    bne(T3, 0, 56 - 44), // 44: SC failed -> write PASS
    lui(T5, 0x13), // 48
    addi(T5, T5, 0x333), // 52: FAIL with exit code 1
    store(2, T5, T4, 0), // 56
    store(3, 0, T0, 0), // 60: hart 1: sd zero, 0(X)
    J_SELF, // 64
  ];
  const path = join(dir, 'lrsc.bin');
  writeFileSync(path, words(insns));
  return path;
}

function runVirt(smp: string, jit: boolean): number | null {
  const loop = new MainLoop();
  const session = startVirtFromCli(loop, {
    memoryBytes: 64 * 1024 * 1024, bios: 'none', kernel: kernel(), append: null, initrd: null, smp, icount: null,
    nographic: false, nodefaults: true, serial: [], drives: [], onQuit: () => {}, jit,
  });
  loop.runUntil(() => session.exitCode !== null, { untilNs: 1e8 });
  session.close();
  return session.exitCode;
}

describe('LR/SC reservations across harts', () => {
  for (const jit of [false, true]) {
    it(`-smp 2: the other hart's store of the same value makes SC fail; alone SC succeeds (${jit ? 'jit' : 'interpreter'})`, () => {
      expect(runVirt('2', jit)).toBe(0);
      expect(runVirt('1', jit)).toBe(1);
    });
  }

  it('two harts on one bus, step by step: only overlapping stores by another hart break the reservation', () => {
    const base = 0x80000000;
    const bus = new SpikeBus();
    const ram = new Uint8Array(1 << 20);
    bus.addRam({ name: 'ram', base, sizeBytes: ram.length, bytes: ram, readonly: false });
    // Hart 0 at base: lr.d t1,(t0); sc.d t3,t1,(t0). Hart 1 at base+0x100: sd zero, off(t0), twice.
    const code = words([lrD(T1, T0), scD(T3, T1, T0)]);
    ram.set(code, 0);
    const h0 = new RiscvHart({ xlen: 64, hartId: 0, resetPc: base, memory: bus });
    const h1 = new RiscvHart({ xlen: 64, hartId: 1, resetPc: base + 0x100, memory: bus });
    const jit = new RiscvJit(1);
    h1.attachJit(jit);
    const X = base + 0x8000;
    const attempt = (storeOff: number | null): bigint => {
      ram.set(words([store(3, 0, T0, storeOff ?? 0), J_SELF]), 0x100);
      h0.reset();
      h1.reset();
      jit.flush();
      h0.x[T0] = BigInt(X);
      h1.x[T0] = BigInt(X);
      expect(h0.run(1)).toBe(1); // LR
      expect(h0.resValid).toBe(true);
      if (storeOff !== null) expect(h1.run(1)).toBe(1);
      expect(h0.run(1)).toBe(1); // SC
      return h0.x[T3]!;
    };
    expect(attempt(null)).toBe(0n); // nobody stored: SC succeeds
    expect(attempt(0)).toBe(1n); // same bytes, same value: SC fails
    expect(attempt(8)).toBe(0n); // the next doubleword: reservation kept
    expect(attempt(-8)).toBe(0n);
    expect(h0.resValid).toBe(false);
  });
});
