import { describe, expect, it } from 'vitest';
import { ImageError } from '../../../src/block/qcow2/errors.js';
import {
  AUTOCLEAR_BITMAPS,
  COMPAT_LAZY_REFCOUNTS,
  INCOMPAT_DIRTY,
  newHeader,
  parseHeader,
  serializeHeader,
  setBe32,
  setBe64num,
  type Qcow2Header,
} from '../../../src/block/qcow2/format.js';
import { MemoryByteIO } from '../../../src/block/qcow2/io.js';
import { Qcow2Image } from '../../../src/block/qcow2/qcow2.js';
import { newImage, run } from './helpers.js';

function roundTrip(h: Qcow2Header): Qcow2Header {
  const cs = 2 ** h.clusterBits;
  const bytes = serializeHeader(h);
  const buf = new Uint8Array(cs);
  buf.set(bytes);
  return parseHeader(buf, 16 * cs);
}

function base(version: 2 | 3, extra: Partial<Qcow2Header> = {}): Qcow2Header {
  const h = newHeader({ version, clusterBits: 16, sizeBytes: 0, lazyRefcounts: false, refcountOrder: 4, backingFile: null, backingFormat: null });
  return { ...h, sizeBytes: 1 << 30, l1Size: 2, l1TableOffset: 3 << 16, ...extra };
}

describe('qcow2 header serialize/parse pair', () => {
  it('v3 with backing file, backing format, bitmaps and unknown extension round-trips', () => {
    const h = base(3, {
      backingFile: 'base.qcow2',
      backingFormat: 'qcow2',
      compatible: COMPAT_LAZY_REFCOUNTS,
      autoclear: AUTOCLEAR_BITMAPS,
      bitmaps: { nbBitmaps: 1, directorySize: 48, directoryOffset: 5 << 16 },
      unknownExtensions: [{ type: 0x12345678, data: new Uint8Array([1, 2, 3]) }],
    });
    const back = roundTrip(h);
    expect(back.backingFile).toBe('base.qcow2');
    expect(back.backingFormat).toBe('qcow2');
    expect(back.bitmaps).toEqual(h.bitmaps);
    expect(back.compatible).toBe(COMPAT_LAZY_REFCOUNTS);
    expect(back.unknownExtensions).toEqual([{ type: 0x12345678, data: new Uint8Array([1, 2, 3]) }]);
    expect(back.featureTable.map((f) => f.name)).toContain('lazy refcounts');
    // Serializing again gives the same bytes (the pair is a bijection on what we keep).
    expect(serializeHeader(back)).toEqual(serializeHeader(h));
  });

  it('v2 round-trips without v3 fields', () => {
    const back = roundTrip(base(2, { backingFile: 'b.img', backingFormat: 'raw' }));
    expect(back.version).toBe(2);
    expect(back.headerLength).toBe(72);
    expect(back.backingFile).toBe('b.img');
    expect(back.refcountOrder).toBe(4);
  });

  it('drops a bitmaps extension whose autoclear bit is clear (stale after an old writer)', () => {
    const h = base(3, { autoclear: AUTOCLEAR_BITMAPS, bitmaps: { nbBitmaps: 1, directorySize: 48, directoryOffset: 5 << 16 } });
    const bytes = serializeHeader(h);
    const buf = new Uint8Array(65536);
    buf.set(bytes);
    setBe32(buf, 92, 0); // clear autoclear
    expect(parseHeader(buf, 1 << 20).bitmaps).toBeNull();
  });
});

/** Opens `bytes` read/write and returns the error message; asserts nothing was written. */
function openError(bytes: Uint8Array): string {
  const io = new MemoryByteIO('bad.qcow2', bytes);
  const before = io.bytes.slice();
  let message = '';
  try {
    run(Qcow2Image.open(io, { readOnly: false }));
  } catch (e) {
    expect(e).toBeInstanceOf(ImageError);
    message = (e as Error).message;
  }
  expect(io.writes).toBe(0);
  expect(Buffer.compare(io.bytes, before)).toBe(0);
  return message;
}

function goodImage(): Uint8Array {
  return newImage({ sizeBytes: 1 << 20 }).bytes.slice();
}

describe('qcow2 bad input: clear errors, no writes', () => {
  it('empty and truncated files', () => {
    expect(openError(new Uint8Array(0))).toBe('Image is not in qcow2 format');
    expect(openError(goodImage().slice(0, 50))).toBe('Image is not in qcow2 format');
    // Header intact but the refcount table and L1 are cut off.
    expect(openError(goodImage().slice(0, 65536 + 100))).toBe('Reference count table offset past the end of the image file');
  });

  it('bad magic', () => {
    const b = goodImage();
    b[0] = 0x51;
    b[3] = 0;
    expect(openError(b)).toBe('Image is not in qcow2 format');
  });

  it('unsupported version and cluster size', () => {
    const b = goodImage();
    setBe32(b, 4, 4);
    expect(openError(b)).toBe('Unsupported qcow2 version 4');
    const c = goodImage();
    setBe32(c, 20, 22);
    expect(openError(c)).toBe('Unsupported cluster size: 2^22');
  });

  it('unknown incompatible bits are named from the feature table or reported in hex', () => {
    const b = goodImage();
    b[79] = 0x04; // bit 2: external data file (named in the image's table)
    expect(openError(b)).toBe('Unsupported qcow2 feature(s): external data file');
    const c = goodImage();
    c[78] = 0x01; // bit 8: unknown
    expect(openError(c)).toBe('Unsupported qcow2 feature(s): Unknown incompatible feature: 100');
  });

  it('huge L1 size', () => {
    const b = goodImage();
    setBe32(b, 36, 0x10000000);
    expect(openError(b)).toBe('Active L1 table too large');
  });

  it('L1 smaller than the disk needs, unaligned tables, refcount table past the end', () => {
    const b = goodImage();
    setBe64num(b, 24, 2 ** 40);
    expect(openError(b)).toBe('L1 table is too small');
    const c = goodImage();
    setBe64num(c, 40, 0x30001);
    expect(openError(c)).toBe('Invalid L1 table offset');
    const d = goodImage();
    setBe64num(d, 48, 2 ** 30);
    expect(openError(d)).toBe('Reference count table offset past the end of the image file');
    const e = goodImage();
    setBe32(e, 56, 0);
    expect(openError(e)).toBe('Image does not contain a reference count table');
  });

  it('header length beyond the cluster, bad extension length, refcount order', () => {
    const b = goodImage();
    setBe32(b, 100, 70000);
    expect(openError(b)).toBe('qcow2 header exceeds cluster size');
    const c = goodImage();
    setBe32(c, 112 + 4, 0xffff0);
    expect(openError(c)).toBe('ext_len too large');
    const d = goodImage();
    setBe32(d, 96, 7);
    expect(openError(d)).toBe('Reference count width too large; may not exceed 64 bits');
  });

  it('a corrupt image does not open read/write; a dirty one opens read-only untouched', () => {
    const b = goodImage();
    b[79] = 0x02;
    expect(openError(b)).toBe('qcow2: Image is corrupt; cannot be opened read/write');
    const d = goodImage();
    d[79] = Number(INCOMPAT_DIRTY);
    const io = new MemoryByteIO('dirty', d);
    const img = run(Qcow2Image.open(io, { readOnly: true }));
    expect(img.dirty).toBe(true);
    expect(io.writes).toBe(0);
  });
});
