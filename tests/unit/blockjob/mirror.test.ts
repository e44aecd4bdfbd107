import { afterEach, describe, expect, it } from 'vitest';
import { blockRig, type BlockRig } from './block-helpers.js';
import { mirrorJobCreate } from '../../../src/blockjob/mirror.js';
import { startJob } from '../../../src/blockjob/job.js';

let rig: BlockRig | null = null;
afterEach(() => {
  rig?.cleanup();
  rig = null;
});

const MiB = 1 << 20;
const pattern = (i: number) => (i * 13 + 1) & 0xff;
const blockEvents = (r: BlockRig) => r.events.filter((e) => e.event.startsWith('BLOCK_JOB_')).map((e) => e.event);

describe('mirror', () => {
  it('sync=full: READY once in sync, copies later writes, complete pivots the device to the target', () => {
    rig = blockRig();
    const src = rig.fileNode('src', 2 * MiB, pattern);
    rig.fileNode('tgt', 2 * MiB);
    const blk = rig.backend(src, 'drive0');
    const job = mirrorJobCreate(rig.jobs, rig.graph, { 'device': 'src', 'target': 'tgt', 'sync': 'full', 'job-id': 'm' });
    startJob(job);
    rig.loop.step(50_000_000);
    expect(job.status).toBe('ready');
    expect(blockEvents(rig)).toEqual(['BLOCK_JOB_READY']);
    expect(rig.write(blk, 4096, new Uint8Array(100).fill(0x55))).toBe(0);
    rig.loop.step(500_000_000);
    expect(Buffer.compare(rig.fileBytes('tgt'), rig.fileBytes('src'))).toBe(0);
    job.complete();
    rig.loop.runUntilIdle();
    expect(blockEvents(rig)).toEqual(['BLOCK_JOB_READY', 'BLOCK_JOB_COMPLETED']);
    expect(job.state.pivoted).toBe(true);
    expect(blk.bs?.nodeName).toBe('tgt');
    // The device now writes to the target only.
    const before = rig.fileBytes('src');
    expect(rig.write(blk, 0, new Uint8Array(10).fill(0x77))).toBe(0);
    expect(Buffer.compare(rig.fileBytes('src'), before)).toBe(0);
    expect(rig.fileBytes('tgt')[0]).toBe(0x77);
  });

  it('a soft cancel after READY completes without a pivot; before READY it is a cancel', () => {
    rig = blockRig();
    const src = rig.fileNode('src', MiB, pattern);
    rig.fileNode('tgt', MiB);
    rig.fileNode('tgt2', MiB);
    const blk = rig.backend(src, 'drive0');
    const job = mirrorJobCreate(rig.jobs, rig.graph, { 'device': 'src', 'target': 'tgt', 'sync': 'full', 'job-id': 'm' });
    startJob(job);
    rig.loop.step(50_000_000);
    job.blockJobCancel(false);
    rig.loop.runUntilIdle();
    expect(blockEvents(rig)).toEqual(['BLOCK_JOB_READY', 'BLOCK_JOB_COMPLETED']);
    expect(blk.bs?.nodeName).toBe('src');
    rig.events.length = 0;
    const slow = mirrorJobCreate(rig.jobs, rig.graph, { 'device': 'src', 'target': 'tgt2', 'sync': 'full', 'job-id': 'm2', 'speed': 65536 });
    startJob(slow);
    rig.loop.step(100_000_000);
    slow.blockJobCancel(false);
    rig.loop.runUntilIdle();
    expect(blockEvents(rig)).toEqual(['BLOCK_JOB_CANCELLED']);
  });

  it('write-blocking: a guest write is on the target when it completes', () => {
    rig = blockRig();
    const src = rig.fileNode('src', MiB, pattern);
    rig.fileNode('tgt', MiB);
    const blk = rig.backend(src, 'drive0');
    const job = mirrorJobCreate(rig.jobs, rig.graph, { 'device': 'src', 'target': 'tgt', 'sync': 'none', 'job-id': 'm', 'copy-mode': 'write-blocking' });
    startJob(job);
    rig.loop.step(1_000_000);
    expect(job.status).toBe('ready');
    expect(rig.write(blk, 8192, new Uint8Array(512).fill(0x42))).toBe(0);
    const tgt = rig.fileBytes('tgt');
    expect(tgt.subarray(8192, 8704).every((b) => b === 0x42)).toBe(true);
    job.userCancel(true);
    rig.loop.runUntilIdle();
    expect(rig.jobs.jobs.length).toBe(0);
  });

  it('refuses bad arguments with QEMU messages', () => {
    rig = blockRig();
    rig.nullNode('src', MiB);
    rig.nullNode('tgt', MiB);
    const refuse = (extra: Record<string, unknown>) => {
      try {
        mirrorJobCreate(rig!.jobs, rig!.graph, { 'device': 'src', 'target': 'tgt', 'sync': 'full', 'job-id': 'm', ...extra });
      } catch (e) {
        return (e as Error).message;
      }
      return 'accepted';
    };
    expect(refuse({ granularity: 1000 })).toBe("Parameter 'granularity' expects a power of 2");
    expect(refuse({ granularity: 256 })).toBe("Parameter 'granularity' expects a value in range [512B, 64MB]");
    expect(refuse({ target: 'src' })).toBe("Can't mirror node into itself");
    expect(rig.jobs.jobs.length).toBe(0);
  });
});
