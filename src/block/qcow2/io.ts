import { assert } from '../../engine/assert.js';
import type { Co } from '../../engine/coroutine.js';
import type { BlkdebugEvent } from '../blkdebug-events.js';

/**
 * What the qcow2 engine needs from its `file` child: byte-addressed coroutine I/O. Reads past the
 * end of the file return zeroes (as the file protocol driver does); writes past it extend it.
 * Any BlockDriverState child can be adapted to this (see `bdrv-io.ts`).
 */
export interface ByteIO {
  readonly name: string;
  /** Current length in bytes. */
  length(): Co<number>;
  pread(offset: number, buf: Uint8Array): Co<void>;
  pwrite(offset: number, data: Uint8Array): Co<void>;
  truncate(lengthBytes: number): Co<void>;
  flush(): Co<void>;
  /** BLKDBG_EVENT on the file child (a blkdebug node below reacts); absent: nothing listens. */
  debugEvent?(event: BlkdebugEvent): void;
}

/** Largest file we accept: offsets stay exact JS integers. */
export const MAX_FILE_BYTES = 2 ** 53 - 1;

/** A growable in-memory file: the test double for a host file (a real part, not a mock). */
export class MemoryByteIO implements ByteIO {
  private data: Uint8Array;
  private used: number;
  writes = 0;

  constructor(
    readonly name: string,
    initial?: Uint8Array,
    /** Bytes to reserve up front (benchmarks: avoids measuring the growth copies). */
    capacityBytes = 4096,
  ) {
    this.data = initial ? new Uint8Array(initial) : new Uint8Array(Math.max(4096, capacityBytes));
    this.used = initial ? initial.length : 0;
  }

  get bytes(): Uint8Array {
    return this.data.subarray(0, this.used);
  }

  get lengthBytes(): number {
    return this.used;
  }

  *length(): Co<number> {
    return this.used;
  }

  *pread(offset: number, buf: Uint8Array): Co<void> {
    assert(Number.isSafeInteger(offset) && offset >= 0, 'bad read offset');
    buf.fill(0);
    if (offset < this.used) buf.set(this.data.subarray(offset, Math.min(this.used, offset + buf.length)));
  }

  *pwrite(offset: number, data: Uint8Array): Co<void> {
    assert(Number.isSafeInteger(offset) && offset >= 0, 'bad write offset');
    this.writes++;
    const end = offset + data.length;
    this.reserve(end);
    this.data.set(data, offset);
    if (end > this.used) this.used = end;
  }

  *truncate(lengthBytes: number): Co<void> {
    this.reserve(lengthBytes);
    if (lengthBytes < this.used) this.data.fill(0, lengthBytes, this.used);
    this.used = lengthBytes;
  }

  *flush(): Co<void> {}

  private reserve(end: number): void {
    if (end <= this.data.length) return;
    let cap = this.data.length;
    while (cap < end) cap *= 2;
    const grown = new Uint8Array(cap);
    grown.set(this.data.subarray(0, this.used));
    this.data = grown;
  }
}
