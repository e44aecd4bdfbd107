/**
 * qcow2 figures: sequential write and read MB/s through the qcow2 engine on a host file, and
 * convert throughput, each side by side with qemu-img (bench / convert) when it is installed.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MainLoop } from '../../src/engine/main-loop.js';
import type { Co } from '../../src/engine/coroutine.js';
import { createQcow2 } from '../../src/block/qcow2/create.js';
import { Qcow2Image } from '../../src/block/qcow2/qcow2.js';
import { MemoryByteIO } from '../../src/block/qcow2/io.js';
import { HostFileIO } from '../../src/block/image/host-file.js';
import { closeImage, openImage } from '../../src/block/image/handle.js';
import { convertImage } from '../../src/block/image/convert.js';
import type { BenchCase, BenchResult } from './types.js';

const MiB = 1 << 20;
const TOTAL = 256 * MiB;
const REQUEST = MiB;
/** Reads go over the disk this many times per measurement (one pass is too short to time well). */
const READ_ROUNDS = 4;

function haveQemuImg(): boolean {
  return spawnSync('qemu-img', ['--version']).status === 0;
}

function run<T>(co: Co<T>): T {
  return new MainLoop().runCoroutine('bench', co);
}

function mbps(bytes: number, ms: number): number {
  return bytes / MiB / (ms / 1000);
}

/** Wall ms of `fn` (tools may read the host clock). */
function wallMs(fn: () => void): number {
  const t = performance.now();
  fn();
  return performance.now() - t;
}

function createFile(path: string): void {
  const io = HostFileIO.open(path, { create: true });
  run(createQcow2(io, { sizeBytes: TOTAL }));
  io.close();
}

/** Sequential 1 MiB writes of the whole disk, then a flush (writeback cache, as qemu-img bench). */
function ourWrite(path: string): number {
  createFile(path);
  const io = HostFileIO.open(path);
  const data = new Uint8Array(REQUEST).fill(0x5a);
  const ms = wallMs(() =>
    run((function* () {
      const img = yield* Qcow2Image.open(io);
      for (let off = 0; off < TOTAL; off += REQUEST) yield* img.write(off, data);
      yield* img.close();
    })()),
  );
  io.close();
  return mbps(TOTAL, ms);
}

/** Best of three passes (the first one warms the page cache); QEMU's figure is taken the same way. */
function ourRead(path: string): number {
  const io = HostFileIO.open(path, { readOnly: true });
  const buf = new Uint8Array(REQUEST);
  let best = 0;
  for (let pass = 0; pass < 3; pass++) {
    const ms = wallMs(() =>
      run((function* () {
        const img = yield* Qcow2Image.open(io, { readOnly: true });
        for (let round = 0; round < READ_ROUNDS; round++) {
          for (let off = 0; off < TOTAL; off += REQUEST) yield* img.read(off, buf);
        }
      })()),
    );
    best = Math.max(best, mbps(TOTAL * READ_ROUNDS, ms));
  }
  io.close();
  return best;
}

/** The engine alone (in-memory file): metadata cost without host I/O. */
function engineWrite(): number {
  const io = new MemoryByteIO('mem', undefined, TOTAL + 4 * MiB);
  run(createQcow2(io, { sizeBytes: TOTAL }));
  const data = new Uint8Array(REQUEST).fill(0x5a);
  const ms = wallMs(() =>
    run((function* () {
      const img = yield* Qcow2Image.open(io);
      for (let off = 0; off < TOTAL; off += REQUEST) yield* img.write(off, data);
    })()),
  );
  return mbps(TOTAL, ms);
}

function qemuBench(path: string, write: boolean): number | undefined {
  const rounds = write ? 1 : READ_ROUNDS;
  // qemu-img bench wraps around at the end of the disk, so -c covers `rounds` passes.
  const args = ['bench', '-c', String((TOTAL / REQUEST) * rounds), '-s', String(REQUEST), '-S', String(REQUEST), '-d', '1', '-f', 'qcow2'];
  if (write) args.push('-w', '--pattern=90');
  const r = spawnSync('qemu-img', [...args, path], { encoding: 'utf8' });
  const m = /Run completed in ([\d.]+) seconds/.exec(r.stdout);
  return m === null ? undefined : mbps(TOTAL * rounds, Number(m[1]) * 1000);
}

function ourConvert(src: string, dst: string): number {
  const ms = wallMs(() =>
    run((function* () {
      const s = yield* openImage(src, { format: 'qcow2', readOnly: true, bitmaps: false });
      const out = HostFileIO.open(dst, { create: true });
      yield* createQcow2(out, { sizeBytes: s.sizeBytes() });
      out.close();
      const d = yield* openImage(dst, { format: 'qcow2', readOnly: false, bitmaps: false, unsafeCache: true });
      yield* convertImage(s, d, { targetZeroInit: true });
      yield* closeImage(d);
      yield* closeImage(s);
    })()),
  );
  return mbps(TOTAL, ms);
}

function qemuConvert(src: string, dst: string): number {
  const ms = wallMs(() => {
    spawnSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'qcow2', src, dst]);
  });
  return mbps(TOTAL, ms);
}

function withRatio(name: string, value: number, qemu: number | undefined, note?: string): BenchResult {
  return qemu === undefined ? { name, value, unit: 'MB/s', note: note ?? 'qemu-img not installed' } : { name, value, unit: 'MB/s', qemu, ratio: value / qemu, ...(note !== undefined ? { note } : {}) };
}

export const qcow2Bench: BenchCase = {
  name: 'qcow2',
  group: 'qcow2',
  run(): BenchResult[] {
    const dir = mkdtempSync(join(tmpdir(), 'tsqemu-bench-qcow2-'));
    try {
      const q = haveQemuImg();
      const ours = join(dir, 'ours.qcow2');
      const theirs = join(dir, 'qemu.qcow2');
      const write = ourWrite(ours);
      let qemuWrite: number | undefined;
      if (q) {
        spawnSync('qemu-img', ['create', '-f', 'qcow2', theirs, String(TOTAL)]);
        qemuWrite = qemuBench(theirs, true);
      }
      const read = ourRead(ours);
      const qemuRead = q ? Math.max(...[0, 1, 2].map(() => qemuBench(theirs, false) ?? 0)) : undefined;
      const convert = ourConvert(ours, join(dir, 'ours-copy.qcow2'));
      const qemuConv = q ? qemuConvert(ours, join(dir, 'qemu-copy.qcow2')) : undefined;
      return [
        withRatio('qcow2 sequential write (1 MiB requests, host file)', write, qemuWrite, q ? 'QEMU: qemu-img bench -w' : undefined),
        withRatio('qcow2 sequential read (1 MiB requests, host file)', read, qemuRead, q ? 'QEMU: qemu-img bench' : undefined),
        withRatio('qemu-img convert qcow2 -> qcow2 (256 MiB of data)', convert, qemuConv, q ? 'QEMU: qemu-img convert (incl. process start)' : undefined),
        { name: 'qcow2 engine write, in-memory file (metadata cost)', value: engineWrite(), unit: 'MB/s' },
      ];
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

export const benchCases: BenchCase[] = [qcow2Bench];
