import { defineTest } from './lib/test-api.js';
import { mirrorPair } from './lib/mirror.js';
import { guestIo } from './lib/helpers.js';

// Active (write-blocking) mirror: guest writes made while READY reach the target before they
// complete, so the target equals the source at complete time.
export default defineTest({
  tsqemuGap: "blockdev-mirror has no mirror filter node yet, so filter-node-name is refused (issue 4)",
  groups: ['mirror'],
  async run(t) {
    const vm = await mirrorPair(t);
    await vm.qmpLog('blockdev-mirror', { 'job-id': 'm0', device: 'src', target: 'tgt', sync: 'full', 'copy-mode': 'write-blocking', 'filter-node-name': 'mf' });
    await vm.eventWait('BLOCK_JOB_READY', { device: 'm0' });
    await guestIo(t, vm, 'mf', 'write -P 0x99 1M 64k');
    await vm.qmpLog('job-complete', { id: 'm0' });
    await vm.runJob('m0', { autoDismiss: true });
    await vm.shutdown();
    await t.io(t.path('tgt.qcow2'), ['read -P 0x99 1M 64k', 'read -P 0x77 0 256k']);
  },
});
