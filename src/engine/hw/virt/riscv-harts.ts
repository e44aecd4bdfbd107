import { assert } from '../../assert.js';
import type { CpuDriver } from '../../main-loop.js';
import { Irq } from '../../targets/riscv/constants.js';
import { RiscvCpu } from '../../targets/riscv/cpu.js';
import type { BoardHart, CpuFactory, HartContext, HartIrqLine } from './machine.js';

const IRQ_BITS: Record<HartIrqLine, number> = { msip: Irq.MSI, mtip: Irq.MTI, meip: Irq.MEI, seip: Irq.SEI };

/** ISA the RISC-V CPU model implements (for /cpus/cpu@N/riscv,isa). */
export const RISCV_CPU_ISA = 'rv64imafdc_zicsr_zifencei';
/** The CPU model's MMU modes go up to Sv48, like QEMU's rv64 default. */
export const RISCV_CPU_MMU = 'riscv,sv48';

export interface RiscvHartsOptions {
  /** `-icount shift=N`. */
  readonly icountShift?: number;
  /** false = `-accel tcg,jit=off`: every hart runs the interpreter only. Default true. */
  readonly jit?: boolean;
}

/** Virtual time each hart runs before the next one gets its turn (QEMU's round-robin quantum). */
export const RR_QUANTUM_NS = 100_000;

/**
 * Runs several harts as one CpuDriver, deterministically round-robin: each runnable hart in turn
 * runs for a quantum of virtual time. Virtual time is shared and advances with every hart's
 * instructions (QEMU's single-threaded TCG with icount counts all vCPUs' instructions).
 */
export class RoundRobin implements CpuDriver {
  private next = 0;

  constructor(
    private readonly cpus: readonly RiscvCpu[],
    private readonly nowNs: () => number,
  ) {}

  get runnable(): boolean {
    return this.cpus.some((c) => c.runnable);
  }

  get icount(): number {
    let total = 0;
    for (const c of this.cpus) total += c.icount;
    return total;
  }

  /** The harts it runs, in hart order (machine snapshots save each). */
  get harts(): readonly RiscvCpu[] {
    return this.cpus;
  }

  /** Snapshot state: whose turn is next. */
  get nextIndex(): number {
    return this.next;
  }

  set nextIndex(index: number) {
    assert(Number.isInteger(index) && index >= 0 && index < this.cpus.length, () => `bad round-robin index ${index}`);
    this.next = index;
  }

  /** One turn: the next runnable hart (in hart order, wrapping) runs one quantum. */
  execute(untilNs: number): void {
    const n = this.cpus.length;
    for (let i = 0; i < n; i++) {
      const cpu = this.cpus[(this.next + i) % n]!;
      if (!cpu.runnable) continue;
      this.next = (this.next + i + 1) % n;
      cpu.execute(Math.min(untilNs, this.nowNs() + RR_QUANTUM_NS));
      return;
    }
  }
}

/** The board's CPU factory for tsqemu's RISC-V hart (src/engine/targets/riscv). */
export function riscvCpuFactory(options: RiscvHartsOptions = {}): CpuFactory & { readonly cpus: RiscvCpu[] } {
  const cpus: RiscvCpu[] = [];
  return {
    isa: RISCV_CPU_ISA,
    mmuType: RISCV_CPU_MMU,
    cpus,
    createHarts(contexts: readonly HartContext[]) {
      assert(contexts.length >= 1, 'no harts');
      const harts: BoardHart[] = [];
      for (const ctx of contexts) {
        const cpu = new RiscvCpu(ctx.loop, { xlen: 64, hartId: ctx.hartId, resetPc: 0x1000, memory: ctx.memory, readTime: ctx.readTime, icountShift: options.icountShift, jit: options.jit ?? true });
        cpus.push(cpu);
        const hart = cpu.hart;
        harts.push({
          hartId: ctx.hartId,
          setIrqLine: (line, level) => hart.setInterruptLine(IRQ_BITS[line], level),
          reset: () => hart.reset(),
        });
      }
      const loop = contexts[0]!.loop;
      const driver: CpuDriver = cpus.length === 1 ? cpus[0]! : new RoundRobin(cpus, () => loop.clocks.realtimeNs);
      return {
        harts,
        driver,
        stop: () => {
          for (const c of cpus) c.hart.stopRequested = true;
        },
        halt: () => {
          for (const c of cpus) {
            c.hart.halted = true;
            c.hart.stopRequested = true;
          }
        },
      };
    },
  };
}
