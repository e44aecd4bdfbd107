/**
 * Compressed clusters (read-only): qcow2 stores them as raw deflate streams (zlib, window bits
 * -12, no header). QEMU reads a few sectors past the stream's end, so trailing bytes are normal.
 */
import { constants, deflateRawSync, inflateRawSync } from 'node:zlib';
import { ImageError } from './errors.js';

export function inflateCluster(compressed: Uint8Array, clusterSize: number): Uint8Array {
  let out: Buffer;
  try {
    out = inflateRawSync(compressed, { finishFlush: constants.Z_SYNC_FLUSH, maxOutputLength: clusterSize * 2 });
  } catch {
    throw new ImageError('EIO', 'qcow2: could not decompress cluster');
  }
  if (out.length < clusterSize) throw new ImageError('EIO', 'qcow2: compressed cluster is too short');
  return new Uint8Array(out.buffer, out.byteOffset, clusterSize);
}

/** Compresses one cluster as QEMU does (raw deflate, 4 KiB window); null when it does not shrink. */
export function deflateCluster(plain: Uint8Array, clusterSize: number): Uint8Array | null {
  const out = deflateRawSync(plain, { windowBits: 12, level: constants.Z_DEFAULT_COMPRESSION });
  if (out.length >= clusterSize) return null;
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}
