/**
 * What a replay snapshot of a `tsqemu` VM carries besides the board (src/replay/virt-snapshot.ts):
 * the `snapshot=on` disk overlays and the run state. The rest of the VM (QMP sessions, block
 * nodes added over QMP, jobs) is not saved, so a snapshot is only taken while none of that
 * differs from the start: no client connected, no job, the command line's block graph.
 */
import { type OverlaySnapshot, isSnapshotOverlay, restoreOverlay, saveOverlay } from '../block/drivers/snapshot-overlay.js';
import type { BlockDriverState } from '../block/node.js';
import { assert } from '../engine/assert.js';
import type { RunStatus } from '../monitor/run-state.js';
import type { SnapshotPart } from '../replay/machine.js';
import type { Vm } from './vm.js';

function nodeNames(vm: Vm): string {
  return [...vm.graph.nodes.keys()].sort().join(',');
}

export function vmSnapshotParts(vm: Vm): SnapshotPart[] {
  const startNodes = nodeNames(vm);
  const overlays = (): BlockDriverState[] => [...vm.graph.nodes.values()].filter(isSnapshotOverlay).sort((a, b) => (a.nodeName < b.nodeName ? -1 : 1));
  return [
    {
      name: 'vm',
      save: () => ({ status: vm.runState.status }),
      restore: (state) => vm.runState.restoreStatus((state as { status: RunStatus }).status),
      notQuiescent: () => {
        const clients = vm.monitors.reduce((n, m) => n + m.sessions.size, 0);
        if (clients > 0) return `${clients} QMP client(s) connected (monitor sessions are not part of snapshots)`;
        if (vm.monitors.some((m) => m.pending)) return 'a QMP command is pending';
        if (vm.jobs.jobs.length > 0) return 'a block job exists';
        if (nodeNames(vm) !== startNodes) return 'the block graph changed since the start (blockdev-add/del)';
        return null;
      },
    },
    {
      name: 'disks',
      save: () => overlays().map((bs) => ({ node: bs.nodeName, overlay: saveOverlay(bs) })),
      restore: (state) => {
        const saved = state as readonly { node: string; overlay: OverlaySnapshot }[];
        const nodes = overlays();
        assert(Array.isArray(saved) && saved.length === nodes.length, 'snapshot has a different set of snapshot=on disks');
        nodes.forEach((bs, i) => {
          assert(saved[i]!.node === bs.nodeName, () => `snapshot disk ${saved[i]!.node} is not ${bs.nodeName}`);
          restoreOverlay(bs, saved[i]!.overlay);
        });
      },
    },
  ];
}
