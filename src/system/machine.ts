import { BlockBackend, devicePerms } from '../block/block-backend.js';
import { BlkPerm } from '../block/driver.js';
import { BlockError } from '../block/error.js';
// -drive format=qcow2: the qcow2 driver registers itself when its module loads.
import '../block/qcow2/driver.js';
import type { VirtDriveConfig } from '../engine/hw/virt/machine.js';
import { MachineConfigError } from '../engine/hw/virt/machine.js';
import { type VirtSession, VIRT_HOST_SLICE_TASKS, startVirtFromCli } from '../engine/hw/virt/virt-cli.js';
import { resolveBios } from '../engine/hw/virt/virt-options.js';
import { QmpError } from '../monitor/errors.js';
import { DEVICE_BACKENDS_SERVICE } from '../monitor/commands/block.js';
import { findIothread } from '../monitor/objects.js';
import type { SpikeMachine } from '../engine/hw/spike/machine.js';
import { UsageError } from './keyval.js';
import { spikeConsoleOnStdio, startSpikeFromCli } from './spike-cli.js';
import type { Vm } from './vm.js';

/** The board and its side channels, as the command line started them. */
export interface MachineSession {
  readonly virt: VirtSession | null;
  /** `-M spike`: the board running a bare-metal ELF (exit code through HTIF). */
  readonly spike: SpikeMachine | null;
  /** Tasks per host-loop slice: small when a hart runs, so input is looked at often. */
  readonly hostSliceTasks: number;
  /** Set once the guest powered off (sifive_test): the process exits with it. */
  readonly exitCode: number | null;
  close(): void;
}

export interface MachineHooks {
  /** Ctrl-A x on a stdio console. */
  readonly onQuit: () => void;
  /** A warning for stderr (QEMU prints them as "prog: warning: ..."). */
  readonly warn: (message: string) => void;
  /** Guest console bytes bound for the host's stdout (the spike's HTIF console). */
  readonly stdout?: (bytes: Uint8Array) => void;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function onOff(value: unknown): boolean {
  return value === 'on' || value === 'true' || value === 'yes' || value === true;
}

/** `-icount ...,rr=record|replay`: the drives must not change between record and replay. */
function underRecordReplay(icount: string | null): boolean {
  return icount !== null && /(^|,)rr=(record|replay)(,|$)/.test(icount);
}

/**
 * Each -drive's id: its own, or QEMU's default (drive_new): the interface name and the unit
 * number within that interface, `none0`, `virtio0`, `none1`...
 */
function defaultDriveIds(drives: readonly Readonly<Record<string, unknown>>[]): string[] {
  const units = new Map<string, number>();
  return drives.map((drive) => {
    const iface = str(drive['if']) ?? 'none';
    const unit = units.get(iface) ?? 0;
    units.set(iface, unit + 1);
    return str(drive['id']) ?? `${iface}${unit}`;
  });
}

/**
 * A device's `iothread=ID` names an `-object iothread`. QEMU resolves the link, then
 * virtio-blk-device on virtio-mmio refuses it: the transport has no ioeventfd under TCG.
 */
function checkIothread(vm: Vm, device: Readonly<Record<string, unknown>>): void {
  const id = device['iothread'];
  if (id === undefined) return;
  // As QEMU quotes the option: the implied driver first, bare.
  const text = Object.entries(device).map(([k, v], i) => (i === 0 && k === 'driver' ? String(v) : `${k}=${String(v)}`)).join(',');
  const name = String(id);
  if (!vm.graph.objects.has(name)) throw new UsageError(`-device ${text}: Device '${name}' not found`);
  if (findIothread(vm.graph, name) === undefined) throw new UsageError(`-device ${text}: Invalid parameter type for 'iothread', expected: iothread`);
  throw new UsageError(`-device ${text}: ioeventfd is required for iothread`);
}

/**
 * `-drive file=F,format=raw,if=none|virtio,id=ID[,readonly=on][,snapshot=on]` opens the node tree
 * and a named BlockBackend; `-device virtio-blk-device,drive=ID` (or `if=virtio`) puts it on the
 * board. With `snapshot=on`, `-snapshot` or under record/replay the image is opened read-only
 * under a memory overlay that takes the guest's writes (src/block/drivers/snapshot-overlay.ts).
 * Other device models are refused as QEMU refuses unknown ones.
 */
function openDrives(vm: Vm): VirtDriveConfig[] {
  const driveIds = defaultDriveIds(vm.config.drives);
  const used = new Map<string, { id?: string; serial?: string; qdev: string }>();
  // qdev paths of devices without an id, numbered in creation order (query-block's `qdev`).
  let anonymous = 0;
  // The devices of if=virtio drives are listed first here. QEMU's drive_new appends their
  // -device entries after the command line's, so their anonymous numbers (and paths: a
  // virtio-blk proxy whose backend is the child 'virtio-backend') come after every -device.
  const virtioDrives: string[] = [];
  vm.config.drives.forEach((drive, index) => {
    if (str(drive['if']) !== 'virtio') return;
    used.set(driveIds[index]!, { qdev: '' });
    virtioDrives.push(driveIds[index]!);
  });
  for (const device of vm.config.devices) {
    const driver = str(device['driver']) ?? '';
    if (driver !== 'virtio-blk-device') throw new UsageError(`-device ${driver}: '${driver}' is not a valid device model name`);
    const drive = str(device['drive']);
    if (drive === undefined) throw new UsageError(`-device ${driver}: Parameter 'drive' is missing`);
    const id = str(device['id']);
    used.set(drive, { id, serial: str(device['serial']), qdev: id ?? `/machine/peripheral-anon/device[${anonymous++}]` });
  }
  for (const drive of virtioDrives) {
    const entry = used.get(drive);
    if (entry !== undefined && entry.qdev === '') entry.qdev = `/machine/peripheral-anon/device[${anonymous++}]/virtio-backend`;
  }
  const backends = new Map<string, BlockBackend>();
  const forceSnapshot = vm.config.snapshot || underRecordReplay(vm.config.icount);
  vm.config.drives.forEach((drive, index) => {
    const id = driveIds[index]!;
    const file = str(drive['file']);
    const describe = Object.entries(drive).map(([k, v]) => `${k}=${String(v)}`).join(',');
    if (file === undefined) throw new UsageError(`-drive ${describe}: Parameter 'file' is missing`);
    const iface = str(drive['if']) ?? 'none';
    if (iface !== 'none' && iface !== 'virtio') throw new UsageError(`-drive ${describe}: machine type does not support if=${iface}`);
    const readOnly = onOff(drive['readonly']);
    const snapshot = !readOnly && (forceSnapshot || onOff(drive['snapshot']));
    try {
      vm.paths.check(file);
      const imageReadOnly = readOnly || snapshot;
      let node = vm.graph.blockdevAdd({ driver: str(drive['format']) ?? 'raw', 'read-only': imageReadOnly, file: { driver: 'file', filename: file, 'read-only': imageReadOnly } }, { monitorOwned: false, driverMessage: 'legacy' });
      if (snapshot) node = vm.graph.blockdevAdd({ driver: 'snapshot-overlay', file: node.nodeName }, { monitorOwned: false });
      // A drive without a device takes no permissions, so jobs may use it freely.
      const perms = used.has(id) ? devicePerms(readOnly) : { perm: 0, shared: BlkPerm.ALL };
      backends.set(id, BlockBackend.withNode(vm.graph, node, { name: id, ...perms }));
    } catch (error) {
      if (error instanceof BlockError || error instanceof QmpError) throw new UsageError(`-drive ${describe}: ${error.message}`);
      throw error;
    }
  });
  for (const device of vm.config.devices) checkIothread(vm, device);
  const drives: VirtDriveConfig[] = [];
  const deviceBackends: BlockBackend[] = [];
  for (const [drive, device] of used) {
    const backend = backends.get(drive) ?? nodeBackend(vm, drive);
    if (backend === undefined) throw new UsageError(`-device virtio-blk-device,drive=${drive}: Property 'virtio-blk-device.drive' can't find value '${drive}'`);
    // virtio_blk_device_realize: the backend knows its device and keeps an io-status.
    backend.devId = device.qdev;
    backend.iostatusEnabled = true;
    deviceBackends.push(backend);
    drives.push({ backend, ...(device.id !== undefined ? { id: device.id } : {}), ...(device.serial !== undefined ? { serial: device.serial } : {}) });
  }
  vm.services.set(DEVICE_BACKENDS_SERVICE, deviceBackends);
  return drives;
}

/**
 * `-device ...,drive=NODE` naming a -blockdev node: the device gets an anonymous BlockBackend on
 * it (blk_new + blk_insert_bs in the drive property's setter), or undefined if no node has the name.
 */
function nodeBackend(vm: Vm, name: string): BlockBackend | undefined {
  const node = vm.graph.nodes.get(name);
  if (node === undefined) return undefined;
  try {
    return BlockBackend.withNode(vm.graph, node, devicePerms(node.readOnly));
  } catch (error) {
    if (error instanceof BlockError) throw new UsageError(`-device virtio-blk-device,drive=${name}: ${error.message}`);
    throw error;
  }
}

/**
 * Builds the board the command line asks for (`-M virt`: devices, firmware, kernel, drives, the
 * hart unless `-accel qtest`; `-M spike`: a bare-metal ELF with HTIF). `-M none` builds nothing: a QMP-only VM. qtest attaches to the
 * board afterwards (tools/tsqemu.ts).
 */
export function startMachine(vm: Vm, hooks: MachineHooks): MachineSession {
  const config = vm.config;
  const drives = openDrives(vm);
  const accelQtest = config.accel[0] === 'qtest';
  let virt: VirtSession | null = null;
  let spike: SpikeMachine | null = null;
  if (config.machine.type === 'virt') {
    let bios = config.bios;
    if (bios === null) {
      try {
        resolveBios(null);
      } catch (error) {
        if (!(error instanceof MachineConfigError)) throw error;
        hooks.warn(`${error.message}; starting without firmware`);
        bios = 'none';
      }
    }
    for (const image of [bios, config.kernel, config.initrd]) if (image !== null && image !== 'none' && image !== 'default') vm.paths.check(image);
    try {
      virt = startVirtFromCli(vm.loop, {
        memoryBytes: config.memoryBytes,
        bios,
        kernel: config.kernel,
        append: config.append,
        initrd: config.initrd,
        smp: config.smp,
        icount: config.icount,
        rtc: config.rtc,
        nographic: config.nographic,
        nodefaults: config.nodefaults,
        serial: config.serial,
        drives,
        onQuit: hooks.onQuit,
        noCpu: accelQtest,
        jit: config.jit,
      });
    } catch (error) {
      if (error instanceof MachineConfigError) throw new UsageError(error.message);
      throw error;
    }
    const machine = virt.machine;
    vm.onReset(() => machine.reset('system'));
  } else if (config.machine.type === 'spike') {
    spike = startSpikeFromCli(vm, { console: spikeConsoleOnStdio(config) ? (hooks.stdout ?? null) : null });
  } else if (config.machine.type !== 'none') {
    throw new UsageError(`machine '${config.machine.type}' cannot be started from the command line yet (use -M virt, spike or none)`);
  } else if (drives.length > 0) {
    throw new UsageError(`-device virtio-blk-device: machine 'none' has no virtio-mmio bus`);
  }
  const session = virt;
  const board = spike;
  return {
    virt,
    spike,
    hostSliceTasks: (virt !== null && !accelQtest) || spike !== null ? VIRT_HOST_SLICE_TASKS : 50_000,
    get exitCode(): number | null {
      return session?.exitCode ?? board?.exitCode ?? null;
    },
    close(): void {
      session?.close();
    },
  };
}
