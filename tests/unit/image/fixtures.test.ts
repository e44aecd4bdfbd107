import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MainLoop } from '../../../src/engine/main-loop.js';
import type { Co } from '../../../src/engine/coroutine.js';
import { closeImage, openImage } from '../../../src/block/image/handle.js';
import { mapImage, mapJson } from '../../../src/block/image/map.js';
import { loadBitmaps } from '../../../src/block/qcow2/bitmaps.js';
import { checkQcow2 } from '../../../src/block/qcow2/check.js';

// Images made by Debian's qemu-img 7.2 / qemu-io (see fixtures/images/README.md): a compressed
// base, an overlay with a persistent bitmap, zero clusters and a discard, and a v2 image.
const dir = resolve(import.meta.dirname, '../../../fixtures/images');
const run = <T>(co: Co<T>): T => new MainLoop().runCoroutine('fixture', co);

describe("QEMU-made fixture images read right", () => {
  it('overlay over a compressed base: contents, map, bitmap', () => {
    const h = run(openImage(join(dir, 'top.qcow2'), { readOnly: true }));
    try {
      const buf = new Uint8Array(256 * 1024);
      run(h.read(0, buf));
      const expected = new Uint8Array(256 * 1024);
      expected.fill(0x11, 0, 64 * 1024);
      expected.fill(0x33, 32 * 1024, 48 * 1024);
      expected.fill(0x22, 132 * 1024, 192 * 1024);
      expect(Buffer.compare(buf, expected)).toBe(0);
      expect(mapJson(run(mapImage(h)))).toBe(
        [
          '[{ "start": 0, "length": 32768, "depth": 1, "present": true, "zero": false, "data": true},',
          '{ "start": 32768, "length": 16384, "depth": 0, "present": true, "zero": false, "data": true, "offset": 28672},',
          '{ "start": 49152, "length": 16384, "depth": 1, "present": true, "zero": false, "data": true},',
          '{ "start": 65536, "length": 65536, "depth": 1, "present": false, "zero": true, "data": false},',
          '{ "start": 131072, "length": 4096, "depth": 0, "present": true, "zero": true, "data": false},',
          '{ "start": 135168, "length": 61440, "depth": 1, "present": true, "zero": false, "data": true},',
          '{ "start": 196608, "length": 8192, "depth": 0, "present": true, "zero": true, "data": false},',
          '{ "start": 204800, "length": 57344, "depth": 1, "present": false, "zero": true, "data": false}]',
        ].join('\n'),
      );
      const bitmaps = run(loadBitmaps(h.qcow2!));
      expect(bitmaps.map((b) => [b.name, b.granularity, b.flags])).toEqual([['bm0', 16384, 2]]);
      const dirty: number[] = [];
      bitmaps[0]!.bits.forEach((byte, i) => {
        for (let k = 0; k < 8; k++) if ((byte & (1 << k)) !== 0) dirty.push(i * 8 + k);
      });
      expect(dirty).toEqual([2, 8, 12]);
    } finally {
      run(closeImage(h));
    }
  });

  it('image with an internal snapshot: active data reads, snapshot listed, check clean', () => {
    const h = run(openImage(join(dir, 'snap.qcow2'), { readOnly: true, forCheck: true }));
    const buf = new Uint8Array(64 * 1024);
    run(h.read(0, buf));
    const expected = new Uint8Array(64 * 1024);
    expected.fill(0x21, 0, 16 * 1024);
    expected.fill(0x22, 16 * 1024, 48 * 1024);
    expect(Buffer.compare(buf, expected)).toBe(0);
    expect(h.qcow2!.snapshots.map((s) => [s.id, s.name])).toEqual([['1', 's1']]);
    const r = run(checkQcow2(h.qcow2!, { leaks: false, errors: false }));
    expect([r.corruptions, r.leaks]).toEqual([0, 0]);
    run(closeImage(h));
  });

  it('compressed image checks like qemu-img; v2 image reads', () => {
    const c = run(openImage(join(dir, 'comp.qcow2'), { readOnly: true, forCheck: true }));
    const r = run(checkQcow2(c.qcow2!, { leaks: false, errors: false }));
    expect([r.corruptions, r.leaks, r.allocatedClusters, r.compressedClusters, r.fragmentedClusters, r.imageEndOffset]).toEqual([0, 0, 32, 32, 32, 24576]);
    run(closeImage(c));
    const v2 = run(openImage(join(dir, 'v2.qcow2'), { readOnly: true }));
    expect(v2.qcow2!.version).toBe(2);
    const buf = new Uint8Array(5000);
    run(v2.read(0, buf));
    expect(buf.subarray(1000, 4000).every((b) => b === 0x44)).toBe(true);
    expect(buf.subarray(0, 1000).every((b) => b === 0) && buf.subarray(4000).every((b) => b === 0)).toBe(true);
    run(closeImage(v2));
  });
});
