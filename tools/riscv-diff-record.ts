// Regenerates fixtures/isa/diff/recorded.json: random programs (seeded) run on real QEMU, with
// QEMU's output recorded, so tests/diff/riscv-qemu.test.ts can compare tsqemu without QEMU.
// Usage: node dist/tools/riscv-diff-record.js [count] [seed]
import { readFileSync, writeFileSync } from 'node:fs';
import fc from 'fast-check';
import { buildElf, haveQemu, programArb, repoPath, runQemu } from './riscv-diff-lib.js';

const count = Number(process.argv[2] ?? 300);
const seed = Number(process.argv[3] ?? 20260101);
if (!haveQemu()) {
  console.error('qemu-system-riscv64 is not installed');
  process.exit(1);
}
const template = readFileSync(repoPath('fixtures', 'isa', 'diff', 'template.elf'));
const programs = fc.sample(programArb, { numRuns: count, seed });
const recorded = programs.map((p) => ({ init: p.init, body: p.body, qemu: runQemu(buildElf(template, p)) }));
writeFileSync(repoPath('fixtures', 'isa', 'diff', 'recorded.json'), JSON.stringify({ seed, qemu: 'qemu-system-riscv64 7.2 -M spike -icount shift=0', programs: recorded }) + '\n');
console.log(`recorded ${recorded.length} programs`);
