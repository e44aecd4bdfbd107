import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MainLoop } from '../../../src/engine/main-loop.js';
import type { Co } from '../../../src/engine/coroutine.js';
import { createQcow2 } from '../../../src/block/qcow2/create.js';
import { HostFileIO } from '../../../src/block/image/host-file.js';
import { BME_FLAG_IN_USE, loadBitmaps } from '../../../src/block/qcow2/bitmaps.js';
import { Qcow2Image } from '../../../src/block/qcow2/qcow2.js';
import { createVm } from '../../../src/system/vm.js';

const dir = mkdtempSync(join(tmpdir(), 'tsqemu-shutdown-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function runOn<T>(co: Co<T>): T {
  return new MainLoop().runCoroutine('t', co);
}

function create(name: string): string {
  const path = join(dir, name);
  const io = HostFileIO.open(path, { create: true });
  runOn(createQcow2(io, { sizeBytes: 1 << 20, backingFile: null, backingFormat: null }));
  io.close();
  return path;
}

describe('Vm.shutdown (qemu_cleanup: job_cancel_sync_all + bdrv_close_all)', () => {
  it('cancels running and concluded jobs, closes every node and stores persistent bitmaps', () => {
    const src = create('src.qcow2');
    const tgt = create('tgt.qcow2');
    const vm = createVm({ startStopped: true }, { cwd: dir });
    const events: string[] = [];
    vm.onEvent((e) => events.push(e.event));
    expect(vm.qmp('blockdev-add', { driver: 'qcow2', 'node-name': 'src', file: { driver: 'file', filename: src } })).toEqual({ return: {} });
    expect(vm.qmp('blockdev-add', { driver: 'qcow2', 'node-name': 'tgt', file: { driver: 'file', filename: tgt } })).toEqual({ return: {} });
    expect(vm.qmp('block-dirty-bitmap-add', { node: 'src', name: 'keep', persistent: true })).toEqual({ return: {} });
    expect(vm.qmp('human-monitor-command', { 'command-line': 'qemu-io src "write -P 0x11 0 64k"' })).toEqual({ return: '' });
    // sync=none never ends by itself: only the shutdown ends it.
    expect(vm.qmp('blockdev-backup', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'none' })).toEqual({ return: {} });
    vm.run({ maxTasks: 100_000 });
    expect(vm.jobs.jobs.length).toBe(1);
    vm.shutdown();
    expect(vm.isShutDown).toBe(true);
    expect(vm.jobs.jobs.length).toBe(0);
    expect(events).toContain('BLOCK_JOB_CANCELLED');
    expect(vm.graph.nodes.size).toBe(0);
    vm.shutdown(); // idempotent
    const io = HostFileIO.open(src, { readOnly: true });
    const img = runOn(Qcow2Image.open(io, { readOnly: true }));
    const bitmaps = runOn(loadBitmaps(img));
    expect(bitmaps.map((b) => b.name)).toEqual(['keep']);
    expect(bitmaps[0]!.flags & BME_FLAG_IN_USE).toBe(0);
    expect(img.dirty).toBe(false);
    io.close();
  });
});
