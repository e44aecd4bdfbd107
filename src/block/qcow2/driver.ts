/**
 * The `qcow2` BlockDriver: the metadata engine (qcow2.ts) on a `file` child, with a `backing`
 * child (from the options, or opened from the image header's backing file and format), and
 * persistent dirty bitmaps loaded into the node's BdrvDirtyBitmaps at open and stored at close.
 * Importing this module registers the driver.
 */
import { realpathSync } from 'node:fs';
import { closeSync, openSync, readSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import type { Co } from '../../engine/coroutine.js';
import { BdrvReq, BlockStatus, ChildRole, type BlockDriver, type BlockDriverInfo, type BlockStatusOut, type OpenContext, type PreallocMode } from '../driver.js';
import { bdrvCreateDirtyBitmap } from '../dirty-bitmap.js';
import { Errno } from '../errno.js';
import { BlockError, setErr, type Errp } from '../error.js';
import type { BlkdebugEvent } from '../blkdebug-events.js';
import { bdrvCoFlush, bdrvCoPreadv, bdrvCoPwritev, bdrvCoTruncate, bdrvDebugEvent } from '../io.js';
import type { BdrvChild, BlockDriverState } from '../node.js';
import type { OptionReader } from '../options.js';
import { defaultChildPerms } from '../perms.js';
import { registerDriver } from '../registry.js';
import { BME_FLAG_AUTO, BME_FLAG_IN_USE, loadBitmaps, storeBitmaps, validateNewBitmap, type PersistentBitmap } from './bitmaps.js';
import { checkQcow2 } from './check.js';
import { ImageError } from './errors.js';
import { QCOW2_MAGIC, be32 } from './format.js';
import type { ByteIO } from './io.js';
import { ClusterType, Qcow2Image } from './qcow2.js';

declare module '../../engine/trace.js' {
  interface TraceEventMap {
    'qcow2.message': { node: string; line: string };
  }
}

/** Deepest backing chain the driver opens (each level is one nested open). */
export const MAX_BACKING_DEPTH = 64;

interface Qcow2State {
  readonly img: Qcow2Image;
  /** format-specific bitmaps list, captured at open and after changes. */
  bitmapInfo: { flags: string[]; name: string; granularity: number }[];
}

function state(bs: BlockDriverState): Qcow2State {
  return bs.opaque as Qcow2State;
}

function errnoOf(e: unknown): number {
  if (e instanceof ImageError) return Errno[e.errno];
  throw e;
}

/** A child edge as the engine's ByteIO: negative errnos become ImageErrors. */
class ChildIO implements ByteIO {
  constructor(private readonly child: BdrvChild) {}

  get name(): string {
    return this.child.bs.filename;
  }

  *length(): Co<number> {
    const n = this.child.bs.getLength();
    if (n < 0) throw new ImageError('EIO', 'Could not get the image file size');
    return n;
  }

  *pread(offset: number, buf: Uint8Array): Co<void> {
    const r = yield* bdrvCoPreadv(this.child, offset, buf.length, buf, 0);
    if (r < 0) throw errnoError(r);
  }

  *pwrite(offset: number, data: Uint8Array): Co<void> {
    const r = yield* bdrvCoPwritev(this.child, offset, data.length, data, 0);
    if (r < 0) throw errnoError(r);
  }

  *truncate(lengthBytes: number): Co<void> {
    const r = yield* bdrvCoTruncate(this.child, lengthBytes, true, 'off', 0);
    if (r < 0) throw errnoError(r);
  }

  *flush(): Co<void> {
    const r = yield* bdrvCoFlush(this.child);
    if (r < 0) throw errnoError(r);
  }

  debugEvent(event: BlkdebugEvent): void {
    bdrvDebugEvent(this.child, event);
  }
}

const ERRNO_NAMES = new Map<number, ImageError['errno']>(
  (['EIO', 'EINVAL', 'ENOTSUP', 'EFBIG', 'ENOSPC', 'ENOENT', 'EROFS', 'EPERM', 'ENOMEDIUM', 'EEXIST', 'EACCES'] as const).map((n) => [Errno[n], n]),
);

function errnoError(negative: number): ImageError {
  return new ImageError(ERRNO_NAMES.get(-negative) ?? 'EIO');
}

/**
 * Files whose open is in progress, per coroutine: a backing chain opens nested inside one
 * coroutine (yield*), so a file seen twice there is a loop; concurrent opens elsewhere do not mix.
 */
const opening = new WeakMap<object, string[]>();

function canonical(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

function resolveBacking(imageFile: string, backing: string): string {
  if (isAbsolute(backing) || backing.includes(':') || imageFile === '') return backing;
  return join(dirname(imageFile), backing);
}

/** Probes a host file's format when the image names none (qcow2 magic, else raw). */
function probeHostFormat(path: string): string {
  let fd = -1;
  try {
    fd = openSync(path, 'r');
    const head = new Uint8Array(4);
    readSync(fd, head, 0, 4, 0);
    return be32(head, 0) === QCOW2_MAGIC ? 'qcow2' : 'raw';
  } catch {
    return 'raw';
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

function bitmapInfoOf(list: readonly PersistentBitmap[]): Qcow2State['bitmapInfo'] {
  return list.map((b) => {
    const flags: string[] = [];
    if ((b.flags & BME_FLAG_IN_USE) !== 0) flags.push('in-use');
    if ((b.flags & BME_FLAG_AUTO) !== 0) flags.push('auto');
    return { flags, name: b.name, granularity: b.granularity };
  });
}

/** The node's persistent bitmaps as the image stores them. */
function persistentFromNode(bs: BlockDriverState, inUse: boolean, exclude: string | null): PersistentBitmap[] {
  const out: PersistentBitmap[] = [];
  for (const b of bs.dirtyBitmaps) {
    if (!b.persistent || b.skipStore || b.name === null || b.name === exclude) continue;
    const s = b.serialize();
    // An inconsistent bitmap keeps its in-use flag: only removing it clears that state.
    const flags = (b.enabled || b.frozen || (b.inconsistent && !b.disabled) ? BME_FLAG_AUTO : 0) | (inUse || b.inconsistent ? BME_FLAG_IN_USE : 0);
    out.push({ name: b.name, granularity: b.granularity, flags, bits: s.bits, extraData: new Uint8Array(0) });
  }
  return out;
}

function* openBacking(bs: BlockDriverState, opts: OptionReader, ctx: OpenContext, img: Qcow2Image): Co<void> {
  if (opts.has('backing')) {
    yield* ctx.openChild(bs, opts, 'backing', ChildRole.COW);
    return;
  }
  const name = img.header.backingFile;
  if (name === null) return;
  const path = resolveBacking(bs.file?.bs.filename ?? '', name);
  const format = img.header.backingFormat ?? probeHostFormat(path);
  let backingBs: BlockDriverState;
  try {
    backingBs = yield* ctx.graph.coBlockdevAdd({ driver: format, 'read-only': true, file: { driver: 'file', filename: path, 'read-only': true } }, { monitorOwned: false, driverMessage: 'legacy' });
  } catch (e) {
    if (e instanceof BlockError) throw e.prepend('Could not open backing file: ');
    throw e;
  }
  ctx.graph.attachChild(bs, backingBs, 'backing', ChildRole.COW);
}

/** Loads the image's bitmaps into the node (read/write: marked in use until close). */
function* loadIntoNode(bs: BlockDriverState, img: Qcow2Image): Co<PersistentBitmap[]> {
  const list = yield* loadBitmaps(img);
  for (const p of list) {
    const b = bdrvCreateDirtyBitmap(bs, p.granularity, p.name);
    b.persistent = true;
    b.disabled = (p.flags & BME_FLAG_AUTO) === 0;
    b.inconsistent = (p.flags & BME_FLAG_IN_USE) !== 0;
    b.readonly = img.readOnly;
    b.deserialize(p.bits);
  }
  if (!img.readOnly && list.length > 0) {
    const marked = list.map((p) => ({ ...p, flags: p.flags | BME_FLAG_IN_USE }));
    yield* img.withLock(() => storeBitmaps(img, marked));
  }
  return list;
}

export const qcow2Driver: BlockDriver = {
  formatName: 'qcow2',
  isFormat: true,
  supportsBacking: true,
  supportedWriteFlags: BdrvReq.WRITE_COMPRESSED,
  supportedZeroFlags: BdrvReq.MAY_UNMAP,

  changeBackingFile(bs: BlockDriverState, file: string | null, format: string | null): Co<number> {
    return qcow2ChangeBackingFile(bs, file, format);
  },

  *open(bs: BlockDriverState, opts: OptionReader, ctx: OpenContext): Co<void> {
    const file = yield* ctx.openChild(bs, opts, 'file', ChildRole.IMAGE | ChildRole.PRIMARY, { required: true });
    const key = canonical(file!.bs.filename);
    const owner: object = bs.loop.current ?? bs.graph;
    let stack = opening.get(owner);
    if (stack === undefined) {
      stack = [];
      opening.set(owner, stack);
    }
    if (stack.includes(key)) throw new BlockError(`Backing file '${file!.bs.filename}' creates an infinite loop.`);
    if (stack.length >= MAX_BACKING_DEPTH) throw new BlockError(`Backing chain is deeper than ${MAX_BACKING_DEPTH} images`);
    stack.push(key);
    try {
      let img: Qcow2Image;
      try {
        img = yield* Qcow2Image.open(new ChildIO(file!), {
          readOnly: bs.readOnly,
          onMessage: (line) => bs.loop.trace.emit('qcow2.message', { node: bs.nodeName, line }),
          repairDirty: function* (image) {
            yield* checkQcow2(image, { leaks: true, errors: true });
          },
        });
      } catch (e) {
        if (e instanceof ImageError) throw new BlockError(e.message, 'GenericError', Errno[e.errno]);
        throw e;
      }
      const st: Qcow2State = { img, bitmapInfo: [] };
      bs.opaque = st;
      bs.totalBytes = img.sizeBytes;
      yield* openBacking(bs, opts, ctx, img);
      img.backing = {
        get sizeBytes(): number {
          const b = bs.backing;
          return b === null ? 0 : Math.max(0, b.bs.getLength());
        },
        read: function* (offset: number, buf: Uint8Array): Co<void> {
          const r = yield* bdrvCoPreadv(bs.backing!, offset, buf.length, buf, 0);
          if (r < 0) throw errnoError(r);
        },
      };
      try {
        st.bitmapInfo = bitmapInfoOf(yield* loadIntoNode(bs, img));
      } catch (e) {
        if (e instanceof ImageError) throw new BlockError(`Could not load bitmaps: ${e.message}`);
        throw e;
      }
    } finally {
      stack.splice(stack.lastIndexOf(key), 1);
      if (stack.length === 0) opening.delete(owner);
    }
  },

  *close(bs: BlockDriverState): Co<void> {
    const st = bs.opaque as Qcow2State | null;
    if (st === null) return;
    const img = st.img;
    try {
      if (!img.readOnly && (img.header.bitmaps !== null || bs.dirtyBitmaps.some((b) => b.persistent))) {
        const list = persistentFromNode(bs, false, null);
        yield* img.withLock(() => storeBitmaps(img, list));
      }
      yield* img.close();
    } catch (e) {
      if (!(e instanceof ImageError)) throw e;
    }
  },

  *preadv(bs: BlockDriverState, offset: number, _bytes: number, buf: Uint8Array): Co<number> {
    try {
      yield* state(bs).img.read(offset, buf);
      return 0;
    } catch (e) {
      return -errnoOf(e);
    }
  },

  *pwritev(bs: BlockDriverState, offset: number, _bytes: number, buf: Uint8Array, flags: number): Co<number> {
    try {
      if ((flags & BdrvReq.WRITE_COMPRESSED) !== 0) yield* state(bs).img.writeCompressed(offset, buf);
      else yield* state(bs).img.write(offset, buf);
      return 0;
    } catch (e) {
      return -errnoOf(e);
    }
  },

  *pwriteZeroes(bs: BlockDriverState, offset: number, bytes: number, flags: number): Co<number> {
    try {
      yield* state(bs).img.writeZeroes(offset, bytes, (flags & BdrvReq.MAY_UNMAP) !== 0);
      return 0;
    } catch (e) {
      return -errnoOf(e);
    }
  },

  *pdiscard(bs: BlockDriverState, offset: number, bytes: number): Co<number> {
    try {
      yield* state(bs).img.discard(offset, bytes);
      return 0;
    } catch (e) {
      return -errnoOf(e);
    }
  },

  *flush(bs: BlockDriverState): Co<number> {
    try {
      yield* state(bs).img.flush();
      return 0;
    } catch (e) {
      return -errnoOf(e);
    }
  },

  *blockStatus(bs: BlockDriverState, _wantZero: boolean, offset: number, bytes: number, out: BlockStatusOut): Co<number> {
    let e;
    try {
      e = yield* state(bs).img.blockStatus(offset, bytes);
    } catch (err) {
      return -errnoOf(err);
    }
    out.pnum = e.bytes;
    switch (e.type) {
      case ClusterType.Unallocated:
        return 0;
      case ClusterType.ZeroPlain:
        return BlockStatus.ZERO | BlockStatus.ALLOCATED;
      case ClusterType.ZeroAlloc:
        out.map = e.hostOffset!;
        out.file = bs.file!.bs;
        return BlockStatus.ZERO | BlockStatus.ALLOCATED | BlockStatus.OFFSET_VALID;
      case ClusterType.Normal:
        out.map = e.hostOffset!;
        out.file = bs.file!.bs;
        return BlockStatus.DATA | BlockStatus.ALLOCATED | BlockStatus.OFFSET_VALID;
      case ClusterType.Compressed:
        return BlockStatus.DATA | BlockStatus.ALLOCATED;
    }
  },

  *truncate(bs: BlockDriverState, offset: number, _exact: boolean, prealloc: PreallocMode, _flags: number, errp: Errp | undefined): Co<number> {
    if (prealloc !== 'off') return setErr(errp, -Errno.ENOTSUP, `Unsupported preallocation mode '${prealloc}'`);
    const img = state(bs).img;
    try {
      yield* img.truncate(offset, true);
    } catch (e) {
      if (e instanceof ImageError) return setErr(errp, -Errno[e.errno], e.message);
      throw e;
    }
    bs.totalBytes = img.sizeBytes;
    return 0;
  },

  getInfo(bs: BlockDriverState): BlockDriverInfo | null {
    const img = state(bs).img;
    return { clusterSize: img.cs, isDirty: img.dirty };
  },

  getSpecificInfo(bs: BlockDriverState): Readonly<Record<string, unknown>> | null {
    const st = state(bs);
    const img = st.img;
    if (img.version < 3) return { type: 'qcow2', data: { compat: '0.10', 'compression-type': 'zlib', 'refcount-bits': img.refcountBits } };
    const data: Record<string, unknown> = { compat: '1.1', 'compression-type': 'zlib', 'lazy-refcounts': img.lazyRefcounts };
    if (st.bitmapInfo.length > 0) data['bitmaps'] = st.bitmapInfo;
    data['refcount-bits'] = img.refcountBits;
    data['corrupt'] = img.corrupt;
    data['extended-l2'] = false;
    return { type: 'qcow2', data };
  },

  getAllocatedFileSize(bs: BlockDriverState): number {
    const below = bs.file?.bs;
    if (below === undefined) return -Errno.ENOMEDIUM;
    return below.drv.getAllocatedFileSize?.(below) ?? -Errno.ENOTSUP;
  },

  reopenReadOnly(bs: BlockDriverState, readOnly: boolean): BlockError | null {
    // The graph reopens the file child first when going read-write (last when going read-only).
    const img = state(bs).img;
    const persistent = bs.dirtyBitmaps.filter((b) => b.persistent);
    if (readOnly && !img.readOnly && persistent.length > 0) {
      // qcow2_reopen_bitmaps_ro: the bitmaps are stored (not in use) before the image turns
      // read-only, since close will not write them any more.
      if (bs.loop.current !== null) return new BlockError('Cannot store persistent dirty bitmaps while reopening read-only from a coroutine');
      try {
        const list = persistentFromNode(bs, false, null);
        bs.loop.runCoroutine('qcow2-reopen-ro', img.withLock(() => storeBitmaps(img, list)));
      } catch (e) {
        if (e instanceof ImageError) return new BlockError(`Failed to store persistent dirty bitmaps: ${e.message}`);
        throw e;
      }
    }
    const refused = img.setReadOnly(readOnly);
    if (refused !== null) return new BlockError(refused.message, 'GenericError', Errno[refused.errno]);
    for (const b of persistent) b.readonly = readOnly;
    return null;
  },

  childPerms(bs, _child, role, parentPerm, parentShared) {
    return defaultChildPerms(bs, role, parentPerm, parentShared);
  },

  *canStoreNewDirtyBitmap(bs: BlockDriverState, name: string, granularity: number): Co<BlockError | null> {
    const img = state(bs).img;
    if (img.version < 3) return new BlockError('Cannot store dirty bitmaps in qcow2 v2 files');
    if (img.readOnly) return new BlockError('Cannot store bitmaps in a read-only image');
    const existing = persistentFromNode(bs, false, null);
    try {
      validateNewBitmap(existing, name, granularity);
    } catch (e) {
      if (e instanceof ImageError) return new BlockError(e.message);
      throw e;
    }
    return null;
  },

  *removePersistentDirtyBitmap(bs: BlockDriverState, name: string): Co<BlockError | null> {
    const st = state(bs);
    const img = st.img;
    try {
      const list = persistentFromNode(bs, true, name);
      yield* img.withLock(() => storeBitmaps(img, list));
      st.bitmapInfo = st.bitmapInfo.filter((b) => b.name !== name);
    } catch (e) {
      if (e instanceof ImageError) return new BlockError(`Failed to remove bitmap '${name}' from the image: ${e.message}`);
      throw e;
    }
    return null;
  },
};

/**
 * bdrv_change_backing_file for qcow2 nodes: rewrites the image header's backing file name and
 * format (what stream/commit do when they change the chain, so the image on disk names its new
 * backing file). `file` null removes the backing file. Returns 0 or a negative errno.
 */
export function* qcow2ChangeBackingFile(bs: BlockDriverState, file: string | null, format: string | null): Co<number> {
  if (bs.drv !== qcow2Driver || bs.opaque === null) return -Errno.ENOTSUP;
  try {
    yield* state(bs).img.setBacking(file, format);
    return 0;
  } catch (e) {
    return -errnoOf(e);
  }
}

registerDriver(qcow2Driver);
