import { openQtestLogFile, parseQtestChardev, startQtestChardev, type QtestChardev } from '../engine/host/qtest-chardev.js';
import type { MainLoop } from '../engine/main-loop.js';
import type { GuestMemory } from '../engine/memory.js';
import type { QtestIrqRegistry } from './irq-registry.js';
import { QtestServer, type QtestExtension } from './server.js';
import type { VirtMachine } from '../engine/hw/virt/machine.js';
import { virtQtestDevices } from './virt.js';

/** What `-qtest`, `-qtest-log` and `-accel qtest` ask for (the system layer fills it from argv). */
export interface QtestConfig {
  /** `-qtest` chardev: `stdio`, `unix:PATH[,server=on]`, `tcp:HOST:PORT[,server=on]`. */
  readonly chardev: string;
  /** `-qtest-log FILE|none` (undefined: none, QEMU's default). */
  readonly log?: string;
  /** `-accel qtest`: no CPU runs and time moves only with clock_step/clock_set. */
  readonly accelQtest: boolean;
}

export interface QtestMachineView {
  readonly loop: MainLoop;
  readonly memory: GuestMemory;
  readonly irqs?: QtestIrqRegistry | null;
  readonly extensions?: readonly QtestExtension[];
}

/** A running qtest server with its chardev. */
export interface QtestSession {
  readonly server: QtestServer;
  readonly chardev: QtestChardev;
  /**
   * What the command line awaits before running the machine, as QEMU does: the client's connection
   * for `unix:`/`tcp:` in client mode or with `server=on` (wait defaults on); nothing for stdio or
   * `wait=off`. Rejects with a QtestChardevError when the socket cannot be set up.
   */
  readonly ready: Promise<void>;
  /** `-qtest stdio`: the run may end when stdin does (`chardev.onDisconnect`), nothing else can come. */
  readonly stdio: boolean;
  close(): void;
}

/**
 * Starts qtest for a built machine (throws QtestChardevError for a malformed `-qtest` spec): the server on the loop's input gate, the chardev that feeds it,
 * the log. With `accelQtest` the loop is frozen (time moves only with clock_step/clock_set); the
 * caller must not attach a CPU then.
 */
export function startQtest(machine: QtestMachineView, config: QtestConfig): QtestSession {
  const log = config.log === undefined || config.log === 'none' ? null : openQtestLogFile(config.log);
  if (config.accelQtest) machine.loop.frozen = true;
  const server = new QtestServer({
    loop: machine.loop,
    memory: machine.memory,
    irqs: machine.irqs ?? null,
    accelQtest: config.accelQtest,
    log,
    extensions: machine.extensions ?? [],
  }).attach();
  const spec = parseQtestChardev(config.chardev);
  const chardev = startQtestChardev(machine.loop.gate, spec, server.channel);
  server.setOutput(chardev.wire);
  const waits = spec.kind !== 'stdio' && (!spec.server || spec.wait);
  return {
    server,
    chardev,
    ready: waits ? chardev.connected : Promise.resolve(),
    stdio: spec.kind === 'stdio',
    close(): void {
      chardev.close();
      log?.close();
    },
  };
}

/** `-M virt` with `-qtest`: the board's devices are reachable by their paths for IRQ intercepts. */
export function startVirtQtest(machine: VirtMachine, config: QtestConfig): QtestSession {
  return startQtest({ loop: machine.loop, memory: machine.as, irqs: virtQtestDevices(machine) }, config);
}
