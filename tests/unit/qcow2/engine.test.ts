import { deflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { ImageError } from '../../../src/block/qcow2/errors.js';
import { be32, INCOMPAT_CORRUPT, INCOMPAT_DIRTY, setBe32, setBe64num } from '../../../src/block/qcow2/format.js';
import { MemoryByteIO } from '../../../src/block/qcow2/io.js';
import { Qcow2Image } from '../../../src/block/qcow2/qcow2.js';
import { checkQcow2 } from '../../../src/block/qcow2/check.js';
import { attachPersistentBitmaps, loadBitmaps, newBitmap, storeBitmaps, dirtyCount } from '../../../src/block/qcow2/bitmaps.js';
import { check, expectClean, newImage, open, pattern, run } from './helpers.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostFileIO } from '../../../src/block/image/host-file.js';

function readBack(img: Qcow2Image, offset: number, len: number): Uint8Array {
  const b = new Uint8Array(len);
  run(img.read(offset, b));
  return b;
}

describe('qcow2 engine', () => {
  for (const clusterSize of [512, 4096, 65536, 2 * 1024 * 1024]) {
    it(`cluster size ${clusterSize}: unaligned writes read back, image checks clean`, () => {
      const size = 8 << 20;
      const io = newImage({ sizeBytes: size, clusterSize });
      const img = open(io);
      const data = pattern(300_001, clusterSize);
      run(img.write(12_345, data));
      run(img.write(size - 1000, pattern(1000, 7)));
      expect(Buffer.compare(readBack(img, 12_345, data.length), data)).toBe(0);
      expect(readBack(img, 0, 12_345).every((b) => b === 0)).toBe(true);
      expect(Buffer.compare(readBack(img, size - 1000, 1000), pattern(1000, 7))).toBe(0);
      run(img.close());
      expectClean(check(io));
    });
  }

  for (const refcountBits of [1, 2, 8, 32, 64]) {
    it(`refcount_bits=${refcountBits}: allocation and check work`, () => {
      const io = newImage({ sizeBytes: 2 << 20, clusterSize: 4096, refcountBits });
      const img = open(io);
      run(img.write(0, pattern(200_000, refcountBits)));
      run(img.discard(0, 65536));
      run(img.close());
      expectClean(check(io));
      const again = open(io, { readOnly: true });
      expect(Buffer.compare(readBack(again, 65536, 200_000 - 65536), pattern(200_000, refcountBits).subarray(65536))).toBe(0);
    });
  }

  it('grows the refcount table when the image outgrows it (512-byte clusters)', () => {
    // 512-byte clusters, 16-bit refcounts: one block covers 256 clusters, one table 64 blocks.
    const io = newImage({ sizeBytes: 32 << 20, clusterSize: 512 });
    const img = open(io);
    const before = img.refcounts.tableOffset;
    run(img.write(0, pattern(12 << 20, 3)));
    expect(img.refcounts.tableOffset).not.toBe(before);
    expect(Buffer.compare(readBack(img, 0, 12 << 20), pattern(12 << 20, 3))).toBe(0);
    run(img.close());
    expectClean(check(io));
  });

  it('zero writes keep or drop allocation; discard frees; v2 writes real zeroes', () => {
    const io = newImage({ sizeBytes: 1 << 20, clusterSize: 4096 });
    const img = open(io);
    run(img.write(0, pattern(64 * 1024, 1)));
    run(img.writeZeroes(4096, 8192, false));
    run(img.writeZeroes(16384, 4096, true));
    run(img.writeZeroes(100, 50, false)); // partial: explicit zeroes
    const b = readBack(img, 0, 64 * 1024);
    const expected = pattern(64 * 1024, 1);
    expected.fill(0, 4096, 12288);
    expected.fill(0, 16384, 20480);
    expected.fill(0, 100, 150);
    expect(Buffer.compare(b, expected)).toBe(0);
    run(img.discard(32768, 4096 + 100)); // only whole clusters go
    expected.fill(0, 32768, 36864);
    expect(Buffer.compare(readBack(img, 0, 64 * 1024), expected)).toBe(0);
    run(img.close());
    expectClean(check(io));

    const v2 = newImage({ sizeBytes: 1 << 20, clusterSize: 4096, compat: '0.10' });
    const img2 = open(v2);
    run(img2.write(0, pattern(8192, 2)));
    run(img2.writeZeroes(0, 4096));
    expect(readBack(img2, 0, 4096).every((x) => x === 0)).toBe(true);
    run(img2.close());
    expectClean(check(v2));
  });

  it('reads unallocated clusters from the backing source and copies on partial write', () => {
    const base = pattern(1 << 20, 9);
    const io = newImage({ sizeBytes: 1 << 20, clusterSize: 4096, backingFile: 'base.raw', backingFormat: 'raw' });
    const img = open(io, { backing: { sizeBytes: base.length, *read(off, buf) { buf.set(base.subarray(off, off + buf.length)); } } });
    run(img.write(5000, new Uint8Array(100).fill(0xee)));
    run(img.discard(65536, 4096)); // v3 with backing: becomes a zero cluster
    const expected = base.slice();
    expected.fill(0xee, 5000, 5100);
    expected.fill(0, 65536, 69632);
    expect(Buffer.compare(readBack(img, 0, 1 << 20), expected)).toBe(0);
    run(img.close());
    expectClean(check(io));
  });

  it('reads compressed clusters (raw deflate)', () => {
    const io = newImage({ sizeBytes: 1 << 20, clusterSize: 4096 });
    const img = open(io);
    run(img.write(0, new Uint8Array(4096).fill(1))); // allocates the L2 table
    run(img.close());
    const plain = pattern(4096, 5);
    plain.fill(7, 0, 2000);
    const z = deflateRawSync(plain);
    const hostOffset = io.lengthBytes + 512 * 3 + 16; // not sector aligned, as QEMU packs them
    run(io.pwrite(hostOffset, z));
    const sectors = Math.ceil((hostOffset % 512) + z.length) / 512;
    const nbSectors = Math.ceil(sectors) - 1;
    // L2 entry for guest cluster 1: compressed flag, sector count above bit x = 62 - (12 - 8) = 58.
    const reopened = open(io);
    const l1 = reopened.l1;
    const l2Offset = be32(l1, 4) & ~0x1ff;
    const entry = (1n << 62n) | (BigInt(nbSectors) << 58n) | BigInt(hostOffset);
    const e = new Uint8Array(8);
    setBe32(e, 0, Number(entry >> 32n));
    setBe32(e, 4, Number(entry & 0xffffffffn));
    run(io.pwrite(l2Offset + 8, e));
    run(reopened.close());
    const ro = open(io, { readOnly: true });
    expect(Buffer.compare(readBack(ro, 4096, 4096), plain)).toBe(0);
    expect(Buffer.compare(readBack(ro, 4096 + 100, 50), plain.subarray(100, 150))).toBe(0);
    // A write over it allocates a normal cluster (copy-on-write of the decompressed data).
    const rw = open(io);
    run(rw.write(4096 + 10, new Uint8Array([9])));
    const expected = plain.slice();
    expected[10] = 9;
    expect(Buffer.compare(readBack(rw, 4096, 4096), expected)).toBe(0);
  });

  it('a write that would hit metadata marks the image corrupt and fails', () => {
    const io = newImage({ sizeBytes: 1 << 20, clusterSize: 65536 });
    const img = open(io);
    run(img.write(0, new Uint8Array(512).fill(1)));
    run(img.close());
    // Point guest cluster 0's L2 entry at the L1 table (cluster 3).
    const h = open(io, { readOnly: true });
    const l2Offset = be32(h.l1, 4) & ~0x1ff;
    const e = new Uint8Array(8);
    setBe64num(e, 0, 3 * 65536);
    e[0]! |= 0x80;
    run(io.pwrite(l2Offset, e));
    const messages: string[] = [];
    const bad = open(io, { onMessage: (l) => messages.push(l) });
    const writesBefore = io.writes;
    expect(() => run(bad.write(0, new Uint8Array(512).fill(2)))).toThrow(ImageError);
    expect(messages).toEqual(['qcow2: Marking image as corrupt: Preventing invalid write on metadata (overlaps with active L1 table); further corruption events will be suppressed']);
    expect(io.writes).toBe(writesBefore + 1); // only the corrupt bit
    expect(BigInt(be32(io.bytes, 76)) & INCOMPAT_CORRUPT).toBe(INCOMPAT_CORRUPT);
    expect(() => run(bad.read(0, new Uint8Array(1)))).toThrow(ImageError);
    expect(() => open(io)).toThrow('qcow2: Image is corrupt; cannot be opened read/write');
  });

  it('lazy refcounts: dirty while open, clean after close; a dirty image is repaired on open', () => {
    const io = newImage({ sizeBytes: 1 << 20, lazyRefcounts: true });
    const img = open(io);
    run(img.write(0, new Uint8Array(100).fill(3)));
    expect(BigInt(be32(io.bytes, 76)) & INCOMPAT_DIRTY).toBe(INCOMPAT_DIRTY);
    run(img.close());
    expect(BigInt(be32(io.bytes, 76)) & INCOMPAT_DIRTY).toBe(0n);
    // Leave it dirty with a leaked refcount, then open read/write: check -r all runs.
    const leaky = open(io);
    run(leaky.write(65536, new Uint8Array(10).fill(4)));
    run(io.truncate(64 * 65536)); // clusters past the metadata, inside the file
    run(leaky.refcounts.update(40, 1, 1)); // a leak
    expect(check(io).leaks).toBe(1);
    const repaired = open(io, { repairDirty: (i) => (function* () { yield* checkQcow2(i, { leaks: true, errors: true }); })() });
    run(repaired.close());
    expectClean(check(io));
  });

  it('check finds leaks and refcount errors and repairs them', () => {
    const io = newImage({ sizeBytes: 1 << 20, clusterSize: 4096 });
    const img = open(io);
    run(img.write(0, pattern(20_000, 4)));
    run(io.truncate(128 * 4096)); // check compares refcounts up to the end of the file, as QEMU does
    run(img.refcounts.update(100, 2, 1)); // leaks
    const dataCluster = (be32(img.l1, 4) & ~0x1ff) / 4096 + 1;
    run(img.refcounts.update(dataCluster, 1, -1)); // refcount 0 for a used cluster
    run(img.close());
    const r = check(io);
    expect(r.leaks).toBe(2);
    expect(r.corruptions).toBeGreaterThanOrEqual(1);
    expect(r.messages).toContain('Leaked cluster 100 refcount=1 reference=0');
    const fixLeaks = open(io, { forCheck: true });
    const rl = run(checkQcow2(fixLeaks, { leaks: true, errors: false }));
    expect(rl.leaksFixed).toBe(2);
    expect(rl.corruptions).toBeGreaterThanOrEqual(1);
    const fixAll = open(io, { forCheck: true });
    run(checkQcow2(fixAll, { leaks: true, errors: true }));
    expectClean(check(io));
    expect(Buffer.compare(readBack(open(io, { readOnly: true }), 0, 20_000), pattern(20_000, 4))).toBe(0);
  });

  it('resize grows the L1 table and shrinks only with shrink', () => {
    const io = newImage({ sizeBytes: 1 << 20, clusterSize: 512 });
    const img = open(io);
    run(img.write(0, pattern(4096, 1)));
    run(img.truncate(64 << 20));
    run(img.write((64 << 20) - 512, new Uint8Array(512).fill(5)));
    expect(() => run(img.truncate(1 << 20))).toThrow('Use the --shrink option to perform a shrink operation.');
    run(img.truncate(2048, true));
    expect(img.sizeBytes).toBe(2048);
    run(img.close());
    expectClean(check(io));
  });

  it('out-of-range requests fail with EIO and do not write', () => {
    const io = newImage({ sizeBytes: 1 << 20 });
    const img = open(io);
    const w = io.writes;
    expect(() => run(img.write((1 << 20) - 10, new Uint8Array(20)))).toThrow(ImageError);
    expect(() => run(img.read(-1, new Uint8Array(1)))).toThrow(ImageError);
    expect(io.writes).toBe(w);
  });

  it('persistent bitmaps: stored, loaded, tracked while open, cleared of in-use on close', () => {
    const io = newImage({ sizeBytes: 4 << 20 });
    const img = open(io);
    run(img.withLock(() => storeBitmaps(img, [newBitmap(img.sizeBytes, 'b0', 65536, true), newBitmap(img.sizeBytes, 'off', 1 << 20, false)])));
    run(img.close());
    const rw = open(io);
    const list = run(attachPersistentBitmaps(rw));
    expect(list.map((b) => b.name)).toEqual(['b0', 'off']);
    run(rw.write(100_000, new Uint8Array(70_000)));
    run(rw.close());
    expectClean(check(io));
    const ro = open(io, { readOnly: true });
    const back = run(loadBitmaps(ro));
    expect(back[0]!.flags).toBe(2); // auto, not in use
    expect(dirtyCount(back[0]!, ro.sizeBytes)).toBe(2 * 65536);
    expect(dirtyCount(back[1]!, ro.sizeBytes)).toBe(0);
  });

  it('a bitmap left in use (unclean shutdown) stays inconsistent: not tracked, flag kept', () => {
    const io = newImage({ sizeBytes: 4 << 20 });
    const img = open(io);
    const stale = newBitmap(img.sizeBytes, 'stale', 65536, true);
    stale.flags |= 1; // in use
    run(img.withLock(() => storeBitmaps(img, [stale, newBitmap(img.sizeBytes, 'ok', 65536, true)])));
    run(img.close());
    const rw = open(io);
    run(attachPersistentBitmaps(rw));
    run(rw.write(0, new Uint8Array(512)));
    run(rw.close());
    const back = run(loadBitmaps(open(io, { readOnly: true })));
    expect(back.map((b) => [b.name, b.flags, dirtyCount(b, 4 << 20)])).toEqual([
      ['stale', 3, 0],
      ['ok', 2, 65536],
    ]);
  });

  it('reads data clusters at host offsets past 2 GiB and 4 GiB (entry bits as unsigned)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsqemu-big-'));
    try {
      const path = join(dir, 'sparse.qcow2');
      const io = HostFileIO.open(path, { create: true });
      const mem = newImage({ sizeBytes: 1 << 20, clusterSize: 4096 });
      const img = open(mem);
      run(img.write(0, new Uint8Array(4096).fill(1)));
      run(img.close());
      run(io.pwrite(0, mem.bytes));
      const l2Offset = be32(open(mem, { readOnly: true }).l1, 4) & ~0x1ff;
      const hosts = [0x80001000, 0x100002000];
      hosts.forEach((host, k) => {
        const e = new Uint8Array(8);
        setBe64num(e, 0, host);
        e[0]! |= 0x80;
        run(io.pwrite(l2Offset + 8 * (k + 1), e));
        run(io.pwrite(host, new Uint8Array(4096).fill(0x70 + k)));
      });
      const ro = run(Qcow2Image.open(io, { readOnly: true }));
      expect(readBack(ro, 4096, 4096).every((b) => b === 0x70)).toBe(true);
      expect(readBack(ro, 8192, 4096).every((b) => b === 0x71)).toBe(true);
      io.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('never recurses or hangs on a self-referencing L1/L2 layout (reads stay bounded)', () => {
    const io = newImage({ sizeBytes: 1 << 20, clusterSize: 4096 });
    const img = open(io);
    run(img.write(0, new Uint8Array(4096).fill(1)));
    run(img.close());
    const h = open(io, { readOnly: true });
    const l2Offset = be32(h.l1, 4) & ~0x1ff;
    // The L2 entry maps guest cluster 0 onto the L2 table itself: reads return table bytes.
    const e = new Uint8Array(8);
    setBe64num(e, 0, l2Offset);
    run(io.pwrite(l2Offset, e));
    const ro = open(new MemoryByteIO('x', io.bytes), { readOnly: true });
    expect(readBack(ro, 0, 8)).toEqual(e);
    expect(check(io).corruptions).toBeGreaterThan(0);
  });
});
