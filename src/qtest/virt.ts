import type { IrqPin } from '../engine/irq.js';
import type { MainLoop } from '../engine/main-loop.js';
import { type VirtMachine, type VirtMachineConfig, buildVirtMachine } from '../engine/hw/virt/machine.js';
import { QtestClient } from './client.js';
import { QtestDeviceTable } from './irq-registry.js';
import type { QtestLogSink } from './log.js';
import { QtestServer, type QtestServerOptions } from './server.js';

/**
 * The virt board's devices as qtest paths: each board device's lines become its unnamed GPIO list
 * (PLIC: 96 source inputs, context outputs; UART/RTC/virtio: one output; CLINT: msip then mtip).
 * Each device is also reachable by a short alias (`plic`, `clint`, `serial`, `rtc`, `test`,
 * `virtio_mmio@10001000`…), and by the QOM path QEMU 7.2 gives it on a default one-hart virt
 * (`/machine/unattached/device[N]`) with QEMU's line numbering, so QEMU's qtest scripts port over:
 * device[0] ACLINT SWI (msip per hart), [1] ACLINT MTIMER (mtip per hart), [2] PLIC (inputs: the
 * sources; outputs: S-mode per hart, then M-mode per hart), [3] sifive_test, [4..11] virtio-mmio
 * slots 0..7, [14] serial, [15] goldfish RTC.
 */
export function virtQtestDevices(machine: VirtMachine): QtestDeviceTable {
  const table = new QtestDeviceTable();
  for (const dev of machine.devices) {
    const leaf = dev.path.slice(dev.path.lastIndexOf('/') + 1);
    const short = leaf.startsWith('virtio_mmio') ? leaf : leaf.replace(/@.*$/, '');
    table.add({ path: dev.path, gpios: [{ name: null, inputs: dev.irqIn, outputs: dev.irqOut }] }, [short, `/machine/${short}`]);
  }
  const qom = (n: number): string => `/machine/unattached/device[${n}]`;
  const harts = machine.numHarts;
  const hartList = (pick: (h: number) => IrqPin): IrqPin[] => Array.from({ length: harts }, (_, h) => pick(h));
  table.add({ path: qom(0), gpios: [{ name: null, inputs: [], outputs: [...machine.clint.msip] }] });
  table.add({ path: qom(1), gpios: [{ name: null, inputs: [], outputs: [...machine.clint.mtip] }] });
  table.add({ path: qom(2), gpios: [{ name: null, inputs: machine.plic.sources, outputs: [...hartList((h) => machine.plic.seip(h)), ...hartList((h) => machine.plic.meip(h))] }] });
  table.add({ path: qom(3), gpios: [] });
  machine.virtio.forEach((t, i) => table.add({ path: qom(4 + i), gpios: [{ name: null, inputs: [], outputs: [t.irq] }] }));
  table.add({ path: qom(14), gpios: [{ name: null, inputs: [], outputs: [machine.uart.irq] }] });
  table.add({ path: qom(15), gpios: [{ name: null, inputs: [], outputs: [machine.rtc.irq] }] });
  return table;
}

export interface InProcessQtest {
  readonly loop: MainLoop;
  readonly machine: VirtMachine;
  readonly server: QtestServer;
  readonly client: QtestClient;
}

/**
 * A virt machine with `-accel qtest` semantics (no CPU, frozen time) and a qtest server in this
 * process, with a client on it: the fast way to run device tests (no process, no socket).
 */
export function inProcessVirt(loop: MainLoop, config: VirtMachineConfig = {}, options: { log?: QtestLogSink; transcript?: boolean; unaligned?: QtestServerOptions['unaligned'] } = {}): InProcessQtest {
  loop.frozen = true;
  const machine = buildVirtMachine(loop, { ...config, cpu: undefined });
  const server = new QtestServer({ loop, memory: machine.as, irqs: virtQtestDevices(machine), accelQtest: true, log: options.log ?? null, unaligned: options.unaligned }).attach();
  const client = QtestClient.inProcess(loop, server, options.transcript ?? false);
  return { loop, machine, server, client };
}
