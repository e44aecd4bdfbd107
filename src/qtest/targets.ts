import '../block/builtin-drivers.js';
import { BlockBackend, devicePerms } from '../block/block-backend.js';
import { BlockGraph } from '../block/graph.js';
import { MainLoop } from '../engine/main-loop.js';
import { QtestClient } from './client.js';
import { inProcessVirt } from './virt.js';
import type { QtestLogSink } from './log.js';

/** Where a qtest script runs. */
export type QtestTarget =
  /** A virt machine in this process, `-accel qtest` semantics; `drives` are raw images for virtio-blk. */
  | { readonly kind: 'in-process'; readonly drives?: readonly string[]; readonly log?: QtestLogSink }
  /** `tsqemu ARGS -qtest unix:…` as a child process. */
  | { readonly kind: 'tsqemu'; readonly args: readonly string[]; readonly qtestLog?: string }
  /** Real QEMU (`qemu-system-riscv64` unless `binary`), `ARGS -qtest unix:…`. */
  | { readonly kind: 'qemu'; readonly args: readonly string[]; readonly binary?: string; readonly qtestLog?: string };

/** Debian's QEMU has no `-accel qtest`: the CPU runs, so only time-independent registers compare. */
export const QEMU_VIRT_ARGS = ['-M', 'virt', '-bios', 'none', '-display', 'none', '-nodefaults'] as const;

/** QEMU's spelling of a raw virtio-blk drive, index i. */
export function qemuDriveArgs(drives: readonly string[]): string[] {
  return drives.flatMap((file, i) => ['-drive', `file=${file},if=none,format=raw,id=drive${i}`, '-device', `virtio-blk-device,drive=drive${i}`]);
}

/** Opens a client on the target. */
export async function openQtestTarget(target: QtestTarget, transcript = false): Promise<QtestClient> {
  switch (target.kind) {
    case 'in-process': {
      const loop = new MainLoop();
      const graph = new BlockGraph(loop);
      const drives = (target.drives ?? []).map((filename, i) => {
        const node = graph.blockdevAdd({ driver: 'file', filename, 'node-name': `disk${i}` });
        return { backend: BlockBackend.withNode(graph, node, { name: `drive${i}`, ...devicePerms(false) }) };
      });
      return inProcessVirt(loop, { drives }, { log: target.log, transcript }).client;
    }
    case 'tsqemu':
      return QtestClient.spawn(target.args, { qtestLog: target.qtestLog, transcript });
    case 'qemu':
      return QtestClient.spawn(target.args, { binary: target.binary ?? 'qemu-system-riscv64', qtestLog: target.qtestLog, transcript });
  }
}
