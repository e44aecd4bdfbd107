import type { Co } from '../../engine/coroutine.js';
import { assert } from '../../engine/assert.js';
import type { BlockDriver, OpenContext } from '../driver.js';
import { BlkPerm, ChildRole } from '../driver.js';
import { Errno } from '../errno.js';
import { BlockError } from '../error.js';
import { bdrvCoPreadv } from '../io.js';
import type { BlockDriverState } from '../node.js';
import type { OptionReader } from '../options.js';

/** Granularity of the overlay: a guest write touching part of a chunk copies the rest from below. */
export const OVERLAY_CHUNK_BYTES = 4096;

/**
 * The overlay's contents: chunk index → bytes. A chunk array is never modified once stored (a
 * write stores a new array), so a saved map can share arrays with the live one.
 */
type Chunks = Map<number, Uint8Array>;

interface OverlayState {
  chunks: Chunks;
}

function state(bs: BlockDriverState): OverlayState {
  return bs.opaque as OverlayState;
}

/** The overlay's contents at one moment: what `-drive snapshot=on` wrote so far (msgpack-able). */
export interface OverlaySnapshot {
  readonly chunkBytes: number;
  /** [chunk index, bytes] in ascending index order. */
  readonly chunks: readonly (readonly [number, Uint8Array])[];
}

/** Reads [offset, offset+bytes) of the node below into `buf`. */
function* readBelow(bs: BlockDriverState, offset: number, bytes: number, buf: Uint8Array): Co<number> {
  if (bytes === 0) return 0;
  return yield* bdrvCoPreadv(bs.file!, offset, bytes, buf, 0);
}

/**
 * `snapshot-overlay`: what `-drive ...,snapshot=on` puts on top of a drive. Guest writes land in
 * memory and are dropped with the node; the image below is opened read-only and never written, so
 * a record/replay session starts from the same bytes every time. QEMU puts a temporary qcow2 file
 * there; memory keeps it out of the host's file system and makes the overlay's whole state a value
 * that a replay snapshot can save and restore (`saveOverlay`/`restoreOverlay`).
 */
export const snapshotOverlayDriver: BlockDriver = {
  formatName: 'snapshot-overlay',
  supportedZeroFlags: 0,

  *open(bs: BlockDriverState, opts: OptionReader, ctx: OpenContext): Co<void> {
    const file = yield* ctx.openChild(bs, opts, 'file', ChildRole.COW | ChildRole.PRIMARY, { required: true });
    const length = file!.bs.getLength();
    if (length < 0) throw BlockError.withErrno('Could not get image size', -length);
    bs.opaque = { chunks: new Map() } satisfies OverlayState;
    bs.totalBytes = length;
    bs.filename = file!.bs.filename;
  },

  getLength(bs: BlockDriverState): number {
    return bs.totalBytes;
  },

  *preadv(bs: BlockDriverState, offset: number, bytes: number, buf: Uint8Array): Co<number> {
    const chunks = state(bs).chunks;
    const end = offset + bytes;
    // Runs of chunks the overlay lacks are read from below in one request each.
    let belowStart = offset;
    let pos = offset;
    for (let guard = 0; pos < end; guard++) {
      assert(guard <= bytes / OVERLAY_CHUNK_BYTES + 2, 'overlay read loop overran');
      const index = Math.floor(pos / OVERLAY_CHUNK_BYTES);
      const chunkEnd = Math.min(end, (index + 1) * OVERLAY_CHUNK_BYTES);
      const chunk = chunks.get(index);
      if (chunk !== undefined) {
        const ret = yield* readBelow(bs, belowStart, pos - belowStart, buf.subarray(belowStart - offset, pos - offset));
        if (ret < 0) return ret;
        const from = pos - index * OVERLAY_CHUNK_BYTES;
        buf.set(chunk.subarray(from, from + (chunkEnd - pos)), pos - offset);
        belowStart = chunkEnd;
      }
      pos = chunkEnd;
    }
    return yield* readBelow(bs, belowStart, end - belowStart, buf.subarray(belowStart - offset, end - offset));
  },

  *pwritev(bs: BlockDriverState, offset: number, bytes: number, buf: Uint8Array): Co<number> {
    return yield* writeChunks(bs, offset, bytes, buf);
  },

  *pwriteZeroes(bs: BlockDriverState, offset: number, bytes: number): Co<number> {
    return yield* writeChunks(bs, offset, bytes, null);
  },

  *flush(): Co<number> {
    return 0;
  },

  *truncate(): Co<number> {
    return -Errno.ENOTSUP;
  },

  getAllocatedFileSize(bs: BlockDriverState): number {
    return state(bs).chunks.size * OVERLAY_CHUNK_BYTES;
  },

  childPerms(_bs, _child, _role, _parentPerm, parentShared) {
    // The image below is only read, and nobody else may write it while the overlay sits on it.
    return { perm: BlkPerm.CONSISTENT_READ, shared: (parentShared & BlkPerm.CONSISTENT_READ) | BlkPerm.WRITE_UNCHANGED | BlkPerm.GRAPH_MOD | BlkPerm.CONSISTENT_READ };
  },
};

/** Stores `buf` (or zeroes when null) at [offset, offset+bytes), chunk by chunk. */
function* writeChunks(bs: BlockDriverState, offset: number, bytes: number, buf: Uint8Array | null): Co<number> {
  const chunks = state(bs).chunks;
  const end = offset + bytes;
  let pos = offset;
  for (let guard = 0; pos < end; guard++) {
    assert(guard <= bytes / OVERLAY_CHUNK_BYTES + 2, 'overlay write loop overran');
    const index = Math.floor(pos / OVERLAY_CHUNK_BYTES);
    const chunkStart = index * OVERLAY_CHUNK_BYTES;
    const chunkLen = Math.min(OVERLAY_CHUNK_BYTES, bs.totalBytes - chunkStart);
    const chunkEnd = Math.min(end, chunkStart + chunkLen);
    const fresh = new Uint8Array(chunkLen);
    if (pos > chunkStart || chunkEnd < chunkStart + chunkLen) {
      const old = chunks.get(index);
      if (old !== undefined) fresh.set(old);
      else {
        const ret = yield* readBelow(bs, chunkStart, chunkLen, fresh);
        if (ret < 0) return ret;
      }
    }
    if (buf !== null) fresh.set(buf.subarray(pos - offset, chunkEnd - offset), pos - chunkStart);
    else fresh.fill(0, pos - chunkStart, chunkEnd - chunkStart);
    chunks.set(index, fresh);
    pos = chunkEnd;
  }
  return 0;
}

/** The overlay's contents now; shares the (immutable) chunk arrays with the node. */
export function saveOverlay(bs: BlockDriverState): OverlaySnapshot {
  assert(bs.drv === snapshotOverlayDriver, () => `node '${bs.nodeName}' is not a snapshot overlay`);
  const chunks = [...state(bs).chunks.entries()].sort((a, b) => a[0] - b[0]);
  return { chunkBytes: OVERLAY_CHUNK_BYTES, chunks };
}

/** Puts the overlay back to `snapshot` (the node must be idle: no request in flight). */
export function restoreOverlay(bs: BlockDriverState, snapshot: OverlaySnapshot): void {
  assert(bs.drv === snapshotOverlayDriver, () => `node '${bs.nodeName}' is not a snapshot overlay`);
  assert(snapshot.chunkBytes === OVERLAY_CHUNK_BYTES, () => `overlay snapshot with ${snapshot.chunkBytes}-byte chunks`);
  const chunks: Chunks = new Map();
  for (const [index, bytes] of snapshot.chunks) {
    assert(Number.isSafeInteger(index) && index >= 0 && index * OVERLAY_CHUNK_BYTES < bs.totalBytes, () => `overlay chunk ${index} outside the node`);
    assert(bytes.length === Math.min(OVERLAY_CHUNK_BYTES, bs.totalBytes - index * OVERLAY_CHUNK_BYTES), () => `overlay chunk ${index} has ${bytes.length} bytes`);
    chunks.set(index, bytes);
  }
  state(bs).chunks = chunks;
}

/** True for a `-drive snapshot=on` overlay node. */
export function isSnapshotOverlay(bs: BlockDriverState): boolean {
  return bs.drv === snapshotOverlayDriver;
}
