import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { BlockGraph } from '../../../src/block/graph.js';
import { BlockError } from '../../../src/block/error.js';
import { bdrvCoPreadv, bdrvCoPwritev, bdrvCoBlockStatus, bdrvCoTruncate } from '../../../src/block/io.js';
import { BdrvReq, BlockStatus } from '../../../src/block/driver.js';
import { findDriver } from '../../../src/block/registry.js';
import { qcow2ChangeBackingFile, qcow2Driver } from '../../../src/block/qcow2/driver.js';
import { createQcow2 } from '../../../src/block/qcow2/create.js';
import { HostFileIO } from '../../../src/block/image/host-file.js';
import { loadBitmaps, newBitmap, storeBitmaps } from '../../../src/block/qcow2/bitmaps.js';
import { Qcow2Image } from '../../../src/block/qcow2/qcow2.js';
import { checkQcow2 } from '../../../src/block/qcow2/check.js';
import type { Co } from '../../../src/engine/coroutine.js';

const dir = mkdtempSync(join(tmpdir(), 'tsqemu-qcow2-drv-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function runOn<T>(loop: MainLoop, co: Co<T>): T {
  return loop.runCoroutine('t', co);
}

function create(name: string, sizeBytes: number, backing?: { file: string; format: string }): string {
  const path = join(dir, name);
  const io = HostFileIO.open(path, { create: true });
  runOn(new MainLoop(), createQcow2(io, { sizeBytes, backingFile: backing?.file ?? null, backingFormat: backing?.format ?? null }));
  io.close();
  return path;
}

function open(loop: MainLoop, path: string, readOnly = false): { graph: BlockGraph; bs: ReturnType<BlockGraph['blockdevAdd']> } {
  const graph = new BlockGraph(loop);
  const bs = graph.blockdevAdd({ driver: 'qcow2', 'read-only': readOnly, file: { driver: 'file', filename: path, 'read-only': readOnly } });
  return { graph, bs };
}

describe('qcow2 BlockDriver', () => {
  it('is registered', () => {
    expect(findDriver('qcow2')).toBe(qcow2Driver);
  });

  it('reads and writes through the graph (with modelled file latency), opens the backing file from the header', () => {
    const base = create('base.qcow2', 1 << 20);
    const top = create('top.qcow2', 1 << 20, { file: 'base.qcow2', format: 'qcow2' });
    const loop = new MainLoop();
    {
      const { graph, bs } = open(loop, base);
      expect(runOn(loop, bdrvCoPwritev(bs, 0, 65536, new Uint8Array(65536).fill(0x42)))).toBe(0);
      runOn(loop, graph.coCloseAll());
    }
    const { graph, bs } = open(loop, top);
    expect(bs.backing?.bs.drv.formatName).toBe('qcow2');
    expect(runOn(loop, bdrvCoPwritev(bs, 4096, 512, new Uint8Array(512).fill(0x43)))).toBe(0);
    const buf = new Uint8Array(65536);
    expect(runOn(loop, bdrvCoPreadv(bs, 0, 65536, buf))).toBe(0);
    const expected = new Uint8Array(65536).fill(0x42);
    expected.fill(0x43, 4096, 4608);
    expect(Buffer.compare(buf, expected)).toBe(0);
    const st = runOn(loop, bdrvCoBlockStatus(bs, true, 65536, 65536));
    expect(st.ret & BlockStatus.ALLOCATED).toBe(0);
    expect(loop.nowNs).toBeGreaterThan(0); // the file driver's latency ran in virtual time
    runOn(loop, graph.coCloseAll());
    const check = runOn(loop, (function* () {
      const io = HostFileIO.open(top, { readOnly: true });
      const img = yield* Qcow2Image.open(io, { readOnly: true, forCheck: true });
      const r = yield* checkQcow2(img, { leaks: false, errors: false });
      io.close();
      return r;
    })());
    expect(check.corruptions + check.leaks).toBe(0);
  });

  it('compressed writes, truncate, info through the driver', () => {
    const path = create('misc.qcow2', 1 << 20);
    const loop = new MainLoop();
    const { graph, bs } = open(loop, path);
    const data = new Uint8Array(65536).fill(0x61);
    expect(runOn(loop, bdrvCoPwritev(bs, 65536, 65536, data, BdrvReq.WRITE_COMPRESSED))).toBe(0);
    const st = runOn(loop, bdrvCoBlockStatus(bs, true, 65536, 65536));
    expect(st.ret & (BlockStatus.DATA | BlockStatus.OFFSET_VALID)).toBe(BlockStatus.DATA); // compressed: no host offset
    expect(runOn(loop, bdrvCoTruncate(bs, 2 << 20, true))).toBe(0);
    expect(bs.getLength()).toBe(2 << 20);
    const back = new Uint8Array(65536);
    expect(runOn(loop, bdrvCoPreadv(bs, 65536, 65536, back))).toBe(0);
    expect(Buffer.compare(back, data)).toBe(0);
    expect(bs.drv.getInfo?.(bs)).toEqual({ clusterSize: 65536, isDirty: false });
    expect(runOn(loop, qcow2ChangeBackingFile(bs, 'new-base.raw', 'raw'))).toBe(0);
    expect((bs.opaque as { img: Qcow2Image }).img.header.backingFile).toBe('new-base.raw');
    expect(bs.drv.getSpecificInfo?.(bs)).toEqual({ type: 'qcow2', data: { compat: '1.1', 'compression-type': 'zlib', 'lazy-refcounts': false, 'refcount-bits': 16, corrupt: false, 'extended-l2': false } });
    runOn(loop, graph.coCloseAll());
  });

  it('refuses bad images and backing loops with QEMU-like errors', () => {
    const a = create('loop-a.qcow2', 1 << 20, { file: 'loop-b.qcow2', format: 'qcow2' });
    create('loop-b.qcow2', 1 << 20, { file: 'loop-a.qcow2', format: 'qcow2' });
    const loop = new MainLoop();
    expect(() => open(loop, a)).toThrow(/creates an infinite loop/);
    const junk = join(dir, 'junk');
    const io = HostFileIO.open(junk, { create: true });
    runOn(loop, io.pwrite(0, new Uint8Array(4096).fill(1)));
    io.close();
    let err: unknown;
    try {
      open(loop, junk);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BlockError);
    expect((err as Error).message).toBe('Image is not in qcow2 format');
  });

  it('loads persistent bitmaps into the node, records writes, and stores them at close', () => {
    const path = create('bm.qcow2', 4 << 20);
    const loop = new MainLoop();
    runOn(loop, (function* () {
      const io = HostFileIO.open(path);
      const img = yield* Qcow2Image.open(io);
      yield* img.withLock(() => storeBitmaps(img, [newBitmap(img.sizeBytes, 'b0', 65536, true)]));
      yield* img.close();
      io.close();
    })());
    const { graph, bs } = open(loop, path);
    const bm = bs.findDirtyBitmap('b0');
    expect(bm?.persistent).toBe(true);
    expect(bm?.enabled).toBe(true);
    runOn(loop, bdrvCoPwritev(bs, 3 * 65536, 100, new Uint8Array(100).fill(1)));
    expect(bm?.count).toBe(65536);
    runOn(loop, graph.coCloseAll());
    const stored = runOn(loop, (function* () {
      const io = HostFileIO.open(path, { readOnly: true });
      const img = yield* Qcow2Image.open(io, { readOnly: true });
      const list = yield* loadBitmaps(img);
      io.close();
      return list;
    })());
    expect(stored.map((b) => [b.name, b.flags, b.bits[0]])).toEqual([['b0', 2, 0b1000]]);
  });
});
