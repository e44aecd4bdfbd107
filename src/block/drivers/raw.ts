import type { Co } from '../../engine/coroutine.js';
import type { BlockDriver, BlockDriverInfo, BlockStatusOut, OpenContext, PreallocMode } from '../driver.js';
import { BlkPerm, BlockStatus, ChildRole } from '../driver.js';
import { Errno } from '../errno.js';
import { BlockError, type Errp, setErr } from '../error.js';
import { bdrvCoPdiscard, bdrvCoPreadv, bdrvCoPwriteZeroes, bdrvCoPwritev, bdrvCoTruncate, bdrvDebugEvent } from '../io.js';
import type { BlockDriverState } from '../node.js';
import type { OptionReader } from '../options.js';
import { defaultChildPerms } from '../perms.js';

interface RawState {
  readonly offset: number;
  /** Fixed size, or -1 for "the rest of the file". */
  readonly size: number;
}

function state(bs: BlockDriverState): RawState {
  return bs.opaque as RawState;
}

/**
 * raw_adjust_offset: moves a request by the offset and keeps it inside the window; out of range
 * is -ENOSPC for writes, -EINVAL for reads (nothing leaks outside the window).
 */
function adjust(bs: BlockDriverState, offset: number, bytes: number, isWrite: boolean): number {
  const s = state(bs);
  if (s.size >= 0 && (offset > s.size || bytes > s.size - offset)) return isWrite ? -Errno.ENOSPC : -Errno.EINVAL;
  return offset + s.offset;
}

/**
 * `raw`: the raw format, optionally a window (`offset`, `size`) of its file. Without a window it
 * is a pass-through (the file child is FILTERED); with one, the file may not be resized by others.
 */
export const rawDriver: BlockDriver = {
  formatName: 'raw',
  isFormat: true,
  supportedWriteFlags: 0x7ff,
  supportedZeroFlags: 0x7ff,

  *open(bs: BlockDriverState, opts: OptionReader, ctx: OpenContext): Co<void> {
    const offset = opts.size('offset', 0);
    const size = opts.size('size', undefined);
    const role = offset === 0 && size === undefined ? ChildRole.FILTERED | ChildRole.PRIMARY : ChildRole.DATA | ChildRole.PRIMARY;
    const file = yield* ctx.openChild(bs, opts, 'file', role, { required: true });
    const realSize = file!.bs.getLength();
    if (realSize < 0) throw BlockError.withErrno('Could not get image size', -realSize);
    if (offset > realSize) throw new BlockError(`Offset (${offset}) cannot be greater than size of the containing file (${realSize})`);
    if (size !== undefined && realSize - offset < size) {
      throw new BlockError(`The sum of offset (${offset}) and size (${size}) has to be smaller or equal to the  actual size of the containing file (${realSize})`);
    }
    if (size !== undefined && size % 512 !== 0) throw new BlockError('Specified size is not multiple of 512');
    bs.opaque = { offset, size: size ?? -1 } satisfies RawState;
    bs.totalBytes = size ?? realSize - offset;
  },

  getLength(bs: BlockDriverState): number {
    const s = state(bs);
    if (s.size >= 0) return s.size;
    const file = bs.file;
    if (file === null) return -Errno.ENOMEDIUM;
    const len = file.bs.getLength();
    return len < 0 ? len : Math.max(0, len - s.offset);
  },

  *preadv(bs: BlockDriverState, offset: number, bytes: number, buf: Uint8Array, flags: number): Co<number> {
    const at = adjust(bs, offset, bytes, false);
    if (at < 0) return at;
    bdrvDebugEvent(bs.file, 'read_aio');
    return yield* bdrvCoPreadv(bs.file!, at, bytes, buf, flags);
  },

  *pwritev(bs: BlockDriverState, offset: number, bytes: number, buf: Uint8Array, flags: number): Co<number> {
    const at = adjust(bs, offset, bytes, true);
    if (at < 0) return at;
    bdrvDebugEvent(bs.file, 'write_aio');
    return yield* bdrvCoPwritev(bs.file!, at, bytes, buf, flags);
  },

  *pwriteZeroes(bs: BlockDriverState, offset: number, bytes: number, flags: number): Co<number> {
    const at = adjust(bs, offset, bytes, true);
    if (at < 0) return at;
    return yield* bdrvCoPwriteZeroes(bs.file!, at, bytes, flags);
  },

  *pdiscard(bs: BlockDriverState, offset: number, bytes: number): Co<number> {
    const at = adjust(bs, offset, bytes, true);
    if (at < 0) return at;
    return yield* bdrvCoPdiscard(bs.file!, at, bytes);
  },

  *blockStatus(bs: BlockDriverState, _wantZero: boolean, offset: number, bytes: number, out: BlockStatusOut): Co<number> {
    out.pnum = bytes;
    out.file = bs.file!.bs;
    out.map = offset + state(bs).offset;
    return BlockStatus.RAW | BlockStatus.OFFSET_VALID;
  },

  *truncate(bs: BlockDriverState, offset: number, exact: boolean, prealloc: PreallocMode, flags: number, errp: Errp | undefined): Co<number> {
    const s = state(bs);
    if (s.size >= 0) return setErr(errp, -Errno.ENOTSUP, 'Cannot resize fixed-size raw disks');
    const ret = yield* bdrvCoTruncate(bs.file!, offset + s.offset, exact, prealloc, flags, errp);
    if (ret >= 0) bs.totalBytes = offset;
    return ret;
  },

  getInfo(bs: BlockDriverState): BlockDriverInfo | null {
    const below = bs.file?.bs;
    return below?.drv.getInfo?.(below) ?? { clusterSize: 0, isDirty: false };
  },

  getAllocatedFileSize(bs: BlockDriverState): number {
    const below = bs.file?.bs;
    if (below === undefined) return -Errno.ENOMEDIUM;
    return below.drv.getAllocatedFileSize?.(below) ?? -Errno.ENOTSUP;
  },

  childPerms(bs, _child, role, parentPerm, parentShared) {
    const perms = defaultChildPerms(bs, role, parentPerm, parentShared);
    if (bs.opaque !== null && (state(bs).offset !== 0 || state(bs).size >= 0)) return { perm: perms.perm, shared: perms.shared & ~BlkPerm.RESIZE };
    return perms;
  },
};
