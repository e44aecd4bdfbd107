// Differential testing against QEMU: random RV64 instruction sequences (fast-check) patched into
// fixtures/isa/diff/template.elf, run on tsqemu's spike machine and on qemu-system-riscv64 -M spike;
// the guest prints its registers and data area through HTIF, so the two outputs must be identical.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { MainLoop } from '../src/engine/main-loop.js';
import { SpikeMachine } from '../src/engine/hw/spike/machine.js';
import { parseElf } from '../src/engine/hw/loader/elf.js';

export const BODY_WORDS = 96;
const BASE = 30;

const R = (rd: number, f3: number, rs1: number, rs2: number, f7: number, op: number): number =>
  ((f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op) >>> 0;
const I = (rd: number, f3: number, rs1: number, imm: number, op: number): number => (((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op) >>> 0;
const S = (f3: number, rs1: number, rs2: number, imm: number): number =>
  ((((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 31) << 7) | 0x23) >>> 0;

const rd = fc.integer({ min: 1, max: 29 });
const rs = fc.integer({ min: 0, max: 29 });
const imm12 = fc.integer({ min: -2048, max: 2047 });

/** One random instruction word of the groups QEMU and tsqemu must agree on (no traps by construction). */
export const insnArb: fc.Arbitrary<number> = fc.oneof(
  fc.tuple(rd, fc.constantFrom(0, 2, 3, 4, 6, 7), rs, imm12).map(([d, f3, a, imm]) => I(d, f3, a, imm, 0x13)),
  fc.tuple(rd, rs, fc.integer({ min: 0, max: 63 }), fc.constantFrom(0, 1, 2)).map(([d, a, sh, k]) =>
    k === 0 ? I(d, 1, a, sh, 0x13) : k === 1 ? I(d, 5, a, sh, 0x13) : I(d, 5, a, sh | 0x400, 0x13)),
  fc.tuple(rd, fc.integer({ min: 0, max: 7 }), rs, rs, fc.constantFrom(0, 1, 0x20)).map(([d, f3, a, b, f7]) =>
    R(d, f3, a, b, f7 === 0x20 ? (f3 === 0 || f3 === 5 ? 0x20 : 0) : f7, 0x33)),
  fc.tuple(rd, fc.constantFrom(0, 1, 5), rs, rs, fc.constantFrom(0, 0x20)).map(([d, f3, a, b, f7]) => R(d, f3, a, b, f3 === 1 ? 0 : f7, 0x3b)),
  fc.tuple(rd, fc.constantFrom(0, 4, 5, 6, 7), rs, rs).map(([d, f3, a, b]) => R(d, f3, a, b, 1, 0x3b)),
  fc.tuple(rd, rs, imm12).map(([d, a, imm]) => I(d, 0, a, imm, 0x1b)),
  fc.tuple(rd, rs, fc.integer({ min: 0, max: 31 }), fc.constantFrom(0, 1, 2)).map(([d, a, sh, k]) =>
    k === 0 ? I(d, 1, a, sh, 0x1b) : k === 1 ? I(d, 5, a, sh, 0x1b) : I(d, 5, a, sh | 0x400, 0x1b)),
  fc.tuple(rd, fc.integer({ min: 0, max: 0xfffff }), fc.boolean()).map(([d, u, a]) => (((u << 12) | (d << 7) | (a ? 0x17 : 0x37)) >>> 0)),
  fc.tuple(rd, fc.constantFrom(0, 1, 2, 3, 4, 5, 6), fc.integer({ min: 0, max: 2040 })).map(([d, f3, off]) => I(d, f3, BASE, off, 0x03)),
  fc.tuple(fc.constantFrom(0, 1, 2, 3), rs, fc.integer({ min: 0, max: 2040 })).map(([f3, b, off]) => S(f3, BASE, b, off)),
  // AMOs on aligned addresses in the data area (x30 + 8*k is formed by the generator below)
  fc.tuple(rd, fc.constantFrom(0x00, 0x01, 0x04, 0x08, 0x0c, 0x10, 0x14, 0x18, 0x1c), rs, fc.boolean()).map(([d, f5, b, dbl]) =>
    R(d, dbl ? 3 : 2, BASE, b, f5 << 2, 0x2f)),
  fc.tuple(fc.integer({ min: 0, max: 7 }).filter((f) => f !== 2 && f !== 3), rs, rs).map(([f3, a, b]) => ((4 << 8) | (f3 << 12) | (a << 15) | (b << 20) | 0x63) >>> 0),
);

export interface DiffProgram {
  /** x1..x29 initial values (hex, unsigned 64-bit). */
  readonly init: readonly string[];
  readonly body: readonly number[];
}

export const programArb: fc.Arbitrary<DiffProgram> = fc.record({
  init: fc.array(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((v) => v.toString(16)), { minLength: 29, maxLength: 29 }),
  body: fc.array(insnArb, { minLength: 1, maxLength: BODY_WORDS }),
});

/** Finds the repository root from this file (works from tools/ and dist/tools/). */
export function repoPath(...parts: string[]): string {
  const here = new URL('.', import.meta.url).pathname;
  for (const up of ['..', '../..', '../../..']) {
    const candidate = join(here, up, 'fixtures', 'isa', 'diff', 'template.elf');
    try {
      readFileSync(candidate, { flag: 'r' }).subarray(0, 1);
      return join(here, up, ...parts);
    } catch {
      // keep looking
    }
  }
  throw new Error('fixtures/isa/diff/template.elf not found');
}

/** Patches init values and body words into the template ELF (a copy). */
export function buildElf(template: Uint8Array, program: DiffProgram): Uint8Array {
  const out = new Uint8Array(template);
  const image = parseElf(out);
  const fileOffset = (addr: number): number => {
    for (const seg of image.segments) {
      if (addr >= seg.paddr && addr < seg.paddr + seg.data.length) return seg.data.byteOffset - out.byteOffset + (addr - seg.paddr);
    }
    throw new Error(`0x${addr.toString(16)} is not in a loadable segment`);
  };
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const initAddr = image.symbols.get('init_regs')!;
  const bodyAddr = image.symbols.get('body')!;
  program.init.forEach((hex, k) => dv.setBigUint64(fileOffset(initAddr + 8 * (k + 1)), BigInt('0x' + hex), true));
  const words = program.body.slice(0, BODY_WORDS);
  words.forEach((w, k) => dv.setUint32(fileOffset(bodyAddr + 4 * k), w >>> 0, true));
  return out;
}

/** Runs a program on tsqemu; returns the guest's console output. */
export function runTsqemu(elf: Uint8Array, jit: boolean): string {
  const loop = new MainLoop();
  const m = new SpikeMachine(loop, { kernel: elf, jit, jitThreshold: 1, ramSizeBytes: 1 << 20 });
  m.run(5_000_000);
  return m.consoleText;
}

export function haveQemu(): boolean {
  return spawnSync('qemu-system-riscv64', ['--version'], { encoding: 'utf8' }).status === 0;
}

/** Runs a program on qemu-system-riscv64 -M spike; returns its console output. */
export function runQemu(elf: Uint8Array): string {
  const dir = mkdtempSync(join(tmpdir(), 'tsqemu-diff-'));
  try {
    const file = join(dir, 'prog.elf');
    writeFileSync(file, elf);
    const out = join(dir, 'console.txt');
    // The console goes to a file: with -nographic, QEMU's stdio chardev may drop output when stdin is not a terminal.
    const args = ['-M', 'spike', '-bios', 'none', '-kernel', file, '-display', 'none', '-monitor', 'none', '-serial', `file:${out}`, '-icount', 'shift=0'];
    const r = spawnSync('qemu-system-riscv64', args, { encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'pipe'] });
    if (r.status !== 0) throw new Error(`qemu exited with ${r.status}: ${r.stderr}`);
    return readFileSync(out, 'utf8');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
