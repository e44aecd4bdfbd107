import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockBackend, devicePerms } from '../../../src/block/block-backend.js';
import { newGraph, patternFile, run, tempDir } from './helpers.js';

let cleanup: () => void = () => {};
afterEach(() => cleanup());

describe('smoke', () => {
  it('raw over file reads and writes', () => {
    const t = tempDir();
    cleanup = t.cleanup;
    const path = join(t.dir, 'a.img');
    const data = patternFile(path, 65536);
    const { loop, graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'raw', 'node-name': 'disk', file: { driver: 'file', filename: path } });
    expect(bs.totalBytes).toBe(65536);
    const blk = BlockBackend.withNode(graph, bs, { name: 'drive0', ...devicePerms(false) });
    const buf = new Uint8Array(100);
    expect(run(loop, blk.coPreadv(1000, 100, buf))).toBe(0);
    expect(buf).toEqual(data.subarray(1000, 1100));
    const w = new Uint8Array(10).fill(0xaa);
    expect(run(loop, blk.coPwritev(5, 10, w))).toBe(0);
    const r = new Uint8Array(20);
    expect(run(loop, blk.coPreadv(0, 20, r))).toBe(0);
    expect([...r.subarray(5, 15)]).toEqual(new Array(10).fill(0xaa));
    expect(loop.nowNs).toBeGreaterThan(0);
  });
});
