import { defineTest } from './lib/test-api.js';
import { addNull } from './lib/helpers.js';

// Cancelling one job of a grouped transaction cancels its sibling too.
export default defineTest({
  groups: ['transaction', 'jobs'],
  async run(t) {
    const vm = await t.launchVm();
    for (const n of ['a', 'b', 'ta', 'tb']) await addNull(vm, n, 67108864);
    await vm.qmpLog('transaction', {
      actions: [
        { type: 'blockdev-backup', data: { 'job-id': 'ja', device: 'a', target: 'ta', sync: 'full', speed: 1048576 } },
        { type: 'blockdev-backup', data: { 'job-id': 'jb', device: 'b', target: 'tb', sync: 'full', speed: 1048576 } },
      ],
      properties: { 'completion-mode': 'grouped' },
    });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'jb', status: 'running' });
    await vm.qmpLog('job-cancel', { id: 'ja' });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'ja', status: 'null' });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'jb', status: 'null' });
    const ends = vm.takeEvents().filter((e) => e.event.startsWith('BLOCK_JOB_')).map((e) => `${e.event} ${String(e.data?.['device'])}`).sort();
    t.log({ ends });
  },
});
