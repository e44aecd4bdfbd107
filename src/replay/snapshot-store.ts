/**
 * Snapshots kept during play, for seek. A machine snapshot is plain data with a few large byte
 * arrays (RAM, disk overlays); keeping dozens of full copies of a 128 MiB RAM would not fit, so
 * large arrays are stored as 4 KiB pages, all-zero pages as nothing, and pages equal to the same
 * page of the previous snapshot as a shared reference. On disk (`--snapshots FILE`) each snapshot
 * is one msgpack frame that stands alone (zero pages still elided).
 */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { Packr } from 'msgpackr';
import { assert } from '../engine/assert.js';
import type { RunPoint } from './log-format.js';

/** Arrays at least this long are paged. */
const PAGE_MIN_BYTES = 64 * 1024;
export const SNAPSHOT_PAGE_BYTES = 4096;
/** Bound on the depth of a snapshot's plain-data tree (guards the walk, which is iterative). */
const MAX_NODES = 1 << 22;

/** A large byte array as pages; null pages are zero. */
export interface PagedBytes {
  readonly paged: true;
  readonly length: number;
  readonly pages: readonly (Uint8Array | null)[];
}

function isPaged(value: unknown): value is PagedBytes {
  return typeof value === 'object' && value !== null && (value as { paged?: unknown }).paged === true && Array.isArray((value as { pages?: unknown }).pages);
}

const ZERO_PAGE = new Uint8Array(SNAPSHOT_PAGE_BYTES);

function isZero(page: Uint8Array): boolean {
  return Buffer.from(page.buffer, page.byteOffset, page.length).equals(ZERO_PAGE.subarray(0, page.length));
}

/** Pages `bytes`, sharing pages equal to `previous`'s (same length) and eliding zero pages. */
function pageBytes(bytes: Uint8Array, previous: PagedBytes | undefined): { paged: PagedBytes; newBytes: number } {
  const pages: (Uint8Array | null)[] = [];
  let newBytes = 0;
  const reuse = previous !== undefined && previous.length === bytes.length ? previous : undefined;
  for (let at = 0, i = 0; at < bytes.length; at += SNAPSHOT_PAGE_BYTES, i++) {
    const page = bytes.subarray(at, Math.min(bytes.length, at + SNAPSHOT_PAGE_BYTES));
    const old = reuse?.pages[i];
    if (old === null && isZero(page)) {
      pages.push(null);
      continue;
    }
    if (old !== undefined && old !== null && Buffer.from(old.buffer, old.byteOffset, old.length).equals(page)) {
      pages.push(old);
      continue;
    }
    if (old === undefined && isZero(page)) {
      pages.push(null);
      continue;
    }
    pages.push(page.slice());
    newBytes += page.length;
  }
  return { paged: { paged: true, length: bytes.length, pages }, newBytes };
}

function unpage(paged: PagedBytes): Uint8Array {
  const out = new Uint8Array(paged.length);
  paged.pages.forEach((page, i) => {
    if (page !== null) out.set(page, i * SNAPSHOT_PAGE_BYTES);
  });
  return out;
}

type Path = string;

/**
 * Maps every value of a plain-data tree, iteratively: `leaf` may replace byte arrays. Objects and
 * arrays are copied; other values are kept.
 */
function mapTree(root: unknown, leaf: (value: Uint8Array | PagedBytes, path: Path) => unknown): unknown {
  const holder: { v: unknown } = { v: undefined };
  const stack: { value: unknown; set: (v: unknown) => void; path: Path }[] = [{ value: root, set: (v) => (holder.v = v), path: '' }];
  for (let n = 0; stack.length > 0; n++) {
    assert(n < MAX_NODES, 'snapshot tree too large');
    const { value, set, path } = stack.pop()!;
    if (value instanceof Uint8Array || isPaged(value)) {
      set(leaf(value, path));
    } else if (Array.isArray(value)) {
      const copy: unknown[] = new Array<unknown>(value.length);
      set(copy);
      value.forEach((item, i) => stack.push({ value: item, set: (v) => (copy[i] = v), path: `${path}/${i}` }));
    } else if (typeof value === 'object' && value !== null && !ArrayBuffer.isView(value)) {
      const copy: Record<string, unknown> = {};
      set(copy);
      for (const [key, item] of Object.entries(value)) stack.push({ value: item, set: (v) => (copy[key] = v), path: `${path}/${key}` });
    } else {
      set(value);
    }
  }
  return holder.v;
}

/** Large arrays of `state` by path (to share pages with the next snapshot). */
function pagedByPath(state: unknown): Map<Path, PagedBytes> {
  const out = new Map<Path, PagedBytes>();
  mapTree(state, (value, path) => {
    if (isPaged(value)) out.set(path, value);
    return value;
  });
  return out;
}

/** Where play stood when a snapshot was taken: enough to resume feeding the log from there. */
export interface PlayPosition {
  readonly inputIndex: number;
  readonly checkpointIndex: number;
  readonly eventIndex: number;
}

export interface StoredSnapshot {
  readonly point: RunPoint;
  readonly position: PlayPosition;
  /** The machine's state with large arrays paged. */
  readonly state: unknown;
  /** Bytes this snapshot added to the store (pages not shared with its predecessor). */
  readonly newBytes: number;
}

/**
 * Snapshots in instruction-count order, at most `capacity`: when full, every other one (never the
 * first) is dropped, so coverage stays even over the whole run as it grows.
 */
export class SnapshotStore {
  private readonly items: StoredSnapshot[] = [];
  /** Sum of `newBytes` over the snapshots taken (a measure, not the current footprint). */
  totalNewBytes = 0;

  constructor(readonly capacity = 32) {
    assert(Number.isSafeInteger(capacity) && capacity >= 2, 'snapshot store capacity must be at least 2');
  }

  get snapshots(): readonly StoredSnapshot[] {
    return this.items;
  }

  /**
   * Stores the machine state taken at `point`. Play after a seek passes the same points again: a
   * snapshot already stored there is kept and returned.
   */
  add(point: RunPoint, position: PlayPosition, state: unknown): StoredSnapshot {
    const existing = this.items.find((s) => s.point.icount === point.icount && s.point.step === point.step);
    if (existing !== undefined) return existing;
    const before = this.items.filter((s) => s.point.icount < point.icount || (s.point.icount === point.icount && s.point.step < point.step));
    const previous = before[before.length - 1];
    const previousPages = previous === undefined ? new Map<Path, PagedBytes>() : pagedByPath(previous.state);
    let newBytes = 0;
    const paged = mapTree(state, (value, path) => {
      if (isPaged(value)) return value;
      if (value.length < PAGE_MIN_BYTES) return value.slice();
      const result = pageBytes(value, previousPages.get(path));
      newBytes += result.newBytes;
      return result.paged;
    });
    const snapshot: StoredSnapshot = { point, position, state: paged, newBytes };
    this.totalNewBytes += newBytes;
    if (this.items.length >= this.capacity) {
      const kept = this.items.filter((_, i) => i % 2 === 0);
      this.items.length = 0;
      this.items.push(...kept);
    }
    this.items.splice(this.items.filter((s) => s.point.icount < point.icount || (s.point.icount === point.icount && s.point.step < point.step)).length, 0, snapshot);
    return snapshot;
  }

  /** The latest snapshot at or before `icount`, if any. */
  nearest(icount: number): StoredSnapshot | undefined {
    let best: StoredSnapshot | undefined;
    for (const s of this.items) if (s.point.icount <= icount) best = s;
    return best;
  }
}

/** The machine state with paged arrays made whole again (what `MachineSnapshotter.restore` takes). */
export function materialize(snapshot: StoredSnapshot): unknown {
  return mapTree(snapshot.state, (value) => (isPaged(value) ? unpage(value) : value.slice()));
}

// ---- on disk ----------------------------------------------------------------------------------

const packr = new Packr({ useRecords: false, moreTypes: true });
const FILE_MAGIC = 'tsqemu-snapshots 1';
/** Bound on one frame (a 2 GiB RAM with every page used still fits). */
const MAX_FRAME_BYTES = 2 ** 31;

/** A bad snapshot file: names the offset and the reason. */
export class SnapshotFileError extends Error {
  override readonly name = 'SnapshotFileError';
}

/** Appends snapshots to a file as they are taken: a header frame, then one frame per snapshot. */
export class SnapshotFileWriter {
  private readonly fd: number;
  private closed = false;

  constructor(
    readonly path: string,
    logDigest: string,
  ) {
    this.fd = openSync(path, 'w');
    this.frame({ magic: FILE_MAGIC, log: logDigest });
  }

  write(snapshot: StoredSnapshot): number {
    return this.frame({ point: snapshot.point, position: snapshot.position, state: snapshot.state });
  }

  private frame(value: unknown): number {
    assert(!this.closed, 'write to a closed snapshot file');
    const body = packr.pack(value);
    const head = Buffer.alloc(4);
    head.writeUInt32LE(body.length);
    writeSync(this.fd, head);
    writeSync(this.fd, body);
    return body.length + 4;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}

/**
 * Reads a snapshot file written for the log whose digest is `logDigest`, keeping only the latest
 * snapshot at or before `icount` (one frame in memory at a time).
 */
export function readNearestSnapshot(path: string, logDigest: string, icount: number): StoredSnapshot | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    throw new SnapshotFileError(`cannot open ${path}: ${(error as Error).message}`);
  }
  try {
    let offset = 0;
    const head = Buffer.alloc(4);
    const readFrame = (): unknown => {
      const got = readSync(fd, head, 0, 4, offset);
      if (got === 0) return undefined;
      if (got < 4) throw new SnapshotFileError(`${path}: offset ${offset}: truncated frame header`);
      const length = head.readUInt32LE(0);
      if (length === 0 || length > MAX_FRAME_BYTES) throw new SnapshotFileError(`${path}: offset ${offset}: bad frame length ${length}`);
      const body = Buffer.alloc(length);
      const n = readSync(fd, body, 0, length, offset + 4);
      if (n < length) throw new SnapshotFileError(`${path}: offset ${offset}: truncated frame (${n} of ${length} bytes)`);
      let value: unknown;
      try {
        value = packr.unpack(body);
      } catch (error) {
        throw new SnapshotFileError(`${path}: offset ${offset}: corrupt frame (${(error as Error).message})`);
      }
      offset += 4 + length;
      return value;
    };
    const header = readFrame() as { magic?: unknown; log?: unknown } | undefined;
    if (header === undefined || header.magic !== FILE_MAGIC) throw new SnapshotFileError(`${path}: offset 0: not a tsqemu snapshot file`);
    if (header.log !== logDigest) throw new SnapshotFileError(`${path}: the snapshots were taken while playing another log`);
    let best: StoredSnapshot | undefined;
    for (let guard = 0; guard < 1 << 20; guard++) {
      const start = offset;
      let frame: unknown;
      try {
        frame = readFrame();
      } catch (error) {
        // A file cut short by a crash: the snapshots before the damage are still good.
        if (error instanceof SnapshotFileError && best !== undefined) break;
        throw error;
      }
      if (frame === undefined) break;
      const f = frame as { point?: RunPoint; position?: PlayPosition; state?: unknown };
      if (f.point === undefined || f.position === undefined || typeof f.point.icount !== 'number') throw new SnapshotFileError(`${path}: offset ${start}: malformed snapshot frame`);
      if (f.point.icount > icount) break;
      best = { point: f.point, position: f.position, state: f.state, newBytes: 0 };
    }
    return best;
  } finally {
    closeSync(fd);
  }
}
