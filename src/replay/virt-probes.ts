/**
 * Checkpoint probes for the virt board: each hart's registers and CSRs (verbatim, so a report
 * names the register), each device's state (one digest per device), and RAM (pages changed since
 * the last checkpoint, one digest per 256-byte line).
 */
import { Digest } from '../engine/digest.js';
import type { MainLoop } from '../engine/main-loop.js';
import { RiscvCpu } from '../engine/targets/riscv/cpu.js';
import { RoundRobin } from '../engine/hw/virt/riscv-harts.js';
import type { RiscvHart } from '../engine/targets/riscv/hart.js';
import type { VirtMachine } from '../engine/hw/virt/machine.js';
import { VIRT_MEMMAP } from '../engine/hw/virt/memmap.js';
import type { TraceValue } from '../engine/trace.js';
import type { StateEntries } from './log-format.js';
import { RamPageProbe, type StateProbe } from './state.js';

const ABI = ['zero', 'ra', 'sp', 'gp', 'tp', 't0', 't1', 't2', 's0', 's1', 'a0', 'a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7', 's2', 's3', 's4', 's5', 's6', 's7', 's8', 's9', 's10', 's11', 't3', 't4', 't5', 't6'];

function hex(value: bigint | number): string {
  const v = typeof value === 'bigint' ? BigInt.asUintN(64, value) : value >>> 0;
  return '0x' + v.toString(16);
}

/** A hart's architectural state as named entries: x1..x31 (ABI names), pc, privilege, CSRs, FP digest. */
export function hartProbe(name: string, hart: RiscvHart): StateProbe {
  return {
    name,
    capture(): StateEntries {
      const out: Record<string, string | number> = {};
      for (let i = 1; i < 32; i++) out[`x${i}/${ABI[i]}`] = hex(hart.xu[i]!);
      out.pc = hex(hart.getPc());
      out.priv = hart.priv;
      out.wfi = hart.wfi ? 1 : 0;
      for (const csr of ['mstatus', 'mie', 'mipSw', 'mipHw', 'medeleg', 'mideleg', 'mtvec', 'stvec', 'mepc', 'sepc', 'mcause', 'scause', 'mtval', 'stval', 'mscratch', 'sscratch', 'satp', 'fflags', 'frm'] as const) {
        const value = (hart as unknown as Record<string, unknown>)[csr];
        if (typeof value === 'number' || typeof value === 'bigint') out[csr] = hex(value);
      }
      out.f = new Digest().bytes(new Uint8Array(hart.f.buffer)).hex();
      out.all = hart.stateDigest();
      return out;
    },
  };
}

function digestNumbers(values: readonly number[]): string {
  const d = new Digest();
  d.int(values.length);
  for (const v of values) d.number(v);
  return d.hex();
}

/** One entry per device: the digest of its register and FIFO state. */
export function virtDeviceProbe(machine: VirtMachine): StateProbe {
  return {
    name: 'device',
    capture(): StateEntries {
      const out: Record<string, string> = {
        uart0: digestNumbers(machine.uart.snapshotState()),
        clint: digestNumbers(machine.clint.snapshotState()),
        plic: digestNumbers(machine.plic.snapshotState()),
        rtc: digestNumbers(machine.rtc.snapshotState()),
      };
      machine.virtio.forEach((v, i) => {
        if (machine.blk[machine.virtio.length - 1 - i] !== undefined) out[`virtio-mmio${i}`] = digestNumbers(v.snapshotState());
      });
      return out;
    },
  };
}

/** The harts the loop runs, in hart order (one, or the round-robin driver's of `-smp N`). */
export function riscvHarts(loop: MainLoop): RiscvHart[] {
  const cpu = loop.cpu;
  if (cpu instanceof RiscvCpu) return [cpu.hart];
  if (cpu instanceof RoundRobin) return cpu.harts.map((c) => c.hart);
  return [];
}

/** Every probe of a virt board: harts, devices, RAM. */
export function virtProbes(machine: VirtMachine): StateProbe[] {
  const probes: StateProbe[] = riscvHarts(machine.loop).map((hart, i) => hartProbe(`hart${i}`, hart));
  probes.push(virtDeviceProbe(machine));
  const ram = machine.as.ramAt(VIRT_MEMMAP.dram.base);
  if (ram !== undefined) probes.push(new RamPageProbe('ram', ram.bytes, ram.base));
  return probes;
}

/** Interrupt line changes of every device (and the PLIC's outputs to the harts) as replay events. */
export function attachIrqEvents(machine: VirtMachine, emit: (name: string, fields: Readonly<Record<string, TraceValue>>) => void): void {
  for (const device of machine.devices) {
    device.irqOut.forEach((pin, index) => {
      const line = `${device.path.split('/').pop() ?? device.path}${device.irqOut.length > 1 ? `[${index}]` : ''}`;
      pin.listen((level) => emit('irq', { line, level }));
    });
  }
}
