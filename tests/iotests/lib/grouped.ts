import type { IoTestContext, Vm } from './test-api.js';
import { guestIo, logBitmaps } from './helpers.js';

/** Two qcow2 drives with a bitmap each; drive b's data reads fail once when `failB` is set. */
export async function twoDrives(t: IoTestContext, failB: boolean): Promise<Vm> {
  for (const name of ['a', 'b', 'ta', 'tb']) await t.img.create('qcow2', t.path(`${name}.qcow2`), '1M');
  const vm = await t.launchVm();
  for (const name of ['a', 'b']) {
    const rules = failB && name === 'b' ? { 'inject-error': [{ event: 'read_aio', errno: 5, once: true }] } : {};
    await vm.qmpLog('blockdev-add', {
      driver: 'qcow2',
      'node-name': name,
      file: { driver: 'blkdebug', image: { driver: 'file', filename: t.path(`${name}.qcow2`) }, ...rules },
    });
    await vm.qmpLog('block-dirty-bitmap-add', { node: name, name: 'bm', granularity: 65536 });
    await guestIo(t, vm, name, 'write -P 0x5a 0 128k');
  }
  for (const name of ['ta', 'tb']) await vm.qmpLog('blockdev-add', { driver: 'qcow2', 'node-name': name, file: { driver: 'file', filename: t.path(`${name}.qcow2`) } });
  await logBitmaps(t, vm, 'a');
  await logBitmaps(t, vm, 'b');
  return vm;
}

export function incrementalActions(suffix = ''): Record<string, unknown>[] {
  return [
    { type: 'blockdev-backup', data: { 'job-id': `ja${suffix}`, device: 'a', target: 'ta', sync: 'incremental', bitmap: 'bm' } },
    { type: 'blockdev-backup', data: { 'job-id': `jb${suffix}`, device: 'b', target: 'tb', sync: 'incremental', bitmap: 'bm' } },
  ];
}

/** Logs every event until both jobs are gone (the order of two jobs' events is QEMU's). */
export async function drainTwoJobs(vm: Vm, ids: readonly string[], t: IoTestContext): Promise<void> {
  const left = new Set(ids);
  for (let i = 0; i < 200 && left.size > 0; i++) {
    const ev = await vm.eventWait('JOB_STATUS_CHANGE');
    t.log({ event: ev.event, data: ev.data });
    if (ev.data?.['status'] === 'null') left.delete(String(ev.data['id']));
  }
  for (const ev of vm.takeEvents()) if (ev.event !== 'JOB_STATUS_CHANGE') t.log({ event: ev.event, data: ev.data });
}
