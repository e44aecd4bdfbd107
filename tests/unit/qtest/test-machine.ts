/** A small machine for qtest server tests: RAM, ROM, one timer device with an IRQ output, an IRQ sink. */
import { ClockType } from '../../../src/engine/clock.js';
import { IrqPin } from '../../../src/engine/irq.js';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { AddressSpace } from '../../../src/engine/hw/address-space.js';
import { QtestDeviceTable } from '../../../src/qtest/irq-registry.js';
import { MemoryLogSink } from '../../../src/qtest/log.js';
import { QtestServer, type QtestServerOptions } from '../../../src/qtest/server.js';

export const RAM_BASE = 0x8000_0000;
export const ROM_BASE = 0x1000;
export const DEV_BASE = 0x1000_0000;

export function testMachine(options: Partial<QtestServerOptions> = {}) {
  const loop = new MainLoop();
  loop.frozen = options.accelQtest ?? true;
  const mem = new AddressSpace(loop.trace);
  mem.addRam('ram', RAM_BASE, 0x10000);
  mem.addRom('rom', ROM_BASE, 0x100, new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
  const irq = new IrqPin('dev.irq');
  let scratch = 0;
  const timer = loop.newTimer(ClockType.Virtual, 'dev.timer', () => irq.raise());
  mem.addMmio('dev', DEV_BASE, 0x100, {
    read(offset) {
      if (offset === 0) return 0x12345678;
      if (offset === 4) return scratch;
      if (offset === 0x10) return irq.level ? 1 : 0;
      return 0;
    },
    write(offset, _size, value) {
      if (offset === 4) scratch = value;
      if (offset === 8) timer.mod(loop.clocks.virtualNs + value);
      if (offset === 0xc) irq.lower();
    },
  }, { minAccess: 4, maxAccess: 4 });
  const sinkLevels: boolean[] = [false, false, false, false];
  const sinkInputs = sinkLevels.map((_, i) => new IrqPin(`sink.in${i}`, (level) => (sinkLevels[i] = level)));
  const irqs = new QtestDeviceTable();
  irqs.add({ path: '/machine/dev', gpios: [{ name: null, inputs: [], outputs: [irq] }] });
  irqs.add({ path: '/machine/sink', gpios: [{ name: null, inputs: sinkInputs, outputs: [] }, { name: 'named', inputs: sinkInputs.slice(0, 2), outputs: [] }] });
  const log = new MemoryLogSink();
  const server = new QtestServer({ loop, memory: mem, irqs, accelQtest: true, log, ...options }).attach();
  return { loop, mem, irq, server, log, sinkLevels, timer };
}
