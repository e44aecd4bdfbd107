import { defineTest } from './lib/test-api.js';
import { addNull } from './lib/helpers.js';

// auto-finalize and auto-dismiss off: the job waits in pending for job-finalize and in concluded
// for job-dismiss; query-jobs shows each state.
export default defineTest({
  groups: ['quick', 'jobs', 'backup'],
  async run(t) {
    const vm = await t.launchVm();
    await addNull(vm, 'src', 1048576);
    await addNull(vm, 'tgt', 1048576);
    await vm.qmpLog('blockdev-backup', { 'job-id': 'job0', device: 'src', target: 'tgt', sync: 'full', 'auto-finalize': false, 'auto-dismiss': false });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'job0', status: 'pending' });
    await vm.qmpLog('query-jobs');
    await vm.qmpLog('job-dismiss', { id: 'job0' });
    await vm.qmpLog('job-finalize', { id: 'job0' });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'job0', status: 'concluded' });
    await vm.qmpLog('query-jobs');
    await vm.qmpLog('job-finalize', { id: 'job0' });
    await vm.qmpLog('job-dismiss', { id: 'job0' });
    await vm.qmpLog('query-jobs');
  },
});
