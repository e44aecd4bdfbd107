import { defineTest } from './lib/test-api.js';
import { addNull } from './lib/helpers.js';

// A transaction of two backups in the default (individual) completion mode: both jobs run and
// complete independently.
export default defineTest({
  groups: ['quick', 'transaction', 'backup'],
  async run(t) {
    const vm = await t.launchVm();
    for (const n of ['a', 'b', 'ta', 'tb']) await addNull(vm, n, 1048576);
    await vm.qmpLog('transaction', {
      actions: [
        { type: 'blockdev-backup', data: { 'job-id': 'ja', device: 'a', target: 'ta', sync: 'full' } },
        { type: 'blockdev-backup', data: { 'job-id': 'jb', device: 'b', target: 'tb', sync: 'full' } },
      ],
    });
    await vm.runJob('ja', { autoDismiss: true });
    await vm.runJob('jb', { autoDismiss: true });
    await vm.qmpLog('query-jobs');
  },
});
