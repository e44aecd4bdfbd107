import { afterEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import '../../../src/block/qcow2/driver.js';
import { blockRig, type BlockRig } from './block-helpers.js';
import { runTransaction } from '../../../src/blockjob/transaction.js';
import { blockDirtyBitmapAdd } from '../../../src/blockjob/bitmap-actions.js';

let rig: BlockRig | null = null;
afterEach(() => {
  rig?.cleanup();
  rig = null;
});

const MiB = 1 << 20;
const pattern = (i: number) => (i * 7 + 3) & 0xff;

function refusal(fn: () => void): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('expected a refusal');
}

describe('backup', () => {
  it('sync=full copies the source; events and progress match QEMU', () => {
    rig = blockRig();
    rig.fileNode('src', MiB, pattern);
    rig.fileNode('tgt', MiB);
    runTransaction(rig.env, [{ type: 'blockdev-backup', data: { 'device': 'src', 'target': 'tgt', 'sync': 'full', 'job-id': 'job0' } }]);
    rig.loop.runUntilIdle();
    expect(Buffer.compare(rig.fileBytes('tgt'), rig.fileBytes('src'))).toBe(0);
    expect(rig.eventNames()).toEqual(['created', 'running', 'waiting', 'pending', 'BLOCK_JOB_COMPLETED', 'concluded', 'null']);
    const done = rig.events.find((e) => e.event === 'BLOCK_JOB_COMPLETED')!;
    expect(done.data).toEqual({ type: 'backup', device: 'job0', len: MiB, offset: MiB, speed: 0 });
    // The job let go of its nodes.
    expect(rig.graph.lookupNode('tgt').parents.length).toBe(0);
    expect(rig.graph.lookupNode('src').dirtyBitmaps.length).toBe(0);
  });

  it('the target is the point-in-time image while the guest keeps writing', () => {
    rig = blockRig();
    const src = rig.fileNode('src', 4 * MiB, pattern);
    rig.fileNode('tgt', 4 * MiB);
    const before = rig.fileBytes('src');
    const blk = rig.backend(src, 'drive0');
    runTransaction(rig.env, [{ type: 'blockdev-backup', data: { 'device': 'src', 'target': 'tgt', 'sync': 'full', 'job-id': 'job0', 'speed': MiB } }]);
    const job = rig.jobs.get('job0')!;
    for (let k = 0; k < 8; k++) {
      rig.loop.step(200_000_000);
      expect(rig.write(blk, (k * 524_288 + 4096 * k) % (4 * MiB - 8192), new Uint8Array(8192).fill(0xe0 + k))).toBe(0);
    }
    expect(job.status).toBe('running');
    rig.loop.runUntilIdle();
    expect(rig.events.some((e) => e.event === 'BLOCK_JOB_COMPLETED')).toBe(true);
    expect(Buffer.compare(rig.fileBytes('tgt'), before)).toBe(0);
    expect(Buffer.compare(rig.fileBytes('src'), before)).not.toBe(0);
    // 4 MiB at 1 MiB/s: about 4 virtual seconds.
    expect(rig.loop.nowNs).toBeGreaterThan(3_000_000_000);
  });

  it('empty backup (clean bitmap) completes at once with len=0 offset=0', () => {
    rig = blockRig();
    const src = rig.nullNode('src', 1 << 30);
    rig.nullNode('tgt', 1 << 30);
    blockDirtyBitmapAdd(rig.env, { node: 'src', name: 'b0' });
    runTransaction(rig.env, [{ type: 'blockdev-backup', data: { 'device': 'src', 'target': 'tgt', 'sync': 'incremental', 'bitmap': 'b0', 'job-id': 'j' } }]);
    rig.loop.runUntilIdle();
    const done = rig.events.find((e) => e.event === 'BLOCK_JOB_COMPLETED')!;
    expect(done.data).toEqual({ type: 'backup', device: 'j', len: 0, offset: 0, speed: 0 });
    // on-success: the bitmap is back, clean, enabled, not busy.
    const bitmap = src.findDirtyBitmap('b0')!;
    expect([bitmap.count, bitmap.busy, bitmap.disabled]).toEqual([0, false, false]);
  });

  it('incremental: on success the bitmap holds only the writes made since the job began', () => {
    rig = blockRig();
    const src = rig.fileNode('src', 2 * MiB, pattern);
    rig.fileNode('tgt', 2 * MiB);
    const blk = rig.backend(src, 'drive0');
    blockDirtyBitmapAdd(rig.env, { node: 'src', name: 'b0', granularity: 65536 });
    rig.write(blk, 0, new Uint8Array(65536).fill(1));
    rig.write(blk, MiB, new Uint8Array(65536).fill(2));
    expect(src.findDirtyBitmap('b0')!.count).toBe(2 * 65536);
    runTransaction(rig.env, [{ type: 'blockdev-backup', data: { 'device': 'src', 'target': 'tgt', 'sync': 'incremental', 'bitmap': 'b0', 'job-id': 'j', 'speed': 65536 } }]);
    rig.loop.step(100_000_000);
    rig.write(blk, 512 * 1024, new Uint8Array(4096).fill(3));
    rig.loop.runUntilIdle();
    const done = rig.events.find((e) => e.event === 'BLOCK_JOB_COMPLETED')!;
    expect(done.data).toMatchObject({ len: 2 * 65536, offset: 2 * 65536 });
    const bitmap = src.findDirtyBitmap('b0')!;
    expect(bitmap.count).toBe(65536);
    expect(bitmap.get(512 * 1024)).toBe(true);
    const tgt = rig.fileBytes('tgt');
    expect(tgt.subarray(0, 65536).every((b) => b === 1)).toBe(true);
    expect(tgt.subarray(MiB, MiB + 65536).every((b) => b === 2)).toBe(true);
    expect(tgt.subarray(65536, MiB).every((b) => b === 0)).toBe(true);
  });

  it('validation messages', () => {
    rig = blockRig();
    rig.nullNode('src', MiB);
    rig.nullNode('tgt', MiB);
    rig.nullNode('small', 4096);
    blockDirtyBitmapAdd(rig.env, { node: 'src', name: 'b0' });
    const backup = (data: Record<string, unknown>) => refusal(() => runTransaction(rig!.env, [{ type: 'blockdev-backup', data: { 'device': 'src', 'target': 'tgt', 'job-id': 'j', ...data } }]));
    expect(backup({ sync: 'incremental' })).toBe("must provide a valid bitmap name for 'incremental' sync mode");
    expect(backup({ sync: 'bitmap' })).toBe("must provide a valid bitmap name for 'bitmap' sync mode");
    expect(backup({ sync: 'bitmap', bitmap: 'nope', 'bitmap-mode': 'always' })).toBe("Bitmap 'nope' could not be found");
    expect(backup({ sync: 'full', bitmap: 'b0' })).toBe('Bitmap sync mode must be given when providing a bitmap');
    expect(backup({ sync: 'full', target: 'src' })).toBe('Source and target cannot be the same');
    expect(backup({ sync: 'full', target: 'small' })).toBe('Source and target image have different sizes');
    expect(backup({ sync: 'full', target: 'nope' })).toBe("Cannot find device='nope' nor node-name='nope'");
    expect(backup({ sync: 'full', 'job-id': '0bad' })).toBe("Invalid job ID '0bad'");
    expect(backup({ sync: 'full', 'job-id': undefined })).toBe("Invalid job ID ''");
    // Nothing was left behind by the refusals.
    expect(rig.jobs.jobs.length).toBe(0);
    expect(rig.graph.lookupNode('tgt').parents.length).toBe(0);
    expect(rig.graph.lookupNode('src').findDirtyBitmap('b0')!.busy).toBe(false);
    expect(rig.graph.lookupNode('src').dirtyBitmaps.length).toBe(1);
  });

  it('blockdev-del is refused while a job uses the node and allowed after cancel', () => {
    rig = blockRig();
    rig.nullNode('src', 64 * MiB);
    rig.nullNode('tgt', 64 * MiB);
    runTransaction(rig.env, [{ type: 'blockdev-backup', data: { 'device': 'src', 'target': 'tgt', 'sync': 'none', 'job-id': 'j' } }]);
    rig.loop.runUntilIdle();
    expect(refusal(() => rig!.graph.blockdevDel('tgt'))).toBe("Node 'tgt' is busy: block device is in use by block job: backup");
    rig.jobs.findBlockJob('j').blockJobCancel(false);
    rig.loop.runUntilIdle();
    expect(rig.eventNames().slice(-4)).toEqual(['aborting', 'BLOCK_JOB_CANCELLED', 'concluded', 'null']);
    rig.graph.blockdevDel('tgt');
    expect(rig.graph.findNode('tgt')).toBeUndefined();
  });
});

describe('drive-backup', () => {
  it('creates a raw target (mode absolute-paths), copies, and closes the implicit target with the job', () => {
    rig = blockRig();
    rig.fileNode('src', MiB, pattern);
    const target = `${rig.dir}/new.raw`;
    runTransaction(rig.env, [{ type: 'drive-backup', data: { 'device': 'src', 'target': target, 'sync': 'full', 'job-id': 'd' } }]);
    rig.loop.runUntilIdle();
    expect(rig.events.filter((e) => e.event.startsWith('BLOCK_JOB_')).map((e) => e.event)).toEqual(['BLOCK_JOB_COMPLETED']);
    expect(Buffer.compare(rig.fileBytes('src'), new Uint8Array(readFileSync(target)))).toBe(0);
    expect([...rig.graph.nodes.values()].filter((bs) => bs.filename === target)).toEqual([]);
  });

  it('opens an existing target (mode existing) and closes it again when the transaction aborts', () => {
    rig = blockRig();
    rig.fileNode('src', MiB, pattern);
    rig.fileNode('old', MiB);
    const target = `${rig.dir}/old.img`;
    const usersBefore = [...rig.graph.nodes.values()].filter((bs) => bs.filename === target).length;
    expect(refusal(() => runTransaction(rig!.env, [{ type: 'drive-backup', data: { 'device': 'src', 'target': target, 'sync': 'full', 'mode': 'existing', 'format': 'raw', 'job-id': 'd2' } }, { type: 'abort', data: {} }]))).toBe('Transaction aborted using Abort action');
    rig.loop.runUntilIdle();
    // Only the node the test opened itself still uses the file.
    expect([...rig.graph.nodes.values()].filter((bs) => bs.filename === target).length).toBe(usersBefore);
  });

  it('creates a qcow2 target (format qcow2); for sync=none it is backed by the source node', () => {
    rig = blockRig();
    rig.fileNode('src', MiB, pattern);
    const full = `${rig.dir}/full.qcow2`;
    runTransaction(rig.env, [{ type: 'drive-backup', data: { 'device': 'src', 'target': full, 'format': 'qcow2', 'sync': 'full', 'job-id': 'f' } }]);
    rig.loop.runUntilIdle();
    expect(rig.events.filter((e) => e.event.startsWith('BLOCK_JOB_')).map((e) => e.event)).toEqual(['BLOCK_JOB_COMPLETED']);
    expect([...readFileSync(full).subarray(0, 4)]).toEqual([0x51, 0x46, 0x49, 0xfb]);
    const check = rig.graph.blockdevAdd({ driver: 'qcow2', file: { driver: 'file', filename: full } });
    const buf = new Uint8Array(MiB);
    expect(rig.loop.runCoroutine('read', rig.backend(check).coPreadv(0, MiB, buf))).toBe(0);
    expect(Buffer.compare(buf, Uint8Array.from({ length: MiB }, (_, i) => pattern(i)))).toBe(0);

    const none = `${rig.dir}/none.qcow2`;
    runTransaction(rig.env, [{ type: 'drive-backup', data: { 'device': 'src', 'target': none, 'format': 'qcow2', 'sync': 'none', 'job-id': 'n' } }]);
    const target = [...rig.graph.nodes.values()].find((bs) => bs.filename === none && bs.drv.formatName === 'qcow2');
    expect(target?.backing?.bs).toBe(rig.graph.lookupNode('src'));
    rig.jobs.get('n')!.cancel(true);
    rig.loop.runUntilIdle();
    expect([...rig.graph.nodes.values()].filter((bs) => bs.filename === none)).toEqual([]);
  });

  it('blockdev-backup inserts the copy-before-write filter named by filter-node-name and drops it when the job ends', () => {
    rig = blockRig();
    rig.fileNode('src', MiB, pattern);
    rig.fileNode('old', MiB);
    const blk = rig.backend(rig.graph.lookupNode('src'), 'drive0');
    runTransaction(rig.env, [{ type: 'blockdev-backup', data: { 'device': 'src', 'target': 'old', 'sync': 'full', 'job-id': 'x', 'filter-node-name': 'f', 'speed': 65536 } }]);
    const filter = rig.graph.lookupNode('f');
    expect(filter.drv.formatName).toBe('copy-before-write');
    expect(filter.file!.bs).toBe(rig.graph.lookupNode('src'));
    // The device now writes through the filter: the target keeps the old data.
    expect(blk.root!.bs).toBe(filter);
    rig.write(blk, 0, new Uint8Array(4096).fill(0xaa));
    rig.loop.runUntilIdle();
    expect(rig.events.filter((e) => e.event.startsWith('BLOCK_JOB_')).map((e) => e.event)).toEqual(['BLOCK_JOB_COMPLETED']);
    expect(rig.graph.findNode('f')).toBeUndefined();
    expect(blk.root!.bs).toBe(rig.graph.lookupNode('src'));
    expect(Buffer.compare(rig.fileBytes('old'), Uint8Array.from({ length: MiB }, (_, i) => pattern(i)))).toBe(0);
    expect(rig.fileBytes('src')[0]).toBe(0xaa);
  });
});
