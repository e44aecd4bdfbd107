import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Co } from '../../../src/engine/coroutine.js';
import { type BlockDriver, BlockStatus, type BlockStatusOut, ChildRole } from '../../../src/block/driver.js';
import { bdrvCoBlockStatusAbove, bdrvCoIsAllocated, bdrvCoIsAllocatedAbove, bdrvCoPreadv, bdrvCoPwritev } from '../../../src/block/io.js';
import type { BlockDriverState } from '../../../src/block/node.js';
import { defaultChildPerms } from '../../../src/block/perms.js';
import { registerDriver } from '../../../src/block/registry.js';
import { newGraph, run, tempDir } from './helpers.js';

const BLOCK = 4096;

/**
 * A minimal copy-on-write format for these tests (qcow2 lives elsewhere): 4 KiB blocks, an
 * in-memory allocation map, data in the `file` child at the same offset, unallocated blocks read
 * from `backing` (or as zeroes). It exercises the generic chain walks, not a real image format.
 */
interface CowState {
  readonly allocated: Set<number>;
}

const cowDriver: BlockDriver = {
  formatName: 'test-cow',
  isFormat: true,
  supportsBacking: true,
  *open(bs, opts, ctx): Co<void> {
    const size = opts.size('size', 1 << 20);
    yield* ctx.openChild(bs, opts, 'file', ChildRole.IMAGE | ChildRole.PRIMARY, { required: true });
    yield* ctx.openChild(bs, opts, 'backing', ChildRole.COW);
    bs.opaque = { allocated: new Set<number>() } satisfies CowState;
    bs.totalBytes = size;
  },
  *preadv(bs, offset, bytes, buf): Co<number> {
    const s = bs.opaque as CowState;
    for (let at = 0; at < bytes; ) {
      const block = Math.floor((offset + at) / BLOCK);
      const n = Math.min(bytes - at, (block + 1) * BLOCK - (offset + at));
      const part = buf.subarray(at, at + n);
      let ret = 0;
      if (s.allocated.has(block)) ret = yield* bdrvCoPreadv(bs.file!, offset + at, n, part);
      else if (bs.backing !== null) ret = yield* bdrvCoPreadv(bs.backing, offset + at, n, part);
      else part.fill(0);
      if (ret < 0) return ret;
      at += n;
    }
    return 0;
  },
  *pwritev(bs, offset, bytes, buf): Co<number> {
    const s = bs.opaque as CowState;
    // Copy-on-write of partial blocks from the backing chain first.
    const first = Math.floor(offset / BLOCK);
    const last = Math.floor((offset + bytes - 1) / BLOCK);
    for (let block = first; block <= last; block++) {
      if (s.allocated.has(block)) continue;
      const old = new Uint8Array(BLOCK);
      if (bs.backing !== null) {
        const ret = yield* bdrvCoPreadv(bs.backing, block * BLOCK, BLOCK, old);
        if (ret < 0) return ret;
      }
      const ret = yield* bdrvCoPwritev(bs.file!, block * BLOCK, BLOCK, old);
      if (ret < 0) return ret;
      s.allocated.add(block);
    }
    return yield* bdrvCoPwritev(bs.file!, offset, bytes, buf);
  },
  *blockStatus(bs, _wantZero, offset, bytes, out: BlockStatusOut): Co<number> {
    const s = bs.opaque as CowState;
    const block = Math.floor(offset / BLOCK);
    const state = s.allocated.has(block);
    let end = (block + 1) * BLOCK;
    while (end < offset + bytes && s.allocated.has(end / BLOCK) === state) end += BLOCK;
    out.pnum = Math.min(end, offset + bytes) - offset;
    if (!state) return 0;
    out.map = offset;
    out.file = bs.file!.bs;
    return BlockStatus.DATA | BlockStatus.OFFSET_VALID;
  },
  childPerms(bs, _child, role, parentPerm, parentShared) {
    return defaultChildPerms(bs, role, parentPerm, parentShared);
  },
};
registerDriver(cowDriver);

let cleanup: () => void = () => {};
afterEach(() => cleanup());

function chain() {
  const t = tempDir();
  cleanup = t.cleanup;
  const file = (name: string): Record<string, unknown> => {
    const path = join(t.dir, name);
    writeFileSync(path, new Uint8Array(0));
    return { driver: 'file', filename: path };
  };
  const { loop, graph } = newGraph();
  const base = graph.blockdevAdd({ driver: 'test-cow', 'node-name': 'base', size: 8 * BLOCK, file: file('base') });
  const mid = graph.blockdevAdd({ driver: 'test-cow', 'node-name': 'mid', size: 16 * BLOCK, backing: 'base', file: file('mid') });
  const top = graph.blockdevAdd({ driver: 'test-cow', 'node-name': 'top', size: 16 * BLOCK, backing: 'mid', file: file('top') });
  const write = (bs: BlockDriverState, block: number): void => {
    expect(run(loop, bdrvCoPwritev(bs, block * BLOCK, BLOCK, new Uint8Array(BLOCK).fill(1)))).toBe(0);
  };
  write(base, 0);
  write(mid, 1);
  write(top, 2);
  return { loop, graph, base, mid, top };
}

describe('backing chains: block status above and is_allocated_above', () => {
  it('finds the layer that holds each block', () => {
    const { loop, base, mid, top } = chain();
    const above = (offset: number, b: BlockDriverState | null = null, includeBase = false) => run(loop, bdrvCoBlockStatusAbove(top, b, includeBase, true, offset, 4 * BLOCK));
    const at0 = above(0);
    expect(at0.ret & BlockStatus.ALLOCATED).toBeTruthy();
    expect(at0.file).toBe(base.file!.bs);
    expect(at0.pnum).toBe(BLOCK);
    expect(above(BLOCK).file).toBe(mid.file!.bs);
    expect(above(2 * BLOCK).file).toBe(top.file!.bs);
    // Block 3: nowhere; the base (no backing) reads it as zero but does not allocate it.
    const at3 = above(3 * BLOCK);
    expect(at3.ret & BlockStatus.ALLOCATED).toBe(0);
    expect(at3.ret & BlockStatus.ZERO).toBeTruthy();
    // Block 10: past the end of the 8-block base: zeroes allocated in the base.
    const at10 = above(10 * BLOCK);
    expect(at10.ret).toBe(BlockStatus.ZERO | BlockStatus.ALLOCATED);
    expect(at10.file).toBe(base);
    // With base=mid (exclusive), block 0 is not allocated above it.
    expect(run(loop, bdrvCoIsAllocatedAbove(top, mid, false, 0, BLOCK)).ret).toBe(0);
    expect(run(loop, bdrvCoIsAllocatedAbove(top, mid, true, BLOCK, BLOCK)).ret).toBe(1);
    expect(run(loop, bdrvCoIsAllocatedAbove(top, null, false, 0, BLOCK)).ret).toBe(1);
    expect(run(loop, bdrvCoIsAllocated(top, 0, 4 * BLOCK))).toEqual({ ret: 0, pnum: 2 * BLOCK });
    expect(run(loop, bdrvCoIsAllocated(top, 2 * BLOCK, 4 * BLOCK))).toEqual({ ret: 1, pnum: BLOCK });
  });

  it('reads through the chain and refuses a cycle', () => {
    const { loop, graph, top } = chain();
    const buf = new Uint8Array(4 * BLOCK);
    expect(run(loop, bdrvCoPreadv(top, 0, 4 * BLOCK, buf))).toBe(0);
    expect(buf.subarray(0, 3 * BLOCK).every((b) => b === 1)).toBe(true);
    expect(buf.subarray(3 * BLOCK).every((b) => b === 0)).toBe(true);
    expect(() => graph.attachChild(graph.findNode('base')!, top, 'backing', ChildRole.COW)).toThrow("Making 'top' a child of 'base' would create a cycle");
  });
});

describe('set backing (stream/commit graph change)', () => {
  it('moves the backing link, closes the dropped implicit node, refuses what QEMU refuses', () => {
    const { loop, graph, base, mid, top } = chain();
    // Stream-like: top now reads base directly; mid (monitor-owned) stays open.
    graph.setBacking(top, base);
    expect(top.backing!.bs).toBe(base);
    expect(mid.closed).toBe(false);
    expect(run(loop, bdrvCoIsAllocatedAbove(top, null, false, BLOCK, BLOCK)).ret).toBe(0);
    expect(() => graph.setBacking(graph.blockdevAdd({ driver: 'null-co', 'node-name': 'n' }), base)).toThrow("Driver 'null-co' of node 'n' does not support backing files");
    expect(() => graph.setBacking(base, top)).toThrow("Making 'top' a child of 'base' would create a cycle");
    expect(base.backing).toBe(null);
    // An implicitly opened backing node goes away once unused.
    const implicit = graph.blockdevAdd({
      driver: 'test-cow',
      'node-name': 'over',
      size: 4 * BLOCK,
      file: { driver: 'null-co' },
      backing: { driver: 'test-cow', 'node-name': 'inner', size: 4 * BLOCK, file: { driver: 'null-co' } },
    });
    const inner = implicit.backing!.bs;
    graph.setBacking(implicit, null);
    expect(inner.closed).toBe(true);
    expect(graph.findNode('inner')).toBeUndefined();
  });
});
