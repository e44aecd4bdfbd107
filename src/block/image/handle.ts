/**
 * Images as the tools see them: a format (qcow2 or raw) over a file, with its backing chain.
 * Chains are opened iteratively with a depth bound and loop detection; nothing reachable from
 * image data recurses.
 */
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { realpathSync } from 'node:fs';
import type { Co } from '../../engine/coroutine.js';
import { attachPersistentBitmaps, type PersistentBitmap } from '../qcow2/bitmaps.js';
import { checkQcow2 } from '../qcow2/check.js';
import { ImageError } from '../qcow2/errors.js';
import { QCOW2_MAGIC, be32 } from '../qcow2/format.js';
import type { ByteIO } from '../qcow2/io.js';
import { ClusterType, Qcow2Image } from '../qcow2/qcow2.js';
import { HostFileIO } from './host-file.js';

export type ImageFormat = 'qcow2' | 'raw';
export const FORMATS: readonly ImageFormat[] = ['qcow2', 'raw'];

/** Deepest backing chain we open (QEMU has no fixed limit; a bound keeps bad images finite). */
export const MAX_CHAIN_DEPTH = 256;

/** One answer of block status within one layer. */
export interface LayerStatus {
  readonly bytes: number;
  /** This layer decides the contents (data or zero); false means "ask the backing file". */
  readonly allocated: boolean;
  readonly zero: boolean;
  readonly data: boolean;
  /** Host offset in this layer's file, when there is one. */
  readonly offset: number | null;
}

export interface ImageHandle {
  readonly filename: string;
  readonly format: ImageFormat;
  readonly file: ByteIO;
  readonly qcow2: Qcow2Image | null;
  readonly backing: ImageHandle | null;
  readonly readOnly: boolean;
  /** Persistent bitmaps attached to a read/write qcow2 image. */
  bitmaps: PersistentBitmap[];
  sizeBytes(): number;
  read(offset: number, buf: Uint8Array): Co<void>;
  write(offset: number, data: Uint8Array): Co<void>;
  writeZeroes(offset: number, bytes: number, mayUnmap: boolean): Co<void>;
  /** Compressed write of whole clusters (qcow2 only; raw fails with ENOTSUP). */
  writeCompressed(offset: number, data: Uint8Array): Co<void>;
  discard(offset: number, bytes: number): Co<void>;
  flush(): Co<void>;
  truncate(sizeBytes: number, shrink: boolean): Co<void>;
  layerStatus(offset: number, bytes: number): Co<LayerStatus>;
  close(): Co<void>;
}

function checkRange(size: number, offset: number, bytes: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || bytes < 0 || offset + bytes > size) throw new ImageError('EIO');
}

class RawImage implements ImageHandle {
  readonly format = 'raw';
  readonly qcow2 = null;
  readonly backing = null;
  bitmaps: PersistentBitmap[] = [];
  constructor(
    readonly filename: string,
    readonly file: ByteIO,
    readonly readOnly: boolean,
    private size: number,
  ) {}
  sizeBytes(): number {
    return this.size;
  }
  *read(offset: number, buf: Uint8Array): Co<void> {
    checkRange(this.size, offset, buf.length);
    yield* this.file.pread(offset, buf);
  }
  *write(offset: number, data: Uint8Array): Co<void> {
    checkRange(this.size, offset, data.length);
    if (this.readOnly) throw new ImageError('EACCES', 'Block node is read-only');
    yield* this.file.pwrite(offset, data);
  }
  *writeZeroes(offset: number, bytes: number): Co<void> {
    checkRange(this.size, offset, bytes);
    const chunk = 1 << 20;
    for (let pos = offset; pos < offset + bytes; pos += chunk) yield* this.write(pos, new Uint8Array(Math.min(chunk, offset + bytes - pos)));
  }
  *discard(offset: number, bytes: number): Co<void> {
    checkRange(this.size, offset, bytes);
  }
  *writeCompressed(): Co<void> {
    throw new ImageError('ENOTSUP', 'Compression not supported for this file format');
  }
  *flush(): Co<void> {
    yield* this.file.flush();
  }
  *truncate(sizeBytes: number): Co<void> {
    if (this.readOnly) throw new ImageError('EACCES', 'Block node is read-only');
    yield* this.file.truncate(sizeBytes);
    this.size = sizeBytes;
  }
  *layerStatus(offset: number, bytes: number): Co<LayerStatus> {
    checkRange(this.size, offset, bytes);
    return { bytes, allocated: true, zero: false, data: true, offset };
  }
  *close(): Co<void> {
    yield* this.file.flush();
    if (this.file instanceof HostFileIO) this.file.close();
  }
}

class Qcow2Handle implements ImageHandle {
  readonly format = 'qcow2';
  bitmaps: PersistentBitmap[] = [];
  constructor(
    readonly filename: string,
    readonly file: ByteIO,
    readonly qcow2: Qcow2Image,
    readonly backing: ImageHandle | null,
    readonly readOnly: boolean,
  ) {}
  sizeBytes(): number {
    return this.qcow2.sizeBytes;
  }
  read(offset: number, buf: Uint8Array): Co<void> {
    return this.qcow2.read(offset, buf);
  }
  write(offset: number, data: Uint8Array): Co<void> {
    return this.qcow2.write(offset, data);
  }
  writeZeroes(offset: number, bytes: number, mayUnmap: boolean): Co<void> {
    return this.qcow2.writeZeroes(offset, bytes, mayUnmap);
  }
  discard(offset: number, bytes: number): Co<void> {
    return this.qcow2.discard(offset, bytes);
  }
  *writeCompressed(offset: number, data: Uint8Array): Co<void> {
    // Whole clusters at a time, as qcow2 takes them.
    const cs = this.qcow2.cs;
    for (let at = 0; at < data.length; at += cs) yield* this.qcow2.writeCompressed(offset + at, data.subarray(at, Math.min(data.length, at + cs)));
  }
  flush(): Co<void> {
    return this.qcow2.flush();
  }
  truncate(sizeBytes: number, shrink: boolean): Co<void> {
    return this.qcow2.truncate(sizeBytes, shrink);
  }
  *layerStatus(offset: number, bytes: number): Co<LayerStatus> {
    const e = yield* this.qcow2.blockStatus(offset, bytes);
    switch (e.type) {
      case ClusterType.Unallocated:
        return { bytes: e.bytes, allocated: false, zero: false, data: false, offset: null };
      case ClusterType.ZeroPlain:
        return { bytes: e.bytes, allocated: true, zero: true, data: false, offset: null };
      case ClusterType.ZeroAlloc:
        return { bytes: e.bytes, allocated: true, zero: true, data: false, offset: e.hostOffset };
      case ClusterType.Normal:
        return { bytes: e.bytes, allocated: true, zero: false, data: true, offset: e.hostOffset };
      case ClusterType.Compressed:
        return { bytes: e.bytes, allocated: true, zero: false, data: true, offset: null };
    }
  }
  *close(): Co<void> {
    try {
      yield* this.qcow2.close();
    } finally {
      if (this.file instanceof HostFileIO) this.file.close();
    }
  }
}

/** Reads the first bytes and guesses the format (qcow2 magic, else raw). */
export function* probeFormat(io: ByteIO): Co<ImageFormat> {
  const head = new Uint8Array(4);
  yield* io.pread(0, head);
  return be32(head, 0) === QCOW2_MAGIC ? 'qcow2' : 'raw';
}

export interface OpenImageOptions {
  readonly format?: ImageFormat | null;
  readonly readOnly?: boolean;
  /** Open without the backing chain (qemu-img info / check, `-U`-less inspection). */
  readonly noBacking?: boolean;
  readonly forCheck?: boolean;
  /** Load persistent bitmaps (read/write qcow2 only); on by default for r/w opens. */
  readonly bitmaps?: boolean;
  readonly onMessage?: (line: string) => void;
  /** cache=unsafe for the top image: no host flushes (qemu-img convert's target default). */
  readonly unsafeCache?: boolean;
  /** Opens a file as ByteIO (tests pass memory files). Defaults to the host file system. */
  readonly openFile?: (path: string, readOnly: boolean) => ByteIO;
}

export function parseFormat(name: string): ImageFormat {
  if ((FORMATS as readonly string[]).includes(name)) return name as ImageFormat;
  throw new ImageError('EINVAL', `Unknown driver '${name}'`);
}

/** Where a relative backing file name points: next to the image that names it (as QEMU resolves it). */
export function resolveBackingPath(imagePath: string, backing: string): string {
  if (isAbsolute(backing) || backing.includes(':')) return backing;
  return join(dirname(imagePath), backing);
}

function canonical(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

interface Pending {
  filename: string;
  format: ImageFormat | null;
  io: ByteIO;
  qcow2: Qcow2Image | null;
  rawSize: number;
  readOnly: boolean;
}

/**
 * Opens `filename` and (unless `noBacking`) its whole backing chain, top first, iteratively.
 * Backing files are opened read-only. Errors carry QEMU's nesting: "Could not open backing file:
 * Could not open 'a.qcow2': No such file or directory".
 */
export function* openImage(filename: string, opts: OpenImageOptions = {}): Co<ImageHandle> {
  const openFile = opts.openFile ?? ((p: string, ro: boolean) => HostFileIO.open(p, { readOnly: ro, noFlush: opts.unsafeCache === true && p === filename }));
  const layers: Pending[] = [];
  const seen = new Set<string>();
  let path = filename;
  let format: ImageFormat | null = opts.format ?? null;
  let readOnly = opts.readOnly ?? false;
  const closeAll = function* (): Co<void> {
    for (const l of layers) {
      if (l.qcow2 !== null) yield* l.qcow2.close();
      if (l.io instanceof HostFileIO) l.io.close();
    }
  };
  try {
    for (let depth = 0; ; depth++) {
      if (depth >= MAX_CHAIN_DEPTH) throw new ImageError('EINVAL', `Backing chain of '${filename}' is deeper than ${MAX_CHAIN_DEPTH} images`);
      const key = canonical(path);
      if (seen.has(key)) throw new ImageError('EINVAL', `Backing file '${path}' creates an infinite loop.`);
      seen.add(key);
      let io: ByteIO;
      try {
        io = openFile(path, readOnly);
      } catch (e) {
        throw layerError(depth, e instanceof ImageError ? new ImageError(e.errno, `Could not open '${path}': ${e.message}`) : e);
      }
      const layer: Pending = { filename: path, format, io, qcow2: null, rawSize: 0, readOnly };
      layers.push(layer);
      try {
        const fmt = format ?? (yield* probeFormat(io));
        layer.format = fmt;
        if (fmt === 'raw') {
          layer.rawSize = yield* io.length();
          break;
        }
        const img = yield* Qcow2Image.open(io, {
          readOnly,
          forCheck: opts.forCheck ?? false,
          onMessage: opts.onMessage,
          repairDirty: function* (image) {
            yield* checkQcow2(image, { leaks: true, errors: true });
          },
        });
        layer.qcow2 = img;
        const backingName = img.header.backingFile;
        if (backingName === null || opts.noBacking === true) break;
        path = resolveBackingPath(path, backingName);
        format = img.header.backingFormat === null ? null : parseFormat(img.header.backingFormat);
        readOnly = true;
      } catch (e) {
        throw layerError(depth, e);
      }
    }
    // Build handles bottom-up so each overlay gets its backing.
    let below: ImageHandle | null = null;
    for (let i = layers.length - 1; i >= 0; i--) {
      const l = layers[i]!;
      let h: ImageHandle;
      if (l.format === 'raw') {
        h = new RawImage(l.filename, l.io, l.readOnly, l.rawSize);
      } else {
        const q = l.qcow2!;
        if (below !== null) {
          const src = below;
          q.backing = { sizeBytes: src.sizeBytes(), read: (off, buf) => src.read(off, buf) };
        }
        h = new Qcow2Handle(l.filename, l.io, q, below, l.readOnly);
      }
      below = h;
    }
    const top = below!;
    if (top.qcow2 !== null && !top.readOnly && opts.bitmaps !== false && opts.forCheck !== true) {
      top.bitmaps = yield* attachPersistentBitmaps(top.qcow2);
    }
    return top;
  } catch (e) {
    yield* closeAll();
    throw e;
  }
}

/**
 * QEMU's nesting: each backing level prefixes "Could not open backing file: "; a host open error
 * carries "Could not open 'path': ..." itself (the tool adds the top image's name once more).
 */
function layerError(depth: number, e: unknown): unknown {
  if (!(e instanceof ImageError) || depth === 0) return e;
  return new ImageError(e.errno, 'Could not open backing file: '.repeat(depth) + e.message);
}

/** Closes a handle and its whole chain, top first (iteratively). */
export function* closeImage(top: ImageHandle): Co<void> {
  let h: ImageHandle | null = top;
  for (let i = 0; h !== null && i <= MAX_CHAIN_DEPTH; i++) {
    yield* h.close();
    h = h.backing;
  }
}
