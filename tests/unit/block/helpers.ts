import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Co } from '../../../src/engine/coroutine.js';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { BlockGraph } from '../../../src/block/graph.js';

/** A fresh loop + graph. */
export function newGraph(options: { policy?: 'fifo' | 'explore'; seed?: number } = {}): { loop: MainLoop; graph: BlockGraph } {
  const loop = new MainLoop({ policy: options.policy ?? 'fifo', seed: options.seed ?? 0 });
  return { loop, graph: new BlockGraph(loop) };
}

/** Runs a coroutine to completion on `loop`. */
export function run<T>(loop: MainLoop, body: Co<T>): T {
  return loop.runCoroutine('test', body);
}

/** A temporary directory removed by the returned cleanup. */
export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'tsqemu-block-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Writes a file of `size` bytes whose byte i is (i * 7 + 3) & 0xff. */
export function patternFile(path: string, size: number): Uint8Array {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (i * 7 + 3) & 0xff;
  writeFileSync(path, data);
  return data;
}
