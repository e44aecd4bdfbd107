import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { QMP_ARGS, QmpProcess, type Step, TSQEMU_BIN, converse, haveQemu } from '../unit/monitor/qmp-process.js';

/**
 * -object, object-add, object-del, query-iothreads and qom-get against qemu-system-riscv64 7.2:
 * the same command lines and QMP conversations must give the same replies, messages and exit
 * statuses. thread-id is the host thread's id in both and is left out.
 */
const have = haveQemu() && existsSync(TSQEMU_BIN);

const OBJECT_STEPS: Step[] = [
  { cmd: 'qom-get', args: { path: '/objects/tg0', property: 'limits' } },
  { cmd: 'object-add', args: { 'qom-type': 'throttle-group', id: 'tg0' } },
  { cmd: 'object-add', args: { 'qom-type': 'bogus', id: 'x' } },
  { cmd: 'object-add', args: { 'qom-type': 'throttle-group', id: 'tg1', 'x-iops-total': 5, limits: { 'bps-total': 7 } } },
  { cmd: 'qom-get', args: { path: '/objects/tg1', property: 'limits' } },
  { cmd: 'object-add', args: { 'qom-type': 'throttle-group', id: 'tg2', 'x-bogus': 5 } },
  { cmd: 'object-add', args: { 'qom-type': 'throttle-group', id: 'tg2', 'x-iops-total': '5' } },
  { cmd: 'object-add', args: { 'qom-type': 'throttle-group', id: 'tg3', 'x-iops-total': 5, 'x-iops-read': 3 } },
  { cmd: 'object-add', args: { 'qom-type': 'throttle-group', id: 'tg4', limits: { 'iops-total': 5, 'iops-read': 3 } } },
  { cmd: 'object-add', args: { 'qom-type': 'throttle-group', id: 'tg0', limits: { 'iops-total': -5 } } },
  { cmd: 'object-add', args: { 'qom-type': 'throttle-group', id: 'tg0', 'x-iops-total': 5, 'x-iops-read': 5 } },
  { cmd: 'object-add', args: { 'qom-type': 'throttle-group', id: 'tg5', 'x-iops-total': 5, 'x-iops-total-max': 1 } },
  { cmd: 'object-add', args: { 'qom-type': 'throttle-group', id: 'tg5', 'x-iops-total': 5, 'x-iops-total-max': 7, 'x-iops-total-max-length': 0 } },
  { cmd: 'object-add', args: { 'qom-type': 'throttle-group', id: 'tg5', 'x-iops-total': 1000000000000001 } },
  { cmd: 'object-add', args: { 'qom-type': 'throttle-group', id: 'tg5', 'x-iops-total-max-length': 5 } },
  { cmd: 'object-add', args: { 'qom-type': 'throttle-group', id: 'tg5', 'x-iops-size': 5 } },
  { cmd: 'object-add', args: { 'qom-type': 'throttle-group', id: 'tg5', limits: 5 } },
  { cmd: 'object-add', args: { 'qom-type': 'throttle-group' } },
  { cmd: 'object-add', args: { id: 'z' } },
  { cmd: 'object-add', args: { 'qom-type': 'throttle-group', id: '0bad' } },
  { cmd: 'object-del', args: { id: 'nope' } },
  { cmd: 'blockdev-add', args: { driver: 'throttle', 'node-name': 't', 'throttle-group': 'tgx', file: { driver: 'null-co' } } },
  { cmd: 'blockdev-add', args: { driver: 'throttle', 'node-name': 't', 'throttle-group': 'tg0', file: { driver: 'null-co' } } },
  { cmd: 'object-del', args: { id: 'tg0' } },
  { cmd: 'blockdev-del', args: { 'node-name': 't' } },
  { cmd: 'object-del', args: { id: 'tg0' } },
  { cmd: 'object-del', args: { id: 'tg0' } },
  { cmd: 'object-add', args: { 'qom-type': 'iothread', id: 'io0', 'poll-max-ns': 10, 'poll-grow': 2, 'aio-max-batch': 3 } },
  { cmd: 'object-add', args: { 'qom-type': 'iothread', id: 'io1', 'poll-max-ns': -10 } },
  { cmd: 'object-add', args: { 'qom-type': 'iothread', id: 'io1', 'thread-pool-min': 10, 'thread-pool-max': 5 } },
  { cmd: 'object-add', args: { 'qom-type': 'iothread', id: 'io1', bogus: 1 } },
  { cmd: 'object-add', args: { 'qom-type': 'iothread', id: 'tg1' } },
  { cmd: 'query-iothreads', pick: ['id', 'poll-max-ns', 'poll-grow', 'poll-shrink', 'aio-max-batch'] },
  { cmd: 'blockdev-add', args: { driver: 'throttle', 'node-name': 't', 'throttle-group': 'io0', file: { driver: 'null-co' } } },
  { cmd: 'object-del', args: { id: 'io0' } },
  { cmd: 'query-iothreads' },
];

/** Command lines whose stderr (program name aside) and exit status must match QEMU's. */
const COMMAND_LINES: string[][] = [
  ['-object', 'bogus,id=x'],
  ['-object', 'throttle-group'],
  ['-object', 'id=x'],
  ['-object', 'throttle-group,id=tg0,x-bogus=1'],
  ['-object', 'throttle-group,id=tg0,x-iops-total=abc'],
  ['-object', 'throttle-group,id=tg0,x-iops-total=5,x-iops-read=3'],
  ['-object', 'throttle-group,id=0bad'],
  ['-object', 'throttle-group,id=a', '-object', 'throttle-group,id=a'],
  ['-object', 'throttle-group,id=a,limits.iops-total=3'],
  ['-object', 'throttle-group,id=a,x-iops-total=-1'],
  ['-object', 'throttle-group,id=a,x-iops-size=5'],
  ['-object', 'throttle-group,id=a,x-iops-total=5,x-iops-total-max-length=5000000000'],
  ['-object', 'throttle-group,id=a,x-iops-total=1e3'],
  ['-object', '{"qom-type":"throttle-group","id":"a","x-bogus":1}'],
  ['-object', '{"qom-type":"bogus","id":"a"}'],
  ['-object', 'iothread,id=io0,foo=1'],
  ['-object', 'iothread,id=a,poll-max-ns=-5'],
  ['-object', 'throttle-group,help'],
  ['-object', 'iothread,help'],
  ['-blockdev', 'driver=throttle,node-name=t,throttle-group=tg1,file.driver=null-co', '-object', 'throttle-group,id=tg0,x-iops-total=100'],
];

function run(bin: 'qemu' | 'tsqemu', extra: string[], input: string): { status: number | null; stdout: string; stderr: string } {
  const args = [...QMP_ARGS, ...extra, '-qmp', 'stdio'];
  const r = bin === 'qemu' ? spawnSync('qemu-system-riscv64', args, { input, encoding: 'utf8', timeout: 20_000 }) : spawnSync(process.execPath, [TSQEMU_BIN, ...args], { input, encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stdout: r.status === 0 && input !== '' ? '' : r.stdout, stderr: r.stderr.replace(/^(qemu-system-riscv64|tsqemu): /gm, '') };
}

describe.skipIf(!have)(`objects: tsqemu vs qemu-system-riscv64 (${have ? 'both present' : 'needs qemu-system-riscv64 and a built dist/'})`, () => {
  it('object-add / object-del / query-iothreads / qom-get conversation', async () => {
    const [qemu, ours] = await Promise.all([QmpProcess.start('qemu'), QmpProcess.start('tsqemu')]);
    try {
      const [expected, actual] = await Promise.all([converse(qemu, OBJECT_STEPS), converse(ours, OBJECT_STEPS)]);
      expect(actual.replies).toEqual(expected.replies);
    } finally {
      await Promise.all([qemu.stop(), ours.stop()]);
    }
  }, 20_000);

  it('-object throttle-group feeds -blockdev driver=throttle given before it', async () => {
    const extra = ['-blockdev', 'driver=throttle,node-name=t,throttle-group=tg0,file.driver=null-co,file.node-name=n', '-object', 'throttle-group,id=tg0,x-iops-total=100,x-bps-write=2000,x-bps-write-max=3000,x-bps-write-max-length=4,x-iops-size=512'];
    const steps: Step[] = [{ cmd: 'qom-get', args: { path: '/objects/tg0', property: 'limits' } }, { cmd: 'object-del', args: { id: 'tg0' } }, { cmd: 'blockdev-del', args: { 'node-name': 't' } }, { cmd: 'object-del', args: { id: 'tg0' } }];
    const [qemu, ours] = await Promise.all([QmpProcess.start('qemu', extra), QmpProcess.start('tsqemu', extra)]);
    try {
      const [expected, actual] = await Promise.all([converse(qemu, steps), converse(ours, steps)]);
      expect(actual.replies).toEqual(expected.replies);
    } finally {
      await Promise.all([qemu.stop(), ours.stop()]);
    }
  }, 20_000);

  for (const extra of COMMAND_LINES) {
    it(`command line ${extra.join(' ')}`, () => {
      const input = '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n';
      expect(run('tsqemu', extra, input)).toEqual(run('qemu', extra, input));
    }, 20_000);
  }
});
