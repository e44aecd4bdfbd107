import { defineTest } from './lib/test-api.js';
import { addNull } from './lib/helpers.js';

// In individual mode, a transaction whose second backup fails validation leaves the first job
// created and then cancelled: it never runs.
export default defineTest({
  groups: ['quick', 'transaction', 'backup'],
  async run(t) {
    const vm = await t.launchVm();
    for (const n of ['a', 'ta', 'b']) await addNull(vm, n, 1048576);
    await vm.qmpLog('transaction', {
      actions: [
        { type: 'blockdev-backup', data: { 'job-id': 'ja', device: 'a', target: 'ta', sync: 'full' } },
        { type: 'blockdev-backup', data: { 'job-id': 'jb', device: 'b', target: 'nosuch', sync: 'full' } },
      ],
    });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'ja', status: 'null' });
    t.log({ events: vm.takeEvents().map((e) => `${e.event} ${String(e.data?.['status'] ?? '')}`.trim()) });
    await vm.qmpLog('query-jobs');
  },
});
