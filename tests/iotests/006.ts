import { defineTest } from './lib/test-api.js';

// An empty backup (zero-length source) completes right after it starts, with len 0 and offset 0.
export default defineTest({
  groups: ['quick', 'backup'],
  async run(t) {
    const vm = await t.launchVm();
    await vm.qmpLog('blockdev-add', { driver: 'null-co', 'node-name': 'src', size: 0 });
    await vm.qmpLog('blockdev-add', { driver: 'null-co', 'node-name': 'tgt', size: 0 });
    await vm.qmpLog('blockdev-backup', { 'job-id': 'job0', device: 'src', target: 'tgt', sync: 'full' });
    await vm.runJob('job0', { autoDismiss: true, filterOffsets: false });
  },
});
