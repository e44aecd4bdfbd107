import { defineTest } from './lib/test-api.js';
import { addQcow2, guestIo } from './lib/helpers.js';

// Point-in-time: a rate-limited full backup while the guest overwrites the disk still produces
// the image as it was when the job started.
export default defineTest({
  groups: ['backup'],
  async run(t) {
    await t.img.create('qcow2', t.path('src.qcow2'), '4M');
    await t.io(t.path('src.qcow2'), ['write -P 0x11 0 2M', 'write -P 0x12 2M 2M']);
    await t.img.create('qcow2', t.path('tgt.qcow2'), '4M');
    const vm = await t.launchVm();
    await addQcow2(vm, 'src', t.path('src.qcow2'));
    await addQcow2(vm, 'tgt', t.path('tgt.qcow2'));
    await vm.qmpLog('blockdev-backup', { 'job-id': 'job0', device: 'src', target: 'tgt', sync: 'full', speed: 65536, 'filter-node-name': 'cbw' });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'job0', status: 'running' });
    await guestIo(t, vm, 'cbw', 'write -P 0x33 0 64k');
    await guestIo(t, vm, 'cbw', 'write -P 0x44 3M 1M');
    await vm.qmpLog('block-job-set-speed', { device: 'job0', speed: 0 });
    await vm.runJob('job0', { autoDismiss: true });
    await vm.shutdown();
    await t.io(t.path('tgt.qcow2'), ['read -P 0x11 0 2M', 'read -P 0x12 2M 2M']);
    await t.io(t.path('src.qcow2'), ['read -P 0x33 0 64k', 'read -P 0x44 3M 1M']);
  },
});
