// Real firmware as a JIT check: Debian's OpenSBI + U-Boot on the virt machine, once translated and
// once interpreted, must print the same bytes and reach the same architectural state at the same
// virtual time (time = instructions << shift, so both stop at the same instruction).
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { buildVirtMachine, type BoardHart, type CpuFactory, type HartIrqLine } from '../../../src/engine/hw/virt/machine.js';
import { ConsoleCapture } from '../../../src/engine/hw/virt/console-script.js';
import { Irq } from '../../../src/engine/targets/riscv/constants.js';
import { RiscvCpu } from '../../../src/engine/targets/riscv/cpu.js';

const FW = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';
const UBOOT = '/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin';
const haveFirmware = existsSync(FW) && existsSync(UBOOT);
const IRQ_BITS: Record<HartIrqLine, number> = { msip: Irq.MSI, mtip: Irq.MTI, meip: Irq.MEI, seip: Irq.SEI };

function factory(jit: boolean, cpus: RiscvCpu[]): CpuFactory {
  return {
    isa: 'rv64imafdc_zicsr_zifencei',
    mmuType: 'riscv,sv48',
    createHarts(contexts) {
      const harts: BoardHart[] = contexts.map((ctx) => {
        const cpu = new RiscvCpu(ctx.loop, { xlen: 64, hartId: ctx.hartId, resetPc: 0x1000, memory: ctx.memory, readTime: ctx.readTime, icountShift: 3, jit });
        cpus.push(cpu);
        return { hartId: ctx.hartId, setIrqLine: (line, level) => cpu.hart.setInterruptLine(IRQ_BITS[line], level), reset: (pc) => cpu.hart.reset(pc) };
      });
      return { harts, driver: cpus[0]!, stop: () => cpus.forEach((c) => (c.hart.stopRequested = true)) };
    },
  };
}

function boot(jit: boolean, untilNs: number): { text: string; icount: number; state: string; compiled: boolean } {
  const loop = new MainLoop();
  const capture = new ConsoleCapture();
  const cpus: RiscvCpu[] = [];
  buildVirtMachine(loop, { ramSizeBytes: 128 * 1024 * 1024, bios: FW, kernel: UBOOT, serialOutput: capture, cpu: factory(jit, cpus) });
  loop.runUntilIdle({ untilNs });
  const hart = cpus[0]!.hart;
  return { text: capture.text, icount: hart.icount, state: hart.stateDigest(), compiled: hart.jitEnabled };
}

describe.skipIf(!haveFirmware)('OpenSBI + U-Boot: JIT == interpreter (needs Debian opensbi and u-boot-qemu)', () => {
  it('same console bytes, instret and state digest at the same virtual time', () => {
    const untilNs = 160_000_000; // 20 M instructions at shift 3: OpenSBI, then U-Boot's banner
    const jit = boot(true, untilNs);
    const interp = boot(false, untilNs);
    expect(jit.text).toContain('OpenSBI');
    expect(jit.text).toContain('U-Boot');
    expect(jit.compiled).toBe(true);
    expect(interp.text).toBe(jit.text);
    expect(interp.icount).toBe(jit.icount);
    expect(interp.state).toBe(jit.state);
  }, 300_000);
});
