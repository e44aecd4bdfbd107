// CPU figures: guest MIPS of fixtures/bench/cpu-bench.elf (several hundred million instructions of
// integer, memory, branch, call and a little FP work) on the spike machine, with and without the
// JIT, side by side with `qemu-system-riscv64 -icount shift=0` on the same binary when installed.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MainLoop } from '../../src/engine/main-loop.js';
import { SpikeMachine } from '../../src/engine/hw/spike/machine.js';
import type { BenchCase, BenchResult } from './types.js';

function fixture(name: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'fixtures', 'bench', name);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error(`fixtures/bench/${name} not found`);
}

interface GuestRun {
  readonly mips: number;
  readonly icount: number;
  readonly ms: number;
  readonly output: string;
}

/** Runs the benchmark guest to completion (or `maxInsns`) and returns guest MIPS. */
export function runCpuBench(file: string, jit: boolean, maxInsns = 2_000_000_000): GuestRun {
  const loop = new MainLoop();
  const m = new SpikeMachine(loop, { kernel: readFileSync(file), jit });
  const start = performance.now();
  const code = m.run(maxInsns);
  const ms = performance.now() - start;
  if (code !== 0 && code !== null) throw new Error(`benchmark guest exited with ${code}`);
  return { mips: m.cpu.icount / ms / 1000, icount: m.cpu.icount, ms, output: m.consoleText };
}

/** QEMU's wall time on the same guest with -icount shift=0 (instruction count from our run). */
function qemuMs(file: string): number | undefined {
  const probe = spawnSync('qemu-system-riscv64', ['--version'], { encoding: 'utf8' });
  if (probe.status !== 0) return undefined;
  const args = ['-M', 'spike', '-bios', 'none', '-kernel', file, '-nographic', '-icount', 'shift=0'];
  const start = performance.now();
  const r = spawnSync('qemu-system-riscv64', args, { encoding: 'utf8', timeout: 300_000 });
  const ms = performance.now() - start;
  return r.status === 0 ? ms : undefined;
}

function figures(file: string, label: string, interpreterInsns: number): BenchResult[] {
  const jit = runCpuBench(file, true);
  const interp = runCpuBench(file, false, interpreterInsns);
  const q = qemuMs(file);
  const qemuMips = q === undefined ? undefined : jit.icount / q / 1000;
  const results: BenchResult[] = [
    {
      name: `${label}: guest MIPS, JIT`,
      value: jit.mips,
      unit: 'MIPS',
      ...(qemuMips !== undefined ? { qemu: qemuMips, ratio: jit.mips / qemuMips } : {}),
      note: `${(jit.icount / 1e6).toFixed(0)} M insns, ${jit.output.trim()}`,
    },
    { name: `${label}: guest MIPS, interpreter (jit=off)`, value: interp.mips, unit: 'MIPS', note: `first ${(interp.icount / 1e6).toFixed(0)} M insns` },
  ];
  return results;
}

export const benchCases: BenchCase[] = [
  {
    name: 'cpu: mixed-code benchmark guest (spike, HTIF)',
    group: 'cpu',
    run: () => figures(fixture('cpu-bench.elf'), 'cpu mixed', 60_000_000),
  },
];
