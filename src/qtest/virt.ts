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
 * `virtio_mmio@10001000`…): the last path component without its address.
 */
export function virtQtestDevices(machine: VirtMachine): QtestDeviceTable {
  const table = new QtestDeviceTable();
  for (const dev of machine.devices) {
    const leaf = dev.path.slice(dev.path.lastIndexOf('/') + 1);
    const short = leaf.startsWith('virtio_mmio') ? leaf : leaf.replace(/@.*$/, '');
    table.add({ path: dev.path, gpios: [{ name: null, inputs: dev.irqIn, outputs: dev.irqOut }] }, [short, `/machine/${short}`]);
  }
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
