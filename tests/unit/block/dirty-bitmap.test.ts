import { describe, expect, it } from 'vitest';
import { BlockBackend, devicePerms } from '../../../src/block/block-backend.js';
import {
  BdrvDirtyBitmap,
  BitmapCheck,
  bdrvClearDirtyBitmap,
  bdrvDirtyBitmapAbdicate,
  bdrvDirtyBitmapCreateSuccessor,
  bdrvEnableDirtyBitmap,
  bdrvMergeDirtyBitmap,
  bdrvReclaimDirtyBitmap,
  bdrvRestoreDirtyBitmap,
  blockDirtyBitmapLookup,
  blockDirtyBitmapMerge,
  coBlockDirtyBitmapAdd,
  coBlockDirtyBitmapRemove,
  type DirtyBitmapAddOptions,
} from '../../../src/block/dirty-bitmap.js';
import { Errno } from '../../../src/block/errno.js';
import { BlockError } from '../../../src/block/error.js';
import { newGraph, run } from './helpers.js';

const MiB = 1 << 20;

function setup() {
  const { loop, graph } = newGraph();
  const bs = graph.blockdevAdd({ driver: 'null-co', 'node-name': 'disk', size: 4 * MiB });
  const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
  const add = (options: DirtyBitmapAddOptions): BdrvDirtyBitmap => run(loop, coBlockDirtyBitmapAdd(bs, options));
  const write = (offset: number, bytes: number): number => run(loop, blk.coPwritev(offset, bytes, new Uint8Array(bytes)));
  return { loop, graph, bs, blk, add, write };
}

function thrown(fn: () => unknown): BlockError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(BlockError);
    return error as BlockError;
  }
  throw new Error('expected a BlockError');
}

describe('dirty bitmaps', () => {
  it('records writes at its granularity, counting bytes', () => {
    const { add, write, bs } = setup();
    const b = add({ name: 'b0' });
    expect(b.granularity).toBe(65536);
    expect(b.count).toBe(0);
    expect(write(100, 10)).toBe(0);
    expect(b.count).toBe(65536);
    expect(write(65536 - 1, 2)).toBe(0);
    expect(b.count).toBe(2 * 65536);
    expect(JSON.stringify(b.info())).toBe(JSON.stringify({ name: 'b0', recording: true, persistent: false, busy: false, granularity: 65536, count: 131072 }));
    const fine = add({ name: 'fine', granularity: 512, disabled: true });
    expect(write(0, 512)).toBe(0);
    expect(fine.count).toBe(0);
    bdrvEnableDirtyBitmap(fine, true);
    expect(write(1000, 100)).toBe(0);
    expect(fine.count).toBe(1024);
    expect(fine.nextDirty(0)).toBe(512);
    expect(fine.nextZero(512)).toBe(1536);
    expect(fine.nextDirtyArea(0, 4 * MiB, 1 << 30)).toEqual({ offset: 512, bytes: 1024 });
    expect(bs.findDirtyBitmap('fine')).toBe(fine);
  });

  it("refuses bad adds with QMP's messages", () => {
    const { add, loop, graph } = setup();
    add({ name: 'b0' });
    expect(thrown(() => add({ name: 'b0' })).message).toBe('Bitmap already exists: b0');
    expect(thrown(() => add({ name: '' })).message).toBe('Bitmap name cannot be empty');
    expect(thrown(() => add({ name: 'x', granularity: 256 })).message).toBe('Granularity must be power of 2 and at least 512');
    expect(thrown(() => add({ name: 'x', granularity: 3000 })).message).toBe('Granularity must be power of 2 and at least 512');
    expect(thrown(() => add({ name: 'x'.repeat(1024) })).message).toBe(`Bitmap name too long: ${'x'.repeat(1024)}`);
    const raw = graph.blockdevAdd({ driver: 'raw', file: { driver: 'null-co' } });
    expect(thrown(() => run(loop, coBlockDirtyBitmapAdd(raw, { name: 'p', persistent: true }))).message).toMatch(/^Can't store persistent bitmaps to #block\d+: Operation not supported$/);
  });

  it('clears and merges with backups for transactions', () => {
    const { add, write } = setup();
    const a = add({ name: 'a', granularity: 4096 });
    const b = add({ name: 'b', granularity: 65536, disabled: true });
    write(0, 4096);
    const backup = bdrvClearDirtyBitmap(a);
    expect(a.count).toBe(0);
    bdrvRestoreDirtyBitmap(backup);
    expect(a.count).toBe(4096);
    b.setRange(MiB, 10);
    const mergeBackup = bdrvMergeDirtyBitmap(a, b);
    // Different granularity: b's dirty 64 KiB granule dirties 16 of a's.
    expect(a.count).toBe(4096 + 65536);
    bdrvRestoreDirtyBitmap(mergeBackup);
    expect(a.count).toBe(4096);
    const other = new BdrvDirtyBitmap(null, 'other', 4096, 1234);
    expect(thrown(() => bdrvMergeDirtyBitmap(a, other)).message).toBe("Bitmaps are incompatible and can't be merged");
  });

  it('freezes for a job: successor, abdicate, reclaim', () => {
    const { add, write, loop } = setup();
    const b = add({ name: 'b', persistent: false });
    write(0, 512);
    const succ = bdrvDirtyBitmapCreateSuccessor(b);
    expect(b.busy).toBe(true);
    expect(b.frozen).toBe(true);
    expect(b.disabled).toBe(true);
    expect(b.recording).toBe(true);
    const busy = "Bitmap 'b' is currently in use by another operation and cannot be used";
    expect(thrown(() => bdrvClearDirtyBitmap(b)).message).toBe(busy);
    expect(thrown(() => bdrvEnableDirtyBitmap(b, false)).message).toBe(busy);
    expect(thrown(() => bdrvDirtyBitmapCreateSuccessor(b)).message).toBe(busy);
    expect(thrown(() => run(loop, coBlockDirtyBitmapRemove(b))).message).toBe(busy);
    write(MiB, 512);
    expect(b.count).toBe(65536);
    expect(succ.count).toBe(65536);
    expect(succ.get(MiB)).toBe(true);
    // Success: the successor takes the name and holds only what was written since.
    const after = bdrvDirtyBitmapAbdicate(b);
    expect(after).toBe(succ);
    expect(after.name).toBe('b');
    expect(after.get(0)).toBe(false);
    expect(after.get(MiB)).toBe(true);
    expect(after.busy).toBe(false);
    expect(after.disabled).toBe(false);
    // Failure: the successor's bits go back into the bitmap.
    const succ2 = bdrvDirtyBitmapCreateSuccessor(after);
    write(2 * MiB, 512);
    expect(succ2.count).toBe(65536);
    const back = bdrvReclaimDirtyBitmap(after);
    expect(back).toBe(after);
    expect(back.count).toBe(2 * 65536);
    expect(back.busy).toBe(false);
    expect(back.disabled).toBe(false);
    expect(back.successor).toBe(null);
  });

  it('read-only bitmaps make writes fail; inconsistent ones refuse use', () => {
    const { add, write } = setup();
    const b = add({ name: 'ro' });
    b.readonly = true;
    expect(write(0, 512)).toBe(-Errno.EPERM);
    expect(b.check(BitmapCheck.DEFAULT)?.message).toBe("Bitmap 'ro' is readonly and cannot be modified");
    expect(b.check(BitmapCheck.ALLOW_RO)).toBe(null);
    b.readonly = false;
    b.inconsistent = true;
    const error = b.check(BitmapCheck.ALLOW_RO)!;
    expect(error.message).toBe("Bitmap 'ro' is inconsistent and cannot be used");
    expect(error.hint).toBe('Try block-dirty-bitmap-remove to delete this bitmap from disk\n');
    expect(b.info()['inconsistent']).toBe(true);
  });

  it('serialises to a plain bit array and back', () => {
    const b = new BdrvDirtyBitmap(null, 'x', 512, 512 * 70 + 100);
    b.setRange(0, 1);
    b.setRange(512 * 9, 512 * 3);
    b.setRange(512 * 70, 1);
    const s = b.serialize();
    expect(s.granularity).toBe(512);
    expect(s.bits.length).toBe(9);
    expect([...s.bits]).toEqual([0b00000001, 0b00001110, 0, 0, 0, 0, 0, 0, 0b01000000]);
    const c = new BdrvDirtyBitmap(null, 'y', 512, 512 * 70 + 100);
    c.deserialize(s.bits);
    expect(c.count).toBe(b.count);
    expect(c.serialize().bits).toEqual(s.bits);
    // Stray bits past the end are dropped.
    c.deserialize(new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]));
    expect(c.dirtyGranuleCount).toBe(7);
  });

  it('follows truncates of its node', () => {
    const { loop, graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'raw', file: { driver: 'null-co', size: MiB } });
    const b = run(loop, coBlockDirtyBitmapAdd(bs, { name: 'b', granularity: 4096 }));
    b.setAll();
    expect(b.count).toBe(MiB);
    b.truncate(MiB / 2);
    expect(b.count).toBe(MiB / 2);
    b.truncate(MiB);
    expect(b.count).toBe(MiB / 2);
    expect(b.get(MiB - 1)).toBe(false);
  });
});

describe('dirty bitmap lookup and merge (QMP helpers)', () => {
  it("finds bitmaps and merges sources all or nothing with QEMU's messages", () => {
    const { add, graph, loop } = setup();
    const a = add({ name: 'a', granularity: 4096 });
    const b = add({ name: 'b', granularity: 4096, disabled: true });
    const other = graph.blockdevAdd({ driver: 'null-co', 'node-name': 'other', size: 4 * MiB });
    const c = run(loop, coBlockDirtyBitmapAdd(other, { name: 'c', granularity: 65536 }));
    expect(blockDirtyBitmapLookup(graph, 'disk', 'a')).toBe(a);
    expect(thrown(() => blockDirtyBitmapLookup(graph, 'nope', 'a')).message).toBe("Node 'nope' not found");
    expect(thrown(() => blockDirtyBitmapLookup(graph, 'disk', 'zz')).message).toBe("Dirty bitmap 'zz' not found");
    b.setRange(0, 4096);
    c.setRange(MiB, 1);
    expect(thrown(() => blockDirtyBitmapMerge(graph, 'disk', 'a', ['b', 'missing'])).message).toBe("Dirty bitmap 'missing' not found");
    expect(a.count).toBe(0);
    const backup = blockDirtyBitmapMerge(graph, 'disk', 'a', ['b', { node: 'other', name: 'c' }]);
    expect(a.count).toBe(4096 + 65536);
    bdrvRestoreDirtyBitmap(backup);
    expect(a.count).toBe(0);
  });
});
