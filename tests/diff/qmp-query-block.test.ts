import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QmpProcess, type Step, TSQEMU_BIN, converse, haveQemu } from '../unit/monitor/qmp-process.js';

/**
 * query-block (and query-named-block-nodes where the node lists agree) against
 * qemu-system-riscv64 7.2 for the drives and devices tsqemu has: the same command line in both,
 * the replies equal as JSON text (key order included) once automatic node names (#blockNNN, a
 * known difference) are masked.
 */
const haveImg = spawnSync('qemu-img', ['--version'], { encoding: 'utf8' }).status === 0;
const have = haveQemu() && haveImg && existsSync(TSQEMU_BIN);

let dir = '';
const img = (name: string): string => join(dir, name);

interface Case {
  readonly args: () => string[];
  readonly steps: Step[];
}

const CASES: Record<string, Case> = {
  'raw -drive on a -device with an id': {
    args: () => ['-drive', `file=${img('d.raw')},format=raw,if=none,id=d`, '-device', 'virtio-blk-device,drive=d,id=vd0'],
    steps: [{ cmd: 'query-block' }],
  },
  'read-only qcow2 -drive without a device (removable, no io-status)': {
    args: () => ['-drive', `file=${img('base.qcow2')},format=qcow2,if=none,id=d2,readonly=on`],
    steps: [{ cmd: 'query-block' }],
  },
  '-blockdev node on an anonymous -device': {
    args: () => ['-blockdev', 'driver=null-co,node-name=n0', '-device', 'virtio-blk-device,drive=n0'],
    steps: [{ cmd: 'query-block' }, { cmd: 'query-named-block-nodes' }],
  },
  'if=virtio -drive': {
    args: () => ['-drive', `file=${img('d.raw')},format=raw,if=virtio,id=v`],
    steps: [{ cmd: 'query-block' }],
  },
  'drives without an id get QEMU\'s default names (none0, virtio0, none1)': {
    args: () => ['-drive', `file=${img('d.raw')},format=raw,if=none`, '-drive', `file=${img('e.raw')},format=raw,if=virtio`, '-drive', `file=${img('base.qcow2')},format=qcow2,if=none,readonly=on`, '-device', 'virtio-blk-device,drive=none1'],
    steps: [{ cmd: 'query-block' }],
  },
  'qcow2 overlay with a backing chain and a dirty bitmap': {
    args: () => ['-drive', `file=${img('top.qcow2')},format=qcow2,if=none,id=d3`, '-device', 'virtio-blk-device,drive=d3', '-blockdev', 'driver=null-co,node-name=spare'],
    steps: [{ cmd: 'block-dirty-bitmap-add', args: { node: 'd3', name: 'b0', granularity: 131072 } }, { cmd: 'query-block' }],
  },
};

function masked(value: unknown): string {
  return JSON.stringify(value).replace(/#block\d+/g, '#block');
}

describe.skipIf(!have)(`query-block: tsqemu vs qemu-system-riscv64 (${have ? 'both present' : 'needs qemu-system-riscv64, qemu-img and a built dist/'})`, () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tsqemu-qb-'));
    const run = (...args: string[]): void => {
      const r = spawnSync('qemu-img', args, { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(r.stderr);
    };
    run('create', '-f', 'raw', img('d.raw'), '1M');
    run('create', '-f', 'raw', img('e.raw'), '2M');
    run('create', '-f', 'qcow2', img('base.qcow2'), '1M');
    run('create', '-f', 'qcow2', '-b', img('base.qcow2'), '-F', 'qcow2', img('top.qcow2'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const [name, c] of Object.entries(CASES)) {
    it(name, async () => {
      const [qemu, ours] = await Promise.all([QmpProcess.start('qemu', c.args()), QmpProcess.start('tsqemu', c.args())]);
      try {
        const [expected, actual] = await Promise.all([converse(qemu, c.steps), converse(ours, c.steps)]);
        expect(masked(actual.replies)).toBe(masked(expected.replies));
      } finally {
        await Promise.all([qemu.stop(), ours.stop()]);
      }
    }, 20_000);
  }
});
