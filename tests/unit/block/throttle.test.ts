import { describe, expect, it } from 'vitest';
import type { Co } from '../../../src/engine/coroutine.js';
import { BlockBackend, devicePerms } from '../../../src/block/block-backend.js';
import { BlockError } from '../../../src/block/error.js';
import { bdrvDrainedBegin, bdrvDrainedEnd } from '../../../src/block/io.js';
import { throttleGroupAdd, throttleGroupDel } from '../../../src/block/throttle-groups.js';
import { newGraph } from './helpers.js';

const MiB = 1 << 20;

function setup(limits: Record<string, number>) {
  const { loop, graph } = newGraph();
  throttleGroupAdd(graph, 'tg0', { limits });
  const bs = graph.blockdevAdd({ driver: 'throttle', 'node-name': 'thr', 'throttle-group': 'tg0', file: { driver: 'null-co', size: 64 * MiB } });
  const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
  /** Virtual ns to do `count` sequential requests of `bytes`. */
  const timed = (write: boolean, count: number, bytes: number): number => {
    const start = loop.nowNs;
    loop.runCoroutine('io', (function* (): Co {
      const buf = new Uint8Array(bytes);
      for (let i = 0; i < count; i++) {
        const ret = write ? yield* blk.coPwritev(i * bytes, bytes, buf) : yield* blk.coPreadv(i * bytes, bytes, buf);
        expect(ret).toBe(0);
      }
    })());
    return loop.nowNs - start;
  };
  return { loop, graph, bs, blk, timed };
}

function thrown(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(BlockError);
    return (error as Error).message;
  }
  throw new Error('expected a BlockError');
}

describe('throttle', () => {
  it('limits bandwidth in virtual time', () => {
    const { timed } = setup({ 'bps-total': MiB });
    const ns = timed(true, 64, 65536);
    // 4 MiB at 1 MiB/s, minus the bucket (avg/10) that passes at once.
    expect(ns).toBeGreaterThan(3.8e9);
    expect(ns).toBeLessThan(4.0e9);
  });

  it('limits operations per second, counting iops-size units', () => {
    const { timed } = setup({ 'iops-total': 100 });
    const ns = timed(false, 200, 512);
    expect(ns).toBeGreaterThan(1.85e9);
    expect(ns).toBeLessThan(2.0e9);
    const sized = setup({ 'iops-total': 100, 'iops-size': 4096 });
    // A 64 KiB request counts as 16 operations: 320 of them, the last passes once the level is
    // back at the bucket size (10), so (320 - 16 - 10) / 100 s.
    const ns2 = sized.timed(false, 20, 65536);
    expect(ns2).toBe(2.94e9);
  });

  it('lets bursts through at the burst rate', () => {
    const { timed } = setup({ 'bps-total': MiB, 'bps-total-max': 4 * MiB, 'bps-total-max-length': 2 });
    const ns = timed(true, 64, 65536);
    expect(ns).toBeGreaterThan(0.8e9);
    expect(ns).toBeLessThan(1.05e9);
  });

  it('keeps read and write limits apart', () => {
    const { timed } = setup({ 'bps-read': MiB });
    expect(timed(true, 64, 65536)).toBe(0);
    // 15 requests of 64 KiB must drain below the bucket (0.1 MiB) before the 16th passes.
    expect(timed(false, 16, 65536)).toBe(0.8375e9);
  });

  it('stops limiting while drained, so a drain never waits for the rate', () => {
    const { loop, bs, blk } = setup({ 'bps-total': 1024 });
    let done = 0;
    for (let i = 0; i < 4; i++) {
      loop.spawn(`w${i}`, (function* (): Co {
        if ((yield* blk.coPwritev(0, 65536, new Uint8Array(65536))) === 0) done++;
      })());
    }
    loop.runUntil(() => bs.inFlight === 4, { maxTasks: 1000 });
    const start = loop.nowNs;
    bdrvDrainedBegin(bs);
    expect(done).toBe(4);
    // At 1 KiB/s these would take minutes of virtual time.
    expect(loop.nowNs - start).toBeLessThan(1e6);
    bdrvDrainedEnd(bs);
  });

  it("refuses bad limits and groups with QEMU's messages", () => {
    const { graph } = newGraph();
    expect(thrown(() => throttleGroupAdd(graph, 'a', { limits: { 'bps-total': 1, 'bps-read': 1 } }))).toBe('bps/iops/max total values and read/write values cannot be used at the same time');
    expect(thrown(() => throttleGroupAdd(graph, 'a', { limits: { 'iops-total-max': 10 } }))).toBe('bps_max/iops_max require corresponding bps/iops values');
    expect(thrown(() => throttleGroupAdd(graph, 'a', { limits: { 'bps-total': 10, 'bps-total-max': 5 } }))).toBe('bps_max/iops_max cannot be lower than bps/iops');
    expect(thrown(() => throttleGroupAdd(graph, 'a', { limits: { 'bps-total': -1 } }))).toBe('bps/iops/max values must be within [0, 1000000000000000]');
    expect(thrown(() => throttleGroupAdd(graph, 'a', { limits: { 'bps-total': 10, 'bps-total-max-length': 5 } }))).toBe('burst length set without burst rate');
    expect(thrown(() => graph.blockdevAdd({ driver: 'throttle', 'throttle-group': 'nope', file: { driver: 'null-co' } }))).toBe("Throttle group 'nope' does not exist");
    expect(thrown(() => graph.blockdevAdd({ driver: 'throttle', file: { driver: 'null-co' } }))).toBe("Parameter 'throttle-group' is missing");
    throttleGroupAdd(graph, 'g', { 'x-iops-total': 10 });
    expect(thrown(() => throttleGroupAdd(graph, 'g', {}))).toBe("attempt to add duplicate property 'g' to object (type 'container')");
    const node = graph.blockdevAdd({ driver: 'throttle', 'node-name': 't', 'throttle-group': 'g', file: { driver: 'null-co' } });
    expect(thrown(() => throttleGroupDel(graph, 'g'))).toBe("object 'g' is in use, can not be deleted");
    graph.blockdevDel(node.nodeName);
    throttleGroupDel(graph, 'g');
    expect(graph.objects.size).toBe(0);
    expect(graph.nodes.size).toBe(0);
  });
});
