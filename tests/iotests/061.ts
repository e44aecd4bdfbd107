import { defineTest } from './lib/test-api.js';
import { mirrorPair } from './lib/mirror.js';

// A soft cancel (block-job-cancel) of a READY mirror completes it without pivoting: the event is
// BLOCK_JOB_COMPLETED, not CANCELLED.
export default defineTest({
  groups: ['quick', 'mirror'],
  async run(t) {
    const vm = await mirrorPair(t);
    await vm.qmpLog('blockdev-mirror', { 'job-id': 'm0', device: 'src', target: 'tgt', sync: 'full' });
    await vm.eventWait('BLOCK_JOB_READY', { device: 'm0' });
    await vm.qmpLog('block-job-cancel', { device: 'm0' });
    await vm.runJob('m0', { autoDismiss: true });
    await vm.shutdown();
    await t.img.compare(t.path('src.qcow2'), t.path('tgt.qcow2'));
  },
});
