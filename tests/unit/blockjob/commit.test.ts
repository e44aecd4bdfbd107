import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import '../../../src/block/qcow2/driver.js';
import { blockRig, type BlockRig } from './block-helpers.js';
import { commitJobCreate } from '../../../src/blockjob/commit.js';
import { startJob, type Job } from '../../../src/blockjob/job.js';

function have(tool: string): boolean {
  try {
    execFileSync(tool, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

let rig: BlockRig | null = null;
afterEach(() => {
  rig?.cleanup();
  rig = null;
});

const MiB = 1 << 20;

/**
 * base (raw, 0x11 in the first MiB) <- mid (qcow2, 0x22 at 512k..1M) <- top (qcow2, 0x33 in the
 * first 64k), opened as node 'top'. The base is raw: tsqemu's qcow2 cannot be reopened
 * read-write yet, which a commit into a qcow2 base needs.
 */
function chain(r: BlockRig) {
  const base = join(r.dir, 'base.raw');
  const mid = join(r.dir, 'mid.qcow2');
  const top = join(r.dir, 'top.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'raw', base, String(2 * MiB)]);
  execFileSync('qemu-io', ['-f', 'raw', '-c', 'write -q -P 0x11 0 1M', base]);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', mid]);
  execFileSync('qemu-io', ['-c', 'write -q -P 0x22 512k 512k', mid]);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', mid, '-F', 'qcow2', top]);
  execFileSync('qemu-io', ['-c', 'write -q -P 0x33 0 64k', top]);
  const bs = r.graph.blockdevAdd({ 'driver': 'qcow2', 'node-name': 'top', 'file': { driver: 'file', filename: top } });
  const blk = r.backend(bs, 'drive0');
  const read = () => {
    const buf = new Uint8Array(2 * MiB);
    expect(r.loop.runCoroutine('read', blk.coPreadv(0, buf.length, buf))).toBe(0);
    return buf;
  };
  const midNode = bs.backing!.bs;
  const baseNode = midNode.backing!.bs;
  return { bs, blk, read, midNode, baseNode };
}

describe.skipIf(!(have('qemu-img') && have('qemu-io')))('commit (needs qemu-img and qemu-io to build the chain)', () => {
  it('intermediate: mid is committed into base and leaves the chain', () => {
    rig = blockRig();
    const { bs, read, midNode, baseNode } = chain(rig);
    const before = read();
    const job = commitJobCreate(rig.jobs, rig.graph, { 'device': 'top', 'top-node': midNode.nodeName, 'base-node': baseNode.nodeName, 'job-id': 'c' });
    expect(job.jobType).toBe('commit');
    startJob(job as Job);
    rig.loop.runUntilIdle();
    expect(rig.events.filter((e) => e.event.startsWith('BLOCK_JOB_')).map((e) => e.event)).toEqual(['BLOCK_JOB_COMPLETED']);
    expect(bs.backing?.bs).toBe(baseNode);
    expect(Buffer.compare(read(), before)).toBe(0);
    expect(baseNode.readOnly).toBe(true);
    // The overlay's image on disk now names base (raw) as its backing file.
    const info = JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', join(rig.dir, 'top.qcow2')], { encoding: 'utf8' })) as Record<string, unknown>;
    expect([info['backing-filename'], info['backing-filename-format']]).toEqual([join(rig.dir, 'base.raw'), 'raw']);
  });

  it('finds top and base by filename', () => {
    rig = blockRig();
    const { bs, baseNode } = chain(rig);
    expect(() => commitJobCreate(rig!.jobs, rig!.graph, { 'device': 'top', 'top': join(rig!.dir, 'nope.qcow2') })).toThrow(`Top image file ${join(rig!.dir, 'nope.qcow2')} not found`);
    expect(() => commitJobCreate(rig!.jobs, rig!.graph, { 'device': 'top', 'top': join(rig!.dir, 'mid.qcow2'), 'base': 'nope' })).toThrow("Can't find 'nope' in the backing chain");
    expect(() => commitJobCreate(rig!.jobs, rig!.graph, { 'device': 'top', 'top': 'x', 'top-node': 'y' })).toThrow("'top-node' and 'top' are mutually exclusive");
    startJob(commitJobCreate(rig.jobs, rig.graph, { 'device': 'top', 'top': join(rig.dir, 'mid.qcow2'), 'base': join(rig.dir, 'base.raw'), 'job-id': 'c' }) as Job);
    rig.loop.runUntilIdle();
    expect(bs.backing?.bs).toBe(baseNode);
  });

  it('active: READY, then complete pivots the device onto base', () => {
    rig = blockRig();
    const { blk, read, baseNode } = chain(rig);
    const before = read();
    const job = commitJobCreate(rig.jobs, rig.graph, { 'device': 'top', 'job-id': 'c' });
    expect(job.jobType).toBe('commit');
    startJob(job as Job);
    rig.loop.step(100_000_000);
    expect(job.status).toBe('ready');
    job.complete();
    rig.loop.runUntilIdle();
    expect(rig.events.filter((e) => e.event.startsWith('BLOCK_JOB_')).map((e) => e.event)).toEqual(['BLOCK_JOB_READY', 'BLOCK_JOB_COMPLETED']);
    expect(blk.bs).toBe(baseNode);
    expect(Buffer.compare(read(), before)).toBe(0);
  });

  it('refusals', () => {
    rig = blockRig();
    const { baseNode } = chain(rig);
    rig.nullNode('other', MiB);
    expect(() => commitJobCreate(rig!.jobs, rig!.graph, { 'device': 'top', 'base-node': 'other' })).toThrow("'other' is not in this backing file chain");
    expect(() => commitJobCreate(rig!.jobs, rig!.graph, { 'device': 'top', 'top-node': baseNode.nodeName })).toThrow('cannot commit an image into itself');
    expect(() => commitJobCreate(rig!.jobs, rig!.graph, { 'device': 'nosuch' })).toThrow(expect.objectContaining({ message: "Device 'nosuch' not found", errorClass: 'DeviceNotFound' }));
  });
});
