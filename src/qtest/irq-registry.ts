import type { IrqLine, IrqPin } from '../engine/irq.js';

/**
 * One list of GPIO lines of a device, as QEMU's NamedGPIOList: `name` null for the unnamed list
 * (`unnamed-gpio-in` / `unnamed-gpio-out` in QOM). `inputs` are the lines the device receives
 * (a PLIC's sources, a UART has none), `outputs` the lines it drives (a UART's interrupt).
 */
export interface QtestGpioList {
  readonly name: string | null;
  readonly inputs: readonly IrqPin[];
  readonly outputs: readonly IrqPin[];
}

/** A device as qtest sees it: a path and its GPIO lists. */
export interface QtestDevice {
  readonly path: string;
  readonly gpios: readonly QtestGpioList[];
}

/**
 * What the qtest server needs of a machine to intercept and drive IRQ lines: resolve a QOM-like
 * path (`/machine/plic`, `/machine/unattached/device[3]`…) to a device. The machine builder
 * satisfies it; tests can build one by hand with `QtestDeviceTable`.
 */
export interface QtestIrqRegistry {
  resolve(path: string): QtestDevice | undefined;
}

/** A plain table of devices, for machines and tests. Several paths may name the same device. */
export class QtestDeviceTable implements QtestIrqRegistry {
  private readonly byPath = new Map<string, QtestDevice>();

  /** Registers `device` under its path and any extra `aliases`. Returns the device. */
  add(device: QtestDevice, aliases: readonly string[] = []): QtestDevice {
    this.byPath.set(device.path, device);
    for (const alias of aliases) this.byPath.set(alias, device);
    return device;
  }

  resolve(path: string): QtestDevice | undefined {
    return this.byPath.get(path);
  }

  get paths(): readonly string[] {
    return [...this.byPath.keys()];
  }
}

/** An input line that `set_irq_in` may drive: any `IrqLine` works, not only pins. */
export type QtestInputLine = IrqLine;
