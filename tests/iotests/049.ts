import { defineTest } from './lib/test-api.js';
import { addNull } from './lib/helpers.js';

// query-block-jobs and query-jobs describe a running, rate-limited backup.
export default defineTest({
  groups: ['quick', 'jobs'],
  async run(t) {
    const vm = await t.launchVm();
    await addNull(vm, 'src', 67108864);
    await addNull(vm, 'tgt', 67108864);
    await vm.qmpLog('blockdev-backup', { 'job-id': 'job0', device: 'src', target: 'tgt', sync: 'full', speed: 65536 });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'job0', status: 'running' });
    await vm.qmpLog('block-job-set-speed', { device: 'job0', speed: 131072 });
    const bj = await vm.qmp('query-block-jobs');
    if ('return' in bj) for (const j of bj.return as Record<string, unknown>[]) t.log({ ...j, offset: 'OFFSET', busy: 'BUSY' });
    const jobs = await vm.qmp('query-jobs');
    if ('return' in jobs) for (const j of jobs.return as Record<string, unknown>[]) t.log({ ...j, 'current-progress': 'CUR' });
    await vm.qmpLog('job-cancel', { id: 'job0' });
    await vm.runJob('job0', { autoDismiss: true });
  },
});
