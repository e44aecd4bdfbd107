import { defineTest } from './lib/test-api.js';
import { addQcow2, guestIo } from './lib/helpers.js';

// Mirror sync=top copies only the top image's data; the backing data stays behind.
export default defineTest({
  groups: ['mirror'],
  async run(t) {
    await t.img.create('qcow2', t.path('base.qcow2'), '4M');
    await t.io(t.path('base.qcow2'), ['write -P 0xa1 0 1M']);
    await t.img.create('qcow2', t.path('top.qcow2'), '4M', { backing: t.path('base.qcow2'), backingFormat: 'qcow2' });
    await t.img.create('qcow2', t.path('tgt.qcow2'), '4M');
    const vm = await t.launchVm();
    await addQcow2(vm, 'top', t.path('top.qcow2'));
    await addQcow2(vm, 'tgt', t.path('tgt.qcow2'));
    await guestIo(t, vm, 'top', 'write -P 0xb2 2M 64k');
    await vm.qmpLog('blockdev-mirror', { 'job-id': 'm0', device: 'top', target: 'tgt', sync: 'top' });
    await vm.runJob('m0', { autoDismiss: true });
    await vm.shutdown();
    await t.io(t.path('tgt.qcow2'), ['read -P 0xb2 2M 64k', 'read -P 0 0 1M']);
  },
});
