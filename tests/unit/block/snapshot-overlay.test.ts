import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { OVERLAY_CHUNK_BYTES, restoreOverlay, saveOverlay } from '../../../src/block/drivers/snapshot-overlay.js';
import { bdrvCoPreadv, bdrvCoPwriteZeroes, bdrvCoPwritev } from '../../../src/block/io.js';
import { fcReplayParams } from '../../support/fc-params.js';
import { newGraph, patternFile, run, tempDir } from './helpers.js';

let cleanup: () => void = () => {};
afterEach(() => cleanup());

const SIZE = 64 * 1024 + 512; // not a multiple of the chunk size: the last chunk is short

function open() {
  const t = tempDir();
  cleanup = t.cleanup;
  const path = join(t.dir, 'base.raw');
  const original = patternFile(path, SIZE);
  const { loop, graph } = newGraph();
  const base = graph.blockdevAdd({ driver: 'raw', 'node-name': 'base', 'read-only': true, file: { driver: 'file', filename: path, 'read-only': true } });
  const overlay = graph.blockdevAdd({ driver: 'snapshot-overlay', 'node-name': 'ov', file: 'base' });
  return { loop, graph, base, overlay, path, original };
}

const op = fc.record({
  kind: fc.constantFrom('write', 'zero', 'save', 'restore'),
  offset: fc.nat({ max: SIZE / 512 - 1 }).map((s) => s * 512),
  sectors: fc.integer({ min: 1, max: 24 }),
  fill: fc.integer({ min: 0, max: 255 }),
});

describe('snapshot-overlay (-drive snapshot=on)', () => {
  it('reads through to the image, keeps writes in memory and never touches the image', () => {
    const { loop, overlay, path, original } = open();
    expect(overlay.totalBytes).toBe(SIZE);
    const data = new Uint8Array(1536).fill(0x5a);
    expect(run(loop, bdrvCoPwritev(overlay, 4096 - 512, 1536, data))).toBe(0);
    const back = new Uint8Array(8192);
    expect(run(loop, bdrvCoPreadv(overlay, 0, 8192, back))).toBe(0);
    const expected = original.slice(0, 8192);
    expected.fill(0x5a, 4096 - 512, 4096 + 1024);
    expect(back).toEqual(expected);
    expect(new Uint8Array(readFileSync(path))).toEqual(original);
  });

  it('model check: writes, zero writes, saves and restores read back like a plain array', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 30 }), (ops) => {
        const { loop, overlay, path, original } = open();
        let model = original.slice();
        const saved: { snap: ReturnType<typeof saveOverlay>; model: Uint8Array }[] = [];
        for (const o of ops) {
          const bytes = Math.min(o.sectors * 512, SIZE - o.offset);
          if (o.kind === 'write') {
            const buf = new Uint8Array(bytes).fill(o.fill);
            expect(run(loop, bdrvCoPwritev(overlay, o.offset, bytes, buf))).toBe(0);
            model.fill(o.fill, o.offset, o.offset + bytes);
          } else if (o.kind === 'zero') {
            expect(run(loop, bdrvCoPwriteZeroes(overlay, o.offset, bytes, 0))).toBe(0);
            model.fill(0, o.offset, o.offset + bytes);
          } else if (o.kind === 'save') {
            saved.push({ snap: saveOverlay(overlay), model: model.slice() });
          } else if (saved.length > 0) {
            const pick = saved[o.fill % saved.length]!;
            restoreOverlay(overlay, pick.snap);
            model = pick.model.slice();
          }
          const all = new Uint8Array(SIZE);
          expect(run(loop, bdrvCoPreadv(overlay, 0, SIZE, all))).toBe(0);
          expect(Buffer.compare(all, model)).toBe(0);
        }
        expect(Buffer.compare(readFileSync(path), original)).toBe(0);
        cleanup();
      }),
      { ...fcReplayParams(), numRuns: 60 },
    );
  });

  it('a saved state is not changed by later writes (chunks are replaced, never modified)', () => {
    const { loop, overlay } = open();
    expect(run(loop, bdrvCoPwritev(overlay, 0, 512, new Uint8Array(512).fill(1)))).toBe(0);
    const snap = saveOverlay(overlay);
    const before = snap.chunks.map(([i, b]) => [i, b.slice()] as const);
    expect(run(loop, bdrvCoPwritev(overlay, 0, 512, new Uint8Array(512).fill(2)))).toBe(0);
    expect(snap.chunks).toEqual(before);
    expect(snap.chunkBytes).toBe(OVERLAY_CHUNK_BYTES);
  });

  it('the image node is read-only, the overlay on it is writable', () => {
    const { overlay, base } = open();
    expect(overlay.readOnly).toBe(false);
    expect(base.readOnly).toBe(true);
  });
});
