import { type Co, YIELD, sleep } from '../../engine/coroutine.js';
import type { BlockDriver, BlockStatusOut, OpenContext } from '../driver.js';
import { BlockStatus } from '../driver.js';
import type { BlockDriverState } from '../node.js';
import type { OptionReader } from '../options.js';
import { filterDefaultPerms } from '../perms.js';

/** null-co/null-aio default size: 1 GiB (BDRV_SECTOR_SIZE << 21). */
export const NULL_DEFAULT_SIZE = 1 << 30;

interface NullState {
  readonly size: number;
  readonly latencyNs: number;
  readonly readZeroes: boolean;
  /** null-aio completes in a bottom half (after a yield) even with zero latency. */
  readonly aio: boolean;
}

function state(bs: BlockDriverState): NullState {
  return bs.opaque as NullState;
}

function* complete(bs: BlockDriverState): Co<void> {
  const s = state(bs);
  // latency-ns sleeps on QEMU's realtime clock, which keeps running under -accel qtest; our
  // frozen clocks stop, so complete in a later iteration without time passing then.
  if (s.latencyNs > 0 && !bs.loop.frozen) yield sleep(s.latencyNs);
  else if (s.aio || s.latencyNs > 0) yield YIELD;
}

function makeNullDriver(name: 'null-co' | 'null-aio'): BlockDriver {
  return {
    formatName: name,
    protocolName: name,
    supportedZeroFlags: 0x7ff,

    *open(bs: BlockDriverState, opts: OptionReader, _ctx: OpenContext): Co<void> {
      const filename = opts.str('filename');
      const size = opts.size('size', NULL_DEFAULT_SIZE);
      const latencyNs = opts.int('latency-ns', 0, 0);
      const readZeroes = opts.bool('read-zeroes', false);
      bs.opaque = { size, latencyNs, readZeroes, aio: name === 'null-aio' } satisfies NullState;
      bs.totalBytes = size;
      bs.filename = filename ?? `${name}://`;
    },

    getLength(bs: BlockDriverState): number {
      return state(bs).size;
    },

    *preadv(bs: BlockDriverState, _offset: number, _bytes: number, buf: Uint8Array): Co<number> {
      // Without read-zeroes the buffer is left as it was, as QEMU does (fast, not meaningful).
      if (state(bs).readZeroes) buf.fill(0);
      yield* complete(bs);
      return 0;
    },

    *pwritev(bs: BlockDriverState): Co<number> {
      yield* complete(bs);
      return 0;
    },

    *pwriteZeroes(bs: BlockDriverState): Co<number> {
      yield* complete(bs);
      return 0;
    },

    *flush(bs: BlockDriverState): Co<number> {
      yield* complete(bs);
      return 0;
    },

    *blockStatus(bs: BlockDriverState, _wantZero: boolean, offset: number, bytes: number, out: BlockStatusOut): Co<number> {
      out.pnum = bytes;
      out.map = offset;
      out.file = bs;
      return BlockStatus.OFFSET_VALID | (state(bs).readZeroes ? BlockStatus.ZERO : 0);
    },

    getAllocatedFileSize(): number {
      return 0;
    },

    childPerms(_bs, _child, _role, parentPerm, parentShared) {
      return filterDefaultPerms(parentPerm, parentShared);
    },
  };
}

/** `null-co`: a device of `size` bytes that discards writes; completes synchronously (no latency). */
export const nullCoDriver: BlockDriver = makeNullDriver('null-co');
/** `null-aio`: the same, completing asynchronously (in a later loop iteration). */
export const nullAioDriver: BlockDriver = makeNullDriver('null-aio');
