import type { IoTestContext } from './test-api.js';
import { guestIo } from './helpers.js';

/**
 * A backup whose source's first data read fails, under on-source-error `policy`: report fails
 * the job, ignore carries on, stop pauses it with io-status failed until resumed.
 */
export async function errorPolicyRun(t: IoTestContext, policy: 'report' | 'ignore' | 'stop' | 'enospc'): Promise<void> {
  await t.img.create('qcow2', t.path('src.qcow2'), '1M');
  await t.img.create('qcow2', t.path('tgt.qcow2'), '1M');
  const vm = await t.launchVm();
  await vm.qmpLog('blockdev-add', {
    driver: 'qcow2',
    'node-name': 'src',
    file: { driver: 'blkdebug', image: { driver: 'file', filename: t.path('src.qcow2') }, 'inject-error': [{ event: 'read_aio', errno: 5, once: true }] },
  });
  await vm.qmpLog('blockdev-add', { driver: 'qcow2', 'node-name': 'tgt', file: { driver: 'file', filename: t.path('tgt.qcow2') } });
  await guestIo(t, vm, 'src', 'write -P 0x66 0 128k');
  await vm.qmpLog('blockdev-backup', { 'job-id': 'job0', device: 'src', target: 'tgt', sync: 'full', 'on-source-error': policy });
  if (policy === 'stop' || policy === 'enospc') {
    const ev = await vm.eventWait('BLOCK_JOB_ERROR');
    t.log({ event: ev.event, data: ev.data });
    if (policy === 'stop') {
      await vm.eventWait('JOB_STATUS_CHANGE', { id: 'job0', status: 'paused' });
      const jobs = await vm.qmp('query-block-jobs');
      if ('return' in jobs) for (const j of jobs.return as Record<string, unknown>[]) t.log({ status: j['status'], paused: j['paused'], 'io-status': j['io-status'] });
      await vm.qmpLog('job-dismiss', { id: 'job0' });
      await vm.qmpLog('job-resume', { id: 'job0' });
    }
  }
  // A job that fails stops wherever its workers were: its offset depends on the schedule.
  await vm.runJob('job0', { autoDismiss: true, filterOffsets: policy === 'report' || policy === 'enospc' });
  await vm.shutdown();
  await t.io(t.path('tgt.qcow2'), ['read -P 0x66 0 128k']);
}
