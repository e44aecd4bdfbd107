import type { MmioOps, RamBlock } from '../../memory.js';

/** HTIF syscall numbers we proxy (riscv-pk's numbering). */
const SYS_WRITE = 64;
const SYS_EXIT = 93;
/** Longest single write the proxy copies (bounds guest-controlled work). */
const MAX_WRITE_BYTES = 1 << 20;

/**
 * Spike's host-target interface through the ELF's `tohost`/`fromhost` words. This device covers
 * the RAM page that holds them: other offsets read and write the RAM underneath, writes to tohost
 * run a command. `(code << 1) | 1` ends the run with exit code `code`; an even value is the address
 * of a syscall block (magic_mem: number, args...) and `write` is proxied to the console.
 */
export class Htif implements MmioOps {
  exitCode: number | null = null;
  private tohostLow = 0;

  constructor(
    private readonly ram: RamBlock,
    /** Physical base of the page this device covers. */
    private readonly pageBase: number,
    private readonly tohost: number,
    private readonly fromhost: number,
    private readonly console: (bytes: Uint8Array) => void,
    private readonly onExit: (code: number) => void,
  ) {}

  private ramOffset(offset: number): number {
    return this.pageBase + offset - this.ram.base;
  }

  read(offset: number, size: 1 | 2 | 4): number {
    const o = this.ramOffset(offset);
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = v * 256 + (this.ram.bytes[o + i] ?? 0);
    return v;
  }

  read64(offset: number): bigint {
    return (BigInt(this.read(offset + 4, 4)) << 32n) | BigInt(this.read(offset, 4));
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    const o = this.ramOffset(offset);
    for (let i = 0; i < size; i++) this.ram.bytes[o + i] = (value >>> (8 * i)) & 0xff;
    const addr = this.pageBase + offset;
    if (addr === this.tohost && size === 4) {
      this.tohostLow = value >>> 0;
    } else if (addr === this.tohost + 4 && size === 4) {
      this.command((BigInt(value >>> 0) << 32n) | BigInt(this.tohostLow));
    }
  }

  write64(offset: number, value: bigint): void {
    this.write(offset, 4, Number(value & 0xffffffffn));
    this.write(offset + 4, 4, Number(value >> 32n));
    if (this.pageBase + offset !== this.tohost) return;
  }

  private setWord(addr: number, value: bigint): void {
    const o = addr - this.ram.base;
    if (o < 0 || o + 8 > this.ram.sizeBytes) return;
    new DataView(this.ram.bytes.buffer, this.ram.bytes.byteOffset).setBigUint64(o, BigInt.asUintN(64, value), true);
  }

  private getWord(addr: number): bigint | undefined {
    const o = addr - this.ram.base;
    if (o < 0 || o + 8 > this.ram.sizeBytes) return undefined;
    return new DataView(this.ram.bytes.buffer, this.ram.bytes.byteOffset).getBigUint64(o, true);
  }

  private command(value: bigint): void {
    if (value === 0n) return;
    const device = Number(value >> 56n);
    const cmd = Number((value >> 48n) & 0xffn);
    const payload = value & 0xffffffffffffn;
    if (device === 0 && cmd === 0) {
      if (payload & 1n) {
        this.finish(Number(payload >> 1n));
        return;
      }
      this.syscall(Number(payload));
      this.setWord(this.tohost, 0n);
      this.setWord(this.fromhost, 1n);
      return;
    }
    if (device === 1 && cmd === 1) {
      this.console(new Uint8Array([Number(payload & 0xffn)]));
      this.setWord(this.tohost, 0n);
      this.setWord(this.fromhost, (value >> 48n << 48n) | 0x100n | (payload & 0xffn));
      return;
    }
    // Unknown device/command (e.g. console read): acknowledge so the guest does not spin forever.
    this.setWord(this.tohost, 0n);
  }

  private finish(code: number): void {
    if (this.exitCode !== null) return;
    this.exitCode = code;
    this.onExit(code);
  }

  private syscall(magic: number): void {
    const num = this.getWord(magic);
    const a0 = this.getWord(magic + 8) ?? 0n;
    const a1 = this.getWord(magic + 16) ?? 0n;
    const a2 = this.getWord(magic + 24) ?? 0n;
    if (num === undefined) return;
    let result = -38n; // -ENOSYS
    if (num === BigInt(SYS_WRITE)) {
      const len = Number(a2 > BigInt(MAX_WRITE_BYTES) ? BigInt(MAX_WRITE_BYTES) : a2);
      const o = Number(a1) - this.ram.base;
      if ((a0 === 1n || a0 === 2n) && o >= 0 && o + len <= this.ram.sizeBytes) {
        this.console(this.ram.bytes.slice(o, o + len));
        result = BigInt(len);
      } else {
        result = -14n; // -EFAULT
      }
    } else if (num === BigInt(SYS_EXIT)) {
      this.finish(Number(a0 & 0xffn));
      result = 0n;
    }
    this.setWord(magic, result);
  }
}
