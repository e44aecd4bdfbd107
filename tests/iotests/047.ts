import { defineTest } from './lib/test-api.js';
import { addNull } from './lib/helpers.js';

// blockdev-del is refused while a job uses the node, and allowed once the job is gone.
export default defineTest({
  groups: ['quick', 'jobs', 'errors'],
  async run(t) {
    const vm = await t.launchVm();
    await addNull(vm, 'src', 1048576);
    await addNull(vm, 'tgt', 1048576);
    await vm.qmpLog('blockdev-backup', { 'job-id': 'job0', device: 'src', target: 'tgt', sync: 'none' });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'job0', status: 'running' });
    await vm.qmpLog('blockdev-del', { 'node-name': 'src' });
    await vm.qmpLog('blockdev-del', { 'node-name': 'tgt' });
    await vm.qmpLog('job-cancel', { id: 'job0' });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'job0', status: 'null' });
    await vm.qmpLog('blockdev-del', { 'node-name': 'src' });
    await vm.qmpLog('blockdev-del', { 'node-name': 'tgt' });
    await vm.qmpLog('blockdev-del', { 'node-name': 'src' });
  },
});
