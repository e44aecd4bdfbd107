import { MainLoop } from '../../../src/engine/main-loop.js';
import type { Co } from '../../../src/engine/coroutine.js';
import { createQcow2, type Qcow2CreateOptions } from '../../../src/block/qcow2/create.js';
import { MemoryByteIO } from '../../../src/block/qcow2/io.js';
import { Qcow2Image, type Qcow2OpenOptions } from '../../../src/block/qcow2/qcow2.js';
import { checkQcow2, type CheckResult } from '../../../src/block/qcow2/check.js';

export const loop = new MainLoop();

export function run<T>(co: Co<T>): T {
  return loop.runCoroutine('test', co);
}

export function newImage(opts: Partial<Qcow2CreateOptions> = {}): MemoryByteIO {
  const io = new MemoryByteIO('test.qcow2');
  run(createQcow2(io, { sizeBytes: 4 << 20, ...opts }));
  return io;
}

export function open(io: MemoryByteIO, opts: Qcow2OpenOptions = {}): Qcow2Image {
  return run(Qcow2Image.open(io, opts));
}

export function check(io: MemoryByteIO): CheckResult {
  const img = open(io, { readOnly: true, forCheck: true });
  return run(checkQcow2(img, { leaks: false, errors: false }));
}

export function expectClean(r: CheckResult): void {
  if (r.corruptions !== 0 || r.leaks !== 0 || r.checkErrors !== 0) throw new Error(`check not clean: ${JSON.stringify(r)}`);
}

export function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}
