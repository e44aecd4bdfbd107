import type { Co } from '../../engine/coroutine.js';
import type { BlockDriver, BlockStatusOut, OpenContext } from '../driver.js';
import { BlockStatus, ChildRole } from '../driver.js';
import { Errno } from '../errno.js';
import { bdrvCoPdiscard, bdrvCoPreadv, bdrvCoPwriteZeroes, bdrvCoPwritev } from '../io.js';
import type { BlockDriverState } from '../node.js';
import type { OptionReader } from '../options.js';
import { defaultChildPerms } from '../perms.js';
import { type ThrottleGroup, findThrottleGroup } from '../throttle-groups.js';

function group(bs: BlockDriverState): ThrottleGroup {
  return bs.opaque as ThrottleGroup;
}

/**
 * `throttle`: a filter over `file` whose requests pass through the leaky buckets of the
 * `throttle-group` object it names (rates in virtual time). Reads count against read/total
 * limits; writes, zero writes and discards against write/total ones.
 */
export const throttleDriver: BlockDriver = {
  formatName: 'throttle',
  isFilter: true,
  supportedWriteFlags: 0x7ff,
  supportedZeroFlags: 0x7ff,

  *open(bs: BlockDriverState, opts: OptionReader, ctx: OpenContext): Co<void> {
    const groupName = opts.str('throttle-group', true);
    const tg = findThrottleGroup(ctx.graph, groupName);
    const file = yield* ctx.openChild(bs, opts, 'file', ChildRole.FILTERED | ChildRole.PRIMARY, { required: true });
    tg.members++;
    bs.opaque = tg;
    bs.totalBytes = file!.bs.getLength();
  },

  *close(bs: BlockDriverState): Co<void> {
    group(bs).members--;
  },

  getLength(bs: BlockDriverState): number {
    return bs.file === null ? -Errno.ENOMEDIUM : bs.file.bs.getLength();
  },

  *preadv(bs: BlockDriverState, offset: number, bytes: number, buf: Uint8Array, flags: number): Co<number> {
    yield* group(bs).intercept(false, bytes);
    return yield* bdrvCoPreadv(bs.file!, offset, bytes, buf, flags);
  },

  *pwritev(bs: BlockDriverState, offset: number, bytes: number, buf: Uint8Array, flags: number): Co<number> {
    yield* group(bs).intercept(true, bytes);
    return yield* bdrvCoPwritev(bs.file!, offset, bytes, buf, flags);
  },

  *pwriteZeroes(bs: BlockDriverState, offset: number, bytes: number, flags: number): Co<number> {
    yield* group(bs).intercept(true, bytes);
    return yield* bdrvCoPwriteZeroes(bs.file!, offset, bytes, flags);
  },

  *pdiscard(bs: BlockDriverState, offset: number, bytes: number): Co<number> {
    yield* group(bs).intercept(true, bytes);
    return yield* bdrvCoPdiscard(bs.file!, offset, bytes);
  },

  *blockStatus(bs: BlockDriverState, _wantZero: boolean, offset: number, bytes: number, out: BlockStatusOut): Co<number> {
    out.pnum = bytes;
    out.map = offset;
    out.file = bs.file!.bs;
    return BlockStatus.RAW | BlockStatus.OFFSET_VALID;
  },

  // A node whose open failed (no group yet) is drained on its way out: nothing to do then.
  drainBegin(bs: BlockDriverState): void {
    if (bs.opaque !== null) group(bs).drainBegin();
  },

  drainEnd(bs: BlockDriverState): void {
    if (bs.opaque !== null) group(bs).drainEnd();
  },

  getInfo(bs: BlockDriverState) {
    const below = bs.file?.bs;
    return below?.drv.getInfo?.(below) ?? null;
  },

  childPerms(bs, _child, role, parentPerm, parentShared) {
    return defaultChildPerms(bs, role, parentPerm, parentShared);
  },
};
