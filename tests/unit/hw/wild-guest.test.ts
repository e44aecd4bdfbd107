import fc from 'fast-check';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BlockBackend, devicePerms } from '../../../src/block/block-backend.js';
import { BlockGraph } from '../../../src/block/graph.js';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { MemTx } from '../../../src/engine/memory.js';
import { buildVirtMachine } from '../../../src/engine/hw/virt/machine.js';
import { fcReplayParams } from '../../support/fc-params.js';

// fast-check prints the seed and path of any failure; rerun one with FC_SEED=<seed> FC_PATH=<path>.
const params = { numRuns: 60, ...fcReplayParams() };

const dir = mkdtempSync(join(tmpdir(), 'wild-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const disk = join(dir, 'disk.raw');
writeFileSync(disk, new Uint8Array(256 * 1024));

/** Device windows a wild guest pokes, weighted towards registers that start DMA or timers. */
const WINDOWS = [
  { base: 0x100000, size: 0x1000 },
  { base: 0x101000, size: 0x40 },
  { base: 0x2000000, size: 0x10000 },
  { base: 0xc000000, size: 0x3000 },
  { base: 0xc200000, size: 0x3000 },
  { base: 0x10000000, size: 0x10 },
  { base: 0x10008000, size: 0x200 },
  { base: 0x10001000, size: 0x200 },
  { base: 0x80000000, size: 0x4000 },
];

const access = fc.record({
  window: fc.integer({ min: 0, max: WINDOWS.length }),
  offset: fc.integer({ min: 0, max: 0xffff }),
  wild: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2 ** 40 }), fc.constant(2 ** 53), fc.constant(2 ** 64 - 8)),
  size: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const),
  write: fc.boolean(),
  value: fc.integer({ min: 0, max: 0xffffffff }),
  stepNs: fc.integer({ min: 0, max: 2_000_000 }),
});

describe('a wild guest (property)', () => {
  it('random accesses to every device and to garbage rings never throw or hang the host', () => {
    fc.assert(
      fc.property(fc.array(access, { minLength: 1, maxLength: 120 }), fc.uint8Array({ minLength: 0x4000, maxLength: 0x4000 }), (accesses, ram) => {
        const loop = new MainLoop();
        const graph = new BlockGraph(loop);
        const node = graph.blockdevAdd({ driver: 'raw', 'node-name': 'disk0', file: { driver: 'file', filename: disk } });
        const backend = BlockBackend.withNode(graph, node, { name: 'd0', ...devicePerms(false) });
        const m = buildVirtMachine(loop, { drives: [{ backend }, { backend }], virtioModern: ram[0]! > 127 });
        m.as.writeBytes(0x8000_0000, ram);
        for (const a of accesses) {
          const w = WINDOWS[a.window];
          const addr = w === undefined ? a.wild : w.base + (a.offset % w.size);
          if (a.write) {
            const status = a.size === 8 ? m.as.store64(addr, BigInt(a.value) * 0x1_0000_0001n) : m.as.store(addr, a.size, a.value);
            expect([MemTx.Ok, MemTx.DecodeError]).toContain(status);
          } else {
            const r = a.size === 8 ? m.as.load64(addr) : m.as.load(addr, a.size);
            expect([MemTx.Ok, MemTx.DecodeError]).toContain(r.status);
          }
          loop.step(a.stepNs, { maxTasks: 100_000 });
        }
        loop.runUntilIdle({ maxTasks: 100_000, untilNs: loop.nowNs + 1e9 });
      }),
      params,
    );
  }, 120_000);
});
