import { defineTest } from './lib/test-api.js';
import { addNull } from './lib/helpers.js';

// A grouped transaction with auto-finalize off: both jobs wait in pending until one
// job-finalize finalizes the whole group.
export default defineTest({
  groups: ['transaction', 'jobs'],
  async run(t) {
    const vm = await t.launchVm();
    for (const n of ['a', 'b', 'ta', 'tb']) await addNull(vm, n, 1048576);
    await vm.qmpLog('transaction', {
      actions: [
        { type: 'blockdev-backup', data: { 'job-id': 'ja', device: 'a', target: 'ta', sync: 'full', 'auto-finalize': false } },
        { type: 'blockdev-backup', data: { 'job-id': 'jb', device: 'b', target: 'tb', sync: 'full', 'auto-finalize': false } },
      ],
      properties: { 'completion-mode': 'grouped' },
    });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'ja', status: 'pending' });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'jb', status: 'pending' });
    const jobs = await vm.qmp('query-jobs');
    if ('return' in jobs) t.log((jobs.return as Record<string, unknown>[]).map((j) => ({ id: j['id'], status: j['status'] })).sort((x, y) => String(x.id).localeCompare(String(y.id))));
    await vm.qmpLog('job-finalize', { id: 'ja' });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'ja', status: 'null' });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'jb', status: 'null' });
    const ends = vm.takeEvents().filter((e) => e.event === 'BLOCK_JOB_COMPLETED').map((e) => String(e.data?.['device'])).sort();
    t.log({ completed: ends });
  },
});
