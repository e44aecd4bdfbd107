import { describe, expect, it } from 'vitest';
import { BlockBackend, devicePerms } from '../../../src/block/block-backend.js';
import { Errno } from '../../../src/block/errno.js';
import { BlockError } from '../../../src/block/error.js';
import { bdrvCoBlockStatus, bdrvCoPdiscard, bdrvCoPreadv, bdrvCoPwriteZeroes, BDRV_MAX_LENGTH } from '../../../src/block/io.js';
import { newGraph, run } from './helpers.js';

describe('bad input never crashes', () => {
  it('returns errnos for wild offsets and lengths', () => {
    const { loop, graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'null-co', 'read-zeroes': true });
    expect(run(loop, bdrvCoPreadv(bs, 0.5, 0, new Uint8Array(0)))).toBe(-Errno.EINVAL);
    expect(run(loop, bdrvCoPreadv(bs, Number.NaN, 0, new Uint8Array(0)))).toBe(-Errno.EINVAL);
    expect(run(loop, bdrvCoPreadv(bs, BDRV_MAX_LENGTH, 1, new Uint8Array(1)))).toBe(-Errno.EIO);
    expect(run(loop, bdrvCoPwriteZeroes(bs, -512, 512))).toBe(-Errno.EIO);
    expect(run(loop, bdrvCoPdiscard(bs, 0, -1))).toBe(-Errno.EIO);
    expect(run(loop, bdrvCoBlockStatus(bs, true, -1, 512)).ret).toBe(-Errno.EINVAL);
    const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
    expect(run(loop, blk.coPwriteZeroes(Number.MAX_SAFE_INTEGER, 512))).toBe(-Errno.EIO);
    expect(run(loop, blk.coPreadv(1.5, 1, new Uint8Array(1)))).toBe(-Errno.EIO);
  });

  it('refuses malformed option trees with typed errors', () => {
    const { graph } = newGraph();
    const cases: unknown[] = [
      { driver: 5 },
      { driver: 'raw', file: 5 },
      { driver: 'raw', file: [] },
      { driver: 'null-co', 'read-only': 'perhaps' },
      { driver: 'null-co', size: -1 },
      { driver: 'null-co', size: 2 ** 60 },
      { driver: 'null-co', 'latency-ns': 'soon' },
      { driver: 'null-co', cache: 'yes' },
      { driver: 'blkdebug', image: { driver: 'null-co' }, 'inject-error': [5] },
      { driver: 'blkdebug', image: { driver: 'null-co' }, 'inject-error': [{ event: 'read_aio', errno: 'EIO' }] },
      { driver: 'copy-before-write', file: { driver: 'null-co' } },
      { driver: 'copy-before-write', file: { driver: 'null-co' }, target: { driver: 'null-co', size: 512 }, bitmap: 'x' },
    ];
    for (const options of cases) {
      expect(() => graph.blockdevAdd(options as Record<string, unknown>)).toThrow(BlockError);
    }
    expect(graph.nodes.size).toBe(0);
  });

  it('survives closing a graph under a backend', () => {
    const { loop, graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'null-co' });
    const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
    graph.closeAll();
    expect(graph.nodes.size).toBe(0);
    expect(run(loop, blk.coPreadv(0, 512, new Uint8Array(512)))).toBe(-Errno.ENOMEDIUM);
    blk.dispose();
    expect(blk.bs).toBe(null);
  });
});
