/**
 * The qcow2 metadata engine: open (with every header check), guest reads and writes through the
 * L1/L2 tables, copy-on-write from a backing source, zero clusters, discard, block status, resize,
 * lazy refcounts (dirty bit), and the corrupt bit. It talks to its `file` child only through
 * `ByteIO` coroutines, so it runs the same over a host file, memory, or a BlockDriverState child.
 *
 * Concurrency: one CoMutex (QEMU's s->lock) serializes requests; inside, every file write is
 * overlap-checked first, data is written before the L2 entry that points at it, and refcounts
 * are taken before a cluster is referenced.
 */
import { assert } from '../../engine/assert.js';
import type { Co } from '../../engine/coroutine.js';
import { CoMutex } from '../../engine/sync.js';
import { deflateCluster, inflateCluster } from './compress.js';
import { ImageError } from './errors.js';
import {
  AUTOCLEAR_BITMAPS,
  be32,
  COMPAT_LAZY_REFCOUNTS,
  compressedDescriptor,
  entryOffset,
  HI_COMPRESSED,
  HI_COPIED,
  INCOMPAT_CORRUPT,
  INCOMPAT_DIRTY,
  LO_ZERO,
  MAX_L1_BYTES,
  parseHeader,
  probeClusterBits,
  type Qcow2Header,
  serializeHeader,
  setBe32,
  setBe64big,
  setBe64num,
  SUPPORTED_AUTOCLEAR,
} from './format.js';
import type { ByteIO } from './io.js';
import { META_NAMES, MetaKind, MetadataMap } from './overlap.js';
import { Refcounts, type RefcountHost } from './refcount.js';
import { readSnapshots, type Snapshot } from './snapshots.js';

/** Where unallocated clusters read from (the backing node). Reads past `sizeBytes` are zeroes. */
export interface BackingSource {
  readonly sizeBytes: number;
  read(offset: number, buf: Uint8Array): Co<void>;
}

export interface Qcow2OpenOptions {
  readonly readOnly?: boolean;
  readonly backing?: BackingSource | null;
  /** Opened by `check`: a corrupt image may be opened read/write for repair, no auto-repair. */
  readonly forCheck?: boolean;
  /** Receives QEMU's warning lines ("qcow2: Marking image as corrupt: ..."). */
  readonly onMessage?: (line: string) => void;
  /** Runs `check -r all` when a dirty (lazy refcounts) image is opened read/write. */
  readonly repairDirty?: (image: Qcow2Image) => Co<void>;
}

export const ClusterType = { Unallocated: 0, ZeroPlain: 1, ZeroAlloc: 2, Normal: 3, Compressed: 4 } as const;
export type ClusterType = (typeof ClusterType)[keyof typeof ClusterType];

/** One run of clusters with the same mapping, as block_status reports it. */
export interface Extent {
  readonly offset: number;
  readonly bytes: number;
  readonly type: ClusterType;
  /** Host offset of the first byte for Normal/ZeroAlloc clusters, else null. */
  readonly hostOffset: number | null;
}

/** Bound on L2 tables kept in memory (write-through, so eviction costs nothing). */
const L2_CACHE_BYTES = 32 * 1024 * 1024;

export class Qcow2Image implements RefcountHost {
  readonly meta: MetadataMap;
  readonly cs: number;
  readonly clusterBits: number;
  readonly l2Entries: number;
  refcounts!: Refcounts;
  l1: Uint8Array = new Uint8Array(0);
  /** Internal snapshots (kept intact; their clusters are shared copy-on-write). */
  snapshots: Snapshot[] = [];
  snapshotTableBytes = 0;
  backing: BackingSource | null;
  readonly messages: string[] = [];
  /** Called on every guest write (persistent dirty bitmaps hook in here). */
  readonly writeHooks: ((offset: number, bytes: number) => void)[] = [];
  /** Called before close while the image is still writable. */
  readonly closeHooks: (() => Co<void>)[] = [];
  private readonly l2Cache = new Map<number, Uint8Array>();
  private readonly lock = new CoMutex();
  private corruptSignaled = false;
  private corruptPending = false;
  /** Fatal corruption seen: all further requests fail (QEMU drops the driver). */
  private broken = false;
  private dirtySetByUs = false;
  private closed = false;

  private constructor(
    readonly io: ByteIO,
    readonly header: Qcow2Header,
    private ro: boolean,
    private readonly onMessage: (line: string) => void,
  ) {
    this.clusterBits = header.clusterBits;
    this.cs = 2 ** header.clusterBits;
    this.l2Entries = this.cs / 8;
    this.meta = new MetadataMap(header.clusterBits);
    this.backing = null;
  }

  get sizeBytes(): number {
    return this.header.sizeBytes;
  }

  /** Opened (or reopened) read-only: metadata and data writes are refused. */
  get readOnly(): boolean {
    return this.ro;
  }

  /**
   * The I/O-free part of qcow2_reopen_prepare/commit for `read-only`: going read-write is refused
   * for a corrupt image (as opening it read-write is); going read-only needs no flush because
   * every metadata update is written through. Returns the refusal, or null.
   */
  setReadOnly(readOnly: boolean): ImageError | null {
    if (readOnly === this.ro) return null;
    if (!readOnly && (this.corrupt || this.broken)) return new ImageError('EACCES', 'qcow2: Image is corrupt; cannot be opened read/write');
    this.ro = readOnly;
    return null;
  }

  get version(): 2 | 3 {
    return this.header.version;
  }

  get corrupt(): boolean {
    return (this.header.incompatible & INCOMPAT_CORRUPT) !== 0n;
  }

  get dirty(): boolean {
    return (this.header.incompatible & INCOMPAT_DIRTY) !== 0n;
  }

  get lazyRefcounts(): boolean {
    return (this.header.compatible & COMPAT_LAZY_REFCOUNTS) !== 0n;
  }

  get refcountBits(): number {
    return 1 << this.header.refcountOrder;
  }

  get l1Size(): number {
    return this.header.l1Size;
  }

  static *open(io: ByteIO, opts: Qcow2OpenOptions = {}): Co<Qcow2Image> {
    const fileLength = yield* io.length();
    const probe = new Uint8Array(112);
    yield* io.pread(0, probe);
    const buf = new Uint8Array(2 ** probeClusterBits(probe, fileLength));
    yield* io.pread(0, buf);
    const header = parseHeader(buf, fileLength);
    const readOnly = opts.readOnly ?? false;
    const onMessage = opts.onMessage ?? ((): void => {});
    const img = new Qcow2Image(io, header, readOnly, onMessage);
    img.onMessageCollect();
    if (img.corrupt && !readOnly && opts.forCheck !== true) {
      throw new ImageError('EACCES', 'qcow2: Image is corrupt; cannot be opened read/write');
    }
    img.refcounts = yield* Refcounts.load(img, header.clusterBits, header.refcountOrder, header.refcountTableOffset, header.refcountTableClusters, fileLength);
    img.refcounts.onFreed = (cluster) => {
      // The cluster compressed data was being packed into is gone: never append into it again.
      if (img.freeByteOffset !== 0 && Math.floor(img.freeByteOffset / img.cs) === cluster) img.freeByteOffset = 0;
    };
    img.l1 = new Uint8Array(header.l1Size * 8);
    if (header.l1Size > 0) {
      yield* io.pread(header.l1TableOffset, img.l1);
      img.meta.add(header.l1TableOffset, Math.ceil((header.l1Size * 8) / img.cs), MetaKind.ActiveL1);
    }
    for (let i = 0; i < header.l1Size; i++) {
      const off = img.l1Offset(i, false);
      if (off !== 0 && off % img.cs === 0) img.meta.add(off, 1, MetaKind.ActiveL2);
    }
    const snaps = yield* readSnapshots(io, header);
    img.snapshots = snaps.list;
    img.snapshotTableBytes = snaps.tableBytes;
    if (snaps.tableBytes > 0) img.meta.add(header.snapshotsOffset, Math.ceil(snaps.tableBytes / img.cs), MetaKind.SnapshotTable);
    for (const sn of snaps.list) {
      if (sn.l1Size > 0) img.meta.add(sn.l1TableOffset, Math.ceil((sn.l1Size * 8) / img.cs), MetaKind.InactiveL1);
    }
    img.backing = opts.backing ?? null;
    if (!readOnly) {
      let rewrite = false;
      if ((header.autoclear & ~SUPPORTED_AUTOCLEAR) !== 0n) {
        header.autoclear &= SUPPORTED_AUTOCLEAR;
        rewrite = true;
      }
      if (rewrite) yield* img.writeHeader();
      if (img.dirty && opts.forCheck !== true && opts.repairDirty !== undefined) {
        yield* opts.repairDirty(img);
        header.incompatible &= ~INCOMPAT_DIRTY;
        yield* img.writeHeader();
      }
    }
    return img;
  }

  private onMessageCollect(): void {
    const forward = this.onMessage;
    this.message = (line: string): void => {
      this.messages.push(line);
      forward(line);
    };
  }

  private message: (line: string) => void = () => {};

  // ---- RefcountHost ---------------------------------------------------------------------------

  *writeMeta(offset: number, data: Uint8Array, kind: MetaKind): Co<void> {
    yield* this.checkedWrite(offset, data, kind);
  }

  *setRefcountTable(offset: number, clusters: number): Co<void> {
    this.header.refcountTableOffset = offset;
    this.header.refcountTableClusters = clusters;
    yield* this.writeHeader();
  }

  corruption(message: string): ImageError {
    if (!this.corruptSignaled) {
      this.corruptSignaled = true;
      if (!this.readOnly) {
        this.message(`qcow2: Marking image as corrupt: ${message}; further corruption events will be suppressed`);
        this.header.incompatible |= INCOMPAT_CORRUPT;
        this.corruptPending = true;
      } else {
        this.message(`qcow2: Image is corrupt: ${message}; further non-fatal corruption events will be suppressed`);
      }
    }
    if (!this.readOnly) this.broken = true;
    return new ImageError('EIO');
  }

  // ---- header and checked writes --------------------------------------------------------------

  *writeHeader(): Co<void> {
    const buf = serializeHeader(this.header);
    yield* this.checkedWrite(0, buf, MetaKind.Header);
  }

  /** Every write to the file goes through here: refuse (and mark corrupt) if it hits metadata it does not own. */
  private *checkedWrite(offset: number, data: Uint8Array, kind: MetaKind | null): Co<void> {
    assert(!this.readOnly, 'write to a read-only qcow2 image');
    const hit = this.meta.overlap(offset, data.length, kind);
    if (hit !== null) throw this.corruption(`Preventing invalid write on metadata (overlaps with ${META_NAMES[hit]})`);
    // Every legitimate write lands in the file or in clusters just allocated; anything further out
    // comes from a damaged table and would grow the file without bound.
    const limit = Math.max(yield* this.io.length(), this.refcounts.highWater * this.cs);
    if (offset + data.length > limit) {
      throw this.corruption(`Preventing invalid write past the end of the image file (offset 0x${offset.toString(16)})`);
    }
    yield* this.io.pwrite(offset, data);
  }

  private *writeCorruptBit(): Co<void> {
    this.corruptPending = false;
    const field = new Uint8Array(8);
    setBe64big(field, 0, this.header.incompatible);
    // Goes straight to the file: this is the one write allowed onto the header after corruption.
    yield* this.io.pwrite(72, field);
    yield* this.io.flush();
  }

  /** Runs a request under the image lock; turns pending corruption into the on-disk bit. */
  private *locked<T>(body: () => Co<T>): Co<T> {
    if (this.closed) throw new ImageError('ENOMEDIUM');
    if (this.broken) throw new ImageError('EIO');
    yield* this.lock.lock();
    try {
      return yield* body();
    } catch (e) {
      if (this.corruptPending) yield* this.writeCorruptBit();
      throw e;
    } finally {
      this.lock.unlock();
    }
  }

  private checkRange(offset: number, bytes: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(bytes) || offset < 0 || bytes < 0 || offset + bytes > this.header.sizeBytes) {
      throw new ImageError('EIO');
    }
  }

  private checkWritable(): void {
    if (this.readOnly) throw new ImageError('EACCES', 'Block node is read-only');
  }

  /** Sets the dirty bit before the first modification of a lazy-refcounts image. */
  private *markDirty(): Co<void> {
    if (!this.lazyRefcounts || this.dirty || this.header.version < 3) return;
    this.header.incompatible |= INCOMPAT_DIRTY;
    this.dirtySetByUs = true;
    yield* this.writeHeader();
    yield* this.io.flush();
  }

  // ---- L1 / L2 --------------------------------------------------------------------------------

  private l1Offset(l1Index: number, validate = true): number {
    if (l1Index >= this.header.l1Size) return 0;
    const hi = be32(this.l1, l1Index * 8);
    const lo = be32(this.l1, l1Index * 8 + 4);
    const off = entryOffset(hi, lo);
    if (validate && off !== 0 && off % this.cs !== 0) {
      throw this.corruption(`L2 table offset 0x${off.toString(16)} unaligned (L1 index: 0x${l1Index.toString(16)})`);
    }
    return off;
  }

  private l1Copied(l1Index: number): boolean {
    return (be32(this.l1, l1Index * 8) & HI_COPIED) !== 0;
  }

  private *loadL2(offset: number): Co<Uint8Array> {
    let t = this.l2Cache.get(offset);
    if (t !== undefined) return t;
    t = new Uint8Array(this.cs);
    yield* this.io.pread(offset, t);
    if (this.l2Cache.size * this.cs >= L2_CACHE_BYTES) {
      const oldest = this.l2Cache.keys().next().value;
      if (oldest !== undefined) this.l2Cache.delete(oldest);
    }
    this.l2Cache.set(offset, t);
    return t;
  }

  /** The L2 table covering L1 index `l1Index` for reading, or null when unallocated. */
  *l2ForRead(l1Index: number): Co<{ offset: number; table: Uint8Array } | null> {
    const off = this.l1Offset(l1Index);
    if (off === 0) return null;
    return { offset: off, table: yield* this.loadL2(off) };
  }

  /** The L2 table for writing: allocated or copied (if shared) as needed; L1 updated. */
  private *l2ForWrite(l1Index: number): Co<{ offset: number; table: Uint8Array }> {
    assert(l1Index < this.header.l1Size, 'L1 index past the table');
    const old = this.l1Offset(l1Index);
    if (old !== 0 && this.l1Copied(l1Index)) return { offset: old, table: yield* this.loadL2(old) };
    const off = yield* this.refcounts.alloc(1);
    this.meta.add(off, 1, MetaKind.ActiveL2);
    const table = new Uint8Array(this.cs);
    if (old !== 0) table.set(yield* this.loadL2(old));
    yield* this.checkedWrite(off, table, MetaKind.ActiveL2);
    yield* this.setL1Entry(l1Index, off);
    this.l2Cache.set(off, table);
    if (old !== 0) {
      this.l2Cache.delete(old);
      yield* this.refcounts.free(old, this.cs);
    }
    return { offset: off, table };
  }

  private *setL1Entry(l1Index: number, l2Offset: number): Co<void> {
    const at = l1Index * 8;
    setBe64num(this.l1, at, l2Offset);
    if (l2Offset !== 0) setBe32(this.l1, at, be32(this.l1, at) | HI_COPIED);
    yield* this.checkedWrite(this.header.l1TableOffset + at, this.l1.slice(at, at + 8), MetaKind.ActiveL1);
  }

  /** Classifies L2 entry (hi, lo); validates data cluster alignment. */
  private classify(hi: number, lo: number, l2Offset: number, index: number): ClusterType {
    if ((hi & HI_COMPRESSED) !== 0) return ClusterType.Compressed;
    const off = entryOffset(hi, lo);
    if (off !== 0 && off % this.cs !== 0) {
      throw this.corruption(`Cluster allocation offset 0x${off.toString(16)} unaligned (L2 offset: 0x${l2Offset.toString(16)}, L2 index: 0x${index.toString(16)})`);
    }
    if ((lo & LO_ZERO) !== 0) return off !== 0 ? ClusterType.ZeroAlloc : ClusterType.ZeroPlain;
    return off !== 0 ? ClusterType.Normal : ClusterType.Unallocated;
  }

  // ---- reads ----------------------------------------------------------------------------------

  /** Reads guest bytes [offset, offset+buf.length). */
  *read(offset: number, buf: Uint8Array): Co<void> {
    this.checkRange(offset, buf.length);
    yield* this.locked(() => this.readLocked(offset, buf));
  }

  private *readLocked(offset: number, buf: Uint8Array): Co<void> {
    const end = offset + buf.length;
    let pos = offset;
    // Bounded by the number of clusters in the request: each pass consumes at least one.
    while (pos < end) {
      const ext = yield* this.extentAt(pos, end - pos);
      assert(ext.bytes > 0, 'empty extent');
      const dst = buf.subarray(pos - offset, pos - offset + ext.bytes);
      switch (ext.type) {
        case ClusterType.Unallocated:
          // qcow2_co_preadv_task raises the blkdebug events a rule below may wait for.
          if (this.backing !== null && this.backing.sizeBytes > 0) this.io.debugEvent?.('read_backing_aio');
          yield* this.readBacking(pos, dst);
          break;
        case ClusterType.ZeroPlain:
        case ClusterType.ZeroAlloc:
          dst.fill(0);
          break;
        case ClusterType.Normal:
          this.io.debugEvent?.('read_aio');
          yield* this.io.pread(ext.hostOffset!, dst);
          break;
        case ClusterType.Compressed:
          this.io.debugEvent?.('read_compressed');
          yield* this.readCompressed(pos, dst);
          break;
      }
      pos += ext.bytes;
    }
  }

  private *readBacking(offset: number, dst: Uint8Array): Co<void> {
    const b = this.backing;
    if (b === null || offset >= b.sizeBytes) {
      dst.fill(0);
      return;
    }
    const n = Math.min(dst.length, b.sizeBytes - offset);
    yield* b.read(offset, dst.subarray(0, n));
    if (n < dst.length) dst.fill(0, n);
  }

  private *readCompressed(pos: number, dst: Uint8Array): Co<void> {
    // A compressed extent is exactly one cluster (or the part of it the request covers).
    const vc = Math.floor(pos / this.cs);
    const { hi, lo } = yield* this.entry(vc);
    const d = compressedDescriptor(hi, lo, this.clusterBits);
    const raw = new Uint8Array(d.bytes);
    yield* this.io.pread(d.offset, raw);
    const plain = inflateCluster(raw, this.cs);
    const inCluster = pos - vc * this.cs;
    dst.set(plain.subarray(inCluster, inCluster + dst.length));
  }

  private *entry(vc: number): Co<{ hi: number; lo: number; l2Offset: number; index: number }> {
    const l1i = Math.floor(vc / this.l2Entries);
    const index = vc % this.l2Entries;
    const l2 = yield* this.l2ForRead(l1i);
    if (l2 === null) return { hi: 0, lo: 0, l2Offset: 0, index };
    return { hi: be32(l2.table, index * 8), lo: be32(l2.table, index * 8 + 4), l2Offset: l2.offset, index };
  }

  /**
   * The run of same-typed clusters starting at guest `offset`, at most `maxBytes` long (host
   * contiguous for Normal/ZeroAlloc). Compressed runs are one cluster each.
   */
  *extentAt(offset: number, maxBytes: number): Co<Extent> {
    const end = offset + maxBytes;
    let vc = Math.floor(offset / this.cs);
    const first = yield* this.entry(vc);
    const type = this.classify(first.hi, first.lo, first.l2Offset, first.index);
    const firstHost = type === ClusterType.Normal || type === ClusterType.ZeroAlloc ? entryOffset(first.hi, first.lo) : null;
    let runEnd = (vc + 1) * this.cs;
    if (type !== ClusterType.Compressed) {
      for (vc++; runEnd < end; vc++) {
        const e = yield* this.entry(vc);
        const t = this.classify(e.hi, e.lo, e.l2Offset, e.index);
        if (t !== type) break;
        if (firstHost !== null && entryOffset(e.hi, e.lo) !== firstHost + (vc * this.cs - Math.floor(offset / this.cs) * this.cs)) break;
        runEnd += this.cs;
      }
    }
    const bytes = Math.min(runEnd, end) - offset;
    return { offset, bytes, type, hostOffset: firstHost === null ? null : firstHost + (offset % this.cs) };
  }

  /** block_status under the lock (for map/alloc). */
  *blockStatus(offset: number, maxBytes: number): Co<Extent> {
    this.checkRange(offset, maxBytes);
    return yield* this.locked(() => this.extentAt(offset, maxBytes));
  }

  // ---- writes ---------------------------------------------------------------------------------

  *write(offset: number, data: Uint8Array): Co<void> {
    this.checkRange(offset, data.length);
    this.checkWritable();
    if (data.length === 0) return;
    yield* this.locked(() => this.writeLocked(offset, data));
    for (const hook of this.writeHooks) hook(offset, data.length);
  }

  private *writeLocked(offset: number, data: Uint8Array): Co<void> {
    yield* this.markDirty();
    const end = offset + data.length;
    let pos = offset;
    while (pos < end) {
      const vc = Math.floor(pos / this.cs);
      const l1i = Math.floor(vc / this.l2Entries);
      const l2 = yield* this.l2ForWrite(l1i);
      const lastVc = Math.min(Math.floor((end - 1) / this.cs), (l1i + 1) * this.l2Entries - 1);
      let i = vc;
      while (i <= lastVc) {
        const idx = i % this.l2Entries;
        const hi = be32(l2.table, idx * 8);
        const lo = be32(l2.table, idx * 8 + 4);
        const t = this.classify(hi, lo, l2.offset, idx);
        const inPlace = t === ClusterType.Normal && (hi & HI_COPIED) !== 0;
        let j = i;
        const host = inPlace ? entryOffset(hi, lo) : 0;
        for (; j < lastVc; j++) {
          const nidx = (j + 1) % this.l2Entries;
          const nhi = be32(l2.table, nidx * 8);
          const nlo = be32(l2.table, nidx * 8 + 4);
          const nt = this.classify(nhi, nlo, l2.offset, nidx);
          const nInPlace = nt === ClusterType.Normal && (nhi & HI_COPIED) !== 0;
          if (nInPlace !== inPlace) break;
          if (inPlace && entryOffset(nhi, nlo) !== host + (j + 1 - i) * this.cs) break;
        }
        const runStart = Math.max(pos, i * this.cs);
        const runEnd = Math.min(end, (j + 1) * this.cs);
        const src = data.subarray(runStart - offset, runEnd - offset);
        if (inPlace) {
          yield* this.checkedWrite(host + (runStart - i * this.cs), src, null);
        } else {
          yield* this.allocateRun(l2, i, j - i + 1, runStart, src);
        }
        i = j + 1;
      }
      pos = (lastVc + 1) * this.cs;
    }
  }

  /** Copy-on-write of clusters [vc, vc+n) into fresh clusters, with `src` placed at guest `start`. */
  private *allocateRun(l2: { offset: number; table: Uint8Array }, vc: number, n: number, start: number, src: Uint8Array): Co<void> {
    const runBase = vc * this.cs;
    const full = start === runBase && src.length === n * this.cs;
    let buf = src;
    if (!full) {
      buf = new Uint8Array(n * this.cs);
      // Old contents of the partly written head and tail clusters (from backing, zero or old data).
      if (start > runBase) yield* this.readLocked(runBase, buf.subarray(0, this.cs));
      const tailBase = (vc + n - 1) * this.cs;
      if (start + src.length < tailBase + this.cs && (n > 1 || start === runBase)) {
        yield* this.readLocked(tailBase, buf.subarray(tailBase - runBase, tailBase - runBase + this.cs));
      }
      buf.set(src, start - runBase);
    }
    const newHost = yield* this.refcounts.alloc(n);
    yield* this.checkedWrite(newHost, buf, null);
    const frees: { offset: number; bytes: number }[] = [];
    const idx0 = vc % this.l2Entries;
    for (let k = 0; k < n; k++) {
      const at = (idx0 + k) * 8;
      const hi = be32(l2.table, at);
      const lo = be32(l2.table, at + 4);
      const t = this.classify(hi, lo, l2.offset, idx0 + k);
      if (t === ClusterType.Normal || t === ClusterType.ZeroAlloc) frees.push({ offset: entryOffset(hi, lo), bytes: this.cs });
      else if (t === ClusterType.Compressed) frees.push(compressedDescriptor(hi, lo, this.clusterBits));
      setBe64num(l2.table, at, newHost + k * this.cs);
      setBe32(l2.table, at, be32(l2.table, at) | HI_COPIED);
    }
    yield* this.checkedWrite(l2.offset + idx0 * 8, l2.table.slice(idx0 * 8, (idx0 + n) * 8), MetaKind.ActiveL2);
    for (const f of frees) yield* this.refcounts.free(f.offset, f.bytes);
  }

  /**
   * A compressed write of one whole cluster (or the last, partial cluster of the disk) into an
   * unallocated or zero cluster, as qcow2_co_pwritev_compressed; data that does not shrink is
   * written normally. Each compressed cluster gets clusters of its own (no byte packing).
   */
  *writeCompressed(offset: number, data: Uint8Array): Co<void> {
    this.checkRange(offset, data.length);
    this.checkWritable();
    if (offset % this.cs !== 0 || (data.length !== this.cs && offset + data.length !== this.header.sizeBytes)) {
      throw new ImageError('EINVAL', 'Compressed writes must cover whole clusters');
    }
    yield* this.locked(() => this.writeCompressedLocked(offset, data));
    for (const hook of this.writeHooks) hook(offset, data.length);
  }

  private *writeCompressedLocked(offset: number, data: Uint8Array): Co<void> {
    yield* this.markDirty();
    const vc = offset / this.cs;
    const l1i = Math.floor(vc / this.l2Entries);
    const idx = vc % this.l2Entries;
    const cur = yield* this.entry(vc);
    const t = this.classify(cur.hi, cur.lo, cur.l2Offset, idx);
    if (t !== ClusterType.Unallocated && t !== ClusterType.ZeroPlain) throw new ImageError('EIO', 'Compression can\'t overwrite anything');
    const plain = new Uint8Array(this.cs);
    plain.set(data);
    const z = deflateCluster(plain, this.cs);
    if (z === null) {
      yield* this.writeLocked(offset, data);
      return;
    }
    const l2 = yield* this.l2ForWrite(l1i);
    const host = yield* this.allocBytes(z.length);
    yield* this.checkedWrite(host, z, null);
    const x = BigInt(62 - (this.clusterBits - 8));
    // Additional 512-byte sectors the bytes reach into (the field counts from the first sector).
    const sectors = BigInt(Math.floor((host + z.length - 1) / 512) - Math.floor(host / 512));
    const entry = (1n << 62n) | (sectors << x) | BigInt(host);
    const e = new Uint8Array(8);
    setBe64big(e, 0, entry);
    l2.table.set(e, idx * 8);
    yield* this.checkedWrite(l2.offset + idx * 8, e, MetaKind.ActiveL2);
  }

  /** End of the last compressed cluster's bytes, to pack the next one behind it (0: none). */
  freeByteOffset = 0;
  /** References we hold on the cluster containing freeByteOffset (to notice outside changes). */
  private freeByteRefs = 0;

  /**
   * qcow2_alloc_bytes: byte-granular space for compressed data, packed behind the previous
   * compressed cluster when it fits (or the next cluster is free to continue into). Every host
   * cluster the bytes touch gets one reference.
   */
  private *allocBytes(size: number): Co<number> {
    const cs = this.cs;
    let off = this.freeByteOffset;
    if (off !== 0) {
      // Reuse only what is still exactly ours: a free or other change of that cluster resets it.
      const rc = yield* this.refcounts.get(Math.floor(off / cs));
      if (rc !== this.freeByteRefs || rc >= this.refcounts.maxRefcount) off = 0;
    }
    let host: number;
    const room = off === 0 ? 0 : cs - (off % cs);
    if (off !== 0 && room >= size) {
      host = off;
      yield* this.refcounts.update(Math.floor(off / cs), 1, 1);
      this.freeByteRefs++;
    } else {
      const total = Math.ceil(size / cs);
      const need = off === 0 ? total : Math.ceil((size - room) / cs);
      let fresh = yield* this.refcounts.alloc(need);
      if (off !== 0 && fresh === Math.ceil(off / cs) * cs) {
        host = off;
        yield* this.refcounts.update(Math.floor(off / cs), 1, 1);
      } else {
        if (need < total) {
          yield* this.refcounts.free(fresh, need * cs);
          fresh = yield* this.refcounts.alloc(total);
        }
        host = fresh;
      }
      this.freeByteRefs = 1;
    }
    const end = host + size;
    this.freeByteOffset = end % cs === 0 ? 0 : end;
    if (Math.floor(end / cs) !== Math.floor(host / cs) && end % cs !== 0) this.freeByteRefs = 1;
    return host;
  }

  /**
   * write_zeroes: whole clusters become zero clusters (v3), keeping their allocation unless
   * `mayUnmap`; partial clusters that do not already read as zero get explicit zeroes.
   */
  *writeZeroes(offset: number, bytes: number, mayUnmap = false): Co<void> {
    this.checkRange(offset, bytes);
    this.checkWritable();
    if (bytes === 0) return;
    yield* this.locked(() => this.zeroLocked(offset, bytes, mayUnmap));
    for (const hook of this.writeHooks) hook(offset, bytes);
  }

  private *zeroLocked(offset: number, bytes: number, mayUnmap: boolean): Co<void> {
    yield* this.markDirty();
    const end = offset + bytes;
    if (this.header.version < 3) {
      yield* this.writeZeroBuffers(offset, end);
      return;
    }
    const alignedStart = Math.ceil(offset / this.cs) * this.cs;
    // The last cluster counts as whole if the request runs to the end of the image.
    const alignedEnd = end === this.header.sizeBytes ? Math.max(alignedStart, Math.ceil(end / this.cs) * this.cs) : Math.floor(end / this.cs) * this.cs;
    if (alignedStart >= alignedEnd) {
      yield* this.zeroPartial(offset, end);
      return;
    }
    if (offset < alignedStart) yield* this.zeroPartial(offset, alignedStart);
    yield* this.rewriteEntries(alignedStart, alignedEnd, (t) => {
      if (t === ClusterType.Normal && !mayUnmap) return 'zero-keep';
      if (t === ClusterType.ZeroAlloc && !mayUnmap) return 'keep';
      return 'zero';
    });
    if (alignedEnd < end) yield* this.zeroPartial(alignedEnd, end);
  }

  private *zeroPartial(start: number, end: number): Co<void> {
    let pos = start;
    while (pos < end) {
      const ext = yield* this.extentAt(pos, end - pos);
      const readsZero = ext.type === ClusterType.ZeroPlain || ext.type === ClusterType.ZeroAlloc || (ext.type === ClusterType.Unallocated && (this.backing === null || pos >= this.backing.sizeBytes));
      if (!readsZero) yield* this.writeLocked(pos, new Uint8Array(ext.bytes));
      pos += ext.bytes;
    }
  }

  private *writeZeroBuffers(start: number, end: number): Co<void> {
    const chunk = Math.max(this.cs, 1 << 20);
    for (let pos = start; pos < end; pos += chunk) yield* this.writeLocked(pos, new Uint8Array(Math.min(chunk, end - pos)));
  }

  /**
   * discard: whole clusters inside the range are freed; v3 images mark them zero (when a backing
   * file could show through or they were allocated), v2 images make them unallocated.
   */
  *discard(offset: number, bytes: number): Co<void> {
    this.checkRange(offset, bytes);
    this.checkWritable();
    const alignedStart = Math.ceil(offset / this.cs) * this.cs;
    const end = offset + bytes;
    const alignedEnd = end === this.header.sizeBytes ? Math.ceil(end / this.cs) * this.cs : Math.floor(end / this.cs) * this.cs;
    if (alignedStart >= alignedEnd) return;
    yield* this.locked(() => this.discardLocked(alignedStart, alignedEnd, false));
  }

  private *discardLocked(start: number, end: number, full: boolean): Co<void> {
    yield* this.markDirty();
    const v3 = this.header.version >= 3;
    const hasBacking = this.backing !== null;
    yield* this.rewriteEntries(start, end, (t) => {
      if (full || !v3) return t === ClusterType.Unallocated ? 'keep' : 'unallocate';
      if (t === ClusterType.ZeroPlain) return 'keep';
      if (t === ClusterType.Unallocated) return hasBacking ? 'zero' : 'keep';
      return 'zero';
    });
  }

  /** Applies a per-cluster decision to whole clusters [start, end), freeing what is dropped. */
  private *rewriteEntries(start: number, end: number, decide: (t: ClusterType) => 'keep' | 'zero' | 'zero-keep' | 'unallocate'): Co<void> {
    let vc = start / this.cs;
    const lastVc = Math.ceil(end / this.cs) - 1;
    while (vc <= lastVc) {
      const l1i = Math.floor(vc / this.l2Entries);
      const tableLast = Math.min(lastVc, (l1i + 1) * this.l2Entries - 1);
      // Skip whole unallocated L2 ranges when nothing would change there.
      const existing = this.l1Offset(l1i);
      if (existing === 0 && decide(ClusterType.Unallocated) === 'keep') {
        vc = tableLast + 1;
        continue;
      }
      const l2 = yield* this.l2ForWrite(l1i);
      const idx0 = vc % this.l2Entries;
      const frees: { offset: number; bytes: number }[] = [];
      let changed = false;
      for (let v = vc; v <= tableLast; v++) {
        const at = (v % this.l2Entries) * 8;
        const hi = be32(l2.table, at);
        const lo = be32(l2.table, at + 4);
        const t = this.classify(hi, lo, l2.offset, v % this.l2Entries);
        const action = decide(t);
        if (action === 'keep') continue;
        changed = true;
        if (action === 'zero-keep') {
          setBe32(l2.table, at + 4, lo | LO_ZERO);
          continue;
        }
        if (t === ClusterType.Normal || t === ClusterType.ZeroAlloc) frees.push({ offset: entryOffset(hi, lo), bytes: this.cs });
        else if (t === ClusterType.Compressed) frees.push(compressedDescriptor(hi, lo, this.clusterBits));
        setBe32(l2.table, at, 0);
        setBe32(l2.table, at + 4, action === 'zero' ? LO_ZERO : 0);
      }
      if (changed) {
        const idxEnd = (tableLast % this.l2Entries) + 1;
        yield* this.checkedWrite(l2.offset + idx0 * 8, l2.table.slice(idx0 * 8, idxEnd * 8), MetaKind.ActiveL2);
        for (const f of frees) yield* this.refcounts.free(f.offset, f.bytes);
      }
      vc = tableLast + 1;
    }
  }

  /** make_empty (after commit): every cluster unallocated again, reading through to the backing file. */
  *makeEmpty(): Co<void> {
    this.checkWritable();
    const end = Math.ceil(this.header.sizeBytes / this.cs) * this.cs;
    if (end === 0) return;
    yield* this.locked(() => this.discardLocked(0, end, true));
  }

  /** Points the image at another backing file (rebase); null removes it. Header only. */
  *setBacking(file: string | null, format: string | null): Co<void> {
    this.checkWritable();
    yield* this.locked(function* (this: Qcow2Image): Co<void> {
      this.header.backingFile = file;
      this.header.backingFormat = file === null ? null : format;
      yield* this.writeHeader();
      yield* this.io.flush();
    }.bind(this));
  }

  // ---- size, flush, close ---------------------------------------------------------------------

  /** Grows (or with `shrink`, shrinks) the virtual disk. */
  *truncate(newSize: number, shrink = false): Co<void> {
    this.checkWritable();
    if (!Number.isSafeInteger(newSize) || newSize < 0) throw new ImageError('EINVAL', 'Invalid image size specified');
    yield* this.locked(() => this.truncateLocked(newSize, shrink));
  }

  private *truncateLocked(newSize: number, shrink: boolean): Co<void> {
    const old = this.header.sizeBytes;
    if (this.snapshots.length > 0 && newSize !== old) throw new ImageError('ENOTSUP', "Can't resize an image which has snapshots");
    if (newSize < old) {
      if (!shrink) throw new ImageError('EINVAL', 'Use the --shrink option to perform a shrink operation.');
      const start = Math.ceil(newSize / this.cs) * this.cs;
      const end = Math.ceil(old / this.cs) * this.cs;
      if (start < end) yield* this.discardLocked(start, end, true);
      if (newSize % this.cs !== 0) {
        // The partial cluster past the new end must read as zero if the disk grows again.
        const tailEnd = Math.min(old, Math.ceil(newSize / this.cs) * this.cs);
        this.header.sizeBytes = old;
        yield* this.zeroPartial(newSize, tailEnd);
      }
    } else {
      const needL1 = Math.ceil(newSize / (this.cs * this.l2Entries));
      if (needL1 > this.header.l1Size) yield* this.growL1(needL1);
    }
    this.header.sizeBytes = newSize;
    yield* this.writeHeader();
    yield* this.io.flush();
  }

  private *growL1(entries: number): Co<void> {
    if (entries * 8 > MAX_L1_BYTES) throw new ImageError('EFBIG', 'Active L1 table too large');
    const clusters = Math.ceil((entries * 8) / this.cs);
    const off = yield* this.refcounts.alloc(clusters);
    this.meta.add(off, clusters, MetaKind.ActiveL1);
    const table = new Uint8Array(entries * 8);
    table.set(this.l1);
    yield* this.checkedWrite(off, table, MetaKind.ActiveL1);
    yield* this.io.flush();
    const oldOffset = this.header.l1TableOffset;
    const oldClusters = Math.ceil((this.header.l1Size * 8) / this.cs);
    this.header.l1TableOffset = off;
    this.header.l1Size = entries;
    yield* this.writeHeader();
    this.l1 = table;
    if (oldClusters > 0) {
      this.meta.remove(oldOffset, oldClusters);
      this.meta.add(off, clusters, MetaKind.ActiveL1);
      yield* this.refcounts.free(oldOffset, oldClusters * this.cs);
    }
  }

  *flush(): Co<void> {
    if (this.closed) return;
    yield* this.io.flush();
  }

  /** Clean close: persistent bitmaps stored, dirty bit cleared (lazy refcounts), flushed. */
  *close(): Co<void> {
    if (this.closed) return;
    if (!this.readOnly && !this.broken) {
      yield* this.lock.lock();
      try {
        for (const hook of this.closeHooks) yield* hook();
        if (this.dirtySetByUs) {
          yield* this.io.flush();
          this.header.incompatible &= ~INCOMPAT_DIRTY;
          yield* this.writeHeader();
        }
        yield* this.io.flush();
      } finally {
        this.lock.unlock();
      }
    }
    this.closed = true;
  }

  /** Runs `body` holding the image lock (check, bitmap updates). */
  *withLock<T>(body: () => Co<T>): Co<T> {
    return yield* this.locked(body);
  }

  /** Drops every cached table (after `check` rewrote metadata directly). */
  dropCaches(): void {
    this.l2Cache.clear();
    this.refcounts.dropCache();
  }

  /** Writes raw bytes under an explicit metadata kind (bitmap directory) or as data (null). */
  *writeChecked(offset: number, data: Uint8Array, kind: MetaKind | null): Co<void> {
    yield* this.checkedWrite(offset, data, kind);
  }

  /** Sets or clears the bitmaps autoclear bit and extension, then rewrites the header. */
  *setBitmapsExtension(ext: { nbBitmaps: number; directorySize: number; directoryOffset: number } | null): Co<void> {
    this.header.bitmaps = ext;
    if (ext === null) this.header.autoclear &= ~AUTOCLEAR_BITMAPS;
    else this.header.autoclear |= AUTOCLEAR_BITMAPS;
    yield* this.writeHeader();
  }
}
