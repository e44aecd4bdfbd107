import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Co } from '../../../src/engine/coroutine.js';
import { BlockBackend, devicePerms } from '../../../src/block/block-backend.js';
import { FILE_BASE_LATENCY_NS } from '../../../src/block/drivers/file.js';
import { NULL_DEFAULT_SIZE } from '../../../src/block/drivers/null.js';
import { Errno } from '../../../src/block/errno.js';
import { bdrvCoPreadv, bdrvCoPwritev } from '../../../src/block/io.js';
import { newGraph, patternFile, run, tempDir } from './helpers.js';

let cleanup: () => void = () => {};
afterEach(() => cleanup());

describe('null-co / null-aio', () => {
  it('defaults to 1 GiB and leaves read buffers untouched without read-zeroes', () => {
    const { loop, graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'null-co' });
    expect(bs.totalBytes).toBe(NULL_DEFAULT_SIZE);
    expect(NULL_DEFAULT_SIZE).toBe(1 << 30);
    const buf = new Uint8Array(512).fill(0xab);
    expect(run(loop, bdrvCoPreadv(bs, 0, 512, buf))).toBe(0);
    expect(buf.every((b) => b === 0xab)).toBe(true);
    const zeroes = graph.blockdevAdd({ driver: 'null-co', size: '1M', 'read-zeroes': 'on' });
    expect(zeroes.totalBytes).toBe(1 << 20);
    expect(run(loop, bdrvCoPreadv(zeroes, 0, 512, buf))).toBe(0);
    expect(buf.every((b) => b === 0)).toBe(true);
    expect(bs.filename).toBe('null-co://');
  });

  it('completes after latency-ns of virtual time; null-aio completes in a later iteration', () => {
    const { loop, graph } = newGraph();
    const slow = graph.blockdevAdd({ driver: 'null-co', 'latency-ns': 250_000 });
    const start = loop.nowNs;
    expect(run(loop, bdrvCoPwritev(slow, 0, 512, new Uint8Array(512)))).toBe(0);
    expect(loop.nowNs - start).toBe(250_000);
    const co = graph.blockdevAdd({ driver: 'null-co' });
    expect(loop.enter('sync', bdrvCoPwritev(co, 0, 512, new Uint8Array(512))).done).toBe(true);
    const aio = graph.blockdevAdd({ driver: 'null-aio' });
    const pending = loop.enter('async', bdrvCoPwritev(aio, 0, 512, new Uint8Array(512)));
    expect(pending.done).toBe(false);
    loop.runUntilIdle();
    expect(pending.result).toBe(0);
  });
});

describe('file', () => {
  it('accepts aio and locking, models latency, and varies completion order when exploring', () => {
    const t = tempDir();
    cleanup = t.cleanup;
    const path = join(t.dir, 'f.img');
    patternFile(path, 1 << 16);
    const orders = new Set<string>();
    for (let seed = 0; seed < 12; seed++) {
      const { loop, graph } = newGraph({ policy: seed === 0 ? 'fifo' : 'explore', seed });
      const bs = graph.blockdevAdd({ driver: 'file', filename: path, aio: 'native', cache: { direct: true }, locking: 'off' });
      const blk = BlockBackend.withNode(graph, bs, devicePerms(true));
      const order: number[] = [];
      for (let i = 0; i < 4; i++) {
        loop.spawn(`r${i}`, (function* (): Co {
          expect(yield* blk.coPreadv(i * 512, 512, new Uint8Array(512))).toBe(0);
          order.push(i);
        })());
      }
      loop.runUntilIdle();
      if (seed === 0) {
        expect(order).toEqual([0, 1, 2, 3]);
        expect(loop.nowNs).toBe(FILE_BASE_LATENCY_NS);
      }
      orders.add(order.join(''));
    }
    expect(orders.size).toBeGreaterThan(1);
  });

  it('honours cache options: direct aligns requests, no-flush skips fsync', () => {
    const t = tempDir();
    cleanup = t.cleanup;
    const path = join(t.dir, 'c.img');
    const data = patternFile(path, 8192);
    const { loop, graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'file', filename: path, cache: { direct: true, 'no-flush': true } });
    expect(bs.requestAlignment).toBe(512);
    expect(run(loop, bdrvCoPwritev(bs, 100, 3, new Uint8Array([1, 2, 3])))).toBe(0);
    const buf = new Uint8Array(512);
    expect(run(loop, bdrvCoPreadv(bs, 0, 512, buf))).toBe(0);
    const expected = data.slice(0, 512);
    expected.set([1, 2, 3], 100);
    expect(buf).toEqual(expected);
    expect(() => graph.blockdevAdd({ driver: 'null-co', cache: { bogus: true } })).toThrow("Parameter 'cache.bogus' is unexpected");
  });

  it('flushes to the host (fdatasync) and counts it', () => {
    const t = tempDir();
    cleanup = t.cleanup;
    const path = join(t.dir, 'fl.img');
    patternFile(path, 4096);
    const { loop, graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'raw', file: { driver: 'file', 'node-name': 'proto', filename: path } });
    const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
    expect(run(loop, blk.coFlush())).toBe(0);
    expect(graph.findNode('proto')!.stats.flushOperations).toBe(1);
  });

  it('refuses a directory and bad enum values', () => {
    const t = tempDir();
    cleanup = t.cleanup;
    const { graph } = newGraph();
    expect(() => graph.blockdevAdd({ driver: 'file', filename: t.dir })).toThrow(`Could not open '${t.dir}': Is a directory`);
    expect(() => graph.blockdevAdd({ driver: 'file', filename: t.dir, aio: 'posix' })).toThrow("Parameter 'aio' does not accept value 'posix'");
    expect(() => graph.blockdevAdd({ driver: 'file', filename: t.dir, aio: 'native' })).toThrow('aio=native was specified, but it requires cache.direct=on, which was not specified.');
  });

  it('opens read-only files read-only', () => {
    const t = tempDir();
    cleanup = t.cleanup;
    const path = join(t.dir, 'ro.img');
    const data = patternFile(path, 4096);
    const { loop, graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'raw', 'read-only': true, file: { driver: 'file', filename: path, 'read-only': true } });
    const buf = new Uint8Array(4096);
    expect(run(loop, bdrvCoPreadv(bs, 0, 4096, buf))).toBe(0);
    expect(buf).toEqual(data);
    expect(run(loop, bdrvCoPwritev(bs, 0, 512, buf.subarray(0, 512)))).toBe(-Errno.EPERM);
  });
});

describe('raw windows', () => {
  it('keeps requests inside offset/size', () => {
    const t = tempDir();
    cleanup = t.cleanup;
    const path = join(t.dir, 'w.img');
    const data = patternFile(path, 16384);
    const { loop, graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'raw', offset: 4096, size: 8192, file: { driver: 'file', filename: path } });
    const buf = new Uint8Array(512);
    expect(run(loop, bdrvCoPreadv(bs, 0, 512, buf))).toBe(0);
    expect(buf).toEqual(data.subarray(4096, 4608));
    // Past the window at node level: writes -ENOSPC, reads -EINVAL (nothing leaks out).
    expect(run(loop, bdrvCoPwritev(bs, 8192 - 256, 512, buf))).toBe(-Errno.ENOSPC);
    expect(run(loop, bdrvCoPreadv(bs, 8192, 512, new Uint8Array(512)))).toBe(0);
    const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
    expect(run(loop, blk.coPreadv(8192 - 256, 512, buf))).toBe(-Errno.EIO);
  });
});
