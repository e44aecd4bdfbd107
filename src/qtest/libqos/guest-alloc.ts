/**
 * A bump allocator over a range of guest RAM (libqos's guest_alloc, without free): test code
 * takes buffers for rings and requests from it. Bounded by the range it was given.
 */
export class GuestAllocator {
  private next: number;

  constructor(
    readonly start: number,
    readonly end: number,
  ) {
    if (!(Number.isSafeInteger(start) && Number.isSafeInteger(end) && start < end)) throw new RangeError(`bad allocator range [0x${start.toString(16)}, 0x${end.toString(16)})`);
    this.next = start;
  }

  /** `size` bytes aligned to `align` (a power of two). */
  alloc(size: number, align = 16): number {
    if (!(align > 0 && (align & (align - 1)) === 0)) throw new RangeError(`alignment ${align} is not a power of two`);
    const addr = Math.ceil(this.next / align) * align;
    if (addr + size > this.end) throw new RangeError(`guest allocator out of memory (${size} bytes wanted, 0x${(this.end - addr).toString(16)} left)`);
    this.next = addr + size;
    return addr;
  }
}
