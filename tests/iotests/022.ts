import { defineTest } from './lib/test-api.js';
import { addNull, logBitmaps } from './lib/helpers.js';

// The race tsqemu was born from: an empty backup in a transaction that a later action aborts.
// The job must never start: no job events at all, and no job left behind.
export default defineTest({
  groups: ['quick', 'transaction', 'backup'],
  async run(t) {
    const vm = await t.launchVm();
    await vm.qmpLog('blockdev-add', { driver: 'null-co', 'node-name': 'empty', size: 0 });
    await vm.qmpLog('blockdev-add', { driver: 'null-co', 'node-name': 'empty-tgt', size: 0 });
    await addNull(vm, 'disk', 1048576);
    await vm.qmpLog('block-dirty-bitmap-add', { node: 'disk', name: 'bm' });
    await vm.qmpLog('transaction', {
      actions: [
        { type: 'blockdev-backup', data: { 'job-id': 'job0', device: 'empty', target: 'empty-tgt', sync: 'full' } },
        { type: 'block-dirty-bitmap-clear', data: { node: 'disk', name: 'bm' } },
        { type: 'abort', data: {} },
      ],
    });
    await vm.qmpLog('query-jobs');
    await vm.qmpLog('query-block-jobs');
    // QEMU creates the job in prepare and cancels it on abort: it never runs, so no BLOCK_JOB_* event.
    t.log({ events: vm.takeEvents().map((e) => `${e.event} ${String(e.data?.['status'] ?? '')}`.trim()) });
    await logBitmaps(t, vm, 'disk');
  },
});
