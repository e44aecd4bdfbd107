// `-accel tcg,jit=off` from the command line to the hart: the option parser keeps it, the board
// builds its harts without a translator, and a hot guest loop then runs with nothing translated
// (while the default translates it), reaching the same exit at the same instruction count.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RiscvCpu } from '../../../src/engine/targets/riscv/cpu.js';
import { startMachine } from '../../../src/system/machine.js';
import { parseCommandLine } from '../../../src/system/options.js';
import { createVm } from '../../../src/system/vm.js';

const dir = mkdtempSync(join(tmpdir(), 'accel-jit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const lui = (rd: number, imm20: number): number => ((imm20 << 12) | (rd << 7) | 0x37) >>> 0;
const addi = (rd: number, rs1: number, imm: number): number => (((imm & 0xfff) << 20) | (rs1 << 15) | (rd << 7) | 0x13) >>> 0;
const sw = (rs2: number, rs1: number): number => ((rs2 << 20) | (rs1 << 15) | (2 << 12) | 0x23) >>> 0;
const bne = (rs1: number, rs2: number, off: number): number =>
  ((((off >> 12) & 1) << 31) | (((off >> 5) & 0x3f) << 25) | (rs2 << 20) | (rs1 << 15) | (1 << 12) | (((off >> 1) & 0xf) << 8) | (((off >> 11) & 1) << 7) | 0x63) >>> 0;

/** Counts 20 000 down in a two-instruction loop (hot enough to translate), then powers off. */
function kernelFile(): string {
  const insns = [lui(7, 5), addi(7, 7, 0x120), addi(7, 7, -1), bne(7, 0, -4), lui(5, 0x100), lui(6, 5), addi(6, 6, 0x555), sw(6, 5), 0x0000006f];
  const out = new Uint8Array(insns.length * 4);
  const v = new DataView(out.buffer);
  insns.forEach((insn, i) => v.setUint32(4 * i, insn, true));
  const path = join(dir, 'loop.bin');
  writeFileSync(path, out);
  return path;
}

function run(accel: string[]): { cpu: RiscvCpu; jitFlag: boolean } {
  const config = parseCommandLine(['-M', 'virt', '-bios', 'none', '-kernel', kernelFile(), '-nodefaults', ...accel]);
  const vm = createVm(config);
  const session = startMachine(vm, { onQuit: () => {}, warn: () => {} });
  const cpu = vm.loop.cpu;
  if (!(cpu instanceof RiscvCpu)) throw new Error('expected one RISC-V hart');
  vm.loop.runUntil(() => session.exitCode !== null, { untilNs: 1e8 });
  expect(session.exitCode).toBe(0);
  session.close();
  return { cpu, jitFlag: config.jit };
}

describe('-accel tcg,jit=off', () => {
  it('parses jit=on|off for tcg only and keeps -accel qtest working', () => {
    expect(parseCommandLine(['-accel', 'tcg,jit=off'])).toMatchObject({ accel: ['tcg'], jit: false });
    expect(parseCommandLine(['-accel', 'tcg,jit=on'])).toMatchObject({ accel: ['tcg'], jit: true });
    expect(parseCommandLine(['-accel', 'tcg'])).toMatchObject({ accel: ['tcg'], jit: true });
    expect(parseCommandLine(['-accel', 'qtest'])).toMatchObject({ accel: ['qtest'], jit: true });
    expect(() => parseCommandLine(['-accel', 'tcg,jit=maybe'])).toThrow(/jit/);
    expect(() => parseCommandLine(['-accel', 'qtest,jit=off'])).toThrow(/jit/);
  });

  it('runs the interpreter only (nothing translated); the default JIT translates the same loop', () => {
    const interp = run(['-accel', 'tcg,jit=off']);
    expect(interp.jitFlag).toBe(false);
    expect(interp.cpu.hart.jitEnabled).toBe(false);
    expect(interp.cpu.translatedBlocks).toBe(0);
    const jit = run([]);
    expect(jit.cpu.hart.jitEnabled).toBe(true);
    expect(jit.cpu.translatedBlocks).toBeGreaterThan(0);
    expect(interp.cpu.icount).toBe(jit.cpu.icount);
    expect(interp.cpu.icount).toBeGreaterThan(40_000);
  });
});
