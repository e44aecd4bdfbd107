/**
 * Checkpoint state: what a checkpoint says about the guest, and how two checkpoints differ.
 *
 * Each part of the machine (CPU, RAM, a device, the block layer) contributes a probe that
 * describes its state as named entries: small values verbatim (a register), large regions as
 * digests (a RAM page as one digest per 256-byte line, so a mismatch names the line). Play
 * compares entry by entry and reports the first few that differ.
 */
import { Digest } from '../engine/digest.js';
import type { StateEntries, StateMap } from './log-format.js';

export interface StateProbe {
  /** Unique among a machine's probes: `cpu`, `ram`, `uart0`, `blk`. */
  readonly name: string;
  /** The state now. Called only at checkpoints; must not change the run. */
  capture(): StateEntries;
  /**
   * After a snapshot restore (taken right after a checkpoint): forget what changed before it, as
   * a capture would have. Probes that report absolute values need nothing.
   */
  resync?(): void;
}

export function captureState(probes: readonly StateProbe[]): StateMap {
  const out: Record<string, StateEntries> = {};
  for (const probe of probes) out[probe.name] = probe.capture();
  return out;
}

export interface StateDifference {
  readonly probe: string;
  readonly key: string;
  readonly recorded: string | number | undefined;
  readonly replayed: string | number | undefined;
  /** A finer location when the entry is a page of line digests: the byte range that differs. */
  readonly detail?: string;
}

/** Bytes per line digest in a RAM page entry. */
export const LINE_BYTES = 256;
/** Hex digits per line digest. */
const LINE_HEX = 8;

/** Entries of a page probe are `page 0x…` with one 8-hex-digit digest per line. */
function lineDetail(key: string, recorded: string, replayed: string): string | undefined {
  const match = /^page (0x[0-9a-f]+)$/.exec(key);
  if (match === null || recorded.length !== replayed.length) return undefined;
  const base = Number.parseInt(match[1]!.slice(2), 16);
  for (let i = 0; i * LINE_HEX < recorded.length; i++) {
    if (recorded.slice(i * LINE_HEX, (i + 1) * LINE_HEX) !== replayed.slice(i * LINE_HEX, (i + 1) * LINE_HEX)) {
      const start = base + i * LINE_BYTES;
      return `bytes 0x${start.toString(16)}..0x${(start + LINE_BYTES - 1).toString(16)} (page offset 0x${(i * LINE_BYTES).toString(16)})`;
    }
  }
  return undefined;
}

/** Entries that differ, in probe order then key order; at most `limit`. */
export function diffState(recorded: StateMap, replayed: StateMap, limit = 16): StateDifference[] {
  const out: StateDifference[] = [];
  const probes = [...new Set([...Object.keys(recorded), ...Object.keys(replayed)])];
  for (const probe of probes) {
    const a = recorded[probe] ?? {};
    const b = replayed[probe] ?? {};
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    for (const key of keys) {
      const ra = a[key];
      const rb = b[key];
      if (ra === rb) continue;
      const detail = typeof ra === 'string' && typeof rb === 'string' ? lineDetail(key, ra, rb) : undefined;
      out.push(detail === undefined ? { probe, key, recorded: ra, replayed: rb } : { probe, key, recorded: ra, replayed: rb, detail });
      if (out.length >= limit) return out;
    }
  }
  return out;
}

/** 8 hex digits of a 32-bit digest of `bytes[start, end)`. */
function lineDigest(bytes: Uint8Array, start: number, end: number): string {
  // FNV-1a over 32-bit words where aligned: fast enough for the pages a checkpoint covers.
  let h = 0x811c9dc5;
  let i = start;
  if ((bytes.byteOffset + start) % 4 === 0 && (end - start) % 4 === 0) {
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset + start, (end - start) / 4);
    for (let w = 0; w < words.length; w++) h = Math.imul(h ^ words[w]!, 0x01000193);
    i = end;
  }
  for (; i < end; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return (h >>> 0).toString(16).padStart(LINE_HEX, '0');
}

/** RAM compared per memcmp before looking at single pages. */
const CHUNK_BYTES = 1 << 18;

/** Page size RAM probes report in. */
export const PAGE_BYTES = 4096;

/** The entry for one RAM page: its line digests, concatenated. */
export function pageEntry(bytes: Uint8Array, pageOffset: number): string {
  const end = Math.min(bytes.length, pageOffset + PAGE_BYTES);
  let out = '';
  for (let line = pageOffset; line < end; line += LINE_BYTES) out += lineDigest(bytes, line, Math.min(end, line + LINE_BYTES));
  return out;
}

/**
 * Tracks which pages of a RAM block changed between checkpoints without hooking every store: a
 * shadow copy is compared page by page (memcmp speed) at each capture. Entries name the guest
 * physical address of each changed page.
 */
export class RamPageProbe implements StateProbe {
  private readonly shadow: Uint8Array;

  constructor(
    readonly name: string,
    private readonly bytes: Uint8Array,
    private readonly base: number,
  ) {
    this.shadow = new Uint8Array(bytes);
  }

  capture(): StateEntries {
    const out: Record<string, string> = {};
    const bytes = this.bytes;
    const shadow = this.shadow;
    const a = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    const b = Buffer.from(shadow.buffer, shadow.byteOffset, shadow.length);
    // Large chunks first (one memcmp each), pages only inside chunks that changed.
    for (let chunk = 0; chunk < bytes.length; chunk += CHUNK_BYTES) {
      const chunkEnd = Math.min(bytes.length, chunk + CHUNK_BYTES);
      if (a.compare(b, chunk, chunkEnd, chunk, chunkEnd) === 0) continue;
      for (let page = chunk; page < chunkEnd; page += PAGE_BYTES) {
        const end = Math.min(chunkEnd, page + PAGE_BYTES);
        if (a.compare(b, page, end, page, end) === 0) continue;
        out[`page 0x${(this.base + page).toString(16)}`] = pageEntry(bytes, page);
        shadow.set(bytes.subarray(page, end), page);
      }
    }
    return out;
  }

  /** Re-bases the shadow after a snapshot restore (the RAM changed under us). */
  resync(): void {
    this.shadow.set(this.bytes);
  }
}

/** A probe built from a function returning plain values; digests anything that is not a string or number. */
export function valueProbe(name: string, read: () => Readonly<Record<string, unknown>>): StateProbe {
  return {
    name,
    capture(): StateEntries {
      const out: Record<string, string | number> = {};
      for (const [key, value] of Object.entries(read())) {
        out[key] = typeof value === 'string' || typeof value === 'number' ? value : typeof value === 'bigint' ? '0x' + value.toString(16) : new Digest().value(value).hex();
      }
      return out;
    },
  };
}
