import { assert } from '../assert.js';
import { type AccessSize, type GuestMemory, MemTx, type MmioOps, type RamBlock } from '../memory.js';
import type { Trace } from '../trace.js';

declare module '../trace.js' {
  interface TraceEventMap {
    /** A guest access nothing answered (QEMU's LOG_GUEST_ERROR "invalid access"). */
    'mem.unassigned': { addr: number; size: number; write: boolean };
    /** A guest access a device refused (bad size or alignment). */
    'mem.invalid-access': { region: string; offset: number; size: number; write: boolean };
    /** A write into ROM, ignored as QEMU does. */
    'mem.rom-write': { region: string; offset: number; size: number };
  }
}

/** First address that can never be mapped: every guest address below it is an exact JS number. */
export const ADDRESS_LIMIT = 2 ** 53;

/** How an MMIO region accepts accesses (QEMU's MemoryRegionOps.valid / .impl). */
export interface MmioAccessRules {
  /** Smallest access the guest may make (default 1). */
  readonly minAccess?: AccessSize;
  /** Largest access the guest may make (default 8). */
  readonly maxAccess?: AccessSize;
  /** Whether unaligned accesses are accepted (default false: they are a decode error, as in QEMU). */
  readonly unaligned?: boolean;
  /**
   * Smallest access size the device's handlers implement (default 1). Narrower guest accesses are
   * done as one access of this size and the bytes extracted (reads) or merged (writes: read-modify-write is not done;
   * QEMU writes the shifted value with the other bytes zero, and so do we).
   */
  readonly implMin?: AccessSize;
  /** Largest size the handlers implement (default 4; 8 when the ops have read64/write64). */
  readonly implMax?: AccessSize;
}

/** A region of the address space. */
export type Region = RamRegion | MmioRegion;

export interface RamRegion {
  readonly kind: 'ram';
  readonly name: string;
  readonly base: number;
  readonly sizeBytes: number;
  readonly block: RamBlock;
  readonly view: DataView;
}

export interface MmioRegion {
  readonly kind: 'mmio';
  readonly name: string;
  readonly base: number;
  readonly sizeBytes: number;
  readonly ops: MmioOps;
  readonly minAccess: AccessSize;
  readonly maxAccess: AccessSize;
  readonly unaligned: boolean;
  readonly implMin: AccessSize;
  readonly implMax: AccessSize;
}

/** A region that overlaps another or lies outside the addressable range: a machine-construction bug. */
export class RegionOverlapError extends Error {
  override readonly name = 'RegionOverlapError';
}

class SimpleRamBlock implements RamBlock {
  onWrite?: (offset: number, len: number) => void;
  constructor(
    readonly name: string,
    readonly base: number,
    readonly sizeBytes: number,
    readonly bytes: Uint8Array,
    readonly readonly: boolean,
  ) {}
}

/** The access size the device handles for a guest access of `size` bytes (≤ 4). */
function implSize(r: MmioRegion, size: 1 | 2 | 4): 1 | 2 | 4 {
  const hi = Math.min(r.implMax, 4);
  return Math.min(Math.max(size, Math.min(r.implMin, hi)), hi) as 1 | 2 | 4;
}

/**
 * The guest's physical address space (QEMU's system memory with a flat view): RAM and ROM blocks
 * the CPU may access directly, MMIO regions with access-size rules, and unassigned space that reads
 * as 0 and reports `DecodeError` plus a `mem.unassigned` trace event. Regions never overlap. No
 * guest address, however wild, causes a host exception.
 */
export class AddressSpace implements GuestMemory {
  private regions: Region[] = [];
  private lastHit: Region | undefined;

  constructor(private readonly trace: Trace | null = null) {}

  /** All regions, by base address. */
  get allRegions(): readonly Region[] {
    return this.regions;
  }

  /** Adds zero-filled RAM. */
  addRam(name: string, base: number, sizeBytes: number): RamBlock {
    return this.addBlock(name, base, new Uint8Array(sizeBytes), false);
  }

  /** Adds ROM holding `contents` (padded with zeros to `sizeBytes`). Guest writes are ignored. */
  addRom(name: string, base: number, sizeBytes: number, contents: Uint8Array = new Uint8Array(0)): RamBlock {
    assert(contents.length <= sizeBytes, `ROM '${name}' contents (${contents.length} bytes) exceed its size ${sizeBytes}`);
    const bytes = new Uint8Array(sizeBytes);
    bytes.set(contents);
    return this.addBlock(name, base, bytes, true);
  }

  private addBlock(name: string, base: number, bytes: Uint8Array, readonly: boolean): RamBlock {
    const block = new SimpleRamBlock(name, base, bytes.length, bytes, readonly);
    this.insert({ kind: 'ram', name, base, sizeBytes: bytes.length, block, view: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength) });
    return block;
  }

  /** Maps a device's registers at `base`. */
  addMmio(name: string, base: number, sizeBytes: number, ops: MmioOps, rules: MmioAccessRules = {}): MmioRegion {
    const has64 = ops.read64 !== undefined && ops.write64 !== undefined;
    const region: MmioRegion = {
      kind: 'mmio',
      name,
      base,
      sizeBytes,
      ops,
      minAccess: rules.minAccess ?? 1,
      maxAccess: rules.maxAccess ?? 8,
      unaligned: rules.unaligned ?? false,
      implMin: rules.implMin ?? 1,
      implMax: rules.implMax ?? (has64 ? 8 : 4),
    };
    assert(region.minAccess <= region.maxAccess && region.implMin <= region.implMax, `bad access rules for '${name}'`);
    assert(region.implMax < 8 || has64, `'${name}' implements 8-byte accesses without read64/write64`);
    this.insert(region);
    return region;
  }

  private insert(region: Region): void {
    const { base, sizeBytes, name } = region;
    if (!(Number.isSafeInteger(base) && base >= 0 && Number.isSafeInteger(sizeBytes) && sizeBytes > 0 && base + sizeBytes <= ADDRESS_LIMIT)) {
      throw new RegionOverlapError(`region '${name}' [${base}, +${sizeBytes}) is outside the address space`);
    }
    for (const other of this.regions) {
      if (base < other.base + other.sizeBytes && other.base < base + sizeBytes) {
        throw new RegionOverlapError(`region '${name}' at 0x${base.toString(16)} overlaps '${other.name}' at 0x${other.base.toString(16)}`);
      }
    }
    this.regions.push(region);
    this.regions.sort((a, b) => a.base - b.base);
    this.lastHit = undefined;
  }

  /** Looks up a region by name (qtest, tests). */
  region(name: string): Region | undefined {
    return this.regions.find((r) => r.name === name);
  }

  /** The region containing `addr`, or undefined. Binary search with a one-entry cache. */
  find(addr: number): Region | undefined {
    const hit = this.lastHit;
    if (hit !== undefined && addr >= hit.base && addr - hit.base < hit.sizeBytes) return hit;
    if (!(addr >= 0 && addr < ADDRESS_LIMIT)) return undefined;
    const regions = this.regions;
    let lo = 0;
    let hi = regions.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = regions[mid]!;
      if (addr < r.base) hi = mid - 1;
      else if (addr - r.base >= r.sizeBytes) lo = mid + 1;
      else {
        this.lastHit = r;
        return r;
      }
    }
    return undefined;
  }

  ramAt(addr: number): RamBlock | undefined {
    const r = this.find(addr);
    return r !== undefined && r.kind === 'ram' ? r.block : undefined;
  }

  load(addr: number, size: 1 | 2 | 4): { value: number; status: MemTx } {
    const r = this.find(addr);
    if (r === undefined) return { value: 0, status: this.unassigned(addr, size, false) };
    const offset = addr - r.base;
    if (offset + size > r.sizeBytes) return this.loadSplit(addr, size);
    if (r.kind === 'ram') {
      const v = r.view;
      const value = size === 1 ? v.getUint8(offset) : size === 2 ? v.getUint16(offset, true) : v.getUint32(offset, true);
      return { value, status: MemTx.Ok };
    }
    return this.mmioRead(r, offset, size);
  }

  store(addr: number, size: 1 | 2 | 4, value: number): MemTx {
    const r = this.find(addr);
    if (r === undefined) return this.unassigned(addr, size, true);
    const offset = addr - r.base;
    if (offset + size > r.sizeBytes) return this.storeSplit(addr, size, BigInt(value >>> 0));
    if (r.kind === 'ram') {
      if (r.block.readonly) return this.romWrite(r, offset, size);
      const v = r.view;
      if (size === 1) v.setUint8(offset, value & 0xff);
      else if (size === 2) v.setUint16(offset, value & 0xffff, true);
      else v.setUint32(offset, value >>> 0, true);
      r.block.onWrite?.(offset, size);
      return MemTx.Ok;
    }
    return this.mmioWrite(r, offset, size, value >>> 0);
  }

  load64(addr: number): { value: bigint; status: MemTx } {
    const r = this.find(addr);
    if (r === undefined) return { value: 0n, status: this.unassigned(addr, 8, false) };
    const offset = addr - r.base;
    if (offset + 8 > r.sizeBytes) {
      const lo = this.loadSplit(addr, 4);
      const hi = this.load(addr + 4, 4);
      const status = lo.status !== MemTx.Ok ? lo.status : hi.status;
      return { value: status === MemTx.Ok ? (BigInt(hi.value) << 32n) | BigInt(lo.value) : 0n, status };
    }
    if (r.kind === 'ram') return { value: r.view.getBigUint64(offset, true), status: MemTx.Ok };
    if (!this.accessValid(r, offset, 8, false)) return { value: 0n, status: MemTx.DecodeError };
    if (r.implMax === 8) return { value: BigInt.asUintN(64, r.ops.read64!(offset)), status: MemTx.Ok };
    const lo = this.implRead(r, offset, 4);
    const hi = this.implRead(r, offset + 4, 4);
    return { value: (BigInt(hi) << 32n) | BigInt(lo), status: MemTx.Ok };
  }

  store64(addr: number, value: bigint): MemTx {
    const r = this.find(addr);
    if (r === undefined) return this.unassigned(addr, 8, true);
    const offset = addr - r.base;
    const v = BigInt.asUintN(64, value);
    if (offset + 8 > r.sizeBytes) return this.storeSplit(addr, 8, v);
    if (r.kind === 'ram') {
      if (r.block.readonly) return this.romWrite(r, offset, 8);
      r.view.setBigUint64(offset, v, true);
      r.block.onWrite?.(offset, 8);
      return MemTx.Ok;
    }
    if (!this.accessValid(r, offset, 8, true)) return MemTx.DecodeError;
    if (r.implMax === 8) {
      r.ops.write64!(offset, v);
      return MemTx.Ok;
    }
    this.implWrite(r, offset, 4, Number(v & 0xffffffffn));
    this.implWrite(r, offset + 4, 4, Number(v >> 32n));
    return MemTx.Ok;
  }

  /** Copies guest memory into a new array (DMA, loaders, qtest). Unassigned bytes read as 0. */
  readBytes(addr: number, length: number): Uint8Array {
    assert(Number.isSafeInteger(length) && length >= 0, `bad length ${length}`);
    const out = new Uint8Array(length);
    this.readInto(addr, out);
    return out;
  }

  /** Fills `out` from guest memory at `addr`; returns the first non-Ok status (or Ok). */
  readInto(addr: number, out: Uint8Array): MemTx {
    let status: MemTx = MemTx.Ok;
    let done = 0;
    while (done < out.length) {
      const a = addr + done;
      const r = this.find(a);
      if (r !== undefined && r.kind === 'ram') {
        const offset = a - r.base;
        const n = Math.min(out.length - done, r.sizeBytes - offset);
        out.set(r.block.bytes.subarray(offset, offset + n), done);
        done += n;
        continue;
      }
      const one = this.load(a, 1);
      if (one.status !== MemTx.Ok && status === MemTx.Ok) status = one.status;
      out[done] = one.value;
      done++;
    }
    return status;
  }

  /** Writes `data` to guest memory at `addr` (DMA, loaders, qtest); ROM is written too when `force`. */
  writeBytes(addr: number, data: Uint8Array, force = false): MemTx {
    let status: MemTx = MemTx.Ok;
    let done = 0;
    while (done < data.length) {
      const a = addr + done;
      const r = this.find(a);
      if (r !== undefined && r.kind === 'ram' && (!r.block.readonly || force)) {
        const offset = a - r.base;
        const n = Math.min(data.length - done, r.sizeBytes - offset);
        r.block.bytes.set(data.subarray(done, done + n), offset);
        r.block.onWrite?.(offset, n);
        done += n;
        continue;
      }
      const s = this.store(a, 1, data[done]!);
      if (s !== MemTx.Ok && status === MemTx.Ok) status = s;
      done++;
    }
    return status;
  }

  // ---- slow paths ----------------------------------------------------------------------------

  private unassigned(addr: number, size: number, write: boolean): MemTx {
    this.trace?.emit('mem.unassigned', { addr: Number.isFinite(addr) ? addr : -1, size, write });
    return MemTx.DecodeError;
  }

  private romWrite(r: RamRegion, offset: number, size: number): MemTx {
    this.trace?.emit('mem.rom-write', { region: r.name, offset, size });
    return MemTx.Ok;
  }

  /** An access that straddles the end of a region: done byte by byte, as QEMU splits it. */
  private loadSplit(addr: number, size: number): { value: number; status: MemTx } {
    let value = 0;
    let status: MemTx = MemTx.Ok;
    for (let i = 0; i < size; i++) {
      const r = this.load(addr + i, 1);
      if (r.status !== MemTx.Ok && status === MemTx.Ok) status = r.status;
      value += r.value * 2 ** (8 * i);
    }
    return { value: status === MemTx.Ok ? value : 0, status };
  }

  private storeSplit(addr: number, size: number, value: bigint): MemTx {
    let status: MemTx = MemTx.Ok;
    for (let i = 0; i < size; i++) {
      const s = this.store(addr + i, 1, Number((value >> BigInt(8 * i)) & 0xffn));
      if (s !== MemTx.Ok && status === MemTx.Ok) status = s;
    }
    return status;
  }

  private accessValid(r: MmioRegion, offset: number, size: AccessSize, write: boolean): boolean {
    if (size < r.minAccess || size > r.maxAccess || (!r.unaligned && offset % size !== 0)) {
      this.trace?.emit('mem.invalid-access', { region: r.name, offset, size, write });
      return false;
    }
    return true;
  }

  private mmioRead(r: MmioRegion, offset: number, size: 1 | 2 | 4): { value: number; status: MemTx } {
    if (!this.accessValid(r, offset, size, false)) return { value: 0, status: MemTx.DecodeError };
    return { value: this.implRead(r, offset, size), status: MemTx.Ok };
  }

  private mmioWrite(r: MmioRegion, offset: number, size: 1 | 2 | 4, value: number): MemTx {
    if (!this.accessValid(r, offset, size, true)) return MemTx.DecodeError;
    this.implWrite(r, offset, size, value);
    return MemTx.Ok;
  }

  /** Reads `size` (≤ 4) bytes through the device's implemented sizes (access_with_adjusted_size). */
  private implRead(r: MmioRegion, offset: number, size: 1 | 2 | 4): number {
    const impl = implSize(r, size);
    if (impl === size) return r.ops.read(offset, size) >>> 0;
    if (impl > size) {
      const aligned = offset - (offset % impl);
      const word = r.ops.read(aligned, impl as 1 | 2 | 4) >>> 0;
      const shift = (offset - aligned) * 8;
      return (word >>> shift) & (size === 4 ? 0xffffffff : (1 << (size * 8)) - 1);
    }
    let value = 0;
    for (let i = 0; i < size; i += impl) value += (r.ops.read(offset + i, impl as 1 | 2 | 4) >>> 0) * 2 ** (8 * i);
    return value >>> 0;
  }

  private implWrite(r: MmioRegion, offset: number, size: 1 | 2 | 4, value: number): void {
    const impl = implSize(r, size);
    if (impl === size) {
      r.ops.write(offset, size, value >>> 0);
      return;
    }
    if (impl > size) {
      const aligned = offset - (offset % impl);
      const shift = (offset - aligned) * 8;
      r.ops.write(aligned, impl as 1 | 2 | 4, ((value & ((1 << (size * 8)) - 1)) << shift) >>> 0);
      return;
    }
    const mask = impl === 1 ? 0xff : 0xffff;
    for (let i = 0; i < size; i += impl) r.ops.write(offset + i, impl as 1 | 2 | 4, Math.floor(value / 2 ** (8 * i)) & mask);
  }
}
