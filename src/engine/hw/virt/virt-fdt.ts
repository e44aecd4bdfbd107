import { FdtBuilder, type FdtNode, cells64 } from '../fdt.js';
import { CLINT_TIMEBASE_HZ } from '../intc/clint.js';
import { VIRT_UART_CLOCK_HZ } from '../char/ns16550a.js';
import { SIFIVE_TEST_PASS, SIFIVE_TEST_RESET } from '../misc/sifive-test.js';
import { VIRTIO_COUNT, VIRTIO_IRQ, VIRT_MEMMAP, VIRT_RTC_IRQ, VIRT_UART0_IRQ } from './memmap.js';
import { VIRT_PLIC_NUM_SOURCES } from '../intc/plic.js';

/** What the device tree describes. */
export interface VirtFdtParams {
  readonly numHarts: number;
  readonly ramSizeBytes: number;
  /** e.g. `rv64imafdc_zicsr_zifencei`: what the CPU model implements. */
  readonly isa: string;
  /** e.g. `riscv,sv39`, or null when the CPU has no MMU. */
  readonly mmuType: string | null;
  readonly bootargs?: string;
  readonly initrd?: { readonly start: number; readonly end: number };
  /** 32 bytes for /chosen/rng-seed (from the seeded RNG: deterministic). */
  readonly rngSeed: Uint8Array;
}

const IRQ_M_SOFT = 3;
const IRQ_M_TIMER = 7;
const IRQ_S_EXT = 9;
const IRQ_M_EXT = 11;

const reg = (base: number, size: number) => ({ cells: [...cells64(base), ...cells64(size)] });

/**
 * The virt board's device tree, node for node as QEMU 7.2's create_fdt() writes it for the devices
 * tsqemu has (no PCIe, flash, fw_cfg, platform bus or PMU: those are absent, so not described).
 */
export function buildVirtFdt(p: VirtFdtParams): Uint8Array {
  const fdt = new FdtBuilder();
  const root = fdt.root;
  root.cells('#address-cells', 2).cells('#size-cells', 2).set('compatible', 'riscv-virtio').set('model', 'riscv-virtio,qemu');

  const chosen = root.node('chosen');
  root.node(`memory@${hex(VIRT_MEMMAP.dram.base)}`).set('device_type', 'memory').set('reg', reg(VIRT_MEMMAP.dram.base, p.ramSizeBytes));

  const cpus = root.node('cpus');
  cpus.cells('#address-cells', 1).cells('#size-cells', 0).cells('timebase-frequency', CLINT_TIMEBASE_HZ);
  const intcHandles: number[] = [];
  const cpuHandles: number[] = [];
  for (let h = 0; h < p.numHarts; h++) {
    const cpu = cpus.node(`cpu@${h}`);
    cpuHandles.push(fdt.phandle(cpu));
    cpu.set('device_type', 'cpu').cells('reg', h).set('status', 'okay').set('compatible', 'riscv').set('riscv,isa', p.isa);
    if (p.mmuType !== null) cpu.set('mmu-type', p.mmuType);
    const intc = cpu.node('interrupt-controller');
    intc.cells('#interrupt-cells', 1).set('interrupt-controller', null).set('compatible', 'riscv,cpu-intc');
    intcHandles.push(fdt.phandle(intc));
  }
  const cluster = cpus.node('cpu-map').node('cluster0');
  cpuHandles.forEach((handle, h) => cluster.node(`core${h}`).cells('cpu', handle));

  const soc = root.node('soc');
  soc.cells('#address-cells', 2).cells('#size-cells', 2).set('compatible', 'simple-bus').set('ranges', null);

  const clint = soc.node(`clint@${hex(VIRT_MEMMAP.clint.base)}`);
  clint.set('interrupts-extended', { cells: intcHandles.flatMap((i) => [i, IRQ_M_SOFT, i, IRQ_M_TIMER]) });
  clint.set('reg', reg(VIRT_MEMMAP.clint.base, VIRT_MEMMAP.clint.size)).set('compatible', ['sifive,clint0', 'riscv,clint0']);

  const plic = soc.node(`plic@${hex(VIRT_MEMMAP.plic.base)}`);
  const plicHandle = fdt.phandle(plic);
  plic.cells('riscv,ndev', VIRT_PLIC_NUM_SOURCES).set('reg', reg(VIRT_MEMMAP.plic.base, VIRT_MEMMAP.plic.size));
  plic.set('interrupts-extended', { cells: intcHandles.flatMap((i) => [i, IRQ_M_EXT, i, IRQ_S_EXT]) });
  plic.set('interrupt-controller', null).set('compatible', ['sifive,plic-1.0.0', 'riscv,plic0']).cells('#address-cells', 0).cells('#interrupt-cells', 1);

  for (let i = 0; i < VIRTIO_COUNT; i++) {
    const base = VIRT_MEMMAP.virtio.base + i * VIRT_MEMMAP.virtio.size;
    const node = soc.node(`virtio_mmio@${hex(base)}`);
    deviceIrq(node, VIRTIO_IRQ + i, plicHandle).set('reg', reg(base, VIRT_MEMMAP.virtio.size)).set('compatible', 'virtio,mmio');
  }

  const test = soc.node(`test@${hex(VIRT_MEMMAP.test.base)}`);
  const testHandle = fdt.phandle(test);
  test.set('reg', reg(VIRT_MEMMAP.test.base, VIRT_MEMMAP.test.size)).set('compatible', ['sifive,test1', 'sifive,test0', 'syscon']);

  const serial = soc.node(`serial@${hex(VIRT_MEMMAP.uart0.base)}`);
  deviceIrq(serial, VIRT_UART0_IRQ, plicHandle).cells('clock-frequency', VIRT_UART_CLOCK_HZ);
  serial.set('reg', reg(VIRT_MEMMAP.uart0.base, VIRT_MEMMAP.uart0.size)).set('compatible', 'ns16550a');

  const rtc = soc.node(`rtc@${hex(VIRT_MEMMAP.rtc.base)}`);
  deviceIrq(rtc, VIRT_RTC_IRQ, plicHandle).set('reg', reg(VIRT_MEMMAP.rtc.base, VIRT_MEMMAP.rtc.size)).set('compatible', 'google,goldfish-rtc');

  root.node('poweroff').cells('value', SIFIVE_TEST_PASS).cells('offset', 0).cells('regmap', testHandle).set('compatible', 'syscon-poweroff');
  root.node('reboot').cells('value', SIFIVE_TEST_RESET).cells('offset', 0).cells('regmap', testHandle).set('compatible', 'syscon-reboot');

  chosen.set('stdout-path', `/soc/serial@${hex(VIRT_MEMMAP.uart0.base)}`);
  chosen.set('rng-seed', p.rngSeed);
  if (p.bootargs !== undefined && p.bootargs !== '') chosen.set('bootargs', p.bootargs);
  if (p.initrd !== undefined) {
    chosen.set('linux,initrd-start', { u64: [p.initrd.start] });
    chosen.set('linux,initrd-end', { u64: [p.initrd.end] });
  }
  return fdt.toBlob();
}

function deviceIrq(node: FdtNode, irq: number, plic: number): FdtNode {
  return node.cells('interrupts', irq).cells('interrupt-parent', plic);
}

function hex(n: number): string {
  return n.toString(16);
}
