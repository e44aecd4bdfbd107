/**
 * Cluster reference counts: the refcount table, refcount blocks of any refcount_order (0..6,
 * 1..64 bits), cluster allocation and freeing, and growth of the refcount structures when the
 * image outgrows them (new blocks placed so they cover themselves, a bigger table when needed).
 */
import { assert } from '../../engine/assert.js';
import type { Co } from '../../engine/coroutine.js';
import { ImageError } from './errors.js';
import { be32, entryOffset, entryOffsetOrBad, MAX_REFTABLE_BYTES, setBe32, setBe64num } from './format.js';
import type { ByteIO } from './io.js';
import { MetaKind, type MetadataMap } from './overlap.js';

/** What the refcount code needs from the image that owns it. */
export interface RefcountHost {
  readonly io: ByteIO;
  readonly meta: MetadataMap;
  /** Overlap-checked metadata write. */
  writeMeta(offset: number, data: Uint8Array, kind: MetaKind): Co<void>;
  /** Points the header at a new refcount table (header write, then the caller frees the old one). */
  setRefcountTable(offset: number, clusters: number): Co<void>;
  /** Signals corruption (marks the image) and returns the error to throw. */
  corruption(message: string): ImageError;
}

export function getRefcountAt(block: Uint8Array, i: number, order: number): number {
  switch (order) {
    case 4:
      return (block[2 * i]! << 8) | block[2 * i + 1]!;
    case 3:
      return block[i]!;
    case 5:
      return be32(block, 4 * i);
    case 6: {
      const hi = be32(block, 8 * i);
      return hi >= 0x200000 ? Number.MAX_SAFE_INTEGER : hi * 0x100000000 + be32(block, 8 * i + 4);
    }
    default: {
      const bits = 1 << order;
      const bit = i * bits;
      return (block[bit >> 3]! >> (bit & 7)) & ((1 << bits) - 1);
    }
  }
}

export function setRefcountAt(block: Uint8Array, i: number, order: number, value: number): void {
  switch (order) {
    case 4:
      block[2 * i] = value >>> 8;
      block[2 * i + 1] = value & 0xff;
      return;
    case 3:
      block[i] = value;
      return;
    case 5:
      setBe32(block, 4 * i, value);
      return;
    case 6:
      setBe64num(block, 8 * i, value);
      return;
    default: {
      const bits = 1 << order;
      const bit = i * bits;
      const mask = ((1 << bits) - 1) << (bit & 7);
      block[bit >> 3] = (block[bit >> 3]! & ~mask) | ((value << (bit & 7)) & mask);
    }
  }
}

/** Bound on free-cluster scans past the known end: a full scan means a broken invariant. */
const MAX_SCAN_PAST_END = 1 << 22;

export class Refcounts {
  readonly cs: number;
  readonly refsPerBlock: number;
  readonly maxRefcount: number;
  tableOffset: number;
  tableClusters: number;
  table: Uint8Array;
  private readonly blocks = new Map<number, Uint8Array>();
  /** Every cluster at or past this index is free (file end or highest allocation, whichever is larger). */
  highWater: number;
  /** No free cluster lies below this index. */
  private freeHint = 0;
  /** Told about every cluster whose refcount drops to zero (compressed byte packing resets). */
  onFreed: ((cluster: number) => void) | null = null;

  private constructor(
    private readonly host: RefcountHost,
    readonly clusterBits: number,
    readonly order: number,
    tableOffset: number,
    tableClusters: number,
    table: Uint8Array,
    fileLength: number,
  ) {
    this.cs = 2 ** clusterBits;
    this.refsPerBlock = (this.cs * 8) >> order;
    this.maxRefcount = order === 6 ? Number.MAX_SAFE_INTEGER : 2 ** (1 << order) - 1;
    this.tableOffset = tableOffset;
    this.tableClusters = tableClusters;
    this.table = table;
    this.highWater = Math.ceil(fileLength / this.cs);
  }

  static *load(host: RefcountHost, clusterBits: number, order: number, tableOffset: number, tableClusters: number, fileLength: number): Co<Refcounts> {
    const cs = 2 ** clusterBits;
    const table = new Uint8Array(tableClusters * cs);
    yield* host.io.pread(tableOffset, table);
    const r = new Refcounts(host, clusterBits, order, tableOffset, tableClusters, table, fileLength);
    host.meta.add(tableOffset, tableClusters, MetaKind.RefcountTable);
    for (let bi = 0; bi < r.tableEntries; bi++) {
      const off = r.blockOffset(bi);
      if (off !== 0) host.meta.add(off, 1, MetaKind.RefcountBlock);
    }
    return r;
  }

  get tableEntries(): number {
    return (this.tableClusters * this.cs) / 8;
  }

  /** Host offset of refcount block `bi`, 0 if there is none. Unaligned entries are corruption. */
  blockOffset(bi: number): number {
    if (bi >= this.tableEntries) return 0;
    const hi = be32(this.table, bi * 8);
    const lo = be32(this.table, bi * 8 + 4);
    const off = entryOffset(hi, lo);
    if (off !== 0 && (off % this.cs !== 0 || (lo & 0x1ff) !== 0)) {
      throw this.host.corruption(`Refblock offset 0x${off.toString(16)} unaligned (reftable index: 0x${bi.toString(16)})`);
    }
    return off;
  }

  /** Raw table entry validity without throwing (for `check`). */
  rawBlockOffset(bi: number): number {
    if (bi >= this.tableEntries) return 0;
    return entryOffsetOrBad(be32(this.table, bi * 8), be32(this.table, bi * 8 + 4));
  }

  private *block(bi: number): Co<Uint8Array | null> {
    const off = this.blockOffset(bi);
    if (off === 0) return null;
    let b = this.blocks.get(off);
    if (b === undefined) {
      b = new Uint8Array(this.cs);
      yield* this.host.io.pread(off, b);
      this.blocks.set(off, b);
    }
    return b;
  }

  *get(cluster: number): Co<number> {
    const b = yield* this.block(Math.floor(cluster / this.refsPerBlock));
    return b === null ? 0 : getRefcountAt(b, cluster % this.refsPerBlock, this.order);
  }

  /** Sets refcounts of [first, first+count) to `value` exactly (repair). Blocks must exist or get created. */
  *set(first: number, count: number, value: number): Co<void> {
    yield* this.apply(first, count, () => value);
  }

  /** Adds `delta` (+1/-1) to the refcounts of clusters [first, first+count). */
  *update(first: number, count: number, delta: number): Co<void> {
    if (delta < 0) {
      // Dropping a reference where no refcount block exists is an underflow: fail before any
      // metadata is created for a cluster a damaged table made up.
      for (let bi = Math.floor(first / this.refsPerBlock); bi <= Math.floor((first + count - 1) / this.refsPerBlock); bi++) {
        if (this.blockOffset(bi) === 0) throw new ImageError('EINVAL', `qcow2: refcount underflow on cluster ${Math.max(first, bi * this.refsPerBlock)}`);
      }
    }
    yield* this.apply(first, count, (old, c) => {
      const next = old + delta;
      if (next < 0 || next > this.maxRefcount) {
        throw new ImageError('EINVAL', `qcow2: refcount ${next < 0 ? 'underflow' : 'overflow'} on cluster ${c}`);
      }
      return next;
    });
  }

  private *apply(first: number, count: number, f: (old: number, cluster: number) => number): Co<void> {
    if (count === 0) return;
    yield* this.ensureCovered(first, count);
    let c = first;
    const end = first + count;
    while (c < end) {
      const bi = Math.floor(c / this.refsPerBlock);
      const blockEnd = Math.min(end, (bi + 1) * this.refsPerBlock);
      const b = yield* this.block(bi);
      assert(b !== null, 'refcount block missing after ensureCovered');
      const i0 = c % this.refsPerBlock;
      const n = blockEnd - c;
      for (let k = 0; k < n; k++) {
        const old = getRefcountAt(b, i0 + k, this.order);
        const next = f(old, c + k);
        setRefcountAt(b, i0 + k, this.order, next);
        if (next === 0) {
          if (old !== 0) this.onFreed?.(c + k);
          if (c + k < this.freeHint) this.freeHint = c + k;
          if (old !== 0) this.host.meta.remove((c + k) * this.cs, 1);
        } else if (c + k >= this.highWater) {
          this.highWater = c + k + 1;
        }
      }
      const bits = 1 << this.order;
      const startByte = Math.floor((i0 * bits) / 8);
      const endByte = Math.ceil(((i0 + n) * bits) / 8);
      yield* this.host.writeMeta(this.blockOffset(bi) + startByte, b.slice(startByte, endByte), MetaKind.RefcountBlock);
      c = blockEnd;
    }
  }

  /** Finds `count` contiguous free clusters, takes a reference on them, returns the host offset. */
  *alloc(count: number): Co<number> {
    assert(count > 0, 'alloc of zero clusters');
    let start = this.freeHint;
    let run = 0;
    const limit = this.highWater + count + MAX_SCAN_PAST_END;
    let c = this.freeHint;
    for (; c < limit; c++) {
      const rc = yield* this.get(c);
      if (rc === 0) {
        if (run === 0) start = c;
        if (++run === count) break;
      } else {
        run = 0;
        if (c === this.freeHint) this.freeHint = c + 1;
      }
    }
    if (run < count) throw new ImageError('ENOSPC', 'qcow2: could not find free clusters');
    if ((start + count) * this.cs > 2 ** 53 - this.cs) throw new ImageError('EFBIG');
    yield* this.update(start, count, 1);
    if (start === this.freeHint) this.freeHint = start + count;
    return start * this.cs;
  }

  /** Drops one reference from every cluster touched by the byte range [offset, offset+bytes). */
  *free(offset: number, bytes: number): Co<void> {
    const first = Math.floor(offset / this.cs);
    const last = Math.floor((offset + bytes - 1) / this.cs);
    yield* this.update(first, last - first + 1, -1);
  }

  /**
   * Makes sure refcount blocks exist for clusters [first, first+count). Missing blocks are placed
   * past every used cluster, covering themselves (and a grown table, if the table is too small).
   * Iterates to a fixed point, bounded: each round can only add blocks for the new clusters.
   */
  private *ensureCovered(first: number, count: number): Co<void> {
    const firstBi = Math.floor(first / this.refsPerBlock);
    const lastBi = Math.floor((first + count - 1) / this.refsPerBlock);
    let missing = false;
    for (let bi = firstBi; bi <= lastBi && !missing; bi++) missing = this.blockOffset(bi) === 0;
    if (!missing) return;
    if (first > this.highWater + MAX_SCAN_PAST_END) {
      throw this.host.corruption(`Refcount update for cluster 0x${first.toString(16)} far past the end of the image`);
    }

    const e = Math.max(this.highWater, first + count);
    let newBlocks: number[] = [];
    let newTableClusters = 0;
    for (let round = 0; ; round++) {
      assert(round < 64, 'refcount structure growth did not converge');
      const metaEnd = e + newBlocks.length + newTableClusters;
      const wanted = new Set<number>();
      for (let bi = firstBi; bi <= lastBi; bi++) if (this.blockOffset(bi) === 0) wanted.add(bi);
      for (let bi = Math.floor(e / this.refsPerBlock); bi <= Math.floor((metaEnd - 1) / this.refsPerBlock); bi++) {
        if (this.blockOffset(bi) === 0) wanted.add(bi);
      }
      const blocks = [...wanted].sort((a, b) => a - b);
      const maxBi = blocks[blocks.length - 1]!;
      let tableClusters = 0;
      if (maxBi >= this.tableEntries) {
        // Grow by half again as much as needed so growth stays rare (QEMU grows by 1.5x too).
        const entries = Math.ceil((maxBi + 1) * 1.5);
        tableClusters = Math.ceil((entries * 8) / this.cs);
        if (tableClusters * this.cs > MAX_REFTABLE_BYTES) throw new ImageError('EFBIG', 'Reference count table too large');
      }
      if (blocks.length === newBlocks.length && tableClusters === newTableClusters) break;
      newBlocks = blocks;
      newTableClusters = tableClusters;
    }

    // New blocks at e, e+1, ...; the new table (if any) right after them.
    const placed = newBlocks.map((bi, k) => ({ bi, offset: (e + k) * this.cs }));
    const metaCount = newBlocks.length + newTableClusters;
    this.highWater = Math.max(this.highWater, e + metaCount);
    for (const p of placed) {
      this.host.meta.add(p.offset, 1, MetaKind.RefcountBlock);
      const b = new Uint8Array(this.cs);
      yield* this.host.writeMeta(p.offset, b, MetaKind.RefcountBlock);
      this.blocks.set(p.offset, b);
    }
    if (newTableClusters > 0) {
      const oldOffset = this.tableOffset;
      const oldClusters = this.tableClusters;
      const tableOffset = (e + newBlocks.length) * this.cs;
      const table = new Uint8Array(newTableClusters * this.cs);
      table.set(this.table);
      for (const p of placed) setBe64num(table, p.bi * 8, p.offset);
      this.host.meta.add(tableOffset, newTableClusters, MetaKind.RefcountTable);
      yield* this.host.writeMeta(tableOffset, table, MetaKind.RefcountTable);
      yield* this.host.io.flush();
      yield* this.host.setRefcountTable(tableOffset, newTableClusters);
      this.host.meta.remove(oldOffset, oldClusters);
      this.table = table;
      this.tableOffset = tableOffset;
      this.tableClusters = newTableClusters;
      yield* this.update(e, metaCount, 1);
      yield* this.update(oldOffset / this.cs, oldClusters, -1);
    } else {
      for (const p of placed) {
        setBe64num(this.table, p.bi * 8, p.offset);
        yield* this.host.writeMeta(this.tableOffset + p.bi * 8, this.table.slice(p.bi * 8, p.bi * 8 + 8), MetaKind.RefcountTable);
      }
      yield* this.update(e, metaCount, 1);
    }
  }

  /** Forgets cached blocks (after `check` rewrote them behind our back). */
  dropCache(): void {
    this.blocks.clear();
  }
}
