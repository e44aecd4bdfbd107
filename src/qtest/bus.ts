import { type GuestMemory, MemTx } from '../engine/memory.js';

/** Addresses at or above this are never mapped (GuestMemory's contract): they read as 0. */
const MAPPABLE_LIMIT = 2n ** 53n;
const TWO_64 = 1n << 64n;

/**
 * The qtest server's view of guest memory: QEMU's `address_space_read/write` over a `GuestMemory`.
 * RAM is copied directly; anything else is accessed in the chunks QEMU's `memory_access_size`
 * picks (the largest power of two allowed by the remaining length, the address alignment and 4
 * bytes), so `read` of a device register block touches each register the way QEMU does.
 * Addresses are 64-bit bigints; the part of an access at or above 2^53 is unassigned.
 */
export class QtestBus {
  private readonly regions: readonly { readonly base: number; readonly sizeBytes: number }[] | null;

  constructor(private readonly memory: GuestMemory) {
    // An AddressSpace lists its regions: unassigned stretches can then be skipped in one step
    // instead of one 4-byte access at a time (a `memset` of 256 MiB of nothing stays cheap).
    const listed = (memory as { allRegions?: unknown }).allRegions;
    this.regions = Array.isArray(listed) ? (listed as { base: number; sizeBytes: number }[]) : null;
  }

  /** Bytes from `addr` up to the next mapped region (0 if `addr` is mapped or regions are unknown). */
  private unassignedRun(addr: number, limit: number): number {
    const regions = this.regions;
    if (regions === null) return 0;
    let next = Number.MAX_SAFE_INTEGER;
    for (const r of regions) {
      if (addr >= r.base && addr < r.base + r.sizeBytes) return 0;
      if (r.base > addr && r.base < next) next = r.base;
    }
    return Math.min(limit, next - addr);
  }

  /** True when every byte of [addr, addr+len) is RAM or ROM (accesses there may be unaligned). */
  isAllRam(addr: bigint, len: number): boolean {
    let done = 0;
    for (let guard = 0; guard < 64 && done < len; guard++) {
      const a = addr + BigInt(done);
      if (a >= MAPPABLE_LIMIT) return false;
      const block = this.memory.ramAt(Number(a));
      if (block === undefined) return false;
      done += block.base + block.sizeBytes - Number(a);
    }
    return done >= len;
  }

  /** True when [addr, addr+len) wraps past the top of the 64-bit address space. */
  static crossesTop(addr: bigint, len: number): boolean {
    return addr + BigInt(len) > TWO_64;
  }

  read(addr: bigint, out: Uint8Array): MemTx {
    let status: MemTx = MemTx.Ok;
    let done = 0;
    const len = out.length;
    while (done < len) {
      const big = addr + BigInt(done);
      if (big >= MAPPABLE_LIMIT) {
        out.fill(0, done);
        return MemTx.DecodeError;
      }
      const a = Number(big);
      const block = this.memory.ramAt(a);
      if (block !== undefined) {
        const offset = a - block.base;
        const n = Math.min(len - done, block.sizeBytes - offset);
        out.set(block.bytes.subarray(offset, offset + n), done);
        done += n;
        continue;
      }
      const gap = this.unassignedRun(a, len - done);
      if (gap > 0) {
        out.fill(0, done, done + gap);
        if (status === MemTx.Ok) status = MemTx.DecodeError;
        done += gap;
        continue;
      }
      const size = chunkSize(a, len - done);
      const r = this.memory.load(a, size);
      if (r.status !== MemTx.Ok && status === MemTx.Ok) status = r.status;
      for (let i = 0; i < size; i++) out[done + i] = (r.value >>> (8 * i)) & 0xff;
      done += size;
    }
    return status;
  }

  write(addr: bigint, data: Uint8Array): MemTx {
    let status: MemTx = MemTx.Ok;
    let done = 0;
    const len = data.length;
    while (done < len) {
      const big = addr + BigInt(done);
      if (big >= MAPPABLE_LIMIT) return MemTx.DecodeError;
      const a = Number(big);
      const block = this.memory.ramAt(a);
      if (block !== undefined) {
        const offset = a - block.base;
        const n = Math.min(len - done, block.sizeBytes - offset);
        // address_space_write ignores writes to ROM, as the bus does for the CPU.
        if (!block.readonly) {
          block.bytes.set(data.subarray(done, done + n), offset);
          block.onWrite?.(offset, n);
        }
        done += n;
        continue;
      }
      const gap = this.unassignedRun(a, len - done);
      if (gap > 0) {
        if (status === MemTx.Ok) status = MemTx.DecodeError;
        done += gap;
        continue;
      }
      const size = chunkSize(a, len - done);
      let v = 0;
      for (let i = size - 1; i >= 0; i--) v = v * 256 + data[done + i]!;
      const s = this.memory.store(a, size, v);
      if (s !== MemTx.Ok && status === MemTx.Ok) status = s;
      done += size;
    }
    return status;
  }

  /** memset: RAM is filled in place; other space gets the pattern in chunks of at most 64 KiB. */
  fill(addr: bigint, len: number, byte: number): void {
    let done = 0;
    let pattern: Uint8Array | null = null;
    while (done < len) {
      const big = addr + BigInt(done);
      if (big >= MAPPABLE_LIMIT) return;
      const a = Number(big);
      const block = this.memory.ramAt(a);
      if (block !== undefined) {
        const offset = a - block.base;
        const n = Math.min(len - done, block.sizeBytes - offset);
        if (!block.readonly) {
          block.bytes.fill(byte, offset, offset + n);
          block.onWrite?.(offset, n);
        }
        done += n;
        continue;
      }
      const gap = this.unassignedRun(a, len - done);
      if (gap > 0) {
        done += gap;
        continue;
      }
      pattern ??= new Uint8Array(1 << 16).fill(byte);
      const n = Math.min(len - done, pattern.length);
      this.write(big, pattern.subarray(0, n));
      done += n;
    }
  }

  /** One access of exactly `size` bytes (readb..readq) as a bigint, little-endian. */
  readValue(addr: bigint, size: 1 | 2 | 4 | 8): bigint {
    const buf = new Uint8Array(size);
    this.read(addr, buf);
    let v = 0n;
    for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(buf[i]!);
    return v;
  }

  writeValue(addr: bigint, size: 1 | 2 | 4 | 8, value: bigint): void {
    const buf = new Uint8Array(size);
    let v = value;
    for (let i = 0; i < size; i++) {
      buf[i] = Number(v & 0xffn);
      v >>= 8n;
    }
    this.write(addr, buf);
  }
}

/**
 * QEMU's memory_access_size for a region with default rules (valid.max_access_size 0 means 4):
 * the largest power of two allowed by the remaining length, the address alignment and 4 bytes.
 * An 8-byte `readq` of a device is therefore two 4-byte accesses, low word first, as in QEMU.
 */
function chunkSize(addr: number, remaining: number): 1 | 2 | 4 {
  const align = addr % 4 === 0 ? 4 : addr % 2 === 0 ? 2 : 1;
  let size = Math.min(align, remaining, 4);
  while ((size & (size - 1)) !== 0) size &= size - 1; // pow2floor
  return size as 1 | 2 | 4;
}
