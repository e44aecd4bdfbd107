import { assert } from '../engine/assert.js';
import type { Co } from '../engine/coroutine.js';
import { Errno } from './errno.js';
import { BlockError } from './error.js';
import type { BlockGraph } from './graph.js';
import type { BlockDriverState } from './node.js';

/** Smallest granularity (bytes) a bitmap may have. */
export const MIN_BITMAP_GRANULARITY = 512;
/** Largest granularity we accept (QEMU's qcow2 limit is 2 GiB; hbitmap's is 2^63). */
export const MAX_BITMAP_GRANULARITY = 2 ** 31;
/** BDRV_BITMAP_MAX_NAME_SIZE. */
export const MAX_BITMAP_NAME_BYTES = 1023;
/** Most granules one bitmap may track (a 512 B bitmap over 1 TiB); keeps memory bounded. */
export const MAX_BITMAP_GRANULES = 2 ** 31;

/** Which conditions `check` refuses (BDRV_BITMAP_* flags). */
export const BitmapCheck = {
  BUSY: 1,
  RO: 2,
  INCONSISTENT: 4,
  /** BUSY | RO | INCONSISTENT: for anything that modifies the bitmap. */
  DEFAULT: 7,
  /** BUSY | INCONSISTENT: for reading a (possibly read-only) bitmap. */
  ALLOW_RO: 5,
} as const;

/** A bitmap as plain data: what qcow2 stores and loads. Bit i of byte j is granule 8*j+i. */
export interface SerializedBitmap {
  readonly granularity: number;
  readonly sizeBytes: number;
  /** ceil(granules / 8) bytes; bits past the last granule are zero. */
  readonly bits: Uint8Array;
}

function popcount32(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

/** Mask of bits [lo, hi) within one 32-bit word (0 <= lo < hi <= 32). */
function wordMask(lo: number, hi: number): number {
  const upper = hi === 32 ? 0xffffffff : (1 << hi) - 1;
  return (upper & ~((1 << lo) - 1)) >>> 0;
}

/**
 * A dirty bitmap (BdrvDirtyBitmap over an HBitmap): one bit per `granularity` bytes of a node,
 * set by every write while the bitmap is enabled. The state flags follow QEMU:
 * - `disabled`: writes are not recorded.
 * - `successor` set ("frozen"): a job works on this bitmap; new writes go to the successor.
 *   Then the bitmap is also `busy` and disabled, and the successor records instead.
 * - `busy`: in use by an operation (a job); QMP refuses to modify it.
 * - `readonly`: loaded from a read-only image; cannot be modified.
 * - `inconsistent`: loaded from an image that was not closed cleanly ("in use" flag); unusable.
 * - `persistent`: stored in the image (qcow2) when the node closes.
 * `count` is in bytes (granules × granularity), as query-block's `count`.
 */
export class BdrvDirtyBitmap {
  disabled = false;
  busy = false;
  readonly = false;
  inconsistent = false;
  persistent = false;
  /** Do not write back to the image even if persistent (already stored / removed). */
  skipStore = false;
  successor: BdrvDirtyBitmap | null = null;
  private words: Uint32Array;
  private granules: number;
  private dirtyGranules = 0;

  constructor(
    /** Owner node (null for a detached copy). */
    public bs: BlockDriverState | null,
    /** Null for anonymous bitmaps (jobs' internal ones). */
    public name: string | null,
    readonly granularity: number,
    private size: number,
  ) {
    assert(isPowerOfTwo(granularity) && granularity >= MIN_BITMAP_GRANULARITY && granularity <= MAX_BITMAP_GRANULARITY, () => `bad bitmap granularity ${granularity}`);
    assert(Number.isSafeInteger(size) && size >= 0, () => `bad bitmap size ${size}`);
    this.granules = Math.ceil(size / granularity);
    assert(this.granules <= MAX_BITMAP_GRANULES, 'bitmap too large');
    this.words = new Uint32Array(Math.ceil(this.granules / 32));
  }

  /** Length in bytes of the node the bitmap covers. */
  get sizeBytes(): number {
    return this.size;
  }

  /** Dirty bytes (granules × granularity), as QEMU reports `count`. */
  get count(): number {
    return this.dirtyGranules * this.granularity;
  }

  /** Number of dirty granules. */
  get dirtyGranuleCount(): number {
    return this.dirtyGranules;
  }

  get enabled(): boolean {
    return !this.disabled;
  }

  /** Has a successor (a job froze it). */
  get frozen(): boolean {
    return this.successor !== null;
  }

  /** query-block's `recording`: writes get recorded here or in the successor. */
  get recording(): boolean {
    return !this.disabled || (this.successor !== null && !this.successor.disabled);
  }

  /**
   * bdrv_dirty_bitmap_check: the QMP error for the first condition in `flags` that holds.
   */
  check(flags: number): BlockError | null {
    const name = this.name ?? '';
    if ((flags & BitmapCheck.BUSY) !== 0 && this.busy) {
      return new BlockError(`Bitmap '${name}' is currently in use by another operation and cannot be used`);
    }
    if ((flags & BitmapCheck.RO) !== 0 && this.readonly) {
      return new BlockError(`Bitmap '${name}' is readonly and cannot be modified`);
    }
    if ((flags & BitmapCheck.INCONSISTENT) !== 0 && this.inconsistent) {
      return new BlockError(`Bitmap '${name}' is inconsistent and cannot be used`, 'GenericError', undefined, 'Try block-dirty-bitmap-remove to delete this bitmap from disk\n');
    }
    return null;
  }

  private granuleRange(offset: number, bytes: number): [number, number] | null {
    assert(Number.isSafeInteger(offset) && offset >= 0 && Number.isSafeInteger(bytes) && bytes >= 0, () => `bad bitmap range ${offset}+${bytes}`);
    if (bytes === 0 || offset >= this.size) return null;
    const end = Math.min(offset + bytes, this.size);
    return [Math.floor(offset / this.granularity), Math.ceil(end / this.granularity)];
  }

  /** Sets or clears granules [first, last) and keeps the count. */
  private fill(first: number, last: number, value: boolean): void {
    let index = first;
    while (index < last) {
      const word = index >>> 5;
      const lo = index & 31;
      const hi = Math.min(32, lo + (last - index));
      const mask = wordMask(lo, hi);
      const old = this.words[word]!;
      const next = (value ? old | mask : old & ~mask) >>> 0;
      if (next !== old) {
        this.dirtyGranules += popcount32(next & mask) - popcount32(old & mask);
        this.words[word] = next;
      }
      index += hi - lo;
    }
  }

  /** Is the granule holding byte `offset` dirty? */
  get(offset: number): boolean {
    if (offset < 0 || offset >= this.size) return false;
    const index = Math.floor(offset / this.granularity);
    return ((this.words[index >>> 5]! >>> (index & 31)) & 1) === 1;
  }

  /** Marks every granule touched by [offset, offset+bytes) dirty (no state checks: a primitive). */
  setRange(offset: number, bytes: number): void {
    const range = this.granuleRange(offset, bytes);
    if (range !== null) this.fill(range[0], range[1], true);
  }

  /**
   * Clears every granule touched by [offset, offset+bytes). Callers (block-copy) pass ranges
   * aligned to the granularity, as QEMU requires.
   */
  resetRange(offset: number, bytes: number): void {
    const range = this.granuleRange(offset, bytes);
    if (range !== null) this.fill(range[0], range[1], false);
  }

  setAll(): void {
    this.fill(0, this.granules, true);
  }

  resetAll(): void {
    this.words.fill(0);
    this.dirtyGranules = 0;
  }

  /** Dirty bytes within [offset, offset+bytes), counted in whole granules. */
  countRange(offset: number, bytes: number): number {
    const range = this.granuleRange(offset, bytes);
    if (range === null) return 0;
    let n = 0;
    for (let i = range[0]; i < range[1]; ) {
      const lo = i & 31;
      const hi = Math.min(32, lo + (range[1] - i));
      n += popcount32(this.words[i >>> 5]! & wordMask(lo, hi));
      i += hi - lo;
    }
    return n * this.granularity;
  }

  /** First granule index >= `from` and < `to` whose bit equals `value`, or -1. */
  private findGranule(from: number, to: number, value: boolean): number {
    let index = from;
    while (index < to) {
      const word = this.words[index >>> 5]!;
      const bits = value ? word : ~word >>> 0;
      const lo = index & 31;
      const masked = (bits & wordMask(lo, 32)) >>> 0;
      if (masked !== 0) {
        const found = (index & ~31) + (31 - Math.clz32(masked & -masked));
        return found < to ? found : -1;
      }
      index = (index & ~31) + 32;
    }
    return -1;
  }

  /**
   * bdrv_dirty_bitmap_next_dirty: the first dirty byte in [offset, offset+bytes) (bytes < 0: to
   * the end), rounded down to its granule but not below `offset`; -1 if none.
   */
  nextDirty(offset: number, bytes = -1): number {
    return this.nextWith(offset, bytes, true);
  }

  /** bdrv_dirty_bitmap_next_zero: the first clean byte in the range, or -1. */
  nextZero(offset: number, bytes = -1): number {
    return this.nextWith(offset, bytes, false);
  }

  private nextWith(offset: number, bytes: number, value: boolean): number {
    const end = bytes < 0 ? this.size : Math.min(this.size, offset + bytes);
    if (offset >= end) return -1;
    const index = this.findGranule(Math.floor(offset / this.granularity), Math.ceil(end / this.granularity), value);
    if (index < 0) return -1;
    return Math.max(offset, index * this.granularity);
  }

  /**
   * bdrv_dirty_bitmap_next_dirty_area: the first run of dirty bytes in [offset, end), at most
   * `maxBytes` long, or null.
   */
  nextDirtyArea(offset: number, end: number, maxBytes: number): { offset: number; bytes: number } | null {
    end = Math.min(end, this.size);
    const start = this.nextDirty(offset, end - offset);
    if (start < 0) return null;
    const limit = Math.min(end, start + maxBytes);
    const zero = this.nextZero(start, limit - start);
    return { offset: start, bytes: (zero < 0 ? limit : zero) - start };
  }

  /** bdrv_dirty_bitmap_truncate: a new node size; granules past it are dropped. */
  truncate(sizeBytes: number): void {
    assert(Number.isSafeInteger(sizeBytes) && sizeBytes >= 0, 'bad bitmap size');
    const granules = Math.ceil(sizeBytes / this.granularity);
    assert(granules <= MAX_BITMAP_GRANULES, 'bitmap too large');
    if (granules < this.granules) this.fill(granules, this.granules, false);
    const words = new Uint32Array(Math.ceil(granules / 32));
    words.set(this.words.subarray(0, Math.min(words.length, this.words.length)));
    this.words = words;
    this.granules = granules;
    this.size = sizeBytes;
  }

  /**
   * ORs `src` into this bitmap (hbitmap_merge). Sizes must match; granularities may differ: each
   * dirty granule of `src` dirties the bytes it covers here.
   */
  orFrom(src: BdrvDirtyBitmap): void {
    assert(src.size === this.size, 'merge of bitmaps of different sizes');
    if (src.granularity === this.granularity) {
      let count = 0;
      for (let i = 0; i < this.words.length; i++) {
        const merged = (this.words[i]! | src.words[i]!) >>> 0;
        this.words[i] = merged;
        count += popcount32(merged);
      }
      this.dirtyGranules = count;
      return;
    }
    for (let off = src.nextDirty(0); off >= 0; ) {
      const area = src.nextDirtyArea(off, src.size, src.size);
      if (area === null) break;
      this.setRange(area.offset, area.bytes);
      off = src.nextDirty(area.offset + area.bytes);
    }
  }

  /** A detached copy of the bits (for transactions' backups and block-copy). */
  copyBits(): Uint32Array {
    return this.words.slice();
  }

  /** Restores bits saved with `copyBits` (same size). */
  restoreBits(words: Uint32Array): void {
    assert(words.length === this.words.length, 'restore of bitmap bits of another size');
    this.words.set(words);
    let count = 0;
    for (const w of words) count += popcount32(w);
    this.dirtyGranules = count;
  }

  /** The bits as plain data (bit i of byte j = granule 8j+i), e.g. for qcow2's bitmap tables. */
  serialize(): SerializedBitmap {
    const bits = new Uint8Array(Math.ceil(this.granules / 8));
    for (let i = 0; i < bits.length; i++) bits[i] = (this.words[i >>> 2]! >>> ((i & 3) * 8)) & 0xff;
    return { granularity: this.granularity, sizeBytes: this.size, bits };
  }

  /** Loads bits saved by `serialize` (or read from an image); extra bits past the end are ignored. */
  deserialize(bits: Uint8Array): void {
    this.words.fill(0);
    const n = Math.min(bits.length, Math.ceil(this.granules / 8));
    for (let i = 0; i < n; i++) this.words[i >>> 2] = (this.words[i >>> 2]! | (bits[i]! << ((i & 3) * 8))) >>> 0;
    const tail = this.granules & 31;
    if (tail !== 0 && this.words.length > 0) this.words[this.words.length - 1]! &= wordMask(0, tail);
    let count = 0;
    for (const w of this.words) count += popcount32(w);
    this.dirtyGranules = count;
  }

  /** query-block's dirty-bitmaps entry (QAPI BlockDirtyInfo), keys in QEMU 7.2's output order. */
  info(): Readonly<Record<string, unknown>> {
    const out: Record<string, unknown> = {};
    if (this.name !== null) out['name'] = this.name;
    out['recording'] = this.recording;
    out['persistent'] = this.persistent;
    out['busy'] = this.busy;
    out['granularity'] = this.granularity;
    out['count'] = this.count;
    if (this.inconsistent) out['inconsistent'] = true;
    return out;
  }
}

/** Default granularity for a node: its cluster size clamped to [4 KiB, 64 KiB], else 64 KiB. */
export function defaultBitmapGranularity(bs: BlockDriverState): number {
  const info = bs.drv.getInfo?.(bs);
  if (info !== null && info !== undefined && info.clusterSize > 0) return Math.min(65536, Math.max(4096, info.clusterSize));
  return 65536;
}

/** "Granularity must be power of 2 and at least 512", or null. */
export function checkGranularity(granularity: number): BlockError | null {
  if (!isPowerOfTwo(granularity) || granularity < MIN_BITMAP_GRANULARITY) return new BlockError('Granularity must be power of 2 and at least 512');
  if (granularity > MAX_BITMAP_GRANULARITY) return new BlockError(`Granularity must be at most ${MAX_BITMAP_GRANULARITY}`);
  return null;
}

/**
 * bdrv_create_dirty_bitmap: a new enabled, empty bitmap on `bs`. `name` null makes an anonymous
 * one (jobs). Throws "Bitmap already exists: <name>" / "Bitmap name too long: <name>".
 */
export function bdrvCreateDirtyBitmap(bs: BlockDriverState, granularity: number, name: string | null): BdrvDirtyBitmap {
  if (name !== null) {
    if (bs.findDirtyBitmap(name) !== undefined) throw new BlockError(`Bitmap already exists: ${name}`);
    if (new TextEncoder().encode(name).length > MAX_BITMAP_NAME_BYTES) throw new BlockError(`Bitmap name too long: ${name}`);
  }
  const granularityError = checkGranularity(granularity);
  if (granularityError !== null) throw granularityError;
  assert(bs.dirtyBitmaps.length < 4096, 'too many dirty bitmaps on one node');
  const bitmap = new BdrvDirtyBitmap(bs, name, granularity, bs.totalBytes);
  bs.dirtyBitmaps.push(bitmap);
  return bitmap;
}

/** bdrv_release_dirty_bitmap: removes the bitmap from its node. A frozen bitmap cannot go. */
export function bdrvReleaseDirtyBitmap(bitmap: BdrvDirtyBitmap): void {
  assert(!bitmap.busy && bitmap.successor === null, () => `release of busy bitmap '${bitmap.name ?? ''}'`);
  const bs = bitmap.bs;
  if (bs === null) return;
  const index = bs.dirtyBitmaps.indexOf(bitmap);
  if (index >= 0) bs.dirtyBitmaps.splice(index, 1);
  bitmap.bs = null;
}

/**
 * Options of `block-dirty-bitmap-add`. Throws BlockError with QMP's messages. Persistent bitmaps
 * ask the node's driver whether it can store them.
 */
export interface DirtyBitmapAddOptions {
  readonly name: string;
  readonly granularity?: number;
  readonly persistent?: boolean;
  readonly disabled?: boolean;
}

export function* coBlockDirtyBitmapAdd(bs: BlockDriverState, options: DirtyBitmapAddOptions): Co<BdrvDirtyBitmap> {
  if (options.name === '') throw new BlockError('Bitmap name cannot be empty');
  const granularity = options.granularity ?? defaultBitmapGranularity(bs);
  const granularityError = checkGranularity(granularity);
  if (granularityError !== null) throw granularityError;
  if (bs.findDirtyBitmap(options.name) !== undefined) throw new BlockError(`Bitmap already exists: ${options.name}`);
  if (options.persistent === true) {
    // bdrv_can_store_new_dirty_bitmap: the driver explains its own refusal.
    const can = bs.drv.canStoreNewDirtyBitmap;
    if (can === undefined) throw BlockError.withErrno(`Can't store persistent bitmaps to ${bs.nodeName}`, Errno.ENOTSUP);
    const error = yield* can.call(bs.drv, bs, options.name, granularity);
    if (error !== null) throw error;
  }
  const bitmap = bdrvCreateDirtyBitmap(bs, granularity, options.name);
  bitmap.persistent = options.persistent === true;
  bitmap.disabled = options.disabled === true;
  return bitmap;
}

/**
 * block-dirty-bitmap-remove: refuses busy/read-only bitmaps; removes a persistent one from the
 * image first (through the driver).
 */
export function* coBlockDirtyBitmapRemove(bitmap: BdrvDirtyBitmap): Co<void> {
  const error = bitmap.check(BitmapCheck.BUSY | BitmapCheck.RO);
  if (error !== null) throw error;
  const bs = bitmap.bs;
  if (bitmap.persistent && bs !== null && bs.drv.removePersistentDirtyBitmap !== undefined && bitmap.name !== null) {
    const failure = yield* bs.drv.removePersistentDirtyBitmap.call(bs.drv, bs, bitmap.name);
    if (failure !== null) throw failure;
  }
  bdrvReleaseDirtyBitmap(bitmap);
}

/** Saved bits of a bitmap, to undo a clear or merge in an aborted transaction. */
export interface BitmapBackup {
  readonly bitmap: BdrvDirtyBitmap;
  readonly words: Uint32Array;
}

/** block-dirty-bitmap-clear: refuses busy/read-only/inconsistent ones; returns a backup. */
export function bdrvClearDirtyBitmap(bitmap: BdrvDirtyBitmap): BitmapBackup {
  const error = bitmap.check(BitmapCheck.DEFAULT);
  if (error !== null) throw error;
  const backup = { bitmap, words: bitmap.copyBits() };
  bitmap.resetAll();
  return backup;
}

/** bdrv_restore_dirty_bitmap: undoes a clear or merge. */
export function bdrvRestoreDirtyBitmap(backup: BitmapBackup): void {
  backup.bitmap.restoreBits(backup.words);
}

/** block-dirty-bitmap-enable / -disable (QEMU checks ALLOW_RO: busy or inconsistent refuse). */
export function bdrvEnableDirtyBitmap(bitmap: BdrvDirtyBitmap, enable: boolean): void {
  const error = bitmap.check(BitmapCheck.ALLOW_RO);
  if (error !== null) throw error;
  bitmap.disabled = !enable;
}

/**
 * bdrv_merge_dirty_bitmap: ORs `src` into `dest`; dest checked with DEFAULT, src with ALLOW_RO;
 * "Bitmaps are incompatible and can't be merged" when the sizes differ. Returns a backup of dest.
 */
export function bdrvMergeDirtyBitmap(dest: BdrvDirtyBitmap, src: BdrvDirtyBitmap): BitmapBackup {
  const destError = dest.check(BitmapCheck.DEFAULT);
  if (destError !== null) throw destError;
  const srcError = src.check(BitmapCheck.ALLOW_RO);
  if (srcError !== null) throw srcError;
  if (dest.sizeBytes !== src.sizeBytes) throw new BlockError("Bitmaps are incompatible and can't be merged");
  const backup = { bitmap: dest, words: dest.copyBits() };
  dest.orFrom(src);
  return backup;
}

/**
 * bdrv_dirty_bitmap_create_successor: freezes `bitmap` for a job. The successor (anonymous,
 * same granularity, empty) records new writes with the bitmap's old enabled state; the bitmap
 * becomes disabled and busy.
 */
export function bdrvDirtyBitmapCreateSuccessor(bitmap: BdrvDirtyBitmap): BdrvDirtyBitmap {
  const busy = bitmap.check(BitmapCheck.BUSY);
  if (busy !== null) throw busy;
  if (bitmap.successor !== null) throw new BlockError('Cannot create a successor for a bitmap that already has one');
  assert(bitmap.bs !== null, 'successor of a detached bitmap');
  const child = bdrvCreateDirtyBitmap(bitmap.bs, bitmap.granularity, null);
  child.disabled = bitmap.disabled;
  bitmap.disabled = true;
  bitmap.successor = child;
  bitmap.busy = true;
  return child;
}

/**
 * bdrv_dirty_bitmap_abdicate: the job succeeded; the successor takes the bitmap's name and
 * persistence and the old bitmap (with the copied bits) is released. Returns the successor.
 */
export function bdrvDirtyBitmapAbdicate(bitmap: BdrvDirtyBitmap): BdrvDirtyBitmap {
  const successor = bitmap.successor;
  assert(successor !== null, 'abdicate of a bitmap without successor');
  successor.name = bitmap.name;
  bitmap.name = null;
  successor.persistent = bitmap.persistent;
  bitmap.persistent = false;
  bitmap.successor = null;
  bitmap.busy = false;
  bdrvReleaseDirtyBitmap(bitmap);
  return successor;
}

/**
 * bdrv_reclaim_dirty_bitmap: the job failed; the successor's bits are merged back into the
 * bitmap, which takes the successor's enabled state again and is no longer busy.
 */
export function bdrvReclaimDirtyBitmap(bitmap: BdrvDirtyBitmap): BdrvDirtyBitmap {
  const successor = bitmap.successor;
  assert(successor !== null, 'reclaim of a bitmap without successor');
  bitmap.orFrom(successor);
  bitmap.disabled = successor.disabled;
  bitmap.busy = false;
  bitmap.successor = null;
  bdrvReleaseDirtyBitmap(successor);
  return bitmap;
}

/** bdrv_set_dirty: every enabled bitmap of `bs` records [offset, offset+bytes). */
export function bdrvSetDirty(bs: BlockDriverState, offset: number, bytes: number): void {
  for (const bitmap of bs.dirtyBitmaps) if (!bitmap.disabled) bitmap.setRange(offset, bytes);
}

/** bdrv_dirty_bitmap_truncate: the node's length changed. */
export function bdrvDirtyBitmapTruncate(bs: BlockDriverState, sizeBytes: number): void {
  for (const bitmap of bs.dirtyBitmaps) bitmap.truncate(sizeBytes);
}

/** bdrv_has_readonly_bitmaps: writes to the node fail with -EPERM while one exists. */
export function bdrvHasReadonlyBitmaps(bs: BlockDriverState): boolean {
  return bs.dirtyBitmaps.some((bitmap) => bitmap.readonly);
}

/**
 * block_dirty_bitmap_lookup: the bitmap `name` on node (or device) `node`. Throws
 * "Node '<node>' not found" / "Dirty bitmap '<name>' not found".
 */
export function blockDirtyBitmapLookup(graph: BlockGraph, node: string, name: string): BdrvDirtyBitmap {
  let bs: BlockDriverState;
  try {
    bs = graph.lookupBs(node, node);
  } catch {
    throw new BlockError(`Node '${node}' not found`);
  }
  const bitmap = bs.findDirtyBitmap(name);
  if (bitmap === undefined) throw new BlockError(`Dirty bitmap '${name}' not found`);
  return bitmap;
}

/** A merge source: a bitmap name on the target's node, or `{node, name}` anywhere. */
export type BitmapMergeSource = string | { readonly node: string; readonly name: string };

/**
 * block-dirty-bitmap-merge: ORs every source into `target` (on `node`), all or nothing: the
 * sources are collected into a scratch copy first, so a missing or busy source changes nothing.
 * Returns the backup of the target for a transaction's abort.
 */
export function blockDirtyBitmapMerge(graph: BlockGraph, node: string, target: string, sources: readonly BitmapMergeSource[]): BitmapBackup {
  const dest = blockDirtyBitmapLookup(graph, node, target);
  const destError = dest.check(BitmapCheck.DEFAULT);
  if (destError !== null) throw destError;
  const scratch = new BdrvDirtyBitmap(null, null, dest.granularity, dest.sizeBytes);
  for (const source of sources) {
    const src = typeof source === 'string' ? blockDirtyBitmapLookup(graph, node, source) : blockDirtyBitmapLookup(graph, source.node, source.name);
    const srcError = src.check(BitmapCheck.ALLOW_RO);
    if (srcError !== null) throw srcError;
    if (src.sizeBytes !== scratch.sizeBytes) throw new BlockError("Bitmaps are incompatible and can't be merged");
    scratch.orFrom(src);
  }
  return bdrvMergeDirtyBitmap(dest, scratch);
}
