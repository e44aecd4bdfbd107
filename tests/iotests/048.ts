import { defineTest } from './lib/test-api.js';
import { addNull } from './lib/helpers.js';

// Cancelling a paused job: it goes straight to aborting and ends CANCELLED.
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
    await vm.qmpLog('job-cancel', { id: 'job0' });
    await vm.runJob('job0', { autoDismiss: true });
  },
});
