/**
 * Which host clusters hold qcow2 metadata, so every write can be checked first
 * (qcow2_pre_write_overlap_check): a write that would land on metadata marks the image corrupt and
 * fails instead of damaging it. Kept as a cluster-index map so a check costs one lookup per
 * cluster written, independent of the image size.
 */
import { assert } from '../../engine/assert.js';

export const MetaKind = {
  Header: 0,
  ActiveL1: 1,
  ActiveL2: 2,
  RefcountTable: 3,
  RefcountBlock: 4,
  SnapshotTable: 5,
  BitmapDirectory: 6,
  InactiveL1: 7,
} as const;
export type MetaKind = (typeof MetaKind)[keyof typeof MetaKind];

/** QEMU's metadata_ol_names, used in the corruption message. */
export const META_NAMES: Readonly<Record<MetaKind, string>> = {
  [MetaKind.Header]: 'qcow2_header',
  [MetaKind.ActiveL1]: 'active L1 table',
  [MetaKind.ActiveL2]: 'active L2 table',
  [MetaKind.RefcountTable]: 'refcount table',
  [MetaKind.RefcountBlock]: 'refcount block',
  [MetaKind.SnapshotTable]: 'snapshot table',
  [MetaKind.BitmapDirectory]: 'bitmap directory',
  [MetaKind.InactiveL1]: 'inactive L1 table',
};

export class MetadataMap {
  private readonly kinds = new Map<number, MetaKind>();

  constructor(readonly clusterBits: number) {
    this.kinds.set(0, MetaKind.Header);
  }

  get size(): number {
    return this.kinds.size;
  }

  /** Registers `count` clusters starting at host byte `offset` (cluster aligned) as `kind`. */
  add(offset: number, count: number, kind: MetaKind): void {
    const first = offset / 2 ** this.clusterBits;
    assert(Number.isInteger(first), () => `metadata at unaligned offset ${offset}`);
    for (let i = 0; i < count; i++) this.kinds.set(first + i, kind);
  }

  remove(offset: number, count: number): void {
    const first = Math.floor(offset / 2 ** this.clusterBits);
    for (let i = 0; i < count; i++) this.kinds.delete(first + i);
  }

  kindAt(clusterIndex: number): MetaKind | undefined {
    return this.kinds.get(clusterIndex);
  }

  /**
   * The metadata kind a write of `bytes` at `offset` would overwrite, or null. `allowed` is the
   * kind the caller means to write (a write to an L2 table may touch L2 tables).
   */
  overlap(offset: number, bytes: number, allowed: MetaKind | null): MetaKind | null {
    if (bytes === 0) return null;
    const cs = 2 ** this.clusterBits;
    const first = Math.floor(offset / cs);
    const last = Math.floor((offset + bytes - 1) / cs);
    for (let c = first; c <= last; c++) {
      const kind = this.kinds.get(c);
      if (kind !== undefined && kind !== allowed) return kind;
    }
    return null;
  }
}
