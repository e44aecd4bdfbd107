import { assert } from '../engine/assert.js';
import type { BlockDriver } from './driver.js';

const drivers = new Map<string, BlockDriver>();

/**
 * Makes a driver available to `blockdev-add`/`-blockdev`/the tools under `drv.formatName`.
 * Built-in drivers register in `builtin-drivers.ts`; qcow2 registers itself from its own module
 * (import it once, e.g. from src/system, to make it available). Registering the same object twice
 * is harmless; two different drivers with one name is a bug.
 */
export function registerDriver(drv: BlockDriver): void {
  const existing = drivers.get(drv.formatName);
  assert(existing === undefined || existing === drv, () => `two block drivers named '${drv.formatName}'`);
  drivers.set(drv.formatName, drv);
}

export function findDriver(name: string): BlockDriver | undefined {
  return drivers.get(name);
}

/** Registered driver names, sorted (query-block's supported formats, `qemu-img --help`). */
export function driverNames(): string[] {
  return [...drivers.keys()].sort();
}
