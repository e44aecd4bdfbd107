/**
 * Internal snapshots: the snapshot table (read and kept intact). The active image may be written
 * while snapshots exist: clusters they share have refcounts above 1 and no COPIED flag, so writes
 * copy them first and frees only drop a reference. Creating, applying or deleting snapshots is
 * not implemented (qemu-img snapshot does that).
 */
import type { Co } from '../../engine/coroutine.js';
import { ImageError } from './errors.js';
import { be16, be32, be64big, entryOffsetOrBad, type Qcow2Header } from './format.js';
import type { ByteIO } from './io.js';

/** QCOW_MAX_SNAPSHOTS and QCOW_MAX_SNAPSHOT_EXTRA_DATA. */
export const MAX_SNAPSHOTS = 65536;
const MAX_EXTRA_DATA = 1024;
const MAX_TABLE_BYTES = 64 * 1024 * 1024;

export interface Snapshot {
  readonly id: string;
  readonly name: string;
  readonly l1TableOffset: number;
  readonly l1Size: number;
  readonly dateSec: number;
  readonly dateNsec: number;
  readonly vmClockNsec: bigint;
  readonly vmStateSize: number;
  /** -1 when the snapshot does not record it (older QEMU). */
  readonly icount: bigint;
}

/** Reads and validates the snapshot table; returns the snapshots and the table's byte size. */
export function* readSnapshots(io: ByteIO, h: Qcow2Header): Co<{ list: Snapshot[]; tableBytes: number }> {
  if (h.nbSnapshots === 0) return { list: [], tableBytes: 0 };
  const cs = 2 ** h.clusterBits;
  if (h.nbSnapshots > MAX_SNAPSHOTS) throw new ImageError('EFBIG', 'Snapshot table too large');
  if (h.snapshotsOffset === 0 || h.snapshotsOffset % cs !== 0) throw new ImageError('EINVAL', 'Snapshot table offset invalid');
  const list: Snapshot[] = [];
  // Read in growing pieces: entry sizes are only known while parsing.
  let buf = new Uint8Array(Math.min(MAX_TABLE_BYTES, h.nbSnapshots * 64 + 4096));
  yield* io.pread(h.snapshotsOffset, buf);
  let at = 0;
  const need = function* (bytes: number): Co<void> {
    if (at + bytes <= buf.length) return;
    if (at + bytes > MAX_TABLE_BYTES) throw new ImageError('EFBIG', 'Snapshot table too large');
    const grown = new Uint8Array(Math.min(MAX_TABLE_BYTES, Math.max(buf.length * 2, at + bytes)));
    yield* io.pread(h.snapshotsOffset, grown);
    buf = grown;
  };
  for (let i = 0; i < h.nbSnapshots; i++) {
    yield* need(40);
    const l1TableOffset = entryOffsetOrBad(be32(buf, at), be32(buf, at + 4));
    const l1Size = be32(buf, at + 8);
    const idSize = be16(buf, at + 12);
    const nameSize = be16(buf, at + 14);
    const dateSec = be32(buf, at + 16);
    const dateNsec = be32(buf, at + 20);
    const vmClockNsec = be64big(buf, at + 24);
    const vmStateSize = be32(buf, at + 32);
    const extra = be32(buf, at + 36);
    if (extra > MAX_EXTRA_DATA) throw new ImageError('EFBIG', 'Too much extra metadata in snapshot table entry');
    if (l1TableOffset < 0 || l1TableOffset % cs !== 0 || l1Size * 8 > 32 * 1024 * 1024) throw new ImageError('EINVAL', 'Snapshot L1 table offset invalid');
    const size = Math.ceil((40 + extra + idSize + nameSize) / 8) * 8;
    yield* need(size);
    const icount = extra >= 24 ? be64big(buf, at + 40 + 16) : -1n;
    const dec = new TextDecoder();
    const id = dec.decode(buf.subarray(at + 40 + extra, at + 40 + extra + idSize));
    const name = dec.decode(buf.subarray(at + 40 + extra + idSize, at + 40 + extra + idSize + nameSize));
    list.push({ id, name, l1TableOffset, l1Size, dateSec, dateNsec, vmClockNsec, vmStateSize, icount: icount === 0xffffffffffffffffn ? -1n : icount });
    at += size;
  }
  return { list, tableBytes: at };
}
