import type { MainLoop } from '../../main-loop.js';
import type { RamBlock } from '../../memory.js';
import { RiscvCpu } from '../../targets/riscv/cpu.js';
import { ElfError, loadElf, parseElf } from '../loader/elf.js';
import { SpikeBus } from './bus.js';
import { SpikeClint } from './clint.js';
import { Htif } from './htif.js';

export const SPIKE_DRAM_BASE = 0x80000000;
export const SPIKE_CLINT_BASE = 0x2000000;
const PAGE = 4096;

export interface SpikeOptions {
  /** The `-kernel` ELF (with `-bios none`). */
  readonly kernel: Uint8Array;
  readonly ramSizeBytes?: number;
  readonly icountShift?: number;
  /** `-accel tcg,jit=off` forces the interpreter. */
  readonly jit?: boolean;
  /** Executions before code is translated (tests lower it to exercise the translator). */
  readonly jitThreshold?: number;
  /** Console output (HTIF putchar and the `write` syscall proxy). */
  readonly console?: (bytes: Uint8Array) => void;
}

/**
 * QEMU's `spike` machine as far as ISA test binaries need it: DRAM at 0x80000000, a CLINT, HTIF
 * through the ELF's tohost/fromhost symbols, and `-bios none -kernel FILE` (the hart starts at the
 * ELF entry in M-mode with a0 = hartid).
 */
export class SpikeMachine {
  readonly bus = new SpikeBus();
  readonly ram: RamBlock;
  readonly cpu: RiscvCpu;
  readonly clint: SpikeClint;
  readonly htif: Htif | null;
  private readonly consoleChunks: Uint8Array[] = [];

  constructor(
    readonly loop: MainLoop,
    options: SpikeOptions,
  ) {
    const image = parseElf(options.kernel);
    const size = options.ramSizeBytes ?? 128 * 1024 * 1024;
    this.ram = { name: 'riscv.spike.ram', base: SPIKE_DRAM_BASE, sizeBytes: size, bytes: new Uint8Array(size), readonly: false };
    this.bus.addRam(this.ram);
    loadElf(image, this.bus);
    this.cpu = new RiscvCpu(loop, {
      xlen: image.xlen,
      hartId: 0,
      resetPc: image.entry,
      memory: this.bus,
      icountShift: options.icountShift,
      readTime: null, // QEMU's spike machine provides no time CSR
      jit: options.jit,
      jitThreshold: options.jitThreshold,
    });
    const hart = this.cpu.hart;
    this.clint = new SpikeClint(loop, (bit, level) => hart.setInterruptLine(bit, level));
    this.bus.addMmio('clint', SPIKE_CLINT_BASE, 0x10000, this.clint);
    const tohost = image.symbols.get('tohost');
    const fromhost = image.symbols.get('fromhost');
    const consoleSink = (bytes: Uint8Array): void => {
      this.consoleChunks.push(bytes);
      options.console?.(bytes);
    };
    if (tohost !== undefined) {
      const pageBase = tohost - (tohost % PAGE);
      if (pageBase < SPIKE_DRAM_BASE || pageBase + PAGE > SPIKE_DRAM_BASE + size) throw new ElfError('tohost lies outside RAM');
      this.htif = new Htif(this.ram, pageBase, tohost, fromhost ?? tohost + 64, consoleSink, () => {
        hart.halted = true;
        hart.stopRequested = true;
      });
      this.bus.addMmio('htif', pageBase, PAGE, this.htif);
    } else {
      this.htif = null;
    }
    loop.cpu = this.cpu;
  }

  get exitCode(): number | null {
    return this.htif?.exitCode ?? null;
  }

  /** Console output so far, as text. */
  get consoleText(): string {
    const total = this.consoleChunks.reduce((n, c) => n + c.length, 0);
    const all = new Uint8Array(total);
    let o = 0;
    for (const c of this.consoleChunks) {
      all.set(c, o);
      o += c.length;
    }
    return new TextDecoder().decode(all);
  }

  /**
   * Runs until the guest exits through HTIF, the instruction limit is reached, or the machine goes
   * idle (WFI with no timer armed). Returns the exit code, or null if it did not exit.
   */
  run(maxInstructions = 100_000_000): number | null {
    const loop = this.loop;
    const limit = this.cpu.icount + maxInstructions;
    loop.runUntil(() => this.exitCode !== null || this.cpu.icount >= limit, { maxTasks: maxInstructions + 1_000_000 });
    return this.exitCode;
  }
}
