import { defineTest } from './lib/test-api.js';

// A full backup of a null-co node to another null-co node: the job runs to the end, events in
// QEMU's order, and the job disappears after dismiss.
export default defineTest({
  groups: ['quick', 'backup', 'jobs'],
  async run(t) {
    const vm = await t.launchVm();
    await vm.qmpLog('blockdev-add', { driver: 'null-co', 'node-name': 'src', size: 4194304, 'read-zeroes': true });
    await vm.qmpLog('blockdev-add', { driver: 'null-co', 'node-name': 'tgt', size: 4194304, 'read-zeroes': true });
    await vm.qmpLog('blockdev-backup', { 'job-id': 'job0', device: 'src', target: 'tgt', sync: 'full' });
    await vm.runJob('job0', { autoDismiss: true });
    await vm.qmpLog('query-jobs');
  },
});
