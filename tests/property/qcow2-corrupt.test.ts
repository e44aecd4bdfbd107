import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MainLoop } from '../../src/engine/main-loop.js';
import type { Co } from '../../src/engine/coroutine.js';
import { createQcow2 } from '../../src/block/qcow2/create.js';
import { MemoryByteIO } from '../../src/block/qcow2/io.js';
import { Qcow2Image } from '../../src/block/qcow2/qcow2.js';
import { checkQcow2 } from '../../src/block/qcow2/check.js';
import { ImageError } from '../../src/block/qcow2/errors.js';
import { loadBitmaps, newBitmap, storeBitmaps } from '../../src/block/qcow2/bitmaps.js';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fcReplayParams } from '../support/fc-params.js';

// fast-check prints the seed and path of any failure; rerun one with
//   FC_SEED=<seed> FC_PATH=<path> npx vitest run tests/property/qcow2-corrupt.test.ts
const params = { numRuns: Number(process.env.FC_RUNS ?? 150), ...fcReplayParams() };

const SIZE = 256 * 1024;
const CS = 4096;

/** A small image with data, zero clusters, a discard and a bitmap: every metadata kind present. */
function baseImage(): Uint8Array {
  const loop = new MainLoop();
  const io = new MemoryByteIO('base');
  const run = <T>(co: Co<T>): T => loop.runCoroutine('mk', co);
  run(createQcow2(io, { sizeBytes: SIZE, clusterSize: CS, backingFile: null }));
  const img = run(Qcow2Image.open(io));
  run(img.write(0, new Uint8Array(40_000).fill(0x5a)));
  run(img.writeZeroes(64 * 1024, 8192));
  run(img.discard(8192, 4096));
  run(img.withLock(() => storeBitmaps(img, [newBitmap(SIZE, 'b', 65536, true)])));
  run(img.close());
  return io.bytes.slice();
}

const BASE = baseImage();
/** An image with an internal snapshot, made by qemu-img (fixtures/images/README.md). */
const SNAP = new Uint8Array(readFileSync(resolve(import.meta.dirname, '../../fixtures/images/snap.qcow2')));

/** Everything an image can make us do; any failure must be an ImageError (a clear message). */
function exercise(bytes: Uint8Array): void {
  const loop = new MainLoop();
  const attempt = (fn: () => void): void => {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof ImageError)) throw e;
    }
  };
  const run = <T>(co: Co<T>): T => loop.runCoroutine('x', co, { maxTasks: 1_000_000 });
  attempt(() => {
    const img = run(Qcow2Image.open(new MemoryByteIO('ro', bytes), { readOnly: true }));
    const buf = new Uint8Array(SIZE);
    attempt(() => run(img.read(0, buf)));
    attempt(() => run(loadBitmaps(img)));
    attempt(() => run(checkQcow2(img, { leaks: false, errors: false })));
  });
  attempt(() => {
    const img = run(Qcow2Image.open(new MemoryByteIO('rw', bytes), { readOnly: false, forCheck: true }));
    attempt(() => run(checkQcow2(img, { leaks: true, errors: true })));
  });
  attempt(() => {
    const img = run(Qcow2Image.open(new MemoryByteIO('rw', bytes), { readOnly: false }));
    attempt(() => run(img.write(4096, new Uint8Array(20_000).fill(1))));
    attempt(() => run(img.writeZeroes(0, 65536, true)));
    attempt(() => run(img.discard(0, SIZE)));
    attempt(() => run(img.truncate(SIZE * 4)));
    attempt(() => run(img.close()));
  });
}

describe('corrupted qcow2 metadata (property)', () => {
  it('random byte damage in the metadata gives ImageErrors only: no crash, no assertion, no hang', () => {
    const metaEnd = Math.min(BASE.length, 16 * CS);
    fc.assert(
      fc.property(fc.array(fc.record({ at: fc.nat(metaEnd - 1), value: fc.nat(255) }), { minLength: 1, maxLength: 8 }), (edits) => {
        const bytes = BASE.slice();
        for (const e of edits) bytes[e.at] = e.value;
        exercise(bytes);
      }),
      params,
    );
  });

  it('damage to an image with internal snapshots gives ImageErrors only', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ at: fc.nat(Math.min(SNAP.length, 16 * CS) - 1), value: fc.nat(255) }), { minLength: 1, maxLength: 8 }), (edits) => {
        const bytes = SNAP.slice();
        for (const e of edits) bytes[e.at] = e.value;
        exercise(bytes);
      }),
      params,
    );
  });

  it('truncations at any length give ImageErrors only', () => {
    fc.assert(
      fc.property(fc.nat(BASE.length - 1), (len) => {
        exercise(BASE.slice(0, len));
      }),
      params,
    );
  });

  it('the undamaged images pass', () => {
    expect(() => exercise(BASE)).not.toThrow();
    expect(() => exercise(SNAP)).not.toThrow();
  });
});
