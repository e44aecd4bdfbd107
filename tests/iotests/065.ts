import { defineTest } from './lib/test-api.js';
import { mirrorPair } from './lib/mirror.js';

// Mirror refusals: complete before READY, same source and target, unknown target.
export default defineTest({
  groups: ['quick', 'mirror', 'errors'],
  async run(t) {
    const vm = await mirrorPair(t, '64M');
    await vm.qmpLog('blockdev-mirror', { 'job-id': 'm0', device: 'src', target: 'src', sync: 'full' });
    await vm.qmpLog('blockdev-mirror', { 'job-id': 'm0', device: 'src', target: 'nosuch', sync: 'full' });
    await vm.qmpLog('blockdev-mirror', { 'job-id': 'm0', device: 'src', target: 'tgt', sync: 'incremental' });
    await vm.qmpLog('blockdev-mirror', { 'job-id': 'm0', device: 'src', target: 'tgt', sync: 'full', speed: 65536 });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'm0', status: 'running' });
    await vm.qmpLog('job-complete', { id: 'm0' });
    await vm.qmpLog('job-cancel', { id: 'm0' });
    await vm.runJob('m0', { autoDismiss: true });
  },
});
