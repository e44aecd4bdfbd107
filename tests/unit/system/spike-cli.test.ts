import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseElf } from '../../../src/engine/hw/loader/elf.js';
import { SpikeMachine } from '../../../src/engine/hw/spike/machine.js';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { buildElf } from '../../../tools/riscv-diff-lib.js';
import { TSQEMU_BIN } from '../monitor/qmp-process.js';

const built = existsSync(TSQEMU_BIN);
const root = join(import.meta.dirname, '../../..');
const BENCH = join(root, 'fixtures/bench/cpu-bench-small.elf');
const SMOKE = join(root, 'fixtures/isa/bin/rv64-smoke.elf');
const TEMPLATE = join(root, 'fixtures/isa/diff/template.elf');
const haveQemu = spawnSync('qemu-system-riscv64', ['--version'], { encoding: 'utf8' }).status === 0;

function tsqemu(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [TSQEMU_BIN, ...args], { input: '', encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The template ELF with a body that writes `(code << 1) | 1` to tohost: the guest exits with `code`. */
function exitElf(code: number): Uint8Array {
  const template = readFileSync(TEMPLATE);
  const image = parseElf(template);
  const body = image.symbols.get('body')!;
  const delta = image.symbols.get('tohost')! - body;
  const hi = (delta + 0x800) >> 12;
  const lo = delta - (hi << 12);
  const words = [
    ((hi & 0xfffff) << 12) | (5 << 7) | 0x17, // auipc t0, hi
    ((lo & 0xfff) << 20) | (5 << 15) | (5 << 7) | 0x13, // addi t0, t0, lo
    ((((code << 1) | 1) & 0xfff) << 20) | (6 << 7) | 0x13, // li t1, (code << 1) | 1
    (6 << 20) | (5 << 15) | (3 << 12) | 0x23, // sd t1, 0(t0)
    0x6f, // j .
  ].map((w) => w >>> 0);
  return buildElf(template, { init: Array.from({ length: 29 }, () => '0'), body: words });
}

describe.skipIf(!built)(`tsqemu -M spike (${built ? 'dist built' : 'needs npm run build'})`, () => {
  it('runs a benchmark ELF through HTIF: console on stdout, exit 0, the same output as the in-process machine', () => {
    const r = tsqemu(['-M', 'spike', '-bios', 'none', '-kernel', BENCH, '-nographic']);
    const m = new SpikeMachine(new MainLoop(), { kernel: readFileSync(BENCH) });
    expect(m.run()).toBe(0);
    expect(r).toEqual({ status: 0, stdout: m.consoleText, stderr: '' });
    expect(r.stdout).toMatch(/^checksum [0-9a-f]{16}\n$/);
    // -accel tcg,jit=off: the interpreter gives the same guest output.
    expect(tsqemu(['-M', 'spike', '-bios', 'none', '-kernel', BENCH, '-nographic', '-accel', 'tcg,jit=off'])).toEqual(r);
    // Without -nographic or -serial stdio the console is not the host's stdout (as in QEMU).
    expect(tsqemu(['-M', 'spike', '-bios', 'none', '-kernel', BENCH, '-display', 'none'])).toEqual({ status: 0, stdout: '', stderr: '' });
    expect(tsqemu(['-M', 'spike', '-bios', 'none', '-kernel', BENCH, '-display', 'none', '-serial', 'stdio'])).toEqual(r);
  }, 120_000);

  it('passes an ISA test (exit 0, no output) and exits with the code the guest gives HTIF', () => {
    expect(tsqemu(['-M', 'spike', '-bios', 'none', '-kernel', SMOKE, '-nographic'])).toEqual({ status: 0, stdout: '', stderr: '' });
    const dir = mkdtempSync(join(tmpdir(), 'tsqemu-spike-'));
    try {
      const file = join(dir, 'exit5.elf');
      writeFileSync(file, exitElf(5));
      const ours = tsqemu(['-M', 'spike', '-bios', 'none', '-kernel', file, '-nographic']);
      expect(ours).toEqual({ status: 5, stdout: '', stderr: '' });
      if (haveQemu) {
        const qemu = spawnSync('qemu-system-riscv64', ['-M', 'spike', '-bios', 'none', '-kernel', file, '-nographic'], { input: '', encoding: 'utf8', timeout: 20_000 });
        expect({ status: qemu.status, stdout: qemu.stdout }).toEqual({ status: ours.status, stdout: ours.stdout });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('refuses what it cannot run, exit 1', () => {
    expect(tsqemu(['-M', 'spike', '-kernel', SMOKE, '-nographic'])).toMatchObject({ status: 1, stderr: "tsqemu: machine 'spike': tsqemu has no spike firmware; use -bios none -kernel FILE.elf\n" });
    expect(tsqemu(['-M', 'spike', '-bios', 'none', '-nographic'])).toMatchObject({ status: 1, stderr: "tsqemu: machine 'spike': -kernel FILE.elf is required (with -bios none)\n" });
    expect(tsqemu(['-M', 'spike', '-bios', 'none', '-kernel', '/nonexistent.elf', '-nographic'])).toMatchObject({ status: 1, stderr: expect.stringMatching(/^tsqemu: could not load kernel '\/nonexistent.elf'/) });
    expect(tsqemu(['-M', 'spike', '-bios', 'none', '-kernel', TEMPLATE.replace(/template\.elf$/, 'template.S'), '-nographic'])).toMatchObject({ status: 1, stderr: expect.stringMatching(/could not load kernel '.*template\.S': not an ELF file/) });
  }, 60_000);
});
