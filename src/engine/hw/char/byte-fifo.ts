import { assert } from '../../assert.js';

/** A bounded byte FIFO (QEMU's Fifo8). Pushing into a full FIFO or popping an empty one is a bug. */
export class ByteFifo {
  private readonly data: Uint8Array;
  private head = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    assert(Number.isSafeInteger(capacity) && capacity > 0, `bad FIFO capacity ${capacity}`);
    this.data = new Uint8Array(capacity);
  }

  get length(): number {
    return this.count;
  }

  get empty(): boolean {
    return this.count === 0;
  }

  get full(): boolean {
    return this.count === this.capacity;
  }

  reset(): void {
    this.head = 0;
    this.count = 0;
  }

  push(byte: number): void {
    assert(this.count < this.capacity, 'push into a full FIFO');
    this.data[(this.head + this.count) % this.capacity] = byte & 0xff;
    this.count++;
  }

  pop(): number {
    assert(this.count > 0, 'pop from an empty FIFO');
    const byte = this.data[this.head]!;
    this.head = (this.head + 1) % this.capacity;
    this.count--;
    return byte;
  }

  /** Snapshot restore: the FIFO holds exactly `bytes`, oldest first (where the head sat is not state). */
  restore(bytes: readonly number[]): void {
    assert(bytes.length <= this.capacity, () => `${bytes.length} bytes do not fit a FIFO of ${this.capacity}`);
    this.head = 0;
    this.count = 0;
    for (const byte of bytes) {
      assert(Number.isInteger(byte) && byte >= 0 && byte <= 0xff, () => `bad FIFO byte ${byte}`);
      this.push(byte);
    }
  }

  contents(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.count; i++) out.push(this.data[(this.head + i) % this.capacity]!);
    return out;
  }
}
