import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MainLoop } from '../../src/engine/main-loop.js';
import { buildVirtMachine } from '../../src/engine/hw/virt/machine.js';
import { riscvCpuFactory } from '../../src/engine/hw/virt/riscv-harts.js';
import { ConsoleCapture, ConsoleScript } from '../../src/engine/hw/virt/console-script.js';
import type { BenchCase, BenchResult } from './types.js';

const FW = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';
const UBOOT = '/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin';
const AUTOBOOT = 'Hit any key to stop autoboot';
const PROMPT = '=> ';
/** Give up after this much wall time (either emulator). */
const LIMIT_MS = 600_000;

/** tsqemu: build the board, boot, press a key at the autoboot countdown, stop at the prompt. */
function tsqemuToPrompt(): { ms: number; icount: number } {
  const start = performance.now();
  const loop = new MainLoop();
  const capture = new ConsoleCapture();
  buildVirtMachine(loop, { ramSizeBytes: 256 * 1024 * 1024, bios: FW, kernel: UBOOT, serialOutput: capture, cpu: riscvCpuFactory() });
  const script = new ConsoleScript(loop, capture, 'serial0', [{ expect: AUTOBOOT, send: ' ' }, { expect: PROMPT }]);
  while (!script.done && performance.now() - start < LIMIT_MS) script.advance(loop.nowNs + 50_000_000);
  if (!script.done) throw new Error(`tsqemu did not reach the U-Boot prompt:\n${capture.text.slice(-500)}`);
  return { ms: performance.now() - start, icount: loop.cpu?.icount ?? 0 };
}

const BOOT_ARGS = ['-M', 'virt', '-m', '256M', '-nographic', '-bios', FW, '-kernel', UBOOT];
const TSQEMU_BIN = join(dirname(fileURLToPath(import.meta.url)), '../tsqemu.js');

/** A process (QEMU 7.2 or the tsqemu bin) on `-M virt -nographic`, timed from spawn to the prompt. */
function processToPrompt(command: string, args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'ignore'] });
    let out = '';
    let pressed = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} did not reach the U-Boot prompt`));
    }, LIMIT_MS);
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('latin1');
      if (!pressed && out.includes(AUTOBOOT)) {
        pressed = true;
        child.stdin.write(' ');
      }
      if (pressed && out.indexOf(PROMPT, out.indexOf(AUTOBOOT)) >= 0) {
        const ms = performance.now() - start;
        clearTimeout(timer);
        child.kill('SIGKILL');
        resolve(ms);
      }
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

const haveFirmware = existsSync(FW) && existsSync(UBOOT);
const haveQemu = spawnSync('qemu-system-riscv64', ['--version'], { stdio: 'ignore' }).status === 0;

export const benchCases: BenchCase[] = [
  {
    name: 'OpenSBI + U-Boot to the => prompt',
    group: 'boot',
    async run(): Promise<BenchResult[]> {
      if (!haveFirmware) return [{ name: 'boot to U-Boot prompt', value: 0, unit: 'ms', note: 'skipped: Debian opensbi/u-boot-qemu not installed' }];
      const ours = tsqemuToPrompt();
      const qemu = haveQemu ? await processToPrompt('qemu-system-riscv64', BOOT_ARGS) : undefined;
      const bin = existsSync(TSQEMU_BIN) ? await processToPrompt(process.execPath, [TSQEMU_BIN, ...BOOT_ARGS]) : undefined;
      const results: BenchResult[] = [
        {
          name: 'boot to U-Boot prompt (wall)',
          value: ours.ms,
          unit: 'ms',
          qemu,
          ratio: qemu === undefined ? undefined : qemu / ours.ms,
          note: `in-process; ${(ours.icount / 1e6).toFixed(1)}M guest instructions, ${(ours.icount / ours.ms / 1e3).toFixed(1)} MIPS; key pressed at the autoboot countdown`,
        },
      ];
      if (bin !== undefined) {
        results.push({ name: 'boot to U-Boot prompt (tsqemu bin, wall)', value: bin, unit: 'ms', qemu, ratio: qemu === undefined ? undefined : qemu / bin, note: 'process start to prompt, same command line as QEMU' });
      }
      return results;
    },
  },
];
