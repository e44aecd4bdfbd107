/**
 * Builds a virt board for record or play from a plain description, the same way in both modes:
 * same seed, same firmware, disks opened read-only under a `snapshot=on` overlay (the image itself
 * is never written, so play starts from the bytes the recording started from). The header
 * carries a digest of this description and of every image, so a log for another machine or a
 * changed disk is recognised.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { BlockBackend, devicePerms } from '../block/block-backend.js';
import { BlockGraph } from '../block/graph.js';
import type { BlockDriverState } from '../block/node.js';
import '../block/qcow2/driver.js';
import { assert } from '../engine/assert.js';
import { digestOf } from '../engine/digest.js';
import { MainLoop } from '../engine/main-loop.js';
import type { CharOutput } from '../engine/hw/char/ns16550a.js';
import { type VirtDriveConfig, type VirtMachine, buildVirtMachine } from '../engine/hw/virt/machine.js';
import { riscvCpuFactory } from '../engine/hw/virt/riscv-harts.js';
import type { DiskDigest } from './log-format.js';
import type { ReplayMachine } from './machine.js';
import { DiskWritesProbe } from './disk-probe.js';
import type { SnapshotPart } from './machine.js';
import { createVirtSnapshotter } from './virt-snapshot.js';
import { type OverlaySnapshot, restoreOverlay, saveOverlay } from '../block/drivers/snapshot-overlay.js';
import { attachIrqEvents, virtProbes } from './virt-probes.js';

export interface VirtDriveSpec {
  readonly id: string;
  readonly file: string;
  readonly format: 'raw' | 'qcow2';
}

/** Everything that shapes a virt run; its digest is the log's machine digest. */
export interface VirtRunSpec {
  readonly memoryBytes: number;
  /** Harts (`-smp N`); absent in logs of older versions, which ran one. */
  readonly smp?: number;
  /** Firmware path or 'none'. */
  readonly bios: string;
  readonly kernel: string | null;
  readonly append: string | null;
  readonly drives: readonly VirtDriveSpec[];
  readonly icountShift: number;
  readonly seed: number;
  readonly policy: 'fifo' | 'explore';
}

export interface VirtRun extends ReplayMachine {
  readonly machine: VirtMachine;
  readonly spec: VirtRunSpec;
  readonly disks: readonly DiskDigest[];
  /** The `snapshot=on` overlay node of each drive, in drive order (their state is the disks' state). */
  readonly overlays: readonly BlockDriverState[];
  /** Closes the block layer (the overlays' writes are dropped, as with snapshot=on). */
  close(): void;
}

/** Digest of a file's bytes (SHA-256, first 16 hex digits). */
export function fileDigest(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex').slice(0, 16);
}

/** The machine digest: the spec without the host paths' directories (a moved image still matches). */
export function virtSpecDigest(spec: VirtRunSpec): string {
  return digestOf({ ...spec, bios: basename(spec.bios), kernel: spec.kernel === null ? null : basename(spec.kernel), drives: spec.drives.map((d) => ({ id: d.id, format: d.format })) });
}

export function describeDisks(spec: VirtRunSpec): DiskDigest[] {
  return spec.drives.map((d) => ({ name: d.id, path: d.file, sizeBytes: statSync(d.file).size, digest: fileDigest(d.file) }));
}

/** Builds the board; UART0 output goes to `serialOutput`, UART0 input comes through the gate's `serial0`. */
export function buildVirtRun(spec: VirtRunSpec, serialOutput: CharOutput | null): VirtRun {
  const loop = new MainLoop({ seed: spec.seed, policy: spec.policy });
  const graph = new BlockGraph(loop);
  const disks = describeDisks(spec);
  const overlays: BlockDriverState[] = [];
  const drives: VirtDriveConfig[] = spec.drives.map((drive) => {
    // snapshot=on: the guest writes to a memory overlay, never to the image.
    const base = graph.blockdevAdd({ driver: drive.format, 'node-name': `drive-${drive.id}`, 'read-only': true, file: { driver: 'file', filename: drive.file, 'node-name': `file-${drive.id}`, 'read-only': true } });
    const overlay = graph.blockdevAdd({ driver: 'snapshot-overlay', 'node-name': `overlay-${drive.id}`, file: base.nodeName });
    overlays.push(overlay);
    const backend = BlockBackend.withNode(graph, overlay, { name: drive.id, ...devicePerms(false) });
    return { backend };
  });
  const machine = buildVirtMachine(loop, {
    ramSizeBytes: spec.memoryBytes,
    smp: spec.smp ?? 1,
    bios: spec.bios,
    kernel: spec.kernel ?? undefined,
    append: spec.append ?? undefined,
    drives,
    serialOutput,
    cpu: riscvCpuFactory({ icountShift: spec.icountShift }),
  });
  const disksPart: SnapshotPart = {
    name: 'disks',
    save: () => overlays.map((node) => saveOverlay(node)),
    restore: (state) => {
      const saved = state as readonly OverlaySnapshot[];
      assert(Array.isArray(saved) && saved.length === overlays.length, 'snapshot has a different number of disks');
      overlays.forEach((node, i) => restoreOverlay(node, saved[i]!));
    },
  };
  return {
    loop,
    machine,
    spec,
    snapshotter: createVirtSnapshotter(loop, machine, [disksPart]),
    disks,
    icountShift: spec.icountShift,
    probes: [...virtProbes(machine), new DiskWritesProbe(spec.drives.map((d, i) => ({ id: d.id, node: overlays[i]! })))],
    attachEvents: (emit) => attachIrqEvents(machine, emit),
    overlays,
    close(): void {
      // Not through the main loop: a run stopped at --until would execute guest instructions while
      // the graph drains. The overlays hold nothing to flush; only the host files are released,
      // with the drivers' close, which does not wait for anything.
      for (const overlay of overlays) {
        for (let bs: BlockDriverState | undefined = overlay; bs !== undefined; bs = bs.file?.bs) {
          if (bs.drv.close === undefined || bs.opaque === null || bs.closed) continue;
          const step = bs.drv.close(bs).next();
          assert(step.done === true, () => `closing node '${bs!.nodeName}' had to wait`);
          bs.closed = true;
        }
      }
    },
  };
}
