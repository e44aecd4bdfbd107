import { defineTest } from './lib/test-api.js';
import { addNull } from './lib/helpers.js';

// Test 022 with the TEST-ONLY legacy switch that restores QEMU's pre-2016 behaviour (backup jobs
// start during the transaction's prepare). An empty backup, then a backup whose prepare drains
// (so the empty job runs to the end) and then fails validation: the transaction is aborted, yet
// the empty job has already completed — the race the fix removed, shown on purpose.
export default defineTest({
  groups: ['transaction', 'backup'],
  tsqemuOnly: 'the legacy start-in-prepare switch exists only in tsqemu',
  async run(t) {
    const vm = await t.launchVm({ legacyStartInPrepare: true });
    await vm.qmpLog('blockdev-add', { driver: 'null-co', 'node-name': 'empty', size: 0 });
    await vm.qmpLog('blockdev-add', { driver: 'null-co', 'node-name': 'empty-tgt', size: 0 });
    await addNull(vm, 'disk', 1048576);
    await addNull(vm, 'disk-tgt', 1048576);
    await vm.qmpLog('transaction', {
      actions: [
        { type: 'blockdev-backup', data: { 'job-id': 'job0', device: 'empty', target: 'empty-tgt', sync: 'full' } },
        { type: 'blockdev-backup', data: { 'job-id': 'job1', device: 'disk', target: 'disk-tgt', sync: 'full', 'bitmap-mode': 'on-success' } },
      ],
    });
    const events = vm.takeEvents().map((e) => `${e.event} ${String(e.data?.['status'] ?? e.data?.['device'] ?? '')}`.trim());
    t.log({ events });
    t.log({ 'job0 completed although the transaction failed': events.includes('BLOCK_JOB_COMPLETED job0') });
  },
});
