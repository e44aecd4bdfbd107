import { closeSync, fdatasyncSync, fstatSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { type Co, YIELD, sleep } from '../../engine/coroutine.js';
import type { BlockDriver, OpenContext, PreallocMode } from '../driver.js';
import { BdrvReq } from '../driver.js';
import { Errno, errnoFromHostError } from '../errno.js';
import { BlockError, type Errp, setErr } from '../error.js';
import type { BlockDriverState } from '../node.js';
import type { OptionReader } from '../options.js';
import { filterDefaultPerms } from '../perms.js';

/** Modelled completion latency of a host file request (an SSD-like 20 µs), before choices. */
export const FILE_BASE_LATENCY_NS = 20_000;
/**
 * Multipliers of the base latency a completion may take: the `io-latency` choice point picks one,
 * so the explore policy reorders completions of concurrent requests. Option 0 is QEMU's "natural"
 * order (every request equally fast: completion in submission order).
 */
export const FILE_LATENCY_FACTORS: readonly number[] = [1, 2, 5, 13];

interface FileState {
  fd: number;
  readonly filename: string;
  readonly noFlush: boolean;
}

function state(bs: BlockDriverState): FileState {
  return bs.opaque as FileState;
}

/** Sleeps a modelled latency chosen by the scheduler (completion order is a scheduler decision). */
export function* ioLatency(bs: BlockDriverState, baseNs: number): Co<void> {
  // Under the natural (fifo) policy the answer is always 0: skip the choice point, as the kernel's
  // ready queue does, so long runs do not fill the recorded-choices log.
  const loop = bs.loop;
  if (loop.frozen) {
    // -accel qtest freezes our clocks, but QEMU's host I/O still completes (only the virtual
    // clock stops): complete in a later loop iteration without time passing.
    yield YIELD;
    return;
  }
  const pick = loop.chooser.isFifo ? 0 : loop.choose('io-latency', FILE_LATENCY_FACTORS.length);
  yield sleep(baseNs * FILE_LATENCY_FACTORS[pick]!);
}

function hostCall(fn: () => void): number {
  try {
    fn();
    return 0;
  } catch (error) {
    return -errnoFromHostError(error);
  }
}

/**
 * `file`: a host file (file-posix). I/O is synchronous `node:fs` at submission, followed by a
 * modelled latency in virtual time; `aio` (threads|native|io_uring) and `locking` are accepted
 * and do not change behaviour. Reads past the end of the file return zeroes; writes past it grow
 * it; zero writes past the end extend the file (ftruncate), elsewhere the generic layer writes a
 * zeroed buffer; discard is a hint the host file cannot act on (-ENOTSUP = no-op).
 */
export const fileDriver: BlockDriver = {
  formatName: 'file',
  protocolName: 'file',
  supportedWriteFlags: BdrvReq.FUA,
  supportedZeroFlags: BdrvReq.MAY_UNMAP | BdrvReq.NO_FALLBACK,

  *open(bs: BlockDriverState, opts: OptionReader, _ctx: OpenContext): Co<void> {
    const filename = opts.str('filename', true);
    const aio = opts.enumOf('aio', ['threads', 'native', 'io_uring'] as const, 'threads');
    opts.enumOf('locking', ['auto', 'on', 'off'] as const, 'auto');
    opts.int('aio-max-batch', 0, 0);
    opts.bool('drop-cache', true);
    opts.bool('x-check-cache-dropped', false);
    opts.str('pr-manager');
    const cache = opts.options['cache'] as Readonly<Record<string, unknown>> | undefined;
    const noFlush = cache?.['no-flush'] === true || cache?.['no-flush'] === 'on';
    // O_DIRECT needs sector-aligned requests: model it with the usual 512-byte alignment (QEMU
    // probes the device; the generic layer then does read-modify-write).
    const direct = cache?.['direct'] === true || cache?.['direct'] === 'on';
    if (aio === 'native' && !direct) throw new BlockError('aio=native was specified, but it requires cache.direct=on, which was not specified.');
    let fd = -1;
    try {
      fd = openSync(filename, bs.readOnly ? 'r' : 'r+');
    } catch (error) {
      throw BlockError.withErrno(`Could not open '${filename}'`, errnoFromHostError(error));
    }
    let size: number;
    try {
      const st = fstatSync(fd);
      if (st.isDirectory()) throw new BlockError(`Could not open '${filename}': Is a directory`, 'GenericError', Errno.EISDIR);
      size = st.size;
    } catch (error) {
      closeSync(fd);
      if (error instanceof BlockError) throw error;
      throw BlockError.withErrno(`Could not stat '${filename}'`, errnoFromHostError(error));
    }
    bs.opaque = { fd, filename, noFlush } satisfies FileState;
    bs.totalBytes = size;
    if (direct) bs.requestAlignment = 512;
    bs.filename = filename;
  },

  reopenReadOnly(bs: BlockDriverState, readOnly: boolean): BlockError | null {
    const s = state(bs);
    let fd: number;
    try {
      fd = openSync(s.filename, readOnly ? 'r' : 'r+');
    } catch (error) {
      return BlockError.withErrno(`Could not reopen file`, errnoFromHostError(error));
    }
    hostCall(() => closeSync(s.fd));
    s.fd = fd;
    return null;
  },

  *close(bs: BlockDriverState): Co<void> {
    const s = state(bs);
    if (s.fd >= 0) hostCall(() => closeSync(s.fd));
    s.fd = -1;
  },

  *preadv(bs: BlockDriverState, offset: number, bytes: number, buf: Uint8Array): Co<number> {
    const s = state(bs);
    let done = 0;
    const ret = hostCall(() => {
      for (let guard = 0; done < bytes && guard < 1 << 20; guard++) {
        const n = readSync(s.fd, buf, done, bytes - done, offset + done);
        if (n === 0) break;
        done += n;
      }
    });
    if (ret >= 0 && done < bytes) buf.fill(0, done);
    yield* ioLatency(bs, FILE_BASE_LATENCY_NS);
    return ret;
  },

  *pwritev(bs: BlockDriverState, offset: number, bytes: number, buf: Uint8Array, flags: number): Co<number> {
    const s = state(bs);
    let ret = hostCall(() => {
      let done = 0;
      for (let guard = 0; done < bytes && guard < 1 << 20; guard++) done += writeSync(s.fd, buf, done, bytes - done, offset + done);
    });
    if (ret >= 0 && (flags & BdrvReq.FUA) !== 0 && !s.noFlush) ret = hostCall(() => fdatasyncSync(s.fd));
    yield* ioLatency(bs, FILE_BASE_LATENCY_NS);
    return ret;
  },

  *pwriteZeroes(bs: BlockDriverState, offset: number, bytes: number): Co<number> {
    const s = state(bs);
    let size = 0;
    const statRet = hostCall(() => {
      size = fstatSync(s.fd).size;
    });
    if (statRet < 0) return statRet;
    // Only the part past the end of the file can be zeroed without writing data (ftruncate).
    if (offset < size) return -Errno.ENOTSUP;
    const ret = hostCall(() => ftruncateSync(s.fd, offset + bytes));
    yield* ioLatency(bs, FILE_BASE_LATENCY_NS);
    return ret;
  },

  *pdiscard(): Co<number> {
    return -Errno.ENOTSUP;
  },

  *flush(bs: BlockDriverState): Co<number> {
    const s = state(bs);
    if (s.noFlush) return 0;
    const ret = hostCall(() => fdatasyncSync(s.fd));
    yield* ioLatency(bs, FILE_BASE_LATENCY_NS);
    return ret;
  },

  *truncate(bs: BlockDriverState, offset: number, _exact: boolean, prealloc: PreallocMode, _flags: number, errp: Errp | undefined): Co<number> {
    const s = state(bs);
    const oldSize = bs.totalBytes;
    let ret = hostCall(() => ftruncateSync(s.fd, offset));
    if (ret < 0) return setErr(errp, ret, `Failed to resize file to ${offset} bytes`);
    if (prealloc === 'full' && offset > oldSize) {
      // Allocate by writing zeroes, in bounded chunks.
      const chunk = new Uint8Array(Math.min(offset - oldSize, 1 << 20));
      ret = hostCall(() => {
        for (let at = oldSize; at < offset; ) {
          const n = Math.min(chunk.length, offset - at);
          writeSync(s.fd, chunk, 0, n, at);
          at += n;
        }
      });
      if (ret < 0) return setErr(errp, ret, 'Could not write zeros for preallocation');
    }
    bs.totalBytes = offset;
    yield* ioLatency(bs, FILE_BASE_LATENCY_NS);
    return 0;
  },

  getInfo() {
    return { clusterSize: 0, isDirty: false };
  },

  getAllocatedFileSize(bs: BlockDriverState): number {
    const s = state(bs);
    try {
      return fstatSync(s.fd).blocks * 512;
    } catch (error) {
      return -errnoFromHostError(error);
    }
  },

  childPerms(_bs, _child, _role, parentPerm, parentShared) {
    return filterDefaultPerms(parentPerm, parentShared);
  },
};
