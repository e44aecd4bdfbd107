import { describe, expect, it } from 'vitest';
import { type Co, sleep } from '../../../src/engine/coroutine.js';
import { BlockBackend, devicePerms } from '../../../src/block/block-backend.js';
import { BlkPerm } from '../../../src/block/driver.js';
import { bdrvCbwAppend, bdrvCbwDrop, cbwBlockCopyState, cbwSnapshotError } from '../../../src/block/drivers/copy-before-write.js';
import { Errno } from '../../../src/block/errno.js';
import { bdrvCoPreadv } from '../../../src/block/io.js';
import { newGraph, run } from './helpers.js';

const SIZE = 1 << 20;
const CLUSTER = 65536;
// The source reads as zeroes, so block-copy writes zeroes to the target: errors are injected on
// the target's pwritev_zero event.

/**
 * Source and target are null devices (fast, no host files); what matters here is which clusters
 * reach the target and when, which a write hook on the target records.
 */
function setup(policy: 'fifo' | 'explore' = 'fifo', seed = 0, targetExtra: Record<string, unknown> = {}) {
  const { loop, graph } = newGraph({ policy, seed });
  const source = graph.blockdevAdd({ driver: 'null-co', 'node-name': 'src', size: SIZE, 'read-zeroes': true });
  const target = graph.blockdevAdd({ driver: 'blkdebug', 'node-name': 'tgt', image: { driver: 'null-co', size: SIZE, 'latency-ns': 1000 }, ...targetExtra });
  const device = BlockBackend.withNode(graph, source, { name: 'drive0', ...devicePerms(false) });
  const targetWrites: Array<[number, number]> = [];
  target.addWriteHook({
    name: 'count',
    *before(req) {
      targetWrites.push([req.offset, req.bytes]);
      return 0;
    },
  });
  return { loop, graph, source, target, device, targetWrites };
}

describe('copy-before-write', () => {
  it('sits above the source and copies each cluster once before the first write to it', () => {
    const { loop, graph, source, target, device, targetWrites } = setup();
    const filter = bdrvCbwAppend(graph, source, target, 'cbw');
    expect(device.bs).toBe(filter);
    expect(filter.file!.bs).toBe(source);
    const bcs = cbwBlockCopyState(filter);
    expect(bcs.clusterSize).toBe(CLUSTER);
    expect(bcs.dirtyBytes).toBe(SIZE);
    expect(run(loop, device.coPwritev(100, 10, new Uint8Array(10).fill(1)))).toBe(0);
    expect(targetWrites).toEqual([[0, CLUSTER]]);
    expect(run(loop, device.coPwritev(200, 10, new Uint8Array(10).fill(1)))).toBe(0);
    expect(targetWrites).toHaveLength(1);
    // A write across two clusters copies the second only.
    expect(run(loop, device.coPwritev(CLUSTER - 5, 10, new Uint8Array(10)))).toBe(0);
    expect(targetWrites).toEqual([[0, CLUSTER], [CLUSTER, CLUSTER]]);
    expect(bcs.dirtyBytes).toBe(SIZE - 2 * CLUSTER);
    // Zero writes and discards are copied before too.
    expect(run(loop, device.coPwriteZeroes(4 * CLUSTER, 512))).toBe(0);
    expect(targetWrites).toHaveLength(3);
    // The target is owned by the filter: nobody else may write it.
    expect(() => BlockBackend.withNode(graph, target, devicePerms(false))).toThrow(
      "Permission conflict on node 'tgt': permissions 'write' are both required by node 'cbw' (uses node 'tgt' as 'target' child) and unshared by an unnamed block device (uses node 'tgt' as 'root' child).",
    );
    bdrvCbwDrop(graph, filter);
    expect(device.bs).toBe(source);
    expect(graph.findNode('cbw')).toBeUndefined();
    expect(run(loop, device.coPwritev(8 * CLUSTER, 10, new Uint8Array(10)))).toBe(0);
    expect(targetWrites).toHaveLength(3);
  });

  it('never copies a cluster twice when guest writes race with a job (explored orders)', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const { loop, graph, source, target, device, targetWrites } = setup('explore', seed);
      const filter = bdrvCbwAppend(graph, source, target, null);
      const bcs = cbwBlockCopyState(filter);
      let jobRet = 1;
      loop.spawn('job', (function* (): Co {
        jobRet = yield* bcs.copy(0, SIZE);
      })());
      const guest: number[] = [];
      for (let i = 0; i < 12; i++) {
        loop.spawn(`guest${i}`, (function* (): Co {
          yield sleep((i * 7919) % 5000);
          const offset = ((i * 104729) % (SIZE / 512)) * 512;
          guest.push(yield* device.coPwritev(offset, 512, new Uint8Array(512).fill(i)));
        })());
      }
      loop.runUntilIdle();
      expect(jobRet).toBe(0);
      expect(guest.every((r) => r === 0)).toBe(true);
      const copied = new Set<number>();
      let bytes = 0;
      for (const [offset, len] of targetWrites) {
        for (let c = offset; c < offset + len; c += CLUSTER) {
          expect(copied.has(c)).toBe(false);
          copied.add(c);
        }
        bytes += len;
      }
      expect(bytes).toBe(SIZE);
      expect(bcs.dirtyBytes).toBe(0);
      expect(bcs.tasksInFlight).toBe(0);
    }
  });

  it('fails the guest write when the copy fails (break-guest-write), and retries later', () => {
    const { loop, graph, source, target, device } = setup('fifo', 0, { 'inject-error': [{ event: 'pwritev_zero', errno: Errno.ENOSPC, once: true }] });
    const filter = bdrvCbwAppend(graph, source, target, 'cbw');
    expect(run(loop, device.coPwritev(0, 512, new Uint8Array(512)))).toBe(-Errno.ENOSPC);
    expect(cbwBlockCopyState(filter).copyBitmap.get(0)).toBe(true);
    expect(run(loop, device.coPwritev(0, 512, new Uint8Array(512)))).toBe(0);
    expect(cbwBlockCopyState(filter).copyBitmap.get(0)).toBe(false);
  });

  it('lets the guest write through and breaks the snapshot with break-snapshot', () => {
    const { loop, graph, source, target, device } = setup('fifo', 0, { 'inject-error': [{ event: 'pwritev_zero', errno: Errno.EIO }] });
    const filter = bdrvCbwAppend(graph, source, target, 'cbw', { 'on-cbw-error': 'break-snapshot' });
    expect(run(loop, device.coPwritev(0, 512, new Uint8Array(512)))).toBe(0);
    expect(cbwSnapshotError(filter)).toBe(-Errno.EIO);
  });

  it('copies only the clusters of a given bitmap and reads pass through', () => {
    const { loop, graph, device, targetWrites } = setup();
    // The device does not share 'write': take it away so another writer may use the source.
    device.dispose();
    const filter = graph.blockdevAdd({ driver: 'copy-before-write', 'node-name': 'cbw2', file: 'src', target: 'tgt' }, { monitorOwned: false });
    const bcs = cbwBlockCopyState(filter);
    bcs.copyBitmap.resetAll();
    bcs.copyBitmap.setRange(2 * CLUSTER, CLUSTER);
    const blk = BlockBackend.withNode(graph, filter, { perm: BlkPerm.CONSISTENT_READ | BlkPerm.WRITE, shared: BlkPerm.ALL });
    expect(run(loop, blk.coPwritev(0, 512, new Uint8Array(512)))).toBe(0);
    expect(targetWrites).toHaveLength(0);
    expect(run(loop, blk.coPwritev(2 * CLUSTER, 512, new Uint8Array(512)))).toBe(0);
    expect(targetWrites).toEqual([[2 * CLUSTER, CLUSTER]]);
    const buf = new Uint8Array(512).fill(9);
    expect(run(loop, bdrvCoPreadv(filter, 0, 512, buf))).toBe(0);
    expect(buf.every((x) => x === 0)).toBe(true);
  });
});
