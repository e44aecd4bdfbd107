import { BlockBackend, devicePerms } from '../block/block-backend.js';
import { BlockError } from '../block/error.js';
import type { BlockGraph } from '../block/graph.js';
// -drive format=qcow2: the driver registers itself when its module loads.
import '../block/qcow2/driver.js';
import type { QuitHandler } from '../engine/host/chardev-core.js';
import { ChardevError } from '../engine/host/chardev-core.js';
import type { MainLoop } from '../engine/main-loop.js';
import { MachineConfigError, type VirtDriveConfig } from '../engine/hw/virt/machine.js';
import { type VirtSession, startVirtFromCli } from '../engine/hw/virt/virt-cli.js';

/** A command-line error in the virt board's options (the command line prints it and exits 1). */
export class VirtBoardError extends Error {
  override readonly name = 'VirtBoardError';
}

/** The options `startVirtBoard` reads: the matching fields of the command line's VmConfig. */
export interface VirtBoardConfig {
  readonly memoryBytes: number;
  readonly nographic: boolean;
  readonly nodefaults: boolean;
  readonly drives: readonly Readonly<Record<string, unknown>>[];
  readonly devices: readonly Readonly<Record<string, unknown>>[];
  readonly accel: readonly string[];
  readonly bios: string | null;
  readonly kernel: string | null;
  readonly append: string | null;
  readonly initrd: string | null;
  readonly serial: readonly string[];
  readonly smp: string | null;
  readonly icount: string | null;
  readonly rtc?: string | null;
}

/**
 * `-M virt` for the command line: opens every `-drive` as a BlockBackend named by its id, attaches
 * `-device virtio-blk-device,drive=ID` (and `-drive if=virtio`) in command-line order, and starts
 * the board (src/engine/hw/virt) with its UART on `-serial`/`-nographic`. Errors are
 * VirtBoardErrors with QEMU-like messages.
 */
export function startVirtBoard(loop: MainLoop, graph: BlockGraph, config: VirtBoardConfig, onQuit: QuitHandler): VirtSession {
  const backends = new Map<string, BlockBackend>();
  const drives: VirtDriveConfig[] = [];
  config.drives.forEach((drive, index) => {
    const opt = (key: string): string | undefined => (drive[key] === undefined ? undefined : String(drive[key]));
    const id = opt('id') ?? `drive${index}`;
    const file = opt('file');
    if (file === undefined) throw new VirtBoardError(`-drive ${id}: a file is required`);
    const iface = opt('if') ?? 'none';
    if (iface !== 'none' && iface !== 'virtio') throw new VirtBoardError(`-drive ${id}: if=${iface} is not supported on virt (use if=none or if=virtio)`);
    if (opt('snapshot') === 'on') throw new VirtBoardError(`-drive ${id}: snapshot=on is not supported yet`);
    const readOnly = opt('readonly') === 'on';
    try {
      const bs = graph.blockdevAdd({ driver: opt('format') ?? 'raw', 'node-name': `drive-${id}`, 'read-only': readOnly, file: { driver: 'file', filename: file, 'read-only': readOnly } }, { driverMessage: 'legacy' });
      const backend = BlockBackend.withNode(graph, bs, { name: id, ...devicePerms(readOnly) });
      backends.set(id, backend);
      if (iface === 'virtio') drives.push({ backend, id: `virtio-blk-${id}`, serial: opt('serial') });
    } catch (error) {
      if (error instanceof BlockError) throw new VirtBoardError(`-drive ${id}: ${error.message}`);
      throw error;
    }
  });
  for (const device of config.devices) {
    const driver = String(device['driver'] ?? '');
    if (driver !== 'virtio-blk-device') throw new VirtBoardError(`-device '${driver}' is not supported on virt (virtio-blk-device is)`);
    const driveId = device['drive'] === undefined ? undefined : String(device['drive']);
    const backend = driveId === undefined ? undefined : backends.get(driveId);
    if (backend === undefined) throw new VirtBoardError(`-device virtio-blk-device: ${driveId === undefined ? 'drive property not set' : `Property 'virtio-blk-device.drive' can't find value '${driveId}'`}`);
    drives.push({ backend, id: device['id'] === undefined ? undefined : String(device['id']), serial: device['serial'] === undefined ? undefined : String(device['serial']) });
  }
  try {
    return startVirtFromCli(loop, {
      memoryBytes: config.memoryBytes,
      bios: config.bios,
      kernel: config.kernel,
      append: config.append,
      initrd: config.initrd,
      smp: config.smp,
      icount: config.icount,
      rtc: config.rtc ?? null,
      nographic: config.nographic,
      nodefaults: config.nodefaults,
      serial: config.serial,
      drives,
      onQuit,
      noCpu: config.accel[0] === 'qtest',
    });
  } catch (error) {
    if (error instanceof MachineConfigError || error instanceof ChardevError) throw new VirtBoardError(error.message);
    throw error;
  }
}
