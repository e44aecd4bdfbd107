/** Shared setup for the virt device tests: an in-process virt machine under `-accel qtest`. */
import { MainLoop } from '../../src/engine/main-loop.js';
import type { VirtMachineConfig } from '../../src/engine/hw/virt/machine.js';
import { inProcessVirt } from '../../src/qtest/virt.js';

export const UART = 0x1000_0000;
export const CLINT = 0x200_0000;
export const PLIC = 0xc00_0000;
export const RTC = 0x10_1000;
export const TEST = 0x10_0000;
export const VIRTIO0 = 0x1000_1000;
export const RAM = 0x8000_0000;

export const PLIC_PATH = '/machine/soc/plic@c000000';
export const CLINT_PATH = '/machine/soc/clint@2000000';
export const UART_PATH = '/machine/soc/serial@10000000';
export const RTC_PATH = '/machine/soc/rtc@101000';

/** PLIC register addresses for hart 0's M-mode context (0) unless told otherwise. */
export const plic = {
  priority: (src: number) => PLIC + 4 * src,
  pending: (src: number) => PLIC + 0x1000 + 4 * (src >> 5),
  enable: (src: number, ctx = 0) => PLIC + 0x2000 + 0x80 * ctx + 4 * (src >> 5),
  threshold: (ctx = 0) => PLIC + 0x20_0000 + 0x1000 * ctx,
  claim: (ctx = 0) => PLIC + 0x20_0004 + 0x1000 * ctx,
};

export function virt(config: VirtMachineConfig = {}) {
  const serial: number[] = [];
  const loop = new MainLoop();
  const q = inProcessVirt(loop, { serialOutput: { write: (b) => serial.push(...b) }, ...config });
  return { ...q, qt: q.client, serial };
}
