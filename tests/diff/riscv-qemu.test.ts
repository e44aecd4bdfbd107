// Differential tests against QEMU: recorded QEMU results (fixtures/isa/diff/recorded.json, made by
// tools/riscv-diff-record.ts) replayed on tsqemu's interpreter and JIT, and, when
// qemu-system-riscv64 is installed, fresh random programs compared live.
// Reproduce a live failure with FC_SEED=<seed> FC_PATH=<path>.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildElf, type DiffProgram, haveQemu, programArb, repoPath, runQemu, runTsqemu } from '../../tools/riscv-diff-lib.js';
import { fcReplayParams } from '../support/fc-params.js';

interface Recorded extends DiffProgram {
  readonly qemu: string;
}

const template = readFileSync(repoPath('fixtures', 'isa', 'diff', 'template.elf'));
const recorded = JSON.parse(readFileSync(repoPath('fixtures', 'isa', 'diff', 'recorded.json'), 'utf8')) as { programs: Recorded[] };

/** CI replays every other recorded program (RISCV_DIFF_ALL=1: all of them), in chunks of 25. */
const replayed = process.env.RISCV_DIFF_ALL ? recorded.programs : recorded.programs.filter((_, i) => i % 2 === 0);
const CHUNK = 25;

describe('RISC-V vs recorded QEMU results', () => {
  it('has recorded programs', () => expect(recorded.programs.length).toBeGreaterThan(0));
  for (let first = 0; first < replayed.length; first += CHUNK) {
    it(`recorded programs ${first}..${Math.min(first + CHUNK, replayed.length) - 1} give QEMU's registers and memory (interpreter and JIT)`, () => {
      replayed.slice(first, first + CHUNK).forEach((p, i) => {
        const index = first + i;
        const elf = buildElf(template, p);
        expect({ index, out: runTsqemu(elf, false) }).toEqual({ index, out: p.qemu });
        expect({ index, out: runTsqemu(elf, true) }).toEqual({ index, out: p.qemu });
      });
    });
  }
});

describe.skipIf(!haveQemu())(haveQemu() ? 'RISC-V vs live QEMU' : 'RISC-V vs live QEMU (skipped: qemu-system-riscv64 not installed)', () => {
  it('fresh random programs agree with qemu-system-riscv64 -M spike', () => {
    const params = { numRuns: 15, ...fcReplayParams() };
    fc.assert(
      fc.property(programArb, (p) => {
        const elf = buildElf(template, p);
        const qemu = runQemu(elf);
        expect(qemu.length).toBeGreaterThan(1000);
        expect(runTsqemu(elf, true)).toBe(qemu);
      }),
      params,
    );
  });
});
