import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MainLoop, type MainLoopOptions } from '../../../src/engine/main-loop.js';
import { BlockGraph } from '../../../src/block/graph.js';
import type { BlockDriverState } from '../../../src/block/node.js';
import { BlockBackend, devicePerms } from '../../../src/block/block-backend.js';
import { JobManager } from '../../../src/blockjob/job.js';
import type { AnyBusEvent } from '../../../src/blockjob/events.js';
import type { TransactionEnv } from '../../../src/blockjob/transaction.js';

/** A machine's worth of block layer + jobs, with temp files for data-bearing nodes. */
export interface BlockRig {
  loop: MainLoop;
  graph: BlockGraph;
  jobs: JobManager;
  env: TransactionEnv;
  events: AnyBusEvent[];
  dir: string;
  cleanup(): void;
  /** raw-over-file node of `size` bytes filled with `fill(i)`. */
  fileNode(name: string, size: number, fill?: (i: number) => number): BlockDriverState;
  nullNode(name: string, size: number, extra?: Record<string, unknown>): BlockDriverState;
  /** The bytes of a file node's backing file. */
  fileBytes(name: string): Uint8Array;
  backend(bs: BlockDriverState, name?: string): BlockBackend;
  /** Writes through a BlockBackend, running the loop until done; returns the result. */
  write(blk: BlockBackend, offset: number, data: Uint8Array): number;
  eventNames(): string[];
}

export function blockRig(options: MainLoopOptions & { legacyStartInPrepare?: boolean } = {}): BlockRig {
  const loop = new MainLoop(options);
  const graph = new BlockGraph(loop);
  const jobs = new JobManager(loop);
  const events: AnyBusEvent[] = [];
  jobs.events.subscribe((e) => events.push(e));
  const dir = mkdtempSync(join(tmpdir(), 'tsqemu-blockjob-'));
  const env: TransactionEnv = { jobs, graph, legacyStartInPrepare: options.legacyStartInPrepare ?? false };
  return {
    loop,
    graph,
    jobs,
    env,
    events,
    dir,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
    fileNode(name, size, fill = () => 0) {
      const data = new Uint8Array(size);
      for (let i = 0; i < size; i++) data[i] = fill(i) & 0xff;
      writeFileSync(join(dir, `${name}.img`), data);
      return graph.blockdevAdd({ 'driver': 'raw', 'node-name': name, 'file': { driver: 'file', filename: join(dir, `${name}.img`) } });
    },
    nullNode(name, size, extra = {}) {
      return graph.blockdevAdd({ 'driver': 'null-co', 'node-name': name, size, ...extra });
    },
    fileBytes(name) {
      return new Uint8Array(readFileSync(join(dir, `${name}.img`)));
    },
    backend(bs, name) {
      return BlockBackend.withNode(graph, bs, { name, ...devicePerms(false, true) });
    },
    write(blk, offset, data) {
      return loop.runCoroutine('guest-write', blk.coPwritev(offset, data.length, data));
    },
    eventNames: () => events.map((e) => (e.event === 'JOB_STATUS_CHANGE' ? `${e.data.status}` : e.event)),
  };
}
