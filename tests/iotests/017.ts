import { defineTest } from './lib/test-api.js';
import { addNull } from './lib/helpers.js';

// blockdev-backup refuses bad combinations before creating anything, with QEMU's messages.
export default defineTest({
  groups: ['quick', 'backup', 'errors'],
  async run(t) {
    const vm = await t.launchVm();
    await addNull(vm, 'src', 1048576);
    await addNull(vm, 'tgt', 1048576);
    await addNull(vm, 'small', 65536);
    await vm.qmpLog('block-dirty-bitmap-add', { node: 'src', name: 'bm0' });
    await vm.qmpLog('blockdev-backup', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'bitmap' });
    await vm.qmpLog('blockdev-backup', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'incremental' });
    await vm.qmpLog('blockdev-backup', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'bitmap', bitmap: 'nope' });
    await vm.qmpLog('blockdev-backup', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', bitmap: 'bm0' });
    await vm.qmpLog('blockdev-backup', { 'job-id': 'j', device: 'src', target: 'src', sync: 'full' });
    await vm.qmpLog('blockdev-backup', { 'job-id': 'j', device: 'src', target: 'small', sync: 'full' });
    await vm.qmpLog('blockdev-backup', { 'job-id': 'j', device: 'nosuch', target: 'tgt', sync: 'full' });
    await vm.qmpLog('blockdev-backup', { 'job-id': 'j', device: 'src', target: 'nosuch', sync: 'full' });
    await vm.qmpLog('blockdev-backup', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'bogus' });
    await vm.qmpLog('blockdev-backup', { 'job-id': '#bad', device: 'src', target: 'tgt', sync: 'full' });
    await vm.qmpLog('query-jobs');
  },
});
