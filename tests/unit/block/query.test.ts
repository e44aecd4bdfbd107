import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { coBlockDirtyBitmapAdd } from '../../../src/block/dirty-bitmap.js';
import { bdrvBlockDeviceInfo } from '../../../src/block/query.js';
import { newGraph, run, tempDir } from './helpers.js';

let cleanup: () => void = () => {};
afterEach(() => cleanup());

describe('query-named-block-nodes entries', () => {
  it("match QEMU 7.2's output for null-co, raw and file nodes, key order included", () => {
    const t = tempDir();
    cleanup = t.cleanup;
    const path = join(t.dir, 'qi.img');
    writeFileSync(path, new Uint8Array(0));
    const { loop, graph } = newGraph();
    // An empty file (QEMU's run used a sparse 1 MiB one: only the sizes differ).
    const proto = graph.blockdevAdd({ driver: 'file', 'node-name': 'proto', filename: path, cache: { direct: false, 'no-flush': true } });
    const fmt = graph.blockdevAdd({ driver: 'raw', 'node-name': 'fmt', 'detect-zeroes': 'on', file: 'proto' });
    const nul = graph.blockdevAdd({ driver: 'null-co', 'node-name': 'nul', 'read-only': true });
    run(loop, coBlockDirtyBitmapAdd(fmt, { name: 'b', granularity: 4096 }));
    // Captured from qemu-system-riscv64 7.2 (same commands over QMP; file size 0 here).
    const qemu = [
      {
        iops_rd: 0,
        detect_zeroes: 'off',
        image: { 'virtual-size': 1073741824, filename: 'null-co://', format: 'null-co', 'actual-size': 0 },
        iops_wr: 0,
        ro: true,
        'node-name': 'nul',
        backing_file_depth: 0,
        drv: 'null-co',
        iops: 0,
        bps_wr: 0,
        write_threshold: 0,
        encrypted: false,
        bps: 0,
        bps_rd: 0,
        cache: { 'no-flush': false, direct: false, writeback: true },
        file: 'null-co://',
      },
      {
        iops_rd: 0,
        detect_zeroes: 'on',
        image: { 'virtual-size': 0, filename: path, format: 'raw', 'actual-size': 0, 'dirty-flag': false },
        iops_wr: 0,
        ro: false,
        'node-name': 'fmt',
        backing_file_depth: 0,
        drv: 'raw',
        iops: 0,
        bps_wr: 0,
        write_threshold: 0,
        'dirty-bitmaps': [{ name: 'b', recording: true, persistent: false, busy: false, granularity: 4096, count: 0 }],
        encrypted: false,
        bps: 0,
        bps_rd: 0,
        cache: { 'no-flush': false, direct: false, writeback: true },
        file: path,
      },
      {
        iops_rd: 0,
        detect_zeroes: 'off',
        image: { 'virtual-size': 0, filename: path, format: 'file', 'actual-size': 0, 'dirty-flag': false },
        iops_wr: 0,
        ro: false,
        'node-name': 'proto',
        backing_file_depth: 0,
        drv: 'file',
        iops: 0,
        bps_wr: 0,
        write_threshold: 0,
        encrypted: false,
        bps: 0,
        bps_rd: 0,
        cache: { 'no-flush': true, direct: false, writeback: true },
        file: path,
      },
    ];
    expect(JSON.stringify([nul, fmt, proto].map(bdrvBlockDeviceInfo))).toBe(JSON.stringify(qemu));
  });
});
