import { defineTest } from './lib/test-api.js';
import { addNull } from './lib/helpers.js';

// Pause and resume a running job: query-block-jobs shows paused, the job finishes after resume.
export default defineTest({
  groups: ['quick', 'jobs'],
  async run(t) {
    const vm = await t.launchVm();
    await addNull(vm, 'src', 67108864);
    await addNull(vm, 'tgt', 67108864);
    await vm.qmpLog('blockdev-backup', { 'job-id': 'job0', device: 'src', target: 'tgt', sync: 'full', speed: 1048576 });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'job0', status: 'running' });
    await vm.qmpLog('job-pause', { id: 'job0' });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'job0', status: 'paused' });
    const jobs = await vm.qmp('query-block-jobs');
    if ('return' in jobs) {
      for (const j of jobs.return as Record<string, unknown>[]) t.log({ device: j['device'], paused: j['paused'], status: j['status'], speed: j['speed'], 'io-status': j['io-status'], ready: j['ready'] });
    }
    await vm.qmpLog('block-job-set-speed', { device: 'job0', speed: 0 });
    await vm.qmpLog('job-resume', { id: 'job0' });
    await vm.runJob('job0', { autoDismiss: true });
  },
});
