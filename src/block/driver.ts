import type { Co } from '../engine/coroutine.js';
import type { MainLoop } from '../engine/main-loop.js';
import type { BlkdebugEvent } from './blkdebug-events.js';
import type { BlockError, Errp } from './error.js';
import type { BdrvChild, BlockDriverState } from './node.js';
import type { OptionReader } from './options.js';
import type { BlockGraph } from './graph.js';

/**
 * Request flags (QEMU's BdrvRequestFlags, same bit values). Pass them to the `bdrvCo*` entry
 * points; a driver only sees the flags it declares in `supportedWriteFlags`/`supportedZeroFlags`,
 * the generic layer emulates the rest (FUA becomes a flush after the write).
 */
export const BdrvReq = {
  COPY_ON_READ: 0x1,
  /** Internal: the write is a write-zeroes request. */
  ZERO_WRITE: 0x2,
  /** Zero writes may deallocate (discard) instead of writing zeroes. */
  MAY_UNMAP: 0x4,
  /** Force unit access: data is on stable storage when the request completes. */
  FUA: 0x10,
  WRITE_COMPRESSED: 0x20,
  /** The write does not change the data (needs only BLK_PERM_WRITE_UNCHANGED). */
  WRITE_UNCHANGED: 0x40,
  /** Serialise against every overlapping request (copy-before-write, RMW). */
  SERIALISING: 0x80,
  /** Fail with -ENOTSUP instead of emulating a zero write with a data write. */
  NO_FALLBACK: 0x100,
  PREFETCH: 0x200,
  NO_WAIT: 0x400,
} as const;

/** Mask of every defined request flag. */
export const BDRV_REQ_MASK = 0x7ff;

/**
 * Block-status flags (bdrv_co_block_status). A non-negative result of `blockStatus` is a mix of
 * these; `out.pnum` says how many bytes from `offset` share the answer.
 */
export const BlockStatus = {
  /** Reads return data from this layer (or the layer `out.file` says). */
  DATA: 0x01,
  /** Reads return zeroes. */
  ZERO: 0x02,
  /** `out.map` is the offset of the data in `out.file`. */
  OFFSET_VALID: 0x04,
  /** Internal, filters: ask `out.file` at `out.map` instead (QEMU's BDRV_BLOCK_RAW). */
  RAW: 0x08,
  /** The range is allocated in this layer (not deferring to a backing file). */
  ALLOCATED: 0x10,
  /** The range reaches the end of the node. */
  EOF: 0x20,
  /** Ask `out.file` at `out.map` whether the data there reads as zero. */
  RECURSE: 0x40,
} as const;

/** The answer's extra outputs. Drivers fill `pnum` (always), `map` and `file` with OFFSET_VALID. */
export interface BlockStatusOut {
  pnum: number;
  map: number;
  file: BlockDriverState | null;
}

export function newBlockStatusOut(): BlockStatusOut {
  return { pnum: 0, map: 0, file: null };
}

/**
 * Permissions a BdrvChild takes on its node and shares with other users (BLK_PERM_*, same bits).
 * Two parents conflict when one takes a permission the other does not share.
 */
export const BlkPerm = {
  CONSISTENT_READ: 0x01,
  WRITE: 0x02,
  WRITE_UNCHANGED: 0x04,
  RESIZE: 0x08,
  GRAPH_MOD: 0x10,
  ALL: 0x1f,
} as const;

/** Names as QEMU prints them in permission errors. */
export const BLK_PERM_NAMES: readonly [number, string][] = [
  [BlkPerm.CONSISTENT_READ, 'consistent read'],
  [BlkPerm.WRITE, 'write'],
  [BlkPerm.WRITE_UNCHANGED, 'write unchanged'],
  [BlkPerm.RESIZE, 'resize'],
  [BlkPerm.GRAPH_MOD, 'change children'],
];

/** "write, resize": the names of the bits in `perm`, comma-separated (bdrv_perm_names). */
export function permNames(perm: number): string {
  return BLK_PERM_NAMES.filter(([bit]) => (perm & bit) !== 0)
    .map(([, name]) => name)
    .join(', ');
}

/** What a child is to its parent (BdrvChildRole, same bits). */
export const ChildRole = {
  /** The child holds guest-visible data. */
  DATA: 1 << 0,
  /** The child holds the parent's metadata (a format driver's `file`). */
  METADATA: 1 << 1,
  /** The parent is a filter and the child is the node it filters. */
  FILTERED: 1 << 2,
  /** The child is a backing file (copy-on-write source). */
  COW: 1 << 3,
  /** The child is the parent's primary child (bdrv_primary_bs follows it). */
  PRIMARY: 1 << 4,
  /** DATA | METADATA: a format driver's image file. */
  IMAGE: (1 << 0) | (1 << 1),
} as const;

export interface ChildPerms {
  readonly perm: number;
  readonly shared: number;
}

/** Preallocation modes of truncate/create (PreallocMode). */
export type PreallocMode = 'off' | 'metadata' | 'falloc' | 'full';

/** bdrv_get_info's answer. */
export interface BlockDriverInfo {
  /** Cluster size in bytes, 0 when irrelevant. */
  readonly clusterSize: number;
  /** The image is marked dirty (qcow2 lazy refcounts). */
  readonly isDirty: boolean;
}

/** What a driver's `open` gets besides the node and its options. */
export interface OpenContext {
  readonly loop: MainLoop;
  readonly graph: BlockGraph;
  /**
   * Opens (or looks up) the child given by option `key` ("file", "backing", "image", "target")
   * and attaches it to `bs` under the child name `childName` (default: `key`) with `role`; the
   * permissions come from the parent driver's `childPerms`. Returns null when the option is absent
   * and `required` is false (or is JSON `null`, which means "no child"). Throws BlockError
   * ("Parameter 'file' is missing", "Cannot find device='x' nor node-name='x'", a conflict).
   */
  openChild(bs: BlockDriverState, opts: OptionReader, key: string, role: number, options?: OpenChildOptions): Co<BdrvChild | null>;
}

export interface OpenChildOptions {
  readonly required?: boolean;
  readonly childName?: string;
}

/**
 * A block driver: a `const` object per driver, as QEMU's `BlockDriver` (one object, many nodes;
 * per-node state lives in `bs.opaque`). Every coroutine method returns `0` (or, for
 * `blockStatus`, the non-negative flags) on success and a negative errno on failure; it never
 * throws for I/O errors. Drivers are called only through the `bdrvCo*` entry points in `io.ts`,
 * which have already checked bounds, alignment (requests are aligned to `bs.requestAlignment`),
 * permissions and read-only state, and which track the request for drain and serialisation.
 * A driver reaches its children with the same entry points (`bdrvCoPreadv(bs.file!, ...)`).
 *
 * Buffers: `buf` is a view of exactly `bytes` bytes; reads fill it, writes read it. Drivers may
 * slice it with `subarray` (no copy) and must not keep it after returning.
 */
export interface BlockDriver {
  /** `driver` in blockdev-add and `format` in query-block ("raw", "qcow2", "file", ...). */
  readonly formatName: string;
  /** Set for protocol drivers (file, null-co): they hold the data themselves. */
  readonly protocolName?: string;
  /** A filter passes guest data through its primary (FILTERED) child unchanged. */
  readonly isFilter?: boolean;
  /** Set for format drivers with backing files (qcow2). */
  readonly supportsBacking?: boolean;
  /** The driver formats an image on a `file` child (qemu-img's `-f`): qcow2, raw. */
  readonly isFormat?: boolean;
  /** Request flags `pwritev` handles natively (FUA...); others are emulated. */
  readonly supportedWriteFlags?: number;
  /** Request flags `pwriteZeroes` handles natively (MAY_UNMAP, FUA, NO_FALLBACK...). */
  readonly supportedZeroFlags?: number;

  /**
   * Opens the node: reads its options from `opts` (every key it understands, so the graph can
   * refuse the rest), opens children through `ctx.openChild`, sets `bs.opaque`, `bs.totalBytes`
   * and limits. Throws BlockError with QEMU's message on failure; the graph then closes whatever
   * was opened.
   */
  open(bs: BlockDriverState, opts: OptionReader, ctx: OpenContext): Co<void>;
  /**
   * Releases the node (after the graph drained and flushed it): write back metadata, store
   * persistent bitmaps, close host files. Children are detached by the graph afterwards, so
   * `bs.file` is still usable here. Also called after a failed `open` once `bs.opaque` is set,
   * so it must cope with a half-opened node.
   */
  close?(bs: BlockDriverState): Co<void>;

  preadv(bs: BlockDriverState, offset: number, bytes: number, buf: Uint8Array, flags: number): Co<number>;
  pwritev(bs: BlockDriverState, offset: number, bytes: number, buf: Uint8Array, flags: number): Co<number>;
  /** Optional; -ENOTSUP (or absence) makes the generic layer write a zeroed buffer unless NO_FALLBACK. */
  pwriteZeroes?(bs: BlockDriverState, offset: number, bytes: number, flags: number): Co<number>;
  /** Optional; -ENOTSUP (or absence) makes discard a successful no-op, as in QEMU. */
  pdiscard?(bs: BlockDriverState, offset: number, bytes: number): Co<number>;
  /** flush_to_disk. The generic layer then flushes children the node writes to. */
  flush?(bs: BlockDriverState): Co<number>;
  /** flush_to_os (qcow2 writes back its caches here). */
  flushToOs?(bs: BlockDriverState): Co<number>;
  /**
   * bdrv_co_block_status for [offset, offset+bytes) (inside the node, bytes > 0): returns the
   * BlockStatus flags of the first extent and sets `out.pnum` (1..bytes) to its length; with
   * OFFSET_VALID also `out.map`/`out.file`. With `wantZero` false a driver may answer faster and
   * less precisely (DATA for everything allocated). Absent: everything is DATA|ALLOCATED (and
   * OFFSET_VALID into itself for protocol drivers).
   */
  blockStatus?(bs: BlockDriverState, wantZero: boolean, offset: number, bytes: number, out: BlockStatusOut): Co<number>;
  /** Resizes to `offset` bytes. `exact` false allows a larger result. */
  truncate?(bs: BlockDriverState, offset: number, exact: boolean, prealloc: PreallocMode, flags: number, errp: Errp | undefined): Co<number>;
  /** Current length in bytes (bdrv_getlength); absent: `bs.totalBytes`. Negative errno on error. */
  getLength?(bs: BlockDriverState): number;
  getInfo?(bs: BlockDriverState): BlockDriverInfo | null;
  /** The `format-specific` data of query-block / `qemu-img info` (already in QAPI key spelling). */
  getSpecificInfo?(bs: BlockDriverState): Readonly<Record<string, unknown>> | null;
  /** Bytes the node occupies on the host (qemu-img info's `actual-size`), or -ENOTSUP. */
  getAllocatedFileSize?(bs: BlockDriverState): number;
  /**
   * The permissions `bs` takes on `child` (and shares with others), given what `bs`'s own
   * parents take (`parentPerm`) and share (`parentShared`). `child` is null while the child is
   * being attached. Use the helpers in `perms.ts` (filter/storage/cow defaults).
   */
  childPerms(bs: BlockDriverState, child: BdrvChild | null, role: number, parentPerm: number, parentShared: number): ChildPerms;
  /** Sets `bs.requestAlignment` etc. after open; the defaults come from the primary child. */
  refreshLimits?(bs: BlockDriverState): void;
  /** blkdebug's hook: an event raised by a parent format driver (BLKDBG_EVENT). */
  debugEvent?(bs: BlockDriverState, event: BlkdebugEvent): void;
  /** Called on the first drained-begin of the node / the last drained-end. */
  drainBegin?(bs: BlockDriverState): void;
  drainEnd?(bs: BlockDriverState): void;
  /**
   * Switches the node between read-only and read-write (bdrv_reopen of `read-only`), e.g. the
   * file driver reopens its host file; null on success, else why not. Absent: nothing to do.
   */
  reopenReadOnly?(bs: BlockDriverState, readOnly: boolean): BlockError | null;
  /** Persistent bitmaps: null if the node can store a new bitmap `name`, else why not. */
  canStoreNewDirtyBitmap?(bs: BlockDriverState, name: string, granularity: number): Co<BlockError | null>;
  /** Persistent bitmaps: removes `name` from the image; null on success. */
  removePersistentDirtyBitmap?(bs: BlockDriverState, name: string): Co<BlockError | null>;
  /**
   * bdrv_change_backing_file: rewrites the backing file name and format recorded in the image
   * (`file` null: no backing file), as stream and commit do when they change the chain. 0 or a
   * negative errno. Absent: the format cannot record a backing file (-ENOTSUP).
   */
  changeBackingFile?(bs: BlockDriverState, file: string | null, format: string | null): Co<number>;
}
