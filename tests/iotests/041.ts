import { defineTest } from './lib/test-api.js';
import { addNull } from './lib/helpers.js';

// Every verb refused in the wrong state, with QEMU's message, and unknown jobs.
export default defineTest({
  groups: ['quick', 'jobs', 'errors'],
  async run(t) {
    const vm = await t.launchVm();
    await addNull(vm, 'src', 1048576);
    await addNull(vm, 'tgt', 1048576);
    await vm.qmpLog('blockdev-backup', { 'job-id': 'job0', device: 'src', target: 'tgt', sync: 'none' });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'job0', status: 'running' });
    await vm.qmpLog('job-complete', { id: 'job0' });
    await vm.qmpLog('block-job-complete', { device: 'job0' });
    await vm.qmpLog('job-finalize', { id: 'job0' });
    await vm.qmpLog('job-dismiss', { id: 'job0' });
    await vm.qmpLog('job-resume', { id: 'job0' });
    await vm.qmpLog('block-job-resume', { device: 'job0' });
    await vm.qmpLog('job-pause', { id: 'job0' });
    await vm.qmpLog('job-pause', { id: 'job0' });
    await vm.qmpLog('block-job-pause', { device: 'job0' });
    await vm.qmpLog('job-resume', { id: 'job0' });
    await vm.qmpLog('job-pause', { id: 'nosuch' });
    await vm.qmpLog('block-job-pause', { device: 'nosuch' });
    await vm.qmpLog('block-job-cancel', { device: 'nosuch' });
    await vm.qmpLog('block-job-set-speed', { device: 'nosuch', speed: 1 });
    await vm.qmpLog('block-job-set-speed', { device: 'job0', speed: -1 });
    await vm.qmpLog('block-job-finalize', { id: 'nosuch' });
    await vm.qmpLog('block-job-dismiss', { id: 'nosuch' });
    await vm.qmpLog('job-cancel', { id: 'job0' });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'job0', status: 'null' });
    await vm.qmpLog('job-cancel', { id: 'job0' });
  },
});
