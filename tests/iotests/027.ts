import { defineTest } from './lib/test-api.js';
import { addNull, logBitmaps } from './lib/helpers.js';

// A grouped transaction of two full backups where nothing fails: both complete.
export default defineTest({
  groups: ['quick', 'transaction', 'backup'],
  async run(t) {
    const vm = await t.launchVm();
    for (const n of ['a', 'b', 'ta', 'tb']) await addNull(vm, n, 1048576);
    await vm.qmpLog('block-dirty-bitmap-add', { node: 'a', name: 'bm' });
    await vm.qmpLog('transaction', {
      actions: [
        { type: 'blockdev-backup', data: { 'job-id': 'ja', device: 'a', target: 'ta', sync: 'full' } },
        { type: 'blockdev-backup', data: { 'job-id': 'jb', device: 'b', target: 'tb', sync: 'full' } },
      ],
      properties: { 'completion-mode': 'grouped' },
    });
    await vm.runJob('ja', { autoDismiss: true });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'jb', status: 'null' });
    await logBitmaps(t, vm, 'a');
    await vm.qmpLog('query-jobs');
  },
});
