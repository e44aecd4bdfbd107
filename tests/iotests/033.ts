import { defineTest } from './lib/test-api.js';
import { addQcow2, guestIo } from './lib/helpers.js';

// drive-backup creates its target file itself (format qcow2) and fills it.
export default defineTest({
  groups: ['backup'],
  async run(t) {
    await t.img.create('qcow2', t.path('src.qcow2'), '4M');
    const vm = await t.launchVm();
    await addQcow2(vm, 'src', t.path('src.qcow2'));
    await guestIo(t, vm, 'src', 'write -P 0x44 512k 64k');
    await vm.qmpLog('drive-backup', { 'job-id': 'd0', device: 'src', target: t.path('out.qcow2'), format: 'qcow2', sync: 'full' });
    await vm.runJob('d0', { autoDismiss: true });
    await vm.shutdown();
    await t.io(t.path('out.qcow2'), ['read -P 0x44 512k 64k', 'read -P 0 0 512k']);
    await t.img.check(t.path('out.qcow2'));
  },
});
