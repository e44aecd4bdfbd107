import { defineTest } from './lib/test-api.js';
import { addNull } from './lib/helpers.js';

// A job ID may be used once at a time; after the job is gone it can be reused.
export default defineTest({
  groups: ['quick', 'backup', 'jobs'],
  async run(t) {
    const vm = await t.launchVm();
    await addNull(vm, 'src', 1048576);
    await addNull(vm, 'tgt', 1048576);
    await addNull(vm, 'tgt2', 1048576);
    await vm.qmpLog('blockdev-backup', { 'job-id': 'job0', device: 'src', target: 'tgt', sync: 'none' });
    await vm.qmpLog('blockdev-backup', { 'job-id': 'job0', device: 'src', target: 'tgt2', sync: 'full' });
    await vm.qmpLog('job-cancel', { id: 'job0' });
    await vm.runJob('job0', { autoDismiss: true });
    await vm.qmpLog('blockdev-backup', { 'job-id': 'job0', device: 'src', target: 'tgt2', sync: 'full' });
    await vm.runJob('job0', { autoDismiss: true });
  },
});
