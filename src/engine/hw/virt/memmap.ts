/** QEMU's RISC-V `virt` memory map (hw/riscv/virt.c; see reference/virt.md). */
export const VIRT_MEMMAP = {
  mrom: { base: 0x1000, size: 0xf000 },
  test: { base: 0x100000, size: 0x1000 },
  rtc: { base: 0x101000, size: 0x1000 },
  clint: { base: 0x2000000, size: 0x10000 },
  plic: { base: 0xc000000, size: 0x600000 },
  uart0: { base: 0x10000000, size: 0x100 },
  virtio: { base: 0x10001000, size: 0x1000 },
  fwCfg: { base: 0x10100000, size: 0x18 },
  dram: { base: 0x80000000, size: 0 },
} as const;

export const VIRT_UART0_IRQ = 10;
export const VIRT_RTC_IRQ = 11;
/** virtio-mmio slot i uses PLIC source VIRTIO_IRQ + i. */
export const VIRTIO_IRQ = 1;
export const VIRTIO_COUNT = 8;
export const VIRT_PLIC_PRIORITIES = 7;
export const MiB = 1024 * 1024;
/** QEMU's default -m for virt. */
export const VIRT_DEFAULT_RAM_BYTES = 128 * MiB;
