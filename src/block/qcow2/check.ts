/**
 * `check`: recompute every cluster's reference count from the metadata (header, L1, L2, data,
 * refcount structures, bitmaps), compare with the on-disk refcounts, check the COPIED flags, and
 * optionally repair leaks (`-r leaks`) and refcount errors (`-r all`). Messages and counters
 * follow qemu-img check.
 */
import type { Co } from '../../engine/coroutine.js';
import { bitmapMetadataExtents } from './bitmaps.js';
import { ImageError } from './errors.js';
import { be32, compressedDescriptor, entryOffsetOrBad as entryOffset, HI_COMPRESSED, HI_COPIED, INCOMPAT_CORRUPT, INCOMPAT_DIRTY, LO_ZERO, setBe32 } from './format.js';
import { MetaKind } from './overlap.js';
import type { Qcow2Image } from './qcow2.js';

export interface CheckFix {
  readonly leaks: boolean;
  readonly errors: boolean;
}

export interface CheckResult {
  corruptions: number;
  leaks: number;
  checkErrors: number;
  corruptionsFixed: number;
  leaksFixed: number;
  imageEndOffset: number;
  totalClusters: number;
  allocatedClusters: number;
  fragmentedClusters: number;
  compressedClusters: number;
  /** Lines qemu-img prints on stderr while checking ("Leaked cluster 5 refcount=2 reference=1"). */
  readonly messages: string[];
}

/** Upper bound on clusters `check` tracks (a 2^26-entry array is 256 MiB of counters at most). */
const MAX_TRACKED_CLUSTERS = 1 << 26;

class RefArray {
  counts: Uint32Array;
  highest = -1;
  constructor(initial: number) {
    this.counts = new Uint32Array(Math.max(16, initial));
  }
  inc(cluster: number): boolean {
    if (cluster >= MAX_TRACKED_CLUSTERS) return false;
    if (cluster >= this.counts.length) {
      const grown = new Uint32Array(Math.min(MAX_TRACKED_CLUSTERS, Math.max(cluster + 1, this.counts.length * 2)));
      grown.set(this.counts);
      this.counts = grown;
    }
    this.counts[cluster]!++;
    if (cluster > this.highest) this.highest = cluster;
    return true;
  }
  get(cluster: number): number {
    return cluster < this.counts.length ? this.counts[cluster]! : 0;
  }
}

function hex(hi: number, lo: number): string {
  return (BigInt(hi >>> 0) * 0x100000000n + BigInt(lo >>> 0)).toString(16);
}

/** Runs check (and repairs per `fix`) on an image opened read/write (read-only when fix is off). */
export function* checkQcow2(img: Qcow2Image, fix: CheckFix): Co<CheckResult> {
  return yield* img.withLock(() => checkLocked(img, fix));
}

function* checkLocked(img: Qcow2Image, fix: CheckFix): Co<CheckResult> {
  if ((fix.leaks || fix.errors) && img.readOnly) throw new ImageError('EACCES', 'Cannot repair a read-only image');
  img.dropCaches();
  const cs = img.cs;
  const fileLength = yield* img.io.length();
  const res: CheckResult = {
    corruptions: 0,
    leaks: 0,
    checkErrors: 0,
    corruptionsFixed: 0,
    leaksFixed: 0,
    imageEndOffset: 0,
    totalClusters: Math.ceil(img.sizeBytes / cs),
    allocatedClusters: 0,
    fragmentedClusters: 0,
    compressedClusters: 0,
    messages: [],
  };
  const refs = new RefArray(Math.ceil(fileLength / cs));
  const incRange = (offset: number, bytes: number): void => {
    if (bytes <= 0) return;
    const last = Math.floor((offset + bytes - 1) / cs);
    if (offset >= fileLength) {
      // Not counted (and so never "repaired" into existence): a reference past the end is damage.
      res.messages.push(`ERROR: offset 0x${offset.toString(16)} is past the end of the image file`);
      res.corruptions++;
      return;
    }
    for (let c = Math.floor(offset / cs); c <= last; c++) {
      if (!refs.inc(c)) {
        res.messages.push(`ERROR: cluster ${c} is beyond what check can track`);
        res.checkErrors++;
        return;
      }
    }
  };

  // Header, L1, L2 tables and data clusters.
  incRange(0, cs);
  const h = img.header;
  incRange(h.l1TableOffset, h.l1Size * 8);
  const l2 = new Uint8Array(cs);
  for (let i = 0; i < h.l1Size; i++) {
    const l1hi = be32(img.l1, i * 8);
    const l1lo = be32(img.l1, i * 8 + 4);
    const l2off = entryOffset(l1hi, l1lo);
    if (l2off === 0) continue;
    if (l2off % cs !== 0) {
      res.messages.push(`ERROR l2_offset=${l2off.toString(16)}: Table is not cluster aligned; L1 entry corrupted`);
      res.corruptions++;
      continue;
    }
    incRange(l2off, cs);
    yield* img.io.pread(l2off, l2);
    let nextContiguous = 0;
    for (let j = 0; j < img.l2Entries; j++) {
      const hi = be32(l2, j * 8);
      const lo = be32(l2, j * 8 + 4);
      if ((hi & HI_COMPRESSED) !== 0) {
        let d: { offset: number; bytes: number };
        try {
          d = compressedDescriptor(hi, lo, img.clusterBits);
        } catch (e) {
          if (!(e instanceof ImageError)) throw e;
          res.messages.push(`ERROR compressed cluster entry ${hex(hi, lo)}: offset out of range; L2 entry corrupted`);
          res.corruptions++;
          continue;
        }
        incRange(d.offset, d.bytes);
        res.allocatedClusters++;
        res.compressedClusters++;
        // QEMU counts compressed clusters as fragmented by nature (sub-sector, re-read sectors).
        res.fragmentedClusters++;
        nextContiguous = 0;
        continue;
      }
      const off = entryOffset(hi, lo);
      if (off === 0) continue;
      if (off % cs !== 0) {
        const zero = (lo & LO_ZERO) !== 0;
        res.messages.push(`${zero ? 'ERROR' : 'ERROR'} offset=${off.toString(16)}: Cluster is not properly aligned; L2 entry corrupted.`);
        res.corruptions++;
        continue;
      }
      res.allocatedClusters++;
      if (nextContiguous !== 0 && off !== nextContiguous) res.fragmentedClusters++;
      nextContiguous = off + cs;
      incRange(off, cs);
    }
  }

  // Internal snapshots: their table, L1 tables, and everything those reference.
  incRange(h.snapshotsOffset, img.snapshotTableBytes);
  for (const sn of img.snapshots) {
    incRange(sn.l1TableOffset, sn.l1Size * 8);
    const l1 = new Uint8Array(sn.l1Size * 8);
    yield* img.io.pread(sn.l1TableOffset, l1);
    for (let i = 0; i < sn.l1Size; i++) {
      const l2off = entryOffset(be32(l1, i * 8), be32(l1, i * 8 + 4));
      if (l2off === 0) continue;
      if (l2off % cs !== 0) {
        res.messages.push(`ERROR l2_offset=${l2off.toString(16)}: Table is not cluster aligned; L1 entry corrupted`);
        res.corruptions++;
        continue;
      }
      incRange(l2off, cs);
      yield* img.io.pread(l2off, l2);
      for (let j = 0; j < img.l2Entries; j++) {
        const hi = be32(l2, j * 8);
        const lo = be32(l2, j * 8 + 4);
        if ((hi & HI_COMPRESSED) !== 0) {
          try {
            const d = compressedDescriptor(hi, lo, img.clusterBits);
            incRange(d.offset, d.bytes);
          } catch (e) {
            if (!(e instanceof ImageError)) throw e;
            res.corruptions++;
          }
          continue;
        }
        const off = entryOffset(hi, lo);
        if (off === 0) continue;
        if (off % cs !== 0) {
          res.messages.push(`ERROR offset=${off.toString(16)}: Cluster is not properly aligned; L2 entry corrupted.`);
          res.corruptions++;
          continue;
        }
        incRange(off, cs);
      }
    }
  }

  // Refcount table and blocks.
  const rc = img.refcounts;
  incRange(rc.tableOffset, rc.tableClusters * cs);
  const badBlocks = new Set<number>();
  for (let bi = 0; bi < rc.tableEntries; bi++) {
    const off = rc.rawBlockOffset(bi);
    if (off === 0) continue;
    if (off % cs !== 0 || (be32(rc.table, bi * 8 + 4) & 0x1ff) !== 0) {
      res.messages.push(`ERROR refcount block ${bi} is not cluster aligned; refcount table entry corrupted`);
      res.corruptions++;
      badBlocks.add(bi);
      continue;
    }
    if (off >= fileLength) {
      res.messages.push(`ERROR refcount block ${bi} is outside image`);
      res.corruptions++;
      badBlocks.add(bi);
      continue;
    }
    incRange(off, cs);
  }

  // Persistent bitmaps: directory, tables, data clusters.
  try {
    for (const e of yield* bitmapMetadataExtents(img)) incRange(e.offset, e.bytes);
  } catch (e) {
    if (!(e instanceof ImageError)) throw e;
    res.messages.push(`ERROR bitmaps: ${e.message}`);
    res.corruptions++;
  }

  const diskRefcount = function* (c: number): Co<number> {
    if (badBlocks.has(Math.floor(c / rc.refsPerBlock))) return 0;
    return yield* rc.get(c);
  };

  // Compare: first a pass that only reports, then (if asked) one that repairs, as QEMU does.
  const nb = Math.max(Math.ceil(fileLength / cs), refs.highest + 1);
  const mismatches: { c: number; disk: number; ref: number }[] = [];
  let highest = -1;
  for (let c = 0; c < nb; c++) {
    const disk = yield* diskRefcount(c);
    const ref = refs.get(c);
    // QEMU's image end covers clusters in use by either count (a leak still occupies the file).
    if (disk > 0 || ref > 0) highest = c;
    if (disk === ref) continue;
    mismatches.push({ c, disk, ref });
    res.messages.push(`${disk < ref ? 'ERROR' : 'Leaked'} cluster ${c} refcount=${disk} reference=${ref}`);
  }
  const canFixBlocks = badBlocks.size === 0;
  for (const m of mismatches) {
    const repair = canFixBlocks && ((m.disk < m.ref && fix.errors) || (m.disk > m.ref && fix.leaks));
    if (repair) {
      res.messages.push(`Repairing cluster ${m.c} refcount=${m.disk} reference=${m.ref}`);
      yield* rc.set(m.c, 1, Math.min(m.ref, rc.maxRefcount));
      if (m.disk < m.ref) res.corruptionsFixed++;
      else res.leaksFixed++;
    } else if (m.disk < m.ref) {
      res.corruptions++;
    } else {
      res.leaks++;
    }
  }

  // COPIED flags must say "refcount is exactly 1".
  for (let i = 0; i < h.l1Size; i++) {
    const l1hi = be32(img.l1, i * 8);
    const l1lo = be32(img.l1, i * 8 + 4);
    const l2off = entryOffset(l1hi, l1lo);
    if (l2off === 0 || l2off % cs !== 0) continue;
    const l2rc = yield* diskRefcount(l2off / cs);
    if ((l2rc === 1) !== ((l1hi & HI_COPIED) !== 0)) {
      if (fix.errors) {
        res.messages.push(`Repairing OFLAG_COPIED L2 cluster: l1_index=${i} l1_entry=${hex(l1hi, l1lo)} refcount=${l2rc}`);
        setBe32(img.l1, i * 8, l2rc === 1 ? l1hi | HI_COPIED : l1hi & ~HI_COPIED);
        yield* img.writeChecked(h.l1TableOffset + i * 8, img.l1.slice(i * 8, i * 8 + 8), MetaKind.ActiveL1);
        res.corruptionsFixed++;
      } else {
        res.messages.push(`ERROR OFLAG_COPIED L2 cluster: l1_index=${i} l1_entry=${hex(l1hi, l1lo)} refcount=${l2rc}`);
        res.corruptions++;
      }
    }
    yield* img.io.pread(l2off, l2);
    let dirty = false;
    for (let j = 0; j < img.l2Entries; j++) {
      const hi = be32(l2, j * 8);
      const lo = be32(l2, j * 8 + 4);
      if ((hi & HI_COMPRESSED) !== 0) continue;
      const off = entryOffset(hi, lo);
      if (off === 0 || off % cs !== 0) continue;
      const drc = yield* diskRefcount(off / cs);
      if ((drc === 1) === ((hi & HI_COPIED) !== 0)) continue;
      if (fix.errors) {
        res.messages.push(`Repairing OFLAG_COPIED data cluster: l2_entry=${hex(hi, lo)} refcount=${drc}`);
        setBe32(l2, j * 8, drc === 1 ? hi | HI_COPIED : hi & ~HI_COPIED);
        dirty = true;
        res.corruptionsFixed++;
      } else {
        res.messages.push(`ERROR OFLAG_COPIED data cluster: l2_entry=${hex(hi, lo)} refcount=${drc}`);
        res.corruptions++;
      }
    }
    if (dirty) yield* img.writeChecked(l2off, l2, MetaKind.ActiveL2);
  }

  res.imageEndOffset = (Math.max(highest, refs.highest) + 1) * cs;
  if ((fix.leaks || fix.errors) && res.corruptions === 0 && res.checkErrors === 0) {
    // A repaired image is consistent again: clear the dirty and corrupt bits.
    if ((h.incompatible & (INCOMPAT_DIRTY | INCOMPAT_CORRUPT)) !== 0n) {
      h.incompatible &= ~(INCOMPAT_DIRTY | INCOMPAT_CORRUPT);
      yield* img.writeHeader();
    }
  }
  img.dropCaches();
  yield* img.io.flush();
  return res;
}
