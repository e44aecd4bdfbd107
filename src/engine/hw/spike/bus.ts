import { assert } from '../../assert.js';
import { type GuestMemory, MemTx, type MmioOps, type RamBlock } from '../../memory.js';
import type { ImageSink } from '../loader/elf.js';

interface MmioRegion {
  readonly name: string;
  readonly base: number;
  readonly sizeBytes: number;
  readonly ops: MmioOps;
}

const PAGE = 4096;

/**
 * A small physical address space for the spike machine: RAM blocks plus MMIO regions. MMIO wins
 * over RAM, and a RAM page that an MMIO region overlaps is never handed out for direct access, so
 * the CPU's TLB never bypasses a device (HTIF overlays RAM at tohost).
 */
export class SpikeBus implements GuestMemory, ImageSink {
  private readonly rams: RamBlock[] = [];
  private readonly mmios: MmioRegion[] = [];

  addRam(block: RamBlock): void {
    this.rams.push(block);
  }

  addMmio(name: string, base: number, sizeBytes: number, ops: MmioOps): void {
    assert(sizeBytes > 0, 'empty MMIO region');
    this.mmios.push({ name, base, sizeBytes, ops });
  }

  private mmioAt(addr: number): MmioRegion | undefined {
    for (const r of this.mmios) if (addr >= r.base && addr < r.base + r.sizeBytes) return r;
    return undefined;
  }

  private rawRamAt(addr: number): RamBlock | undefined {
    for (const b of this.rams) if (addr >= b.base && addr < b.base + b.sizeBytes) return b;
    return undefined;
  }

  ramAt(addr: number): RamBlock | undefined {
    const page = addr - (addr % PAGE);
    for (const r of this.mmios) if (r.base < page + PAGE && r.base + r.sizeBytes > page) return undefined;
    return this.rawRamAt(addr);
  }

  load(addr: number, size: 1 | 2 | 4): { value: number; status: MemTx } {
    const r = this.mmioAt(addr);
    if (r !== undefined) return { value: r.ops.read(addr - r.base, size) >>> 0, status: MemTx.Ok };
    const b = this.rawRamAt(addr);
    if (b === undefined || addr + size > b.base + b.sizeBytes) return { value: 0, status: MemTx.DecodeError };
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = v * 256 + b.bytes[addr - b.base + i]!;
    return { value: v, status: MemTx.Ok };
  }

  store(addr: number, size: 1 | 2 | 4, value: number): MemTx {
    const r = this.mmioAt(addr);
    if (r !== undefined) {
      r.ops.write(addr - r.base, size, value >>> 0);
      return MemTx.Ok;
    }
    const b = this.rawRamAt(addr);
    if (b === undefined || addr + size > b.base + b.sizeBytes) return MemTx.DecodeError;
    if (b.readonly) return MemTx.Ok;
    for (let i = 0; i < size; i++) b.bytes[addr - b.base + i] = (value >>> (8 * i)) & 0xff;
    b.onWrite?.(addr - b.base, size);
    return MemTx.Ok;
  }

  load64(addr: number): { value: bigint; status: MemTx } {
    const r = this.mmioAt(addr);
    if (r !== undefined && r.ops.read64 !== undefined) return { value: r.ops.read64(addr - r.base), status: MemTx.Ok };
    const lo = this.load(addr, 4);
    const hi = this.load(addr + 4, 4);
    const status = lo.status !== MemTx.Ok ? lo.status : hi.status;
    return { value: status === MemTx.Ok ? (BigInt(hi.value) << 32n) | BigInt(lo.value) : 0n, status };
  }

  store64(addr: number, value: bigint): MemTx {
    const r = this.mmioAt(addr);
    if (r !== undefined && r.ops.write64 !== undefined) {
      r.ops.write64(addr - r.base, BigInt.asUintN(64, value));
      return MemTx.Ok;
    }
    const a = this.store(addr, 4, Number(value & 0xffffffffn));
    if (a !== MemTx.Ok) return a;
    return this.store(addr + 4, 4, Number((value >> 32n) & 0xffffffffn));
  }

  writeImage(addr: number, data: Uint8Array, zeroFillBytes: number): boolean {
    const b = this.rawRamAt(addr);
    const total = data.length + zeroFillBytes;
    if (b === undefined || addr + total > b.base + b.sizeBytes) return false;
    b.bytes.set(data, addr - b.base);
    b.bytes.fill(0, addr - b.base + data.length, addr - b.base + total);
    return true;
  }
}
