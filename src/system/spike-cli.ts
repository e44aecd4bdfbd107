import { readFileSync } from 'node:fs';
import { ElfError } from '../engine/hw/loader/elf.js';
import { SpikeMachine } from '../engine/hw/spike/machine.js';
import { MachineConfigError } from '../engine/hw/virt/machine.js';
import { parseIcountShift } from '../engine/hw/virt/virt-options.js';
import { UsageError } from './keyval.js';
import type { Vm } from './vm.js';

/**
 * `-M spike -bios none -kernel FILE.elf`: QEMU's spike board for bare-metal test binaries (ISA
 * tests, benchmarks). The hart starts at the ELF entry; HTIF (the ELF's tohost/fromhost) carries
 * console writes and the guest's exit code, which becomes the process's. tsqemu has no spike
 * firmware, so `-bios none` is required, as is `-kernel`.
 */
export interface SpikeCliOptions {
  /** Bytes the guest writes through HTIF, when the console reaches the host's stdout. */
  readonly console: ((bytes: Uint8Array) => void) | null;
}

/**
 * Where QEMU sends the spike's HTIF console: serial_hd(0), i.e. the first -serial, else stdio
 * under -nographic (mon:stdio), else nowhere visible (a vc, or nothing with -nodefaults).
 */
export function spikeConsoleOnStdio(config: Vm['config']): boolean {
  const first = config.serial[0];
  if (first !== undefined) return first === 'stdio' || first === 'mon:stdio';
  return config.nographic;
}

/** Builds the spike board; throws UsageError with QEMU's wording where QEMU has one. */
export function startSpikeFromCli(vm: Vm, options: SpikeCliOptions): SpikeMachine {
  const config = vm.config;
  if (config.bios !== 'none') throw new UsageError(`machine 'spike': tsqemu has no spike firmware; use -bios none -kernel FILE.elf`);
  if (config.kernel === null) throw new UsageError(`machine 'spike': -kernel FILE.elf is required (with -bios none)`);
  if (config.drives.length > 0 || config.devices.length > 0) throw new UsageError(`machine 'spike' has no virtio-mmio bus (-drive/-device are not supported)`);
  vm.paths.check(config.kernel);
  let image: Uint8Array;
  try {
    image = readFileSync(config.kernel);
  } catch (error) {
    throw new UsageError(`could not load kernel '${config.kernel}': ${(error as Error).message}`);
  }
  try {
    return new SpikeMachine(vm.loop, {
      kernel: image,
      ramSizeBytes: config.memoryBytes,
      icountShift: parseIcountShift(config.icount),
      jit: config.jit,
      ...(options.console !== null ? { console: options.console } : {}),
    });
  } catch (error) {
    if (error instanceof ElfError) throw new UsageError(`could not load kernel '${config.kernel}': ${error.message}`);
    if (error instanceof MachineConfigError) throw new UsageError(error.message);
    throw error;
  }
}
