import { defineTest } from './lib/test-api.js';
import { mirrorPair } from './lib/mirror.js';

// job-cancel is a force cancel: a READY mirror ends CANCELLED.
export default defineTest({
  groups: ['quick', 'mirror'],
  async run(t) {
    const vm = await mirrorPair(t);
    await vm.qmpLog('blockdev-mirror', { 'job-id': 'm0', device: 'src', target: 'tgt', sync: 'full' });
    await vm.eventWait('BLOCK_JOB_READY', { device: 'm0' });
    await vm.qmpLog('job-cancel', { id: 'm0' });
    await vm.runJob('m0', { autoDismiss: true });
  },
});
