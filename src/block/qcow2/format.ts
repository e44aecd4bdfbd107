/**
 * The qcow2 on-disk format (docs/interop/qcow2.txt): header v2/v3, header extensions, and the
 * bit layout of L1/L2/refcount entries. Everything here is pure: bytes in, values out, and back.
 * All fields are big-endian. 64-bit entries are handled as (hi, lo) 32-bit halves so the hot path
 * never allocates a BigInt; offsets are checked to stay below 2^53.
 */
import { assert } from '../../engine/assert.js';
import { ImageError } from './errors.js';

export const QCOW2_MAGIC = 0x514649fb; // 'Q' 'F' 'I' 0xfb
export const V2_HEADER_LENGTH = 72;
/** QEMU 7.2 writes 112 bytes: the v3 header, compression_type and padding to 8. */
export const V3_HEADER_LENGTH = 112;
export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;
export const MAX_L1_BYTES = 32 * 1024 * 1024; // QCOW_MAX_L1_SIZE
export const MAX_REFTABLE_BYTES = 8 * 1024 * 1024; // QCOW_MAX_REFTABLE_SIZE
export const MAX_BACKING_NAME = 1023;

export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
export const INCOMPAT_DATA_FILE = 1n << 2n;
export const INCOMPAT_COMPRESSION = 1n << 3n;
export const INCOMPAT_EXTL2 = 1n << 4n;
export const COMPAT_LAZY_REFCOUNTS = 1n << 0n;
export const AUTOCLEAR_BITMAPS = 1n << 0n;
export const AUTOCLEAR_DATA_FILE_RAW = 1n << 1n;
/** Bits this implementation understands (data file and extended L2 are refused). */
export const SUPPORTED_INCOMPAT = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_COMPRESSION;
export const SUPPORTED_AUTOCLEAR = AUTOCLEAR_BITMAPS;

export const EXT_END = 0x00000000;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_TABLE = 0x6803f857;
export const EXT_CRYPTO = 0x0537be77;
export const EXT_BITMAPS = 0x23852875;
export const EXT_DATA_FILE = 0x44415441;

/** The feature-name table QEMU 7.2 writes, in its order (type 0 incompat, 1 compat, 2 autoclear). */
export const FEATURE_NAMES: readonly { type: number; bit: number; name: string }[] = [
  { type: 0, bit: 0, name: 'dirty bit' },
  { type: 0, bit: 1, name: 'corrupt bit' },
  { type: 0, bit: 2, name: 'external data file' },
  { type: 0, bit: 3, name: 'compression type' },
  { type: 0, bit: 4, name: 'extended L2 entries' },
  { type: 1, bit: 0, name: 'lazy refcounts' },
  { type: 2, bit: 0, name: 'bitmaps' },
  { type: 2, bit: 1, name: 'raw external data' },
];
const FEATURE_ENTRY_BYTES = 48;

export interface HeaderExtension {
  readonly type: number;
  readonly data: Uint8Array;
}

export interface BitmapsExtension {
  readonly nbBitmaps: number;
  readonly directorySize: number;
  readonly directoryOffset: number;
}

export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  sizeBytes: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatible: bigint;
  compatible: bigint;
  autoclear: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
  /** Parsed from the extension area. */
  backingFile: string | null;
  backingFormat: string | null;
  bitmaps: BitmapsExtension | null;
  /** Extensions we do not interpret, kept verbatim so a header rewrite preserves them. */
  unknownExtensions: HeaderExtension[];
  /** The image's own feature-name table (to name unknown bits in errors). */
  featureTable: { type: number; bit: number; name: string }[];
}

// ---- big-endian helpers ----------------------------------------------------------------------

export function be32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}

export function setBe32(buf: Uint8Array, at: number, v: number): void {
  buf[at] = v >>> 24;
  buf[at + 1] = (v >>> 16) & 0xff;
  buf[at + 2] = (v >>> 8) & 0xff;
  buf[at + 3] = v & 0xff;
}

export function be16(buf: Uint8Array, at: number): number {
  return (buf[at]! << 8) | buf[at + 1]!;
}

export function setBe16(buf: Uint8Array, at: number, v: number): void {
  buf[at] = (v >>> 8) & 0xff;
  buf[at + 1] = v & 0xff;
}

export function be64big(buf: Uint8Array, at: number): bigint {
  return (BigInt(be32(buf, at)) << 32n) | BigInt(be32(buf, at + 4));
}

export function setBe64big(buf: Uint8Array, at: number, v: bigint): void {
  setBe32(buf, at, Number((v >> 32n) & 0xffffffffn));
  setBe32(buf, at + 4, Number(v & 0xffffffffn));
}

/** A u64 field that must be an exact JS integer; `what` names it in the error. */
export function be64num(buf: Uint8Array, at: number, what: string): number {
  const hi = be32(buf, at);
  const lo = be32(buf, at + 4);
  if (hi >= 0x200000) throw new ImageError('EFBIG', `${what} too large`);
  return hi * 0x100000000 + lo;
}

export function setBe64num(buf: Uint8Array, at: number, v: number): void {
  assert(Number.isSafeInteger(v) && v >= 0, () => `u64 field out of range: ${v}`);
  setBe32(buf, at, Math.floor(v / 0x100000000));
  setBe32(buf, at + 4, v >>> 0);
}

// ---- entries ---------------------------------------------------------------------------------

/** Offset bits 9..55 of an L1/L2/refcount-table entry given as (hi, lo) halves. */
export function entryOffset(hi: number, lo: number): number {
  // Offsets past 2^53 cannot be exact numbers; no real image has them (damaged table entry).
  if ((hi & 0x00ffffff) >= 0x1fffff) throw new ImageError('EIO', 'qcow2: table entry offset out of range');
  return (hi & 0x00ffffff) * 0x100000000 + ((lo & 0xfffffe00) >>> 0);
}

/** entryOffset for `check`: -1 instead of an error, so damage is counted rather than fatal. */
export function entryOffsetOrBad(hi: number, lo: number): number {
  if ((hi & 0x00ffffff) >= 0x1fffff) return -1;
  return (hi & 0x00ffffff) * 0x100000000 + ((lo & 0xfffffe00) >>> 0);
}

export const HI_COPIED = 0x80000000;
export const HI_COMPRESSED = 0x40000000;
export const LO_ZERO = 0x1;
/** Bits that must be zero in a standard L2 entry (1..8 and 56..61). */
export const L2_RESERVED_LO = 0x1fe;
export const L2_RESERVED_HI = 0x3f000000;
export const L1_RESERVED_LO = 0x1ff;
export const L1_RESERVED_HI = 0x7f000000;

/** Where a compressed cluster's bytes live: host offset and byte count to read. */
export function compressedDescriptor(hi: number, lo: number, clusterBits: number): { offset: number; bytes: number } {
  const entry = (BigInt(hi) << 32n) | BigInt(lo >>> 0);
  const x = BigInt(62 - (clusterBits - 8));
  const raw = entry & ((1n << x) - 1n);
  if (raw > BigInt(Number.MAX_SAFE_INTEGER) - 4096n) throw new ImageError('EIO', 'qcow2: compressed cluster offset out of range');
  const offset = Number(raw);
  const sectors = Number((entry >> x) & ((1n << BigInt(clusterBits - 8)) - 1n)) + 1;
  return { offset, bytes: sectors * 512 - (offset & 511) };
}

// ---- header ----------------------------------------------------------------------------------

function featureName(table: readonly { type: number; bit: number; name: string }[], type: number, bit: number): string | undefined {
  return table.find((f) => f.type === type && f.bit === bit)?.name;
}

/** QEMU's report_unsupported_feature: names from the image's table, else "Unknown incompatible feature: %x". */
export function unsupportedFeatureMessage(bits: bigint, table: readonly { type: number; bit: number; name: string }[]): string {
  const names: string[] = [];
  let rest = 0n;
  for (let bit = 0; bit < 64; bit++) {
    if ((bits & (1n << BigInt(bit))) === 0n) continue;
    const name = featureName(table, 0, bit);
    if (name !== undefined) names.push(name);
    else rest |= 1n << BigInt(bit);
  }
  if (rest !== 0n) names.push(`Unknown incompatible feature: ${rest.toString(16)}`);
  return `Unsupported qcow2 feature(s): ${names.join(', ')}`;
}

/** Checks magic, version and cluster_bits of the first bytes; returns cluster_bits. */
export function probeClusterBits(buf: Uint8Array, fileLength: number): number {
  if (buf.length < V2_HEADER_LENGTH || fileLength < V2_HEADER_LENGTH || be32(buf, 0) !== QCOW2_MAGIC) {
    throw new ImageError('EINVAL', 'Image is not in qcow2 format');
  }
  const version = be32(buf, 4);
  if (version < 2 || version > 3) throw new ImageError('ENOTSUP', `Unsupported qcow2 version ${version}`);
  const clusterBits = be32(buf, 20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw new ImageError('EINVAL', `Unsupported cluster size: 2^${clusterBits}`);
  }
  return clusterBits;
}

/**
 * Parses the header and its extensions from the first cluster of the file (`buf` holds at least
 * the first min(cluster, file) bytes; missing bytes read as zero). Validates everything a later
 * step would otherwise trust, with QEMU's messages.
 */
export function parseHeader(buf: Uint8Array, fileLength: number): Qcow2Header {
  const clusterBits = probeClusterBits(buf, fileLength);
  const version = be32(buf, 4);
  const clusterSize = 2 ** clusterBits;
  const h: Qcow2Header = {
    version: version as 2 | 3,
    backingFileOffset: be64num(buf, 8, 'Backing file offset'),
    backingFileSize: be32(buf, 16),
    clusterBits,
    sizeBytes: be64num(buf, 24, 'Image size'),
    cryptMethod: be32(buf, 32),
    l1Size: be32(buf, 36),
    l1TableOffset: be64num(buf, 40, 'L1 table offset'),
    refcountTableOffset: be64num(buf, 48, 'Reference count table offset'),
    refcountTableClusters: be32(buf, 56),
    nbSnapshots: be32(buf, 60),
    snapshotsOffset: be64num(buf, 64, 'Snapshot table offset'),
    incompatible: 0n,
    compatible: 0n,
    autoclear: 0n,
    refcountOrder: 4,
    headerLength: V2_HEADER_LENGTH,
    compressionType: 0,
    backingFile: null,
    backingFormat: null,
    bitmaps: null,
    unknownExtensions: [],
    featureTable: [],
  };
  if (version === 3) {
    h.incompatible = be64big(buf, 72);
    h.compatible = be64big(buf, 80);
    h.autoclear = be64big(buf, 88);
    h.refcountOrder = be32(buf, 96);
    h.headerLength = be32(buf, 100);
    if (h.headerLength < 104) throw new ImageError('EINVAL', 'qcow2 header too short');
    if (h.headerLength > clusterSize) throw new ImageError('EINVAL', 'qcow2 header exceeds cluster size');
    if (h.headerLength > 104) h.compressionType = buf[104]!;
  }
  if (h.refcountOrder > 6) throw new ImageError('EINVAL', 'Reference count width too large; may not exceed 64 bits');
  parseExtensions(buf, h, clusterSize);
  if ((h.incompatible & ~SUPPORTED_INCOMPAT) !== 0n) {
    throw new ImageError('ENOTSUP', unsupportedFeatureMessage(h.incompatible & ~SUPPORTED_INCOMPAT, h.featureTable));
  }
  // Only zlib (type 0) is implemented; zstd images are refused rather than misread.
  if (h.compressionType !== 0) throw new ImageError('ENOTSUP', `Unsupported compression type '${h.compressionType === 1 ? 'zstd' : h.compressionType}'`);
  if (h.cryptMethod !== 0) throw new ImageError('ENOTSUP', 'Unsupported encryption method: ' + h.cryptMethod);
  if (h.sizeBytes > 2 ** 53 - clusterSize) throw new ImageError('EFBIG', 'Image is too big');
  // Tables must be cluster aligned and inside the addressable range (validate_table_offset).
  const reftableBytes = h.refcountTableClusters * clusterSize;
  if (h.refcountTableClusters === 0) throw new ImageError('EINVAL', 'Image does not contain a reference count table');
  if (reftableBytes > MAX_REFTABLE_BYTES) throw new ImageError('EINVAL', 'Reference count table too large');
  if (h.refcountTableOffset % clusterSize !== 0 || h.refcountTableOffset === 0) {
    throw new ImageError('EINVAL', 'Invalid reference count table offset');
  }
  if (h.refcountTableOffset + reftableBytes > fileLength) {
    throw new ImageError('EINVAL', 'Reference count table offset past the end of the image file');
  }
  if (h.l1Size * 8 > MAX_L1_BYTES) throw new ImageError('EFBIG', 'Active L1 table too large');
  const l2Entries = clusterSize / 8;
  const minL1 = Math.ceil(h.sizeBytes / (clusterSize * l2Entries));
  if (h.l1Size < minL1) throw new ImageError('EINVAL', 'L1 table is too small');
  if (h.l1Size > 0 && (h.l1TableOffset % clusterSize !== 0 || h.l1TableOffset === 0)) {
    throw new ImageError('EINVAL', 'Invalid L1 table offset');
  }
  if (h.l1Size > 0 && h.l1TableOffset + h.l1Size * 8 > fileLength) {
    throw new ImageError('EINVAL', 'Could not read L1 table: L1 table past the end of the image file');
  }
  if (h.backingFileOffset !== 0) {
    if (h.backingFileSize > MAX_BACKING_NAME || h.backingFileOffset > clusterSize - h.backingFileSize) {
      throw new ImageError('EINVAL', 'Backing file name too long');
    }
    h.backingFile = new TextDecoder().decode(buf.subarray(h.backingFileOffset, h.backingFileOffset + h.backingFileSize));
  }
  return h;
}

function parseExtensions(buf: Uint8Array, h: Qcow2Header, clusterSize: number): void {
  let at = h.headerLength;
  const end = h.backingFileOffset !== 0 ? Math.min(h.backingFileOffset, clusterSize) : clusterSize;
  // Bounded: each extension consumes at least 8 bytes of a single cluster.
  for (let guard = 0; guard < clusterSize / 8; guard++) {
    if (at + 8 > end) {
      if (h.version === 2 && at >= end) return; // v2 images may have no end marker
      throw new ImageError('EINVAL', 'Invalid header extension: ran past the header cluster');
    }
    const type = be32(buf, at);
    const len = be32(buf, at + 4);
    at += 8;
    if (type === EXT_END) return;
    if (len > end - at) throw new ImageError('EINVAL', 'ext_len too large');
    const data = buf.slice(at, at + len);
    switch (type) {
      case EXT_BACKING_FORMAT:
        h.backingFormat = new TextDecoder().decode(data);
        break;
      case EXT_FEATURE_TABLE:
        for (let i = 0; i + FEATURE_ENTRY_BYTES <= len; i += FEATURE_ENTRY_BYTES) {
          const nameBytes = data.subarray(i + 2, i + FEATURE_ENTRY_BYTES);
          const nul = nameBytes.indexOf(0);
          h.featureTable.push({ type: data[i]!, bit: data[i + 1]!, name: new TextDecoder().decode(nul >= 0 ? nameBytes.subarray(0, nul) : nameBytes) });
        }
        break;
      case EXT_BITMAPS:
        if (len !== 24) throw new ImageError('EINVAL', 'bitmaps_ext: Invalid extension length');
        if ((h.autoclear & AUTOCLEAR_BITMAPS) !== 0n) {
          h.bitmaps = { nbBitmaps: be32(data, 0), directorySize: be64num(data, 8, 'Bitmap directory size'), directoryOffset: be64num(data, 16, 'Bitmap directory offset') };
        }
        // Without the autoclear bit the extension is stale (an old QEMU wrote the image): drop it.
        break;
      default:
        h.unknownExtensions.push({ type, data });
    }
    at += Math.ceil(len / 8) * 8;
  }
  throw new ImageError('EINVAL', 'Invalid header extension: too many extensions');
}

/** Serializes the header, its extensions and the backing file name into one buffer (the header cluster's used part). */
export function serializeHeader(h: Qcow2Header): Uint8Array {
  // The feature-name table is optional: QEMU leaves it out when it does not fit (512-byte clusters).
  return serializeHeaderWith(h, true) ?? serializeHeaderWith(h, false) ?? fail();
}

function fail(): never {
  throw new ImageError('ENOSPC', 'Header extensions and backing file name do not fit in the first cluster');
}

function serializeHeaderWith(h: Qcow2Header, featureTable: boolean): Uint8Array | null {
  const clusterSize = 2 ** h.clusterBits;
  const exts: HeaderExtension[] = [];
  const enc = new TextEncoder();
  if (h.backingFormat !== null) exts.push({ type: EXT_BACKING_FORMAT, data: enc.encode(h.backingFormat) });
  if (h.version === 3 && featureTable) {
    const table = new Uint8Array(FEATURE_NAMES.length * FEATURE_ENTRY_BYTES);
    FEATURE_NAMES.forEach((f, i) => {
      table[i * FEATURE_ENTRY_BYTES] = f.type;
      table[i * FEATURE_ENTRY_BYTES + 1] = f.bit;
      table.set(enc.encode(f.name), i * FEATURE_ENTRY_BYTES + 2);
    });
    exts.push({ type: EXT_FEATURE_TABLE, data: table });
  }
  if (h.bitmaps !== null) {
    const d = new Uint8Array(24);
    setBe32(d, 0, h.bitmaps.nbBitmaps);
    setBe64num(d, 8, h.bitmaps.directorySize);
    setBe64num(d, 16, h.bitmaps.directoryOffset);
    exts.push({ type: EXT_BITMAPS, data: d });
  }
  exts.push(...h.unknownExtensions);
  const headerLength = h.version === 3 ? h.headerLength : V2_HEADER_LENGTH;
  let total = headerLength;
  for (const e of exts) total += 8 + Math.ceil(e.data.length / 8) * 8;
  total += 8; // end marker
  const backing = h.backingFile !== null ? enc.encode(h.backingFile) : null;
  const backingOffset = backing !== null ? total : 0;
  if (backing !== null) total += backing.length;
  if (total > clusterSize) return null;
  const buf = new Uint8Array(total);
  setBe32(buf, 0, QCOW2_MAGIC);
  setBe32(buf, 4, h.version);
  setBe64num(buf, 8, backingOffset);
  setBe32(buf, 16, backing?.length ?? 0);
  setBe32(buf, 20, h.clusterBits);
  setBe64num(buf, 24, h.sizeBytes);
  setBe32(buf, 32, h.cryptMethod);
  setBe32(buf, 36, h.l1Size);
  setBe64num(buf, 40, h.l1TableOffset);
  setBe64num(buf, 48, h.refcountTableOffset);
  setBe32(buf, 56, h.refcountTableClusters);
  setBe32(buf, 60, h.nbSnapshots);
  setBe64num(buf, 64, h.snapshotsOffset);
  if (h.version === 3) {
    setBe64big(buf, 72, h.incompatible);
    setBe64big(buf, 80, h.compatible);
    setBe64big(buf, 88, h.autoclear);
    setBe32(buf, 96, h.refcountOrder);
    setBe32(buf, 100, headerLength);
    if (headerLength > 104) buf[104] = h.compressionType;
  }
  let at = headerLength;
  for (const e of exts) {
    setBe32(buf, at, e.type);
    setBe32(buf, at + 4, e.data.length);
    buf.set(e.data, at + 8);
    at += 8 + Math.ceil(e.data.length / 8) * 8;
  }
  at += 8; // EXT_END: type 0, length 0 (already zero)
  if (backing !== null) buf.set(backing, at);
  h.backingFileOffset = backingOffset;
  h.backingFileSize = backing?.length ?? 0;
  return buf;
}

/** A fresh header for `create` (QEMU's layout: refcount table in cluster 1, first block in 2). */
export function newHeader(opts: { version: 2 | 3; clusterBits: number; sizeBytes: number; lazyRefcounts: boolean; refcountOrder: number; backingFile: string | null; backingFormat: string | null }): Qcow2Header {
  const cs = 2 ** opts.clusterBits;
  return {
    version: opts.version,
    backingFileOffset: 0,
    backingFileSize: 0,
    clusterBits: opts.clusterBits,
    sizeBytes: 0,
    cryptMethod: 0,
    l1Size: 0,
    l1TableOffset: 0,
    refcountTableOffset: cs,
    refcountTableClusters: 1,
    nbSnapshots: 0,
    snapshotsOffset: 0,
    incompatible: 0n,
    compatible: opts.lazyRefcounts ? COMPAT_LAZY_REFCOUNTS : 0n,
    autoclear: 0n,
    refcountOrder: opts.refcountOrder,
    headerLength: opts.version === 3 ? V3_HEADER_LENGTH : V2_HEADER_LENGTH,
    compressionType: 0,
    backingFile: opts.backingFile,
    backingFormat: opts.backingFormat,
    bitmaps: null,
    unknownExtensions: [],
    featureTable: [],
  };
}
