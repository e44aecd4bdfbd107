import { defineTest } from './lib/test-api.js';
import { addQcow2, guestIo } from './lib/helpers.js';

// Active commit: the top layer is committed into its base; like mirror it goes READY and pivots
// on job-complete.
export default defineTest({
  groups: ['quick', 'commit'],
  async run(t) {
    await t.img.create('qcow2', t.path('base.qcow2'), '4M');
    await t.io(t.path('base.qcow2'), ['write -P 0xf1 0 64k']);
    await t.img.create('qcow2', t.path('top.qcow2'), '4M', { backing: t.path('base.qcow2'), backingFormat: 'qcow2' });
    const vm = await t.launchVm();
    await addQcow2(vm, 'top', t.path('top.qcow2'));
    await guestIo(t, vm, 'top', 'write -P 0xf2 1M 128k');
    await vm.qmpLog('block-commit', { 'job-id': 'c0', device: 'top' });
    await vm.runJob('c0', { autoDismiss: true });
    await vm.shutdown();
    await t.io(t.path('base.qcow2'), ['read -P 0xf1 0 64k', 'read -P 0xf2 1M 128k']);
    await t.img.check(t.path('base.qcow2'));
  },
});
