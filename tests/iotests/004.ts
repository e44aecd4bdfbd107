import { defineTest } from './lib/test-api.js';
import { addQcow2, guestIo } from './lib/helpers.js';

// sync=none copies only what the guest overwrites (copy-before-write) and never ends by itself;
// the target holds the old data of exactly the overwritten clusters.
export default defineTest({
  groups: ['quick', 'backup'],
  async run(t) {
    await t.img.create('qcow2', t.path('src.qcow2'), '4M');
    await t.io(t.path('src.qcow2'), ['write -P 0x11 0 4M']);
    await t.img.create('qcow2', t.path('tgt.qcow2'), '4M');
    const vm = await t.launchVm();
    await addQcow2(vm, 'src', t.path('src.qcow2'));
    await addQcow2(vm, 'tgt', t.path('tgt.qcow2'));
    await vm.qmpLog('blockdev-backup', { 'job-id': 'job0', device: 'src', target: 'tgt', sync: 'none', 'filter-node-name': 'cbw' });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'job0', status: 'running' });
    await guestIo(t, vm, 'cbw', 'write -P 0x22 1M 64k');
    await vm.qmpLog('job-cancel', { id: 'job0' });
    await vm.runJob('job0', { autoDismiss: true });
    await vm.shutdown();
    await t.io(t.path('tgt.qcow2'), ['read -P 0x11 1M 64k', 'read -P 0 0 1M']);
    await t.io(t.path('src.qcow2'), ['read -P 0x22 1M 64k']);
  },
});
