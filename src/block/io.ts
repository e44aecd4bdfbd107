import { assert } from '../engine/assert.js';
import type { Co } from '../engine/coroutine.js';
import { CoQueue } from '../engine/sync.js';
import type { BlkdebugEvent } from './blkdebug-events.js';
import { BdrvReq, BlkPerm, BlockStatus, newBlockStatusOut, type PreallocMode } from './driver.js';
import { Errno } from './errno.js';
import { type Errp, setErr } from './error.js';
import { bdrvDirtyBitmapTruncate, bdrvHasReadonlyBitmaps, bdrvSetDirty } from './dirty-bitmap.js';
import type { BdrvChild, BlockDriverState, TrackedRequest, WriteHook, WriteRequestInfo } from './node.js';

declare module '../engine/trace.js' {
  interface TraceEventMap {
    'bdrv.req.done': { node: string; kind: string; offset: number; bytes: number; ret: number };
    'bdrv.drain': { node: string; begin: boolean; depth: number };
  }
}

/**
 * Largest offset+bytes a request may reach (BDRV_MAX_LENGTH): below 2^53 so every byte offset is
 * an exact JS number, aligned down to 1 MiB.
 */
export const BDRV_MAX_LENGTH = Math.floor(Number.MAX_SAFE_INTEGER / 2 ** 20) * 2 ** 20;
/** Largest single request (BDRV_REQUEST_MAX_BYTES). */
export const BDRV_REQUEST_MAX_BYTES = 2 ** 31 - 2 ** 16;
/** Bounce buffer for emulated zero writes (QEMU uses up to 16 MiB; less is plenty here). */
const ZERO_BOUNCE_BYTES = 1 << 20;

/** Where a request goes: a child edge (permissions are checked) or the node itself. */
export type IoTarget = BdrvChild | BlockDriverState;

function nodeOf(target: IoTarget): BlockDriverState {
  return 'drv' in target ? target : target.bs;
}

function childOf(target: IoTarget): BdrvChild | null {
  return 'drv' in target ? null : target;
}

function alignDown(n: number, align: number): number {
  return n - (n % align);
}

function alignUp(n: number, align: number): number {
  const rest = n % align;
  return rest === 0 ? n : n + align - rest;
}

/** bdrv_check_request: -EIO for negative or too large ranges, -EINVAL for non-integers. */
export function checkRequest(offset: number, bytes: number): number {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(bytes)) return -Errno.EINVAL;
  if (offset < 0 || bytes < 0) return -Errno.EIO;
  if (bytes > BDRV_MAX_LENGTH || offset > BDRV_MAX_LENGTH - bytes) return -Errno.EIO;
  return 0;
}

/** True when every byte of `buf` is zero (buffer_is_zero). */
export function isZeroBuffer(buf: Uint8Array): boolean {
  let i = 0;
  const n = buf.length;
  if ((buf.byteOffset & 3) === 0 && n >= 64) {
    const words = new Uint32Array(buf.buffer, buf.byteOffset, n >>> 2);
    for (let w = 0; w < words.length; w++) if (words[w] !== 0) return false;
    i = words.length << 2;
  }
  for (; i < n; i++) if (buf[i] !== 0) return false;
  return true;
}

// ---- in-flight tracking and serialisation --------------------------------------------------

function incInFlight(bs: BlockDriverState): void {
  bs.inFlight++;
}

function decInFlight(bs: BlockDriverState): void {
  assert(bs.inFlight > 0, () => `in-flight underflow on ${bs.nodeName}`);
  bs.inFlight--;
  if (bs.inFlight === 0) bs.graph.kickDrain();
}

/** Shared empty list: the common case (no hooks) allocates no copy per request. */
const NO_HOOKS: readonly WriteHook[] = [];

/** Bound on requests tracked per node: more means a leak, not a workload. */
const MAX_TRACKED_REQUESTS = 1 << 16;

function track(bs: BlockDriverState, offset: number, bytes: number, kind: TrackedRequest['kind']): TrackedRequest {
  assert(bs.trackedRequests.length < MAX_TRACKED_REQUESTS, 'too many tracked requests');
  const req: TrackedRequest = { seq: bs.requestSeq++, offset, bytes, overlapOffset: offset, overlapBytes: bytes, serialising: false, kind, done: false, waiters: null };
  bs.trackedRequests.push(req);
  return req;
}

function untrack(bs: BlockDriverState, req: TrackedRequest): void {
  const index = bs.trackedRequests.indexOf(req);
  assert(index >= 0, 'untrack of an unknown request');
  bs.trackedRequests.splice(index, 1);
  req.done = true;
  req.waiters?.restartAll();
}

/** Widens the request's overlap range to `align` and makes it serialising (RMW, CBW). */
function markSerialising(req: TrackedRequest, align: number): void {
  const start = alignDown(req.offset, align);
  const end = alignUp(req.offset + req.bytes, align);
  req.overlapOffset = Math.min(req.overlapOffset, start);
  req.overlapBytes = Math.max(req.overlapOffset + req.overlapBytes, end) - req.overlapOffset;
  req.serialising = true;
}

function overlaps(a: TrackedRequest, b: TrackedRequest): boolean {
  return a.overlapOffset < b.overlapOffset + b.overlapBytes && b.overlapOffset < a.overlapOffset + a.overlapBytes;
}

/**
 * bdrv_wait_serialising_requests: waits while an *older* overlapping request conflicts (one of the
 * two is serialising). Waiting only for older requests keeps the wait graph acyclic.
 */
function* waitSerialising(bs: BlockDriverState, req: TrackedRequest): Co<void> {
  for (let guard = 0; guard < MAX_TRACKED_REQUESTS * 4; guard++) {
    let conflict: TrackedRequest | undefined;
    for (const other of bs.trackedRequests) {
      if (other.seq >= req.seq) break;
      if (other.done || (!other.serialising && !req.serialising)) continue;
      if (overlaps(other, req)) {
        conflict = other;
        break;
      }
    }
    if (conflict === undefined) return;
    conflict.waiters ??= new CoQueue();
    yield* conflict.waiters.wait();
  }
  assert(false, 'serialising wait does not terminate');
}

function traceDone(bs: BlockDriverState, kind: string, offset: number, bytes: number, ret: number): void {
  bs.loop.trace.emit('bdrv.req.done', { node: bs.nodeName, kind, offset, bytes, ret });
}

// ---- debug events ----------------------------------------------------------------------------

/**
 * BLKDBG_EVENT: raises `event` on the node below `target` (format drivers pass `bs.file`); nodes
 * without a debugEvent hook pass it to their primary child, so a blkdebug node anywhere below
 * sees it. A null target (no child) is ignored.
 */
export function bdrvDebugEvent(target: IoTarget | null, event: BlkdebugEvent): void {
  if (target === null) return;
  let bs: BlockDriverState | null = nodeOf(target);
  for (let depth = 0; bs !== null && depth < 1024; depth++) {
    if (bs.drv.debugEvent !== undefined) {
      bs.drv.debugEvent(bs, event);
      return;
    }
    bs = bs.primaryChild?.bs ?? null;
  }
}

// ---- reads -----------------------------------------------------------------------------------

/** bdrv_aligned_preadv: an aligned read; the part past the end of the node reads as zeroes. */
function* alignedPreadv(bs: BlockDriverState, offset: number, bytes: number, buf: Uint8Array, flags: number): Co<number> {
  const total = bs.getLength();
  if (total < 0) return total;
  const maxBytes = alignUp(Math.max(0, total - offset), bs.requestAlignment);
  const maxTransfer = bs.maxTransferBytes > 0 ? bs.maxTransferBytes : Infinity;
  if (bytes <= maxBytes && bytes <= maxTransfer) return yield* bs.drv.preadv(bs, offset, bytes, buf, flags);
  let done = 0;
  for (let guard = 0; done < bytes; guard++) {
    assert(guard < 1 << 24, 'read split does not terminate');
    if (done >= maxBytes) {
      buf.fill(0, done);
      break;
    }
    const num = Math.min(bytes - done, maxBytes - done, maxTransfer);
    const ret = yield* bs.drv.preadv(bs, offset + done, num, buf.subarray(done, done + num), flags);
    if (ret < 0) return ret;
    done += num;
  }
  return 0;
}

/**
 * bdrv_co_preadv: reads `bytes` at `offset` into `buf` (exactly `bytes` long). Unaligned requests
 * are widened to the node's request alignment through a bounce buffer; reads past the end of
 * the node return zeroes (BlockBackend refuses them before). Returns 0 or a negative errno:
 * -ENOMEDIUM for a closed node, -EIO for a bad range, the driver's error otherwise.
 */
export function* bdrvCoPreadv(target: IoTarget, offset: number, bytes: number, buf: Uint8Array, flags = 0): Co<number> {
  const bs = nodeOf(target);
  if (bs.closed) return -Errno.ENOMEDIUM;
  const check = checkRequest(offset, bytes);
  if (check < 0) return check;
  assert(buf.length === bytes, () => `read buffer of ${buf.length} bytes for a ${bytes}-byte request`);
  if (bytes === 0) return 0;
  incInFlight(bs);
  const align = bs.requestAlignment;
  const start = alignDown(offset, align);
  const end = alignUp(offset + bytes, align);
  const req = track(bs, start, end - start, 'read');
  let ret: number;
  try {
    yield* waitSerialising(bs, req);
    if (start === offset && end === offset + bytes) {
      ret = yield* alignedPreadv(bs, offset, bytes, buf, flags);
    } else {
      const bounce = new Uint8Array(end - start);
      ret = yield* alignedPreadv(bs, start, end - start, bounce, flags);
      if (ret >= 0) buf.set(bounce.subarray(offset - start, offset - start + bytes));
    }
  } finally {
    untrack(bs, req);
    decInFlight(bs);
  }
  if (ret < 0) bs.stats.failedRdOperations++;
  else {
    bs.stats.rdOperations++;
    bs.stats.rdBytes += bytes;
  }
  traceDone(bs, 'read', offset, bytes, ret);
  return ret;
}

// ---- writes ----------------------------------------------------------------------------------

/** Sends a data write to the driver: splits by max transfer, emulates FUA with a flush. */
function* driverPwritev(bs: BlockDriverState, offset: number, bytes: number, buf: Uint8Array, flags: number): Co<number> {
  const supported = bs.drv.supportedWriteFlags ?? 0;
  const emulateFua = (flags & BdrvReq.FUA) !== 0 && (supported & BdrvReq.FUA) === 0;
  const driverFlags = flags & supported;
  const maxTransfer = bs.maxTransferBytes > 0 ? bs.maxTransferBytes : bytes;
  let ret = 0;
  for (let done = 0; done < bytes && ret >= 0; ) {
    const num = Math.min(bytes - done, maxTransfer);
    ret = yield* bs.drv.pwritev(bs, offset + done, num, buf.subarray(done, done + num), driverFlags);
    done += num;
  }
  if (ret >= 0 && emulateFua) ret = yield* bdrvCoFlush(bs);
  return ret;
}

/** bdrv_co_do_pwrite_zeroes: the driver's zero write, else a data write of a zeroed buffer. */
function* doPwriteZeroes(bs: BlockDriverState, offset: number, bytes: number, flags: number): Co<number> {
  const drv = bs.drv;
  let ret = -Errno.ENOTSUP;
  if (drv.pwriteZeroes !== undefined) {
    const supported = drv.supportedZeroFlags ?? 0;
    const emulateFua = (flags & BdrvReq.FUA) !== 0 && (supported & BdrvReq.FUA) === 0;
    ret = yield* drv.pwriteZeroes(bs, offset, bytes, flags & supported & ~BdrvReq.ZERO_WRITE);
    if (ret >= 0 && emulateFua) ret = yield* bdrvCoFlush(bs);
  }
  if (ret !== -Errno.ENOTSUP || (flags & BdrvReq.NO_FALLBACK) !== 0) return ret;
  const dataFlags = flags & ~(BdrvReq.ZERO_WRITE | BdrvReq.MAY_UNMAP | BdrvReq.NO_FALLBACK);
  const bounce = new Uint8Array(Math.min(bytes, ZERO_BOUNCE_BYTES));
  ret = 0;
  for (let done = 0; done < bytes && ret >= 0; ) {
    const num = Math.min(bytes - done, bounce.length);
    ret = yield* driverPwritev(bs, offset + done, num, bounce.subarray(0, num), dataFlags);
    done += num;
  }
  return ret;
}

/**
 * bdrv_aligned_pwritev + bdrv_co_write_req_prepare/finish: detect-zeroes, before-write hooks,
 * the driver call, then length growth, dirty bitmaps and after-write hooks.
 */
function* alignedPwritev(bs: BlockDriverState, offset: number, bytes: number, buf: Uint8Array | null, flags: number): Co<number> {
  if ((flags & BdrvReq.ZERO_WRITE) === 0 && bs.detectZeroes !== 'off' && buf !== null && isZeroBuffer(buf)) {
    flags |= BdrvReq.ZERO_WRITE;
    if (bs.detectZeroes === 'unmap' && bs.discardUnmap) flags |= BdrvReq.MAY_UNMAP;
  }
  const isZero = (flags & BdrvReq.ZERO_WRITE) !== 0;
  const info: WriteRequestInfo = { bs, offset, bytes, flags, kind: isZero ? 'zero' : 'write', buf: isZero ? null : buf };
  let ret = 0;
  for (const hook of bs.writeHooks.length === 0 ? NO_HOOKS : bs.writeHooks.slice()) {
    if (hook.before === undefined) continue;
    ret = yield* hook.before(info);
    if (ret < 0) break;
  }
  if (ret >= 0) {
    if (isZero) {
      bdrvDebugEvent(bs, 'pwritev_zero');
      ret = yield* doPwriteZeroes(bs, offset, bytes, flags);
    } else {
      assert(buf !== null, 'data write without a buffer');
      bdrvDebugEvent(bs, 'pwritev');
      ret = yield* driverPwritev(bs, offset, bytes, buf, flags);
    }
    bdrvDebugEvent(bs, 'pwritev_done');
  }
  const end = offset + bytes;
  bs.stats.wrHighestOffset = Math.max(bs.stats.wrHighestOffset, end);
  if (ret >= 0 && end > bs.totalBytes && bs.drv.getLength === undefined) {
    // A protocol node grows when written past its end (bdrv_co_write_req_finish).
    bs.totalBytes = end;
    bdrvDirtyBitmapTruncate(bs, end);
    for (const parent of bs.parents.slice()) parent.parent.resized?.(parent);
  }
  bdrvSetDirty(bs, offset, bytes);
  for (const hook of bs.writeHooks.length === 0 ? NO_HOOKS : bs.writeHooks.slice()) hook.after?.(info, ret);
  return ret;
}

/** Common checks of writes, zero writes, discards: 0 or a negative errno. */
function checkWritable(target: IoTarget, flags: number): number {
  const bs = nodeOf(target);
  if (bs.closed) return -Errno.ENOMEDIUM;
  if (bs.readOnly) return -Errno.EPERM;
  const child = childOf(target);
  if (child !== null) {
    const need = (flags & BdrvReq.WRITE_UNCHANGED) !== 0 ? BlkPerm.WRITE | BlkPerm.WRITE_UNCHANGED : BlkPerm.WRITE;
    if ((child.perm & need) === 0) return -Errno.EPERM;
  }
  if (bdrvHasReadonlyBitmaps(bs)) return -Errno.EPERM;
  return 0;
}

function* doWrite(target: IoTarget, offset: number, bytes: number, buf: Uint8Array | null, flags: number): Co<number> {
  const bs = nodeOf(target);
  const isZero = (flags & BdrvReq.ZERO_WRITE) !== 0;
  let ret = checkWritable(target, flags);
  if (ret < 0) return ret;
  ret = checkRequest(offset, bytes);
  if (ret < 0) return ret;
  if (buf !== null) assert(buf.length === bytes, () => `write buffer of ${buf.length} bytes for a ${bytes}-byte request`);
  if (bytes === 0) return 0;
  const kind = isZero ? 'zero' : 'write';
  incInFlight(bs);
  const align = bs.requestAlignment;
  const req = track(bs, offset, bytes, kind);
  if ((flags & BdrvReq.SERIALISING) !== 0) markSerialising(req, align);
  try {
    if (offset % align === 0 && bytes % align === 0) {
      yield* waitSerialising(bs, req);
      ret = yield* alignedPwritev(bs, offset, bytes, buf, flags);
    } else {
      // Read-modify-write of the partial head and tail blocks, serialised against overlapping
      // requests so no one sees or writes the blocks in between.
      markSerialising(req, align);
      yield* waitSerialising(bs, req);
      ret = yield* rmwPwritev(bs, offset, bytes, buf, flags);
    }
  } finally {
    untrack(bs, req);
    decInFlight(bs);
  }
  if (ret < 0) bs.stats.failedWrOperations++;
  else {
    bs.stats.wrOperations++;
    bs.stats.wrBytes += bytes;
  }
  traceDone(bs, kind, offset, bytes, ret);
  return ret;
}

function* rmwPwritev(bs: BlockDriverState, offset: number, bytes: number, buf: Uint8Array | null, flags: number): Co<number> {
  const align = bs.requestAlignment;
  const start = alignDown(offset, align);
  const end = alignUp(offset + bytes, align);
  const isZero = (flags & BdrvReq.ZERO_WRITE) !== 0;
  if (isZero) {
    // Zero writes: the partial head/tail blocks become data writes, the middle stays a zero write.
    const midStart = alignUp(offset, align);
    const midEnd = alignDown(offset + bytes, align);
    if (midStart < midEnd) {
      const head = offset < midStart ? yield* rmwPwritev(bs, offset, midStart - offset, new Uint8Array(midStart - offset), flags & ~BdrvReq.ZERO_WRITE) : 0;
      if (head < 0) return head;
      const mid = yield* alignedPwritev(bs, midStart, midEnd - midStart, null, flags);
      if (mid < 0) return mid;
      return offset + bytes > midEnd ? yield* rmwPwritev(bs, midEnd, offset + bytes - midEnd, new Uint8Array(offset + bytes - midEnd), flags & ~BdrvReq.ZERO_WRITE) : 0;
    }
    buf = new Uint8Array(bytes);
    flags &= ~(BdrvReq.ZERO_WRITE | BdrvReq.MAY_UNMAP);
  }
  assert(buf !== null, 'rmw without data');
  const bounce = new Uint8Array(end - start);
  if (offset !== start) {
    bdrvDebugEvent(bs, 'pwritev_rmw_head');
    const ret = yield* alignedPreadv(bs, start, align, bounce.subarray(0, align), 0);
    if (ret < 0) return ret;
    bdrvDebugEvent(bs, 'pwritev_rmw_after_head');
  }
  const tailStart = end - align;
  if (offset + bytes !== end && (tailStart > start || offset === start)) {
    bdrvDebugEvent(bs, 'pwritev_rmw_tail');
    const ret = yield* alignedPreadv(bs, tailStart, align, bounce.subarray(tailStart - start), 0);
    if (ret < 0) return ret;
    bdrvDebugEvent(bs, 'pwritev_rmw_after_tail');
  }
  bounce.set(buf, offset - start);
  return yield* alignedPwritev(bs, start, end - start, bounce, flags);
}

/**
 * bdrv_co_pwritev: writes `buf` (exactly `bytes` long) at `offset`. Refuses with -EPERM when the
 * node is read-only, the child edge lacks the WRITE permission (WRITE_UNCHANGED with that flag)
 * or a read-only bitmap exists; -EIO for a bad range; -ENOMEDIUM for a closed node. Unaligned
 * requests do read-modify-write; detect-zeroes may turn it into a zero write; hooks and dirty
 * bitmaps see it. Writes past the end of a protocol node grow it.
 */
export function* bdrvCoPwritev(target: IoTarget, offset: number, bytes: number, buf: Uint8Array, flags = 0): Co<number> {
  return yield* doWrite(target, offset, bytes, buf, flags & ~BdrvReq.ZERO_WRITE);
}

/**
 * bdrv_co_pwrite_zeroes: makes [offset, offset+bytes) read as zeroes. MAY_UNMAP lets the driver
 * deallocate, but only on nodes opened with discard=unmap. NO_FALLBACK returns -ENOTSUP rather
 * than writing a zeroed buffer.
 */
export function* bdrvCoPwriteZeroes(target: IoTarget, offset: number, bytes: number, flags = 0): Co<number> {
  const bs = nodeOf(target);
  if (!bs.discardUnmap) flags &= ~BdrvReq.MAY_UNMAP;
  return yield* doWrite(target, offset, bytes, null, flags | BdrvReq.ZERO_WRITE);
}

// ---- discard ---------------------------------------------------------------------------------

/**
 * bdrv_co_pdiscard: a hint that [offset, offset+bytes) is no longer needed. A no-op returning 0
 * unless the node was opened with discard=unmap and the driver discards; partial blocks at the
 * edges (below the discard alignment) are left alone; -ENOTSUP from the driver counts as success.
 */
export function* bdrvCoPdiscard(target: IoTarget, offset: number, bytes: number): Co<number> {
  const bs = nodeOf(target);
  let ret = checkWritable(target, 0);
  if (ret < 0) return ret;
  ret = checkRequest(offset, bytes);
  if (ret < 0) return ret;
  if (bytes === 0 || !bs.discardUnmap || bs.drv.pdiscard === undefined) return 0;
  incInFlight(bs);
  const req = track(bs, offset, bytes, 'discard');
  const info: WriteRequestInfo = { bs, offset, bytes, flags: 0, kind: 'discard' };
  try {
    yield* waitSerialising(bs, req);
    for (const hook of bs.writeHooks.length === 0 ? NO_HOOKS : bs.writeHooks.slice()) {
      if (hook.before === undefined) continue;
      ret = yield* hook.before(info);
      if (ret < 0) break;
    }
    if (ret >= 0) {
      const align = Math.max(bs.pdiscardAlignment, bs.requestAlignment);
      const total = bs.getLength();
      const start = alignUp(offset, align);
      // The tail block past the end of the node may be discarded whole.
      const end = offset + bytes >= total && total >= 0 ? offset + bytes : alignDown(offset + bytes, align);
      if (start < end) {
        ret = yield* bs.drv.pdiscard(bs, start, end - start);
        if (ret === -Errno.ENOTSUP) ret = 0;
      }
    }
    bdrvSetDirty(bs, offset, bytes);
    for (const hook of bs.writeHooks.length === 0 ? NO_HOOKS : bs.writeHooks.slice()) hook.after?.(info, ret);
  } finally {
    untrack(bs, req);
    decInFlight(bs);
  }
  if (ret >= 0) {
    bs.stats.unmapOperations++;
    bs.stats.unmapBytes += bytes;
  }
  traceDone(bs, 'discard', offset, bytes, ret);
  return ret;
}

// ---- flush -----------------------------------------------------------------------------------

/**
 * bdrv_co_flush: flush_to_os, flush_to_disk, then every child the node writes to. Raises the
 * flush_to_os/flush_to_disk debug events on the primary child. A no-op on read-only nodes.
 */
export function* bdrvCoFlush(target: IoTarget): Co<number> {
  const bs = nodeOf(target);
  if (bs.closed) return -Errno.ENOMEDIUM;
  if (bs.readOnly) return 0;
  incInFlight(bs);
  let ret = 0;
  try {
    const primary = bs.primaryChild;
    bdrvDebugEvent(primary, 'flush_to_os');
    if (bs.drv.flushToOs !== undefined) ret = yield* bs.drv.flushToOs(bs);
    if (ret >= 0) {
      bdrvDebugEvent(primary, 'flush_to_disk');
      if (bs.drv.flush !== undefined) ret = yield* bs.drv.flush(bs);
    }
    if (ret >= 0) {
      for (const child of bs.children.slice()) {
        if ((child.perm & (BlkPerm.WRITE | BlkPerm.WRITE_UNCHANGED)) === 0) continue;
        const childRet = yield* bdrvCoFlush(child);
        if (childRet < 0 && ret >= 0) ret = childRet;
      }
    }
  } finally {
    decInFlight(bs);
  }
  bs.stats.flushOperations++;
  traceDone(bs, 'flush', 0, 0, ret);
  return ret;
}

// ---- block status ----------------------------------------------------------------------------

/** bdrv_co_block_status's answer: `ret` is BlockStatus flags or a negative errno. */
export interface BlockStatusResult {
  ret: number;
  pnum: number;
  map: number;
  file: BlockDriverState | null;
}

/**
 * bdrv_co_block_status: the status of the first extent of [offset, offset+bytes) in this node
 * (RAW answers of filters are followed down). Past the end: `ret` EOF with pnum 0. ALLOCATED is
 * set for DATA or ZERO; unallocated parts of a format node without backing read as ZERO.
 */
export function* bdrvCoBlockStatus(target: IoTarget, wantZero: boolean, offset: number, bytes: number): Co<BlockStatusResult> {
  let bs = nodeOf(target);
  let depthOffset = offset;
  let remaining = bytes;
  // Iterative over RAW forwarding (filters, raw format): no recursion from graph depth.
  for (let depth = 0; depth < 1024; depth++) {
    const result = yield* blockStatusOne(bs, wantZero, depthOffset, remaining);
    if (result.ret < 0 || (result.ret & BlockStatus.RAW) === 0) return result;
    assert(result.file !== null, 'RAW block status without a file');
    bs = result.file;
    depthOffset = result.map;
    remaining = result.pnum;
  }
  return { ret: -Errno.ELOOP, pnum: 0, map: 0, file: null };
}

function* blockStatusOne(bs: BlockDriverState, wantZero: boolean, offset: number, bytes: number): Co<BlockStatusResult> {
  if (bs.closed) return { ret: -Errno.ENOMEDIUM, pnum: 0, map: 0, file: null };
  const total = bs.getLength();
  if (total < 0) return { ret: total, pnum: 0, map: 0, file: null };
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(bytes) || offset < 0 || bytes < 0) return { ret: -Errno.EINVAL, pnum: 0, map: 0, file: null };
  if (offset >= total) return { ret: BlockStatus.EOF, pnum: 0, map: 0, file: null };
  bytes = Math.min(bytes, total - offset);
  if (bytes === 0) return { ret: 0, pnum: 0, map: 0, file: null };
  const drv = bs.drv;
  if (drv.blockStatus === undefined) {
    let ret = BlockStatus.DATA | BlockStatus.ALLOCATED;
    if (offset + bytes === total) ret |= BlockStatus.EOF;
    if (drv.protocolName !== undefined) return { ret: ret | BlockStatus.OFFSET_VALID, pnum: bytes, map: offset, file: bs };
    return { ret, pnum: bytes, map: 0, file: null };
  }
  incInFlight(bs);
  try {
    const align = bs.requestAlignment;
    const start = alignDown(offset, align);
    const end = Math.min(alignUp(offset + bytes, align), alignUp(total, align));
    const out = newBlockStatusOut();
    let ret = yield* drv.blockStatus(bs, wantZero, start, end - start, out);
    if (ret < 0) return { ret, pnum: 0, map: 0, file: null };
    assert(out.pnum > 0 && out.pnum <= end - start, () => `driver ${drv.formatName} answered pnum ${out.pnum} for ${end - start} bytes`);
    let pnum = Math.min(out.pnum - (offset - start), bytes);
    if (pnum <= 0) pnum = Math.min(align, bytes);
    const map = out.map + (offset - start);
    const file = out.file;
    if ((ret & BlockStatus.RAW) !== 0) return { ret, pnum, map, file };
    if ((ret & (BlockStatus.DATA | BlockStatus.ZERO)) !== 0) {
      ret |= BlockStatus.ALLOCATED;
    } else if (drv.supportsBacking === true) {
      const backing = bs.backing?.bs ?? null;
      if (backing === null) ret |= BlockStatus.ZERO;
      else if (wantZero) {
        const size2 = backing.getLength();
        if (size2 >= 0 && offset >= size2) ret |= BlockStatus.ZERO;
      }
    }
    if (wantZero && (ret & BlockStatus.RECURSE) !== 0 && file !== null && file !== bs && (ret & BlockStatus.DATA) !== 0 && (ret & BlockStatus.ZERO) === 0 && (ret & BlockStatus.OFFSET_VALID) !== 0) {
      const below = yield* bdrvCoBlockStatus(file, wantZero, map, pnum);
      if (below.ret >= 0) {
        if ((below.ret & BlockStatus.EOF) !== 0 && (below.pnum === 0 || (below.ret & BlockStatus.ZERO) !== 0)) {
          ret |= BlockStatus.ZERO;
        } else {
          pnum = below.pnum;
          ret |= below.ret & BlockStatus.ZERO;
        }
      }
    }
    ret &= ~BlockStatus.RECURSE;
    if (offset + pnum === total) ret |= BlockStatus.EOF;
    return { ret, pnum, map, file };
  } finally {
    decInFlight(bs);
  }
}

/** The next layer down a chain: the backing file, or the filtered child of a filter. */
function cowOrFiltered(bs: BlockDriverState): BlockDriverState | null {
  if (bs.backing !== null) return bs.backing.bs;
  return bs.filteredChild?.bs ?? null;
}

/** Most layers a chain walk follows (backing chains are checked for loops at open). */
export const MAX_CHAIN_DEPTH = 1024;

/**
 * bdrv_co_block_status_above: the status of [offset, offset+bytes) looking down from `top` to
 * `base` (exclusive unless `includeBase`; null base = the whole chain). The first layer where the
 * extent is ALLOCATED answers; past the end of a shorter lower layer the data reads as zeroes
 * allocated there; when no layer has it, the last layer's answer (without ALLOCATED) is returned.
 * pnum shrinks to the smallest extent seen on the way.
 */
export function* bdrvCoBlockStatusAbove(top: BlockDriverState, base: BlockDriverState | null, includeBase: boolean, wantZero: boolean, offset: number, bytes: number): Co<BlockStatusResult> {
  let result = yield* bdrvCoBlockStatus(top, wantZero, offset, bytes);
  if (result.ret < 0 || result.pnum === 0 || (result.ret & BlockStatus.ALLOCATED) !== 0 || top === base) return result;
  const eof = (result.ret & BlockStatus.EOF) !== 0 ? offset + result.pnum : -1;
  let n = result.pnum;
  let layer = cowOrFiltered(top);
  for (let depth = 0; layer !== null && (includeBase || layer !== base); depth++) {
    if (depth >= MAX_CHAIN_DEPTH) return { ret: -Errno.ELOOP, pnum: 0, map: 0, file: null };
    result = yield* bdrvCoBlockStatus(layer, wantZero, offset, n);
    if (result.ret < 0) return result;
    if (result.pnum === 0) {
      // This layer is shorter: the zeroes past its end count as allocated here.
      result = { ret: BlockStatus.ZERO | BlockStatus.ALLOCATED, pnum: n, map: 0, file: layer };
      break;
    }
    if ((result.ret & BlockStatus.ALLOCATED) !== 0) {
      result = { ...result, ret: result.ret & ~BlockStatus.EOF };
      break;
    }
    if (layer === base) break;
    n = result.pnum;
    layer = cowOrFiltered(layer);
  }
  if (offset + result.pnum === eof) result = { ...result, ret: result.ret | BlockStatus.EOF };
  return result;
}

/** bdrv_is_allocated: `ret` 1 if allocated in `bs` itself, 0 if not, or a negative errno. */
export function* bdrvCoIsAllocated(target: IoTarget, offset: number, bytes: number): Co<{ ret: number; pnum: number }> {
  const result = yield* bdrvCoBlockStatus(target, false, offset, bytes);
  if (result.ret < 0) return { ret: result.ret, pnum: 0 };
  return { ret: (result.ret & BlockStatus.ALLOCATED) !== 0 ? 1 : 0, pnum: result.pnum };
}

/**
 * bdrv_is_allocated_above: 1 if allocated anywhere from `top` down to `base` (exclusive unless
 * `includeBase`), 0 if not, or a negative errno; pnum bytes share the answer.
 */
export function* bdrvCoIsAllocatedAbove(top: BlockDriverState, base: BlockDriverState | null, includeBase: boolean, offset: number, bytes: number): Co<{ ret: number; pnum: number }> {
  const result = yield* bdrvCoBlockStatusAbove(top, base, includeBase, false, offset, bytes);
  if (result.ret < 0) return { ret: result.ret, pnum: 0 };
  return { ret: (result.ret & BlockStatus.ALLOCATED) !== 0 ? 1 : 0, pnum: result.pnum };
}

// ---- truncate --------------------------------------------------------------------------------

/**
 * bdrv_co_truncate: resizes the node to `offset` bytes. Errors (also in `errp`): "Image size
 * cannot be negative" -EINVAL, "Image is read-only" -EACCES, -EPERM without the RESIZE permission
 * on the child, "Image format driver does not support resize" -ENOTSUP. Filters without a truncate
 * of their own pass it to the filtered child. Dirty bitmaps follow the new size; parents are told.
 */
export function* bdrvCoTruncate(target: IoTarget, offset: number, exact: boolean, prealloc: PreallocMode = 'off', flags = 0, errp?: Errp): Co<number> {
  const bs = nodeOf(target);
  if (bs.closed) return setErr(errp, -Errno.ENOMEDIUM, 'No medium inserted');
  if (!Number.isSafeInteger(offset) || offset < 0) return setErr(errp, -Errno.EINVAL, 'Image size cannot be negative');
  if (offset > BDRV_MAX_LENGTH) return setErr(errp, -Errno.EFBIG, 'Required too big image size, it must be not greater than ' + BDRV_MAX_LENGTH);
  if (bs.readOnly) return setErr(errp, -Errno.EACCES, 'Image is read-only');
  const child = childOf(target);
  if (child !== null && (child.perm & BlkPerm.RESIZE) === 0) return setErr(errp, -Errno.EPERM, `Permission 'resize' is not taken on node '${bs.nodeName}'`);
  const drv = bs.drv;
  const filtered = bs.filteredChild;
  if (drv.truncate === undefined && filtered === null) return setErr(errp, -Errno.ENOTSUP, 'Image format driver does not support resize');
  const oldSize = bs.getLength();
  if (oldSize < 0) return setErr(errp, oldSize, 'Failed to get old image size');
  incInFlight(bs);
  const req = track(bs, Math.min(oldSize, offset), BDRV_MAX_LENGTH - Math.min(oldSize, offset), 'truncate');
  markSerialising(req, 1);
  const info: WriteRequestInfo = { bs, offset: Math.min(oldSize, offset), bytes: Math.abs(offset - oldSize), flags, kind: 'truncate' };
  let ret = 0;
  try {
    yield* waitSerialising(bs, req);
    for (const hook of bs.writeHooks.length === 0 ? NO_HOOKS : bs.writeHooks.slice()) {
      if (hook.before === undefined) continue;
      ret = yield* hook.before(info);
      if (ret < 0) break;
    }
    if (ret >= 0) {
      if (drv.truncate !== undefined) ret = yield* drv.truncate(bs, offset, exact, prealloc, flags, errp);
      else ret = yield* bdrvCoTruncate(filtered!, offset, exact, prealloc, flags, errp);
      if (ret < 0) setErr(errp, ret, 'Could not resize image');
    }
    if (ret >= 0) {
      // Drivers with a truncate of their own set totalBytes; a pass-through filter follows its child.
      if (drv.getLength === undefined && (drv.truncate === undefined || bs.totalBytes === oldSize)) bs.totalBytes = offset;
      const newSize = bs.getLength();
      bdrvDirtyBitmapTruncate(bs, newSize >= 0 ? newSize : offset);
      for (const parent of bs.parents.slice()) parent.parent.resized?.(parent);
    }
    for (const hook of bs.writeHooks.length === 0 ? NO_HOOKS : bs.writeHooks.slice()) hook.after?.(info, ret);
  } finally {
    untrack(bs, req);
    decInFlight(bs);
  }
  return ret;
}

/** bdrv_getlength for callers outside coroutines. */
export function bdrvGetLength(target: IoTarget): number {
  const bs = nodeOf(target);
  if (bs.closed) return -Errno.ENOMEDIUM;
  return bs.getLength();
}

// ---- drain -----------------------------------------------------------------------------------

/** Nodes above `bs` (itself included), iteratively. */
function ancestors(bs: BlockDriverState): BlockDriverState[] {
  const out: BlockDriverState[] = [bs];
  const seen = new Set<BlockDriverState>(out);
  for (let i = 0; i < out.length; i++) {
    for (const parent of out[i]!.parents) {
      const node = parent.parentNode;
      if (node !== null && !seen.has(node)) {
        seen.add(node);
        out.push(node);
      }
    }
  }
  return out;
}

/** Nodes below `bs` (itself included), iteratively. */
function descendants(bs: BlockDriverState): BlockDriverState[] {
  const out: BlockDriverState[] = [bs];
  const seen = new Set<BlockDriverState>(out);
  for (let i = 0; i < out.length; i++) {
    for (const child of out[i]!.children) {
      if (!seen.has(child.bs)) {
        seen.add(child.bs);
        out.push(child.bs);
      }
    }
  }
  return out;
}

/**
 * bdrv_drain_poll: true while a request is in flight on `bs`, a node above or below it, or a
 * parent (BlockBackend, job) of a node above reports activity.
 */
export function bdrvIsBusy(bs: BlockDriverState): boolean {
  for (const node of descendants(bs)) if (node.inFlight > 0) return true;
  for (const node of ancestors(bs)) {
    if (node.inFlight > 0) return true;
    for (const parent of node.parents) {
      if (parent.parentNode === null && parent.parent.drainedPoll?.(parent) === true) return true;
    }
  }
  return false;
}

/**
 * What one drained section quiesced: the nodes above the drained node and the non-node parents
 * (BlockBackends, jobs) told to stop. Recorded at the begin so the matching end releases exactly
 * them even if the graph changed in between (a filter inserted inside the section).
 */
interface DrainSection {
  readonly nodes: BlockDriverState[];
  readonly parents: BdrvChild[];
}

const drainSections = new WeakMap<BlockDriverState, DrainSection[]>();

function quiesceBegin(bs: BlockDriverState): void {
  const nodes = ancestors(bs);
  const parents: BdrvChild[] = [];
  for (const node of nodes) {
    node.quiesceCounter++;
    if (node.quiesceCounter === 1) node.drv.drainBegin?.(node);
    for (const parent of node.parents) if (parent.parentNode === null) parents.push(parent);
  }
  for (const parent of parents) parent.parent.drainedBegin?.(parent);
  const stack = drainSections.get(bs) ?? [];
  assert(stack.length < 1 << 16, 'drained sections nest too deep');
  stack.push({ nodes, parents });
  drainSections.set(bs, stack);
  bs.loop.trace.emit('bdrv.drain', { node: bs.nodeName, begin: true, depth: stack.length });
}

function quiesceEnd(bs: BlockDriverState): void {
  const stack = drainSections.get(bs);
  const section = stack?.pop();
  assert(section !== undefined, () => `drained_end without drained_begin on ${bs.nodeName}`);
  for (const node of section.nodes) {
    assert(node.quiesceCounter > 0, () => `quiesce counter underflow on ${node.nodeName}`);
    node.quiesceCounter--;
    if (node.quiesceCounter === 0) node.drv.drainEnd?.(node);
  }
  for (const parent of section.parents) parent.parent.drainedEnd?.(parent);
  bs.loop.trace.emit('bdrv.drain', { node: bs.nodeName, begin: false, depth: stack!.length });
}

/**
 * bdrv_drained_begin, from outside any coroutine: quiesces `bs` and every node and parent above
 * it (BlockBackends queue new requests, jobs pause), then runs the main loop until nothing is in
 * flight around `bs` (under frozen time, moving the clock to each next deadline: I/O must end).
 * Sections nest; each begin needs one `bdrvDrainedEnd`.
 */
export function bdrvDrainedBegin(bs: BlockDriverState): void {
  assert(bs.loop.current === null, 'bdrvDrainedBegin inside a coroutine: use yield* bdrvCoDrainedBegin');
  quiesceBegin(bs);
  const loop = bs.loop;
  if (bdrvIsBusy(bs)) loop.runUntil(() => !bdrvIsBusy(bs));
  // Frozen time (-accel qtest): QEMU's drain still waits for host I/O to complete. Here I/O
  // completes on the clock, so move it to each next deadline until the node is idle.
  for (let guard = 0; loop.frozen && bdrvIsBusy(bs) && guard < 1 << 20; guard++) {
    const next = loop.nextDeadlineNs();
    if (next === Infinity) break;
    loop.step(Math.max(0, next - loop.nowNs));
  }
}

/**
 * bdrv_drained_begin inside a coroutine: waits until nothing is in flight around `bs`. The caller
 * must not have requests of its own in flight on these nodes (they would never finish).
 */
export function* bdrvCoDrainedBegin(bs: BlockDriverState): Co<void> {
  quiesceBegin(bs);
  for (let guard = 0; bdrvIsBusy(bs); guard++) {
    assert(guard < 1 << 24, 'drain does not terminate');
    yield* bs.graph.drainWaiters.wait();
  }
}

/** bdrv_drained_end: ends one drained section; the last one lets parents submit again. */
export function bdrvDrainedEnd(bs: BlockDriverState): void {
  quiesceEnd(bs);
}

/** bdrv_drain: a drained section with nothing in it. */
export function bdrvDrain(bs: BlockDriverState): void {
  bdrvDrainedBegin(bs);
  bdrvDrainedEnd(bs);
}
