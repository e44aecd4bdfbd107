import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MainLoop } from '../../../src/engine/main-loop.js';
import type { Co } from '../../../src/engine/coroutine.js';
import { BlockGraph } from '../../../src/block/graph.js';
import { bdrvCoPreadv, bdrvCoPwritev } from '../../../src/block/io.js';
import { coBlockDirtyBitmapAdd } from '../../../src/block/dirty-bitmap.js';
import '../../../src/block/qcow2/driver.js';
import { createQcow2 } from '../../../src/block/qcow2/create.js';
import { HostFileIO } from '../../../src/block/image/host-file.js';
import { loadBitmaps } from '../../../src/block/qcow2/bitmaps.js';
import { Qcow2Image } from '../../../src/block/qcow2/qcow2.js';
import { checkQcow2 } from '../../../src/block/qcow2/check.js';

const dir = mkdtempSync(join(tmpdir(), 'tsqemu-qcow2-reopen-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function runOn<T>(loop: MainLoop, co: Co<T>): T {
  return loop.runCoroutine('t', co);
}

function create(name: string, sizeBytes: number): string {
  const path = join(dir, name);
  const io = HostFileIO.open(path, { create: true });
  runOn(new MainLoop(), createQcow2(io, { sizeBytes, backingFile: null, backingFormat: null }));
  io.close();
  return path;
}

describe('qcow2 reopen read-only / read-write (bdrv_reopen_set_read_only)', () => {
  it('a node opened read-only becomes writable, and read-only again, as a commit base does', () => {
    const path = create('base.qcow2', 1 << 20);
    const loop = new MainLoop();
    const graph = new BlockGraph(loop);
    const bs = graph.blockdevAdd({ driver: 'qcow2', 'read-only': true, file: { driver: 'file', filename: path, 'read-only': true } });
    const data = new Uint8Array(65536).fill(0x5a);
    expect(runOn(loop, bdrvCoPwritev(bs, 0, data.length, data))).toBeLessThan(0);
    graph.reopenReadOnly(bs, false);
    expect(bs.readOnly).toBe(false);
    expect(runOn(loop, bdrvCoPwritev(bs, 0, data.length, data))).toBe(0);
    graph.reopenReadOnly(bs, true);
    expect(runOn(loop, bdrvCoPwritev(bs, 65536, data.length, data))).toBeLessThan(0);
    const buf = new Uint8Array(65536);
    expect(runOn(loop, bdrvCoPreadv(bs, 0, buf.length, buf))).toBe(0);
    expect(buf).toEqual(data);
    runOn(loop, graph.coCloseAll());
    const io = HostFileIO.open(path, { readOnly: true });
    const img = runOn(new MainLoop(), Qcow2Image.open(io, { readOnly: true }));
    const report = runOn(new MainLoop(), checkQcow2(img, { leaks: false, errors: false }));
    expect(report.corruptions + report.leaks).toBe(0);
    io.close();
  });

  it('stores persistent bitmaps before turning read-only', () => {
    const path = create('bm.qcow2', 1 << 20);
    const loop = new MainLoop();
    const graph = new BlockGraph(loop);
    const bs = graph.blockdevAdd({ driver: 'qcow2', file: { driver: 'file', filename: path } });
    const bitmap = runOn(loop, coBlockDirtyBitmapAdd(bs, { name: 'b', granularity: 65536, persistent: true }));
    expect(runOn(loop, bdrvCoPwritev(bs, 0, 65536, new Uint8Array(65536)))).toBe(0);
    expect(bitmap.count).toBe(65536);
    graph.reopenReadOnly(bs, true);
    const io = HostFileIO.open(path, { readOnly: true });
    const img = runOn(new MainLoop(), Qcow2Image.open(io, { readOnly: true }));
    const stored = runOn(new MainLoop(), loadBitmaps(img));
    expect(stored.map((b) => b.name)).toEqual(['b']);
    io.close();
    runOn(loop, graph.coCloseAll());
  });
});
