import { defineTest } from './lib/test-api.js';
import { addQcow2, guestIo } from './lib/helpers.js';

// Full backup of a qcow2 image holding data into an empty qcow2 target: afterwards both images
// have the same content and the target passes check.
export default defineTest({
  groups: ['quick', 'backup'],
  async run(t) {
    await t.img.create('qcow2', t.path('src.qcow2'), '4M');
    await t.img.create('qcow2', t.path('tgt.qcow2'), '4M');
    const vm = await t.launchVm();
    await addQcow2(vm, 'src', t.path('src.qcow2'));
    await addQcow2(vm, 'tgt', t.path('tgt.qcow2'));
    await guestIo(t, vm, 'src', 'write -P 0x11 0 64k');
    await guestIo(t, vm, 'src', 'write -P 0x22 1M 128k');
    await guestIo(t, vm, 'src', 'write -P 0x33 3M 64k');
    await vm.qmpLog('blockdev-backup', { 'job-id': 'job0', device: 'src', target: 'tgt', sync: 'full' });
    await vm.runJob('job0', { autoDismiss: true });
    await vm.shutdown();
    await t.img.compare(t.path('src.qcow2'), t.path('tgt.qcow2'));
    await t.img.check(t.path('tgt.qcow2'));
    await t.io(t.path('tgt.qcow2'), ['read -P 0x22 1M 128k', 'read -P 0 2M 64k']);
  },
});
