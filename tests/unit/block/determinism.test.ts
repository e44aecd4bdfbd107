import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type Co, sleep } from '../../../src/engine/coroutine.js';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { replayPolicy } from '../../../src/engine/policy.js';
import { BlockBackend, devicePerms } from '../../../src/block/block-backend.js';
import { BlockGraph } from '../../../src/block/graph.js';
import { patternFile, tempDir } from './helpers.js';

let cleanup: () => void = () => {};
afterEach(() => cleanup());

/** A concurrent workload on raw/blkdebug(align)/file; returns the completion order, digest, choices. */
function workload(path: string, loop: MainLoop): { order: string[]; digest: string; choices: number[]; endNs: number } {
  patternFile(path, 1 << 16);
  const graph = new BlockGraph(loop);
  const bs = graph.blockdevAdd({ driver: 'raw', file: { driver: 'blkdebug', align: 4096, image: { driver: 'file', filename: path } } });
  const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
  const order: string[] = [];
  for (let i = 0; i < 10; i++) {
    loop.spawn(`io${i}`, (function* (): Co {
      yield sleep((i % 3) * 5000);
      const offset = (i * 1237) % 60000;
      const ret = i % 2 === 0 ? yield* blk.coPwritev(offset, 700, new Uint8Array(700).fill(i)) : yield* blk.coPreadv(offset, 700, new Uint8Array(700));
      order.push(`${i}:${ret}`);
    })());
  }
  loop.runUntilIdle();
  blk.dispose();
  graph.closeAll();
  return { order, digest: loop.trace.digestHex(), choices: [...loop.chooser.choices], endNs: loop.nowNs };
}

describe('block determinism', () => {
  it('same seed, same completion order, time and trace digest; choices replay exactly', () => {
    const t = tempDir();
    cleanup = t.cleanup;
    const path = join(t.dir, 'd.img');
    const seen = new Set<string>();
    for (const seed of [1, 2, 3, 4]) {
      const a = workload(path, new MainLoop({ policy: 'explore', seed }));
      const b = workload(path, new MainLoop({ policy: 'explore', seed }));
      expect(b).toEqual(a);
      const replayed = workload(path, new MainLoop({ policy: replayPolicy(a.choices) }));
      expect(replayed.order).toEqual(a.order);
      expect(replayed.endNs).toBe(a.endNs);
      seen.add(a.order.join(','));
    }
    expect(seen.size).toBeGreaterThan(1);
  });
});
