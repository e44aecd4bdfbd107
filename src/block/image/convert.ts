/** `qemu-img convert` and `compare`: whole-image copies and comparisons through the chain. */
import type { Co } from '../../engine/coroutine.js';
import type { ImageHandle } from './handle.js';
import { chainStatus } from './map.js';

/** Bytes per convert/compare step (QEMU's convert buffer is 2 MiB too). */
export const CONVERT_CHUNK = 2 * 1024 * 1024;

export function isZero(buf: Uint8Array): boolean {
  // Word-wise scan: the hot loop of convert's sparse detection.
  const words = buf.byteOffset % 4 === 0 ? new Uint32Array(buf.buffer, buf.byteOffset, buf.length >> 2) : null;
  let i = 0;
  if (words !== null) {
    for (; i < words.length; i++) if (words[i] !== 0) return false;
    i = words.length << 2;
  }
  for (; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

export interface ConvertOptions {
  /** The target was just created (reads as zero): zero areas are skipped instead of written. */
  readonly targetZeroInit: boolean;
  /** Called after each step with the fraction done (0..1). */
  readonly onProgress?: (fraction: number) => void;
  /** `-c`: data clusters are written compressed (the target must be qcow2). */
  readonly compress?: boolean;
}

/** Copies every byte of `src` (through its chain) into `dst`. Returns bytes of data written. */
export function* convertImage(src: ImageHandle, dst: ImageHandle, opts: ConvertOptions): Co<number> {
  const size = src.sizeBytes();
  let written = 0;
  const buf = new Uint8Array(CONVERT_CHUNK);
  for (let pos = 0; pos < size; ) {
    const st = yield* chainStatus(src, pos, Math.min(CONVERT_CHUNK, size - pos));
    const n = st.length;
    if (!st.present || (st.zero && !st.data)) {
      if (!opts.targetZeroInit) yield* dst.writeZeroes(pos, n, true);
    } else {
      const chunk = buf.subarray(0, n);
      yield* src.read(pos, chunk);
      if (isZero(chunk)) {
        if (!opts.targetZeroInit) yield* dst.writeZeroes(pos, n, true);
      } else if (opts.compress === true) {
        // Cluster by cluster: zero clusters stay unallocated, the rest compressed.
        const cs = dst.qcow2?.cs ?? 65536;
        for (let at = 0; at < n; at += cs) {
          const piece = chunk.subarray(at, Math.min(n, at + cs));
          if (isZero(piece) && opts.targetZeroInit) continue;
          yield* dst.writeCompressed(pos + at, piece);
        }
        written += n;
      } else {
        yield* dst.write(pos, chunk);
        written += n;
      }
    }
    pos += n;
    opts.onProgress?.(pos / size);
  }
  yield* dst.flush();
  return written;
}

export type CompareResult = { identical: true } | { identical: false; offset: number } | { identical: false; sizeMismatch: true };

/** First differing 512-byte sector at or after `base` (buffers differ somewhere). */
function firstDiff(a: Uint8Array, b: Uint8Array | null, base: number): number {
  for (let s = 0; s < a.length; s += 512) {
    const end = Math.min(a.length, s + 512);
    for (let i = s; i < end; i++) {
      if (a[i] !== (b === null ? 0 : b[i])) return base + s;
    }
  }
  return -1;
}

/**
 * qemu-img compare: identical contents over the common size, and (unless `strict`, which then
 * demands equal sizes) zeroes in the rest of the larger image.
 */
export function* compareImages(a: ImageHandle, b: ImageHandle, strict: boolean, onProgress?: (f: number) => void): Co<CompareResult> {
  const sa = a.sizeBytes();
  const sb = b.sizeBytes();
  if (strict && sa !== sb) return { identical: false, sizeMismatch: true };
  const common = Math.min(sa, sb);
  const total = Math.max(sa, sb);
  const ba = new Uint8Array(CONVERT_CHUNK);
  const bb = new Uint8Array(CONVERT_CHUNK);
  for (let pos = 0; pos < common; ) {
    const n = Math.min(CONVERT_CHUNK, common - pos);
    const x = ba.subarray(0, n);
    const y = bb.subarray(0, n);
    yield* a.read(pos, x);
    yield* b.read(pos, y);
    const d = firstDiff(x, y, pos);
    if (d >= 0) return { identical: false, offset: d };
    pos += n;
    onProgress?.(pos / total);
  }
  const longer = sa > sb ? a : b;
  for (let pos = common; pos < total; ) {
    const st = yield* chainStatus(longer, pos, Math.min(CONVERT_CHUNK, total - pos));
    if (st.present && !(st.zero && !st.data)) {
      const x = ba.subarray(0, st.length);
      yield* longer.read(pos, x);
      const d = firstDiff(x, null, pos);
      if (d >= 0) return { identical: false, offset: d };
    }
    pos += st.length;
    onProgress?.(pos / total);
  }
  return { identical: true };
}
