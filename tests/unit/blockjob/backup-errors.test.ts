import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { blockRig, type BlockRig } from './block-helpers.js';
import { runTransaction } from '../../../src/blockjob/transaction.js';
import { JobError } from '../../../src/blockjob/job-errors.js';

let rig: BlockRig | null = null;
afterEach(() => {
  rig?.cleanup();
  rig = null;
});

const MiB = 1 << 20;

/**
 * Source: raw over blkdebug over a file. A guest write raises `pwritev`, which arms a one-shot
 * read error: the backup's next read of the source fails with EIO (iotests' "fails once").
 */
function failingSource(r: BlockRig, name: string) {
  const path = join(r.dir, `${name}.img`);
  const data = new Uint8Array(MiB);
  for (let i = 0; i < data.length; i++) data[i] = (i * 5 + 1) & 0xff;
  writeFileSync(path, data);
  const bs = r.graph.blockdevAdd({
    'driver': 'raw',
    'node-name': name,
    'file': { 'driver': 'blkdebug', 'image': { driver: 'file', filename: path }, 'inject-error': [{ event: 'pwritev', iotype: 'read', errno: 5, once: true }] },
  });
  const blk = r.backend(bs, `dev-${name}`);
  return { bs, blk, path };
}

const lines = (r: BlockRig) =>
  r.events
    .filter((e) => e.event.startsWith('BLOCK_JOB_'))
    .map((e) => {
      const d = e.data as unknown as Record<string, unknown>;
      return [e.event, d['device'], d['operation'], d['action'], d['error']].filter((x) => x !== undefined).join(' ');
    });

describe('backup I/O errors (blkdebug)', () => {
  it('on-source-error=report: BLOCK_JOB_ERROR then COMPLETED with the error', () => {
    rig = blockRig();
    const { blk } = failingSource(rig, 'src');
    rig.fileNode('tgt', MiB);
    rig.write(blk, 0, new Uint8Array(512).fill(9));
    runTransaction(rig.env, [{ type: 'blockdev-backup', data: { 'device': 'src', 'target': 'tgt', 'sync': 'full', 'job-id': 'j', 'x-perf': { 'max-workers': 1 } } }]);
    rig.loop.runUntilIdle();
    expect(lines(rig)).toEqual(['BLOCK_JOB_ERROR j read report', 'BLOCK_JOB_COMPLETED j Input/output error']);
  });

  it('on-source-error=stop: the job pauses (io-status failed, dismiss refused) and a resume retries to success', () => {
    rig = blockRig();
    const { blk, path } = failingSource(rig, 'src');
    rig.fileNode('tgt', MiB);
    rig.write(blk, 0, new Uint8Array(512).fill(9));
    runTransaction(rig.env, [{ type: 'blockdev-backup', data: { 'device': 'src', 'target': 'tgt', 'sync': 'full', 'job-id': 'j', 'on-source-error': 'stop', 'auto-dismiss': false, 'x-perf': { 'max-workers': 1 } } }]);
    rig.loop.runUntilIdle();
    const job = rig.jobs.findBlockJob('j');
    expect(job.status).toBe('paused');
    expect(job.toBlockJobInfo()).toMatchObject({ 'io-status': 'failed', 'paused': true, 'status': 'paused' });
    expect(() => job.dismiss()).toThrow(new JobError("Job 'j' in state 'paused' cannot accept command verb 'dismiss'"));
    job.userResume();
    rig.loop.runUntilIdle();
    expect(job.status).toBe('concluded');
    expect(lines(rig)).toEqual(['BLOCK_JOB_ERROR j read stop', 'BLOCK_JOB_COMPLETED j']);
    expect(job.toBlockJobInfo()['io-status']).toBe('ok');
    job.dismiss();
    expect(Buffer.compare(rig.fileBytes('tgt'), new Uint8Array(readFileSync(path)))).toBe(0);
  });

  it('grouped: the failing job COMPLETES with error, its sibling is CANCELLED; a rerun succeeds', () => {
    rig = blockRig();
    const a = failingSource(rig, 'a');
    rig.fileNode('b', MiB, (i) => i);
    rig.fileNode('ta', MiB);
    rig.fileNode('tb', MiB);
    rig.write(a.blk, 0, new Uint8Array(512).fill(9));
    const actions = (suffix: string) => [
      { type: 'blockdev-backup', data: { 'device': 'b', 'target': 'tb', 'sync': 'full', 'job-id': `jb${suffix}`, 'speed': 256 * 1024 } },
      { type: 'blockdev-backup', data: { 'device': 'a', 'target': 'ta', 'sync': 'full', 'job-id': `ja${suffix}`, 'x-perf': { 'max-workers': 1 } } },
    ];
    runTransaction(rig.env, actions('1'), { 'completion-mode': 'grouped' });
    rig.loop.runUntilIdle();
    expect(lines(rig)).toEqual(['BLOCK_JOB_ERROR ja1 read report', 'BLOCK_JOB_CANCELLED jb1', 'BLOCK_JOB_COMPLETED ja1 Input/output error']);
    rig.events.length = 0;
    runTransaction(rig.env, actions('2'), { 'completion-mode': 'grouped' });
    rig.loop.runUntilIdle();
    expect(lines(rig).sort()).toEqual(['BLOCK_JOB_COMPLETED ja2', 'BLOCK_JOB_COMPLETED jb2']);
  });
});

describe('bitmap-mode x outcome (sync=bitmap)', () => {
  const CLUSTER = 65536;
  // Dirty clusters 0, 2, 4, 6 (separate copy tasks); with `fail` a read of cluster 2 fails.
  const run = (mode: 'on-success' | 'always' | 'never', fail: boolean): number[] => {
    rig = blockRig();
    const path = join(rig.dir, 'src.img');
    writeFileSync(path, new Uint8Array(MiB));
    const rules = fail ? [{ event: 'pwritev', iotype: 'read', errno: 5, sector: (2 * CLUSTER) / 512 }] : [];
    const bs = rig.graph.blockdevAdd({ 'driver': 'raw', 'node-name': 'src', 'file': { 'driver': 'blkdebug', 'image': { driver: 'file', filename: path }, 'inject-error': rules } });
    rig.fileNode('tgt', MiB);
    const blk = rig.backend(bs, 'drive0');
    runTransaction(rig.env, [{ type: 'block-dirty-bitmap-add', data: { node: 'src', name: 'b', granularity: CLUSTER } }]);
    for (const c of [0, 2, 4, 6]) rig.write(blk, c * CLUSTER, new Uint8Array(CLUSTER).fill(c + 1));
    runTransaction(rig.env, [{ type: 'blockdev-backup', data: { 'device': 'src', 'target': 'tgt', 'sync': 'bitmap', 'bitmap': 'b', 'bitmap-mode': mode, 'job-id': 'j', 'x-perf': { 'max-workers': 1 } } }]);
    rig.loop.runUntilIdle();
    const done = rig.events.find((e) => e.event === 'BLOCK_JOB_COMPLETED')!.data as { error?: string };
    expect(done.error).toBe(fail ? 'Input/output error' : undefined);
    const bitmap = bs.findDirtyBitmap('b')!;
    expect(bitmap.busy).toBe(false);
    const dirty = [0, 1, 2, 3, 4, 5, 6, 7].filter((c) => bitmap.get(c * CLUSTER));
    rig.cleanup();
    rig = null;
    return dirty;
  };

  it('success: on-success and always clear the bitmap, never keeps it', () => {
    expect(run('on-success', false)).toEqual([]);
    expect(run('always', false)).toEqual([]);
    expect(run('never', false)).toEqual([0, 2, 4, 6]);
  });

  it('failure: on-success and never merge everything back, always keeps only what was not copied', () => {
    expect(run('on-success', true)).toEqual([0, 2, 4, 6]);
    expect(run('never', true)).toEqual([0, 2, 4, 6]);
    expect(run('always', true)).toEqual([2, 4, 6]);
  });
});
