/** `qemu-img map` and qemu-io's `map`/`alloc`: block status through the backing chain. */
import type { Co } from '../../engine/coroutine.js';
import { MAX_CHAIN_DEPTH, type ImageHandle } from './handle.js';

export interface MapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
  offset: number | null;
  /** The file holding the data (for the human format). */
  filename: string;
}

/** Largest step asked at once: keeps each answer bounded. */
const MAP_STEP = 1 << 30;

/** Status of [offset, offset+maxBytes) walking down the chain until a layer decides it. */
export function* chainStatus(top: ImageHandle, offset: number, maxBytes: number): Co<MapEntry> {
  let h: ImageHandle | null = top;
  let bytes = maxBytes;
  for (let depth = 0; depth <= MAX_CHAIN_DEPTH && h !== null; depth++) {
    if (offset >= h.sizeBytes()) {
      return { start: offset, length: bytes, depth, present: false, zero: true, data: false, offset: null, filename: h.filename };
    }
    const st = yield* h.layerStatus(offset, Math.min(bytes, h.sizeBytes() - offset));
    bytes = st.bytes;
    if (st.allocated) {
      return { start: offset, length: bytes, depth, present: true, zero: st.zero, data: st.data, offset: st.offset, filename: h.filename };
    }
    if (h.backing === null) {
      return { start: offset, length: bytes, depth, present: false, zero: true, data: false, offset: null, filename: h.filename };
    }
    h = h.backing;
  }
  return { start: offset, length: bytes, depth: 0, present: false, zero: true, data: false, offset: null, filename: top.filename };
}

function mergeable(a: MapEntry, b: MapEntry): boolean {
  if (a.depth !== b.depth || a.present !== b.present || a.zero !== b.zero || a.data !== b.data || a.filename !== b.filename) return false;
  if ((a.offset === null) !== (b.offset === null)) return false;
  return a.offset === null || a.offset + a.length === b.offset;
}

/** All map entries of [start, start+length), merged like qemu-img map merges them. */
export function* mapImage(top: ImageHandle, start = 0, length = top.sizeBytes()): Co<MapEntry[]> {
  const out: MapEntry[] = [];
  const end = start + length;
  let pos = start;
  while (pos < end) {
    const e = yield* chainStatus(top, pos, Math.min(MAP_STEP, end - pos));
    const last = out[out.length - 1];
    if (last !== undefined && mergeable(last, e)) last.length += e.length;
    else out.push(e);
    pos += e.length;
  }
  return out;
}

/** `--output=json` (QEMU prints one object per line inside one array). */
export function mapJson(entries: readonly MapEntry[]): string {
  const lines = entries.map((e) => {
    const off = e.offset !== null && (e.data || e.zero) && e.present ? `, "offset": ${e.offset}` : '';
    return `{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, "zero": ${e.zero}, "data": ${e.data}${off}}`;
  });
  return `[${lines.join(',\n')}]`;
}

/**
 * The human format: only data with a host offset, as `Offset Length Mapped to File`. Data without
 * one (compressed clusters) cannot be shown this way: `error` is set and the listing stops there,
 * as qemu-img map does.
 */
export function mapHuman(entries: readonly MapEntry[]): { text: string; error: string | null } {
  const hex = (n: number): string => (n === 0 ? '0' : `0x${n.toString(16)}`);
  const pad = (s: string): string => s.padEnd(16);
  const lines = [`${pad('Offset')}${pad('Length')}${pad('Mapped to')}File`];
  for (const e of entries) {
    if (!e.data) continue;
    if (e.offset === null) return { text: lines.join('\n'), error: 'File contains external, encrypted or compressed clusters.' };
    lines.push(`${pad(hex(e.start))}${pad(hex(e.length))}${pad(hex(e.offset))}${e.filename}`);
  }
  return { text: lines.join('\n'), error: null };
}
