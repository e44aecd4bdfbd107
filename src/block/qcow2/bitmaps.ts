/**
 * Persistent dirty bitmaps in qcow2 (the bitmaps header extension, the bitmap directory and the
 * bitmap tables). Bits are stored one per `granularity` bytes of guest data, bit k of byte n
 * covering chunk 8n+k. A table entry is a data cluster offset, 0 for an all-zero cluster, or 1
 * (with no offset) for an all-one cluster. Every change rewrites the tables and the directory in
 * fresh clusters, then switches the header over and frees the old ones (QEMU's store order).
 */
import type { Co } from '../../engine/coroutine.js';
import { ImageError } from './errors.js';
import { be16, be32, entryOffset, setBe16, setBe32, setBe64num } from './format.js';
import { MetaKind } from './overlap.js';
import type { Qcow2Image } from './qcow2.js';

export const BME_FLAG_IN_USE = 1;
export const BME_FLAG_AUTO = 2;
export const BME_FLAG_EXTRA_DATA_COMPATIBLE = 4;
export const BME_MIN_GRANULARITY_BITS = 9;
export const BME_MAX_GRANULARITY_BITS = 31;
export const BME_MAX_NAME = 1023;
export const BME_MAX_BITMAPS = 65535;
const BME_TYPE_DIRTY_TRACKING = 1;
const MAX_DIRECTORY_BYTES = 64 * 1024 * 1024;
const MAX_TABLE_ENTRIES = 0x8000000; // QEMU's BME_MAX_TABLE_SIZE

export interface BitmapEntry {
  readonly name: string;
  readonly tableOffset: number;
  readonly tableSize: number;
  readonly flags: number;
  readonly granularityBits: number;
  readonly extraData: Uint8Array;
}

/** A bitmap in memory: name, flags and its bits. */
export interface PersistentBitmap {
  name: string;
  granularity: number;
  flags: number;
  bits: Uint8Array;
  extraData: Uint8Array;
}

function align8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

/** Parses and validates the bitmap directory (empty when the image has no bitmaps extension). */
export function* readBitmapDirectory(img: Qcow2Image): Co<BitmapEntry[]> {
  const ext = img.header.bitmaps;
  if (ext === null) return [];
  if (ext.nbBitmaps > BME_MAX_BITMAPS || ext.directorySize > MAX_DIRECTORY_BYTES || ext.directoryOffset % img.cs !== 0) {
    throw new ImageError('EINVAL', 'Bitmap directory is invalid');
  }
  const dir = new Uint8Array(ext.directorySize);
  yield* img.io.pread(ext.directoryOffset, dir);
  const out: BitmapEntry[] = [];
  let at = 0;
  for (let i = 0; i < ext.nbBitmaps; i++) {
    if (at + 24 > dir.length) throw new ImageError('EINVAL', 'Bitmap directory is invalid');
    const tableOffset = entryOffset(be32(dir, at), be32(dir, at + 4));
    const tableSize = be32(dir, at + 8);
    const flags = be32(dir, at + 12);
    const type = dir[at + 16]!;
    const granularityBits = dir[at + 17]!;
    const nameSize = be16(dir, at + 18);
    const extraSize = be32(dir, at + 20);
    const size = align8(24 + extraSize + nameSize);
    if (at + size > dir.length || nameSize === 0 || nameSize > BME_MAX_NAME || type !== BME_TYPE_DIRTY_TRACKING) {
      throw new ImageError('EINVAL', 'Bitmap directory is invalid');
    }
    if (granularityBits < BME_MIN_GRANULARITY_BITS || granularityBits > BME_MAX_GRANULARITY_BITS || tableSize > MAX_TABLE_ENTRIES || tableOffset % img.cs !== 0) {
      throw new ImageError('EINVAL', 'Bitmap directory is invalid');
    }
    const expectedTable = Math.ceil(Math.ceil(bitCount(img.sizeBytes, 2 ** granularityBits) / 8) / img.cs);
    if (tableSize !== expectedTable) throw new ImageError('EINVAL', 'Bitmap directory is invalid');
    const extraData = dir.slice(at + 24, at + 24 + extraSize);
    const name = new TextDecoder().decode(dir.subarray(at + 24 + extraSize, at + 24 + extraSize + nameSize));
    out.push({ name, tableOffset, tableSize, flags, granularityBits, extraData });
    at += size;
  }
  return out;
}

function* readTable(img: Qcow2Image, e: BitmapEntry): Co<Uint8Array> {
  const t = new Uint8Array(e.tableSize * 8);
  if (e.tableSize > 0) yield* img.io.pread(e.tableOffset, t);
  return t;
}

/** Every host range the bitmaps own (directory, tables, data clusters), for `check`. */
export function* bitmapMetadataExtents(img: Qcow2Image): Co<{ offset: number; bytes: number }[]> {
  const ext = img.header.bitmaps;
  if (ext === null) return [];
  const out = [{ offset: ext.directoryOffset, bytes: ext.directorySize }];
  for (const e of yield* readBitmapDirectory(img)) {
    out.push({ offset: e.tableOffset, bytes: e.tableSize * 8 });
    const t = yield* readTable(img, e);
    for (let i = 0; i < e.tableSize; i++) {
      const off = entryOffset(be32(t, i * 8), be32(t, i * 8 + 4));
      if (off !== 0) out.push({ offset: off, bytes: img.cs });
    }
  }
  return out;
}

function bitCount(sizeBytes: number, granularity: number): number {
  return Math.ceil(sizeBytes / granularity);
}

/** Loads all bitmaps with their bits. */
export function* loadBitmaps(img: Qcow2Image): Co<PersistentBitmap[]> {
  const out: PersistentBitmap[] = [];
  for (const e of yield* readBitmapDirectory(img)) {
    const granularity = 2 ** e.granularityBits;
    const nbits = bitCount(img.sizeBytes, granularity);
    const bits = new Uint8Array(Math.ceil(nbits / 8));
    const bytesPerCluster = img.cs;
    if (e.tableSize !== Math.ceil(bits.length / bytesPerCluster)) throw new ImageError('EINVAL', `Bitmap '${e.name}' has a table of the wrong size`);
    const t = yield* readTable(img, e);
    const cluster = new Uint8Array(img.cs);
    for (let i = 0; i < e.tableSize; i++) {
      const hi = be32(t, i * 8);
      const lo = be32(t, i * 8 + 4);
      const off = entryOffset(hi, lo);
      const dst = bits.subarray(i * bytesPerCluster, (i + 1) * bytesPerCluster);
      if (off === 0) {
        dst.fill((lo & 1) !== 0 ? 0xff : 0);
      } else {
        yield* img.io.pread(off, cluster);
        dst.set(cluster.subarray(0, dst.length));
      }
    }
    // Bits past the end of the disk stay clear.
    if (nbits % 8 !== 0) bits[bits.length - 1]! &= (1 << nbits % 8) - 1;
    out.push({ name: e.name, granularity, flags: e.flags, bits, extraData: e.extraData });
  }
  return out;
}

/** Writes `bitmaps` as the image's complete bitmap set, replacing the stored one. */
export function* storeBitmaps(img: Qcow2Image, bitmaps: readonly PersistentBitmap[]): Co<void> {
  const oldExt = img.header.bitmaps;
  const old = oldExt === null ? [] : yield* bitmapMetadataExtents(img);
  const entries: { b: PersistentBitmap; tableOffset: number; tableSize: number }[] = [];
  for (const b of bitmaps) {
    const tableSize = Math.ceil(b.bits.length / img.cs);
    const table = new Uint8Array(tableSize * 8);
    for (let i = 0; i < tableSize; i++) {
      const chunk = b.bits.subarray(i * img.cs, (i + 1) * img.cs);
      if (chunk.every((x) => x === 0)) continue;
      const data = new Uint8Array(img.cs);
      data.set(chunk);
      const off = yield* img.refcounts.alloc(1);
      yield* img.writeChecked(off, data, null);
      setBe64num(table, i * 8, off);
    }
    let tableOffset = 0;
    if (tableSize > 0) {
      const clusters = Math.ceil((tableSize * 8) / img.cs);
      tableOffset = yield* img.refcounts.alloc(clusters);
      yield* img.writeChecked(tableOffset, table, null);
    }
    entries.push({ b, tableOffset, tableSize });
  }
  if (entries.length === 0) {
    yield* img.io.flush();
    yield* img.setBitmapsExtension(null);
  } else {
    const enc = new TextEncoder();
    const names = entries.map((e) => enc.encode(e.b.name));
    let dirSize = 0;
    entries.forEach((e, i) => (dirSize += align8(24 + e.b.extraData.length + names[i]!.length)));
    const dir = new Uint8Array(dirSize);
    let at = 0;
    entries.forEach((e, i) => {
      const name = names[i]!;
      setBe64num(dir, at, e.tableOffset);
      setBe32(dir, at + 8, e.tableSize);
      setBe32(dir, at + 12, e.b.flags);
      dir[at + 16] = BME_TYPE_DIRTY_TRACKING;
      dir[at + 17] = Math.log2(e.b.granularity);
      setBe16(dir, at + 18, name.length);
      setBe32(dir, at + 20, e.b.extraData.length);
      dir.set(e.b.extraData, at + 24);
      dir.set(name, at + 24 + e.b.extraData.length);
      at += align8(24 + e.b.extraData.length + name.length);
    });
    const dirClusters = Math.ceil(dirSize / img.cs);
    const dirOffset = yield* img.refcounts.alloc(dirClusters);
    img.meta.add(dirOffset, dirClusters, MetaKind.BitmapDirectory);
    yield* img.writeChecked(dirOffset, dir, MetaKind.BitmapDirectory);
    yield* img.io.flush();
    yield* img.setBitmapsExtension({ nbBitmaps: entries.length, directorySize: dirSize, directoryOffset: dirOffset });
  }
  yield* img.io.flush();
  if (oldExt !== null) img.meta.remove(oldExt.directoryOffset, Math.ceil(oldExt.directorySize / img.cs));
  for (const e of old) if (e.bytes > 0) yield* img.refcounts.free(e.offset, e.bytes);
}

/** Validates a new bitmap's name and granularity with QEMU's messages. */
export function validateNewBitmap(existing: readonly PersistentBitmap[], name: string, granularity: number): void {
  if (existing.some((b) => b.name === name)) throw new ImageError('EEXIST', `Bitmap already exists: ${name}`);
  if (new TextEncoder().encode(name).length > BME_MAX_NAME) throw new ImageError('EINVAL', 'Name length exceeds maximum (1023 bytes)');
  if (!Number.isInteger(granularity) || granularity < 512 || granularity > 2 ** 31 || (granularity & (granularity - 1)) !== 0) {
    throw new ImageError('EINVAL', 'Granularity must be power of 2 and at least 512');
  }
  if (existing.length >= BME_MAX_BITMAPS) throw new ImageError('EINVAL', "Can't make bitmap: too many bitmaps");
}

export function newBitmap(sizeBytes: number, name: string, granularity: number, enabled: boolean): PersistentBitmap {
  return { name, granularity, flags: enabled ? BME_FLAG_AUTO : 0, bits: new Uint8Array(Math.ceil(bitCount(sizeBytes, granularity) / 8)), extraData: new Uint8Array(0) };
}

/** Marks [offset, offset+bytes) dirty in `b`. */
export function markDirty(b: PersistentBitmap, offset: number, bytes: number): void {
  if (bytes === 0) return;
  const first = Math.floor(offset / b.granularity);
  const last = Math.floor((offset + bytes - 1) / b.granularity);
  for (let i = first; i <= last && i >> 3 < b.bits.length; i++) b.bits[i >> 3]! |= 1 << (i & 7);
}

/** Number of dirty bytes (dirty chunks × granularity, clipped to the disk). */
export function dirtyCount(b: PersistentBitmap, sizeBytes: number): number {
  let total = 0;
  for (let i = 0; i < b.bits.length * 8; i++) {
    if ((b.bits[i >> 3]! & (1 << (i & 7))) !== 0) total += Math.min(b.granularity, sizeBytes - i * b.granularity);
  }
  return total;
}

/**
 * Attaches the stored bitmaps to a read/write image as QEMU does: mark them in use on disk,
 * track guest writes in the enabled ("auto") ones, and store them back on close.
 */
export function* attachPersistentBitmaps(img: Qcow2Image): Co<PersistentBitmap[]> {
  const list = yield* loadBitmaps(img);
  if (list.length === 0 || img.readOnly) return list;
  // A bitmap already "in use" on disk was not stored cleanly: it stays inconsistent (flag kept,
  // no tracking), as QEMU leaves it for the user to remove.
  const inconsistent = new Set(list.filter((b) => (b.flags & BME_FLAG_IN_USE) !== 0));
  for (const b of list) b.flags |= BME_FLAG_IN_USE;
  yield* img.withLock(() => storeBitmaps(img, list));
  img.writeHooks.push((offset, bytes) => {
    for (const b of list) if ((b.flags & BME_FLAG_AUTO) !== 0 && !inconsistent.has(b)) markDirty(b, offset, bytes);
  });
  img.closeHooks.push(function* () {
    for (const b of list) if (!inconsistent.has(b)) b.flags &= ~BME_FLAG_IN_USE;
    yield* storeBitmaps(img, list);
  });
  return list;
}
