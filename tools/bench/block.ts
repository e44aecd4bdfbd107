import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Co } from '../../src/engine/coroutine.js';
import { MainLoop } from '../../src/engine/main-loop.js';
import { BlockBackend, devicePerms } from '../../src/block/block-backend.js';
import { BlockGraph } from '../../src/block/graph.js';
import type { BlockdevOptions } from '../../src/block/options.js';
import type { BenchCase, BenchResult } from './types.js';

const TOTAL_BYTES = 32 * 1024 * 1024;
const REQUEST_BYTES = 64 * 1024;
const REQUESTS = TOTAL_BYTES / REQUEST_BYTES;
const RUNS = 3;
/** Passes before measuring: the request path runs unoptimised for the first few hundred requests. */
const WARMUP_RUNS = 3;

/** Wall ms of one sequential pass (queue depth 1) through a BlockBackend; best of RUNS after warm-up. */
function measure(options: BlockdevOptions, write: boolean): number {
  let best = Infinity;
  for (let run = 0; run < WARMUP_RUNS + RUNS; run++) {
    const loop = new MainLoop();
    const graph = new BlockGraph(loop);
    const blk = BlockBackend.withNode(graph, graph.blockdevAdd(options), devicePerms(false));
    const buf = new Uint8Array(REQUEST_BYTES).fill(0x5a);
    const start = performance.now();
    loop.runCoroutine('bench', (function* (): Co {
      for (let i = 0; i < REQUESTS; i++) {
        const ret = write ? yield* blk.coPwritev(i * REQUEST_BYTES, REQUEST_BYTES, buf) : yield* blk.coPreadv(i * REQUEST_BYTES, REQUEST_BYTES, buf);
        if (ret < 0) throw new Error(`bench request failed: ${ret}`);
      }
    })());
    if (run >= WARMUP_RUNS) best = Math.min(best, performance.now() - start);
    blk.dispose();
    graph.closeAll();
  }
  return best;
}

/** `qemu-img bench` with the same pattern (writeback cache), best of RUNS; undefined without QEMU. */
function qemuMs(args: string[], write: boolean): number | undefined {
  let best = Infinity;
  for (let run = 0; run < RUNS; run++) {
    const result = spawnSync('qemu-img', ['bench', '-c', String(REQUESTS), '-s', String(REQUEST_BYTES), '-d', '1', ...(write ? ['-w'] : []), ...args], { encoding: 'utf8' });
    if (result.error !== undefined || result.status !== 0) return undefined;
    const match = /Run completed in ([\d.]+) seconds/.exec(result.stdout);
    if (match === null) return undefined;
    best = Math.min(best, Number(match[1]) * 1000);
  }
  return best;
}

function figure(name: string, ms: number, qemu: number | undefined, note: string): BenchResult {
  const value = TOTAL_BYTES / 1e6 / (ms / 1000);
  if (qemu === undefined || qemu <= 0) return { name, value, unit: 'MB/s', note };
  const qemuValue = TOTAL_BYTES / 1e6 / (qemu / 1000);
  return { name, value, unit: 'MB/s', qemu: qemuValue, ratio: value / qemuValue, note };
}

export const benchCases: BenchCase[] = [
  {
    name: 'block: sequential I/O through file and null-co',
    group: 'block',
    run(): BenchResult[] {
      const dir = mkdtempSync(join(tmpdir(), 'tsqemu-bench-'));
      try {
        const path = join(dir, 'bench.raw');
        writeFileSync(path, new Uint8Array(TOTAL_BYTES));
        const note = '32 MiB in 64 KiB requests, queue depth 1, wall time';
        const file: BlockdevOptions = { driver: 'raw', file: { driver: 'file', filename: path } };
        const nullCo: BlockdevOptions = { driver: 'null-co', size: TOTAL_BYTES };
        const qemuFile = ['-f', 'raw', '-t', 'writeback', path];
        const qemuNull = ['--image-opts', `driver=null-co,size=${TOTAL_BYTES}`];
        return [
          figure('block: seq write raw/file', measure(file, true), qemuMs(qemuFile, true), note),
          figure('block: seq read raw/file', measure(file, false), qemuMs(qemuFile, false), note),
          figure('block: seq write null-co', measure(nullCo, true), qemuMs(qemuNull, true), note),
          figure('block: seq read null-co', measure(nullCo, false), qemuMs(qemuNull, false), note),
        ];
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  },
];
