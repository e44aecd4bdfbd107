/**
 * ELF loading (32- and 64-bit little-endian RISC-V images): PT_LOAD segments at their physical
 * addresses, the entry point and the symbol table (HTIF's tohost/fromhost).
 */

/** A malformed or unsupported image: a user error, reported without touching guest memory. */
export class ElfError extends Error {
  override readonly name = 'ElfError';
}

export interface ElfSegment {
  readonly paddr: number;
  readonly vaddr: number;
  readonly data: Uint8Array;
  readonly memSizeBytes: number;
}

export interface ElfImage {
  readonly xlen: 32 | 64;
  readonly entry: number;
  readonly segments: readonly ElfSegment[];
  readonly symbols: ReadonlyMap<string, number>;
}

const EM_RISCV = 243;
const PT_LOAD = 1;
const SHT_SYMTAB = 2;
/** Bounds on header counts: real images have a handful; a corrupt one must not make us loop. */
const MAX_HEADERS = 4096;

export function isElf(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46;
}

/** Parses an ELF image; throws ElfError on anything malformed. */
export function parseElf(bytes: Uint8Array): ElfImage {
  if (!isElf(bytes)) throw new ElfError('not an ELF file');
  if (bytes.length < 52) throw new ElfError('truncated ELF header');
  const cls = bytes[4];
  if (cls !== 1 && cls !== 2) throw new ElfError(`bad ELF class ${cls}`);
  if (bytes[5] !== 1) throw new ElfError('only little-endian ELF is supported');
  const is64 = cls === 2;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (off: number, len: number, what: string): void => {
    if (!Number.isSafeInteger(off) || off < 0 || off + len > bytes.length) throw new ElfError(`${what} lies outside the file`);
  };
  const word = (off: number): number => {
    if (is64) {
      need(off, 8, 'field');
      const v = dv.getBigUint64(off, true);
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ElfError(`value 0x${v.toString(16)} too large`);
      return Number(v);
    }
    need(off, 4, 'field');
    return dv.getUint32(off, true);
  };
  if (is64 && bytes.length < 64) throw new ElfError('truncated ELF64 header');
  const machine = dv.getUint16(18, true);
  if (machine !== EM_RISCV) throw new ElfError(`not a RISC-V image (e_machine ${machine})`);
  const entry = word(24);
  const phoff = word(is64 ? 32 : 28);
  const shoff = word(is64 ? 40 : 32);
  const phentsize = dv.getUint16(is64 ? 54 : 42, true);
  const phnum = dv.getUint16(is64 ? 56 : 44, true);
  const shentsize = dv.getUint16(is64 ? 58 : 46, true);
  const shnum = dv.getUint16(is64 ? 60 : 48, true);
  if (phnum > MAX_HEADERS || shnum > MAX_HEADERS) throw new ElfError('too many headers');
  const segments: ElfSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    need(ph, is64 ? 56 : 32, 'program header');
    const type = dv.getUint32(ph, true);
    if (type !== PT_LOAD) continue;
    const offset = word(ph + (is64 ? 8 : 4));
    const vaddr = word(ph + (is64 ? 16 : 8));
    const paddr = word(ph + (is64 ? 24 : 12));
    const filesz = word(ph + (is64 ? 32 : 16));
    const memsz = word(ph + (is64 ? 40 : 20));
    if (filesz > memsz) throw new ElfError('segment file size exceeds memory size');
    need(offset, filesz, 'segment');
    segments.push({ paddr, vaddr, data: bytes.subarray(offset, offset + filesz), memSizeBytes: memsz });
  }
  const symbols = new Map<string, number>();
  if (shoff !== 0 && shnum > 0) {
    need(shoff, shnum * shentsize, 'section headers');
    for (let i = 0; i < shnum; i++) {
      const sh = shoff + i * shentsize;
      if (dv.getUint32(sh + 4, true) !== SHT_SYMTAB) continue;
      const off = word(sh + (is64 ? 24 : 16));
      const size = word(sh + (is64 ? 32 : 20));
      const link = dv.getUint32(sh + (is64 ? 40 : 24), true);
      const entsize = word(sh + (is64 ? 56 : 36));
      if (link >= shnum || entsize === 0) throw new ElfError('bad symbol table');
      const strSh = shoff + link * shentsize;
      const strOff = word(strSh + (is64 ? 24 : 16));
      const strSize = word(strSh + (is64 ? 32 : 20));
      need(off, size, 'symbol table');
      need(strOff, strSize, 'string table');
      const count = Math.floor(size / entsize);
      for (let s = 0; s < count; s++) {
        const e = off + s * entsize;
        const nameOff = dv.getUint32(e, true);
        const value = is64 ? word(e + 8) : word(e + 4);
        if (nameOff === 0 || nameOff >= strSize) continue;
        let end = strOff + nameOff;
        const limit = strOff + strSize;
        while (end < limit && bytes[end] !== 0) end++;
        const name = new TextDecoder().decode(bytes.subarray(strOff + nameOff, end));
        if (!symbols.has(name)) symbols.set(name, value);
      }
    }
  }
  return { xlen: is64 ? 64 : 32, entry, segments, symbols };
}

/** Something that can receive image bytes at a physical address (RAM/ROM). */
export interface ImageSink {
  /** Writes `data` at `addr`; returns false if [addr, addr+len) is not backed by RAM/ROM. */
  writeImage(addr: number, data: Uint8Array, zeroFillBytes: number): boolean;
}

/** Loads every PT_LOAD segment; throws ElfError if one falls outside memory. */
export function loadElf(image: ElfImage, sink: ImageSink): void {
  for (const seg of image.segments) {
    if (!sink.writeImage(seg.paddr, seg.data, seg.memSizeBytes - seg.data.length)) {
      throw new ElfError(`segment at 0x${seg.paddr.toString(16)} (${seg.memSizeBytes} bytes) is outside guest RAM`);
    }
  }
}
