import { defineTest } from './lib/test-api.js';
import { addQcow2, guestIo } from './lib/helpers.js';

// sync=top copies only what the top image allocates: data that lives only in the backing file
// is not copied to the target.
export default defineTest({
  groups: ['quick', 'backup'],
  async run(t) {
    await t.img.create('qcow2', t.path('base.qcow2'), '4M');
    await t.io(t.path('base.qcow2'), ['write -P 0xaa 0 1M']);
    await t.img.create('qcow2', t.path('top.qcow2'), '4M', { backing: t.path('base.qcow2'), backingFormat: 'qcow2' });
    await t.img.create('qcow2', t.path('tgt.qcow2'), '4M');
    const vm = await t.launchVm();
    await addQcow2(vm, 'top', t.path('top.qcow2'));
    await addQcow2(vm, 'tgt', t.path('tgt.qcow2'));
    await guestIo(t, vm, 'top', 'write -P 0xbb 2M 64k');
    await vm.qmpLog('blockdev-backup', { 'job-id': 'job0', device: 'top', target: 'tgt', sync: 'top' });
    await vm.runJob('job0', { autoDismiss: true });
    await vm.shutdown();
    await t.io(t.path('tgt.qcow2'), ['read -P 0xbb 2M 64k', 'read -P 0 0 1M']);
    await t.img.check(t.path('tgt.qcow2'));
  },
});
