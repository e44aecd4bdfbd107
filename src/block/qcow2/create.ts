/**
 * qcow2 image creation with QEMU's layout: header in cluster 0, a one-cluster refcount table in
 * cluster 1, the first refcount block in cluster 2, then the L1 table allocated by a resize to the
 * requested size (so it lands in cluster 3, as in images qemu-img makes).
 */
import type { Co } from '../../engine/coroutine.js';
import { ImageError } from './errors.js';
import { newHeader, serializeHeader, setBe64num } from './format.js';
import type { ByteIO } from './io.js';
import { Qcow2Image } from './qcow2.js';
import { setRefcountAt } from './refcount.js';

export interface Qcow2CreateOptions {
  readonly sizeBytes: number;
  readonly clusterSize?: number;
  /** "0.10" (v2) or "1.1" (v3, default); "v2"/"v3" accepted as QEMU does. */
  readonly compat?: string;
  readonly lazyRefcounts?: boolean;
  readonly refcountBits?: number;
  readonly backingFile?: string | null;
  readonly backingFormat?: string | null;
}

export interface ResolvedCreateOptions {
  readonly sizeBytes: number;
  readonly clusterSize: number;
  readonly version: 2 | 3;
  readonly compatGiven: boolean;
  readonly lazyRefcounts: boolean;
  readonly refcountBits: number;
  readonly backingFile: string | null;
  readonly backingFormat: string | null;
}

/** Validates options with qemu-img's messages. */
export function resolveCreateOptions(o: Qcow2CreateOptions): ResolvedCreateOptions {
  const clusterSize = o.clusterSize ?? 65536;
  if (!Number.isInteger(clusterSize) || clusterSize < 512 || clusterSize > 2 * 1024 * 1024 || (clusterSize & (clusterSize - 1)) !== 0) {
    throw new ImageError('EINVAL', 'Cluster size must be a power of two between 512 and 2048k');
  }
  let version: 2 | 3 = 3;
  if (o.compat !== undefined) {
    if (o.compat === '0.10' || o.compat === 'v2') version = 2;
    else if (o.compat === '1.1' || o.compat === 'v3') version = 3;
    else throw new ImageError('EINVAL', `Parameter 'version' does not accept value '${o.compat}'`);
  }
  const lazy = o.lazyRefcounts ?? false;
  if (lazy && version < 3) {
    throw new ImageError('EINVAL', 'Lazy refcounts only supported with compatibility level 1.1 and above (use version=v3 or greater)');
  }
  const refcountBits = o.refcountBits ?? 16;
  if (!Number.isInteger(refcountBits) || refcountBits < 1 || refcountBits > 64 || (refcountBits & (refcountBits - 1)) !== 0) {
    throw new ImageError('EINVAL', 'Refcount width must be a power of two and may not exceed 64 bits');
  }
  if (version < 3 && refcountBits !== 16) {
    throw new ImageError('EINVAL', 'Different refcount widths than 16 bits require compatibility level 1.1 or above (use version=v3 or greater)');
  }
  if (!Number.isSafeInteger(o.sizeBytes) || o.sizeBytes < 0) throw new ImageError('EINVAL', 'Invalid image size specified');
  if (o.backingFormat != null && o.backingFile == null) throw new ImageError('EINVAL', 'Backing format cannot be used without backing file');
  return {
    sizeBytes: o.sizeBytes,
    clusterSize,
    version,
    compatGiven: o.compat !== undefined,
    lazyRefcounts: lazy,
    refcountBits,
    backingFile: o.backingFile ?? null,
    backingFormat: o.backingFormat ?? null,
  };
}

/** qemu-img's "Formatting ..." option list for a qcow2 image, in its order. */
export function formattingLine(filename: string, o: ResolvedCreateOptions): string {
  const parts = [`Formatting '${filename}', fmt=qcow2 cluster_size=${o.clusterSize} extended_l2=off compression_type=zlib size=${o.sizeBytes}`];
  if (o.backingFile !== null) parts.push(`backing_file=${o.backingFile}`);
  if (o.backingFormat !== null) parts.push(`backing_fmt=${o.backingFormat}`);
  if (o.compatGiven) parts.push(`compat=${o.version === 2 ? '0.10' : '1.1'}`);
  parts.push(`lazy_refcounts=${o.lazyRefcounts ? 'on' : 'off'} refcount_bits=${o.refcountBits}`);
  return parts.join(' ');
}

/** Writes a new, empty qcow2 image onto `io` (which must be empty or is truncated). */
export function* createQcow2(io: ByteIO, options: Qcow2CreateOptions): Co<ResolvedCreateOptions> {
  const o = resolveCreateOptions(options);
  const clusterBits = Math.log2(o.clusterSize);
  const cs = o.clusterSize;
  const refcountOrder = Math.log2(o.refcountBits);
  const header = newHeader({
    version: o.version,
    clusterBits,
    sizeBytes: 0,
    lazyRefcounts: o.lazyRefcounts,
    refcountOrder,
    backingFile: o.backingFile,
    backingFormat: o.backingFormat,
  });
  yield* io.truncate(0);
  const headerBytes = serializeHeader(header);
  const first = new Uint8Array(3 * cs);
  first.set(headerBytes);
  setBe64num(first, cs, 2 * cs); // refcount table entry 0 -> block in cluster 2
  const block = first.subarray(2 * cs, 3 * cs);
  for (let c = 0; c < 3; c++) setRefcountAt(block, c, refcountOrder, 1);
  yield* io.pwrite(0, first);
  yield* io.flush();
  const img = yield* Qcow2Image.open(io, { readOnly: false });
  yield* img.truncate(o.sizeBytes);
  yield* img.close();
  return o;
}
