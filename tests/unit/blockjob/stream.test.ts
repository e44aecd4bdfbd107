import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import '../../../src/block/qcow2/driver.js';
import { blockRig, type BlockRig } from './block-helpers.js';
import { streamJobCreate } from '../../../src/blockjob/stream.js';
import { startJob } from '../../../src/blockjob/job.js';

function have(tool: string): boolean {
  try {
    execFileSync(tool, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const haveQemuImg = have('qemu-img') && have('qemu-io');

let rig: BlockRig | null = null;
afterEach(() => {
  rig?.cleanup();
  rig = null;
});

const MiB = 1 << 20;

describe.skipIf(!haveQemuImg)('stream (needs qemu-img and qemu-io to build the chain)', () => {
  it('pulls the backing data into the top image and drops the backing link', () => {
    rig = blockRig();
    const base = join(rig.dir, 'base.qcow2');
    const mid = join(rig.dir, 'mid.qcow2');
    const top = join(rig.dir, 'top.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', base, String(2 * MiB)]);
    execFileSync('qemu-io', ['-c', 'write -q -P 0x11 0 1M', base]);
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', mid]);
    execFileSync('qemu-io', ['-c', 'write -q -P 0x22 512k 512k', mid]);
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', mid, '-F', 'qcow2', top]);
    execFileSync('qemu-io', ['-c', 'write -q -P 0x33 0 64k', top]);
    const bs = rig.graph.blockdevAdd({ 'driver': 'qcow2', 'node-name': 'top', 'file': { driver: 'file', filename: top } });
    const blk = rig.backend(bs, 'drive0');
    const read = () => {
      const buf = new Uint8Array(2 * MiB);
      expect(rig!.loop.runCoroutine('read', blk.coPreadv(0, buf.length, buf))).toBe(0);
      return buf;
    };
    const before = read();
    expect([before[0], before[100_000], before[600_000], before[1_500_000]]).toEqual([0x33, 0x11, 0x22, 0]);
    const job = streamJobCreate(rig.jobs, rig.graph, { 'device': 'top', 'job-id': 's' });
    startJob(job);
    rig.loop.runUntilIdle();
    expect(rig.events.filter((e) => e.event.startsWith('BLOCK_JOB_')).map((e) => e.event)).toEqual(['BLOCK_JOB_COMPLETED']);
    expect(bs.backing).toBeNull();
    expect(Buffer.compare(read(), before)).toBe(0);
    // bdrv_change_backing_file: the image on disk has no backing file any more.
    const info = JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', top], { encoding: 'utf8' })) as Record<string, unknown>;
    expect(info['backing-filename']).toBeUndefined();
  });

  it('with a base, the top image on disk names the base as its backing file afterwards', () => {
    rig = blockRig();
    const base = join(rig.dir, 'base.qcow2');
    const mid = join(rig.dir, 'mid.qcow2');
    const top = join(rig.dir, 'top.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', base, String(MiB)]);
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', mid]);
    execFileSync('qemu-io', ['-c', 'write -q -P 0x22 0 64k', mid]);
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', mid, '-F', 'qcow2', top]);
    const bs = rig.graph.blockdevAdd({ 'driver': 'qcow2', 'node-name': 'top', 'file': { driver: 'file', filename: top } });
    const baseNode = bs.backing!.bs.backing!.bs;
    startJob(streamJobCreate(rig.jobs, rig.graph, { 'device': 'top', 'job-id': 's', 'base-node': baseNode.nodeName }));
    rig.loop.runUntilIdle();
    expect(bs.backing?.bs).toBe(baseNode);
    const info = JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', top], { encoding: 'utf8' })) as Record<string, unknown>;
    expect([info['backing-filename'], info['backing-filename-format']]).toEqual([base, 'qcow2']);
  });

  it('refuses a base that is not in the chain', () => {
    rig = blockRig();
    rig.nullNode('other', MiB);
    const top = join(rig.dir, 'top.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', top, String(MiB)]);
    rig.graph.blockdevAdd({ 'driver': 'qcow2', 'node-name': 'top', 'file': { driver: 'file', filename: top } });
    expect(() => streamJobCreate(rig!.jobs, rig!.graph, { 'device': 'top', 'base-node': 'other' })).toThrow("Node 'other' is not a backing image of 'top'");
    expect(() => streamJobCreate(rig!.jobs, rig!.graph, { 'device': 'top', 'base-node': 'other', 'base': 'x' })).toThrow("'base' and 'base-node' cannot be specified at the same time");
  });
});
