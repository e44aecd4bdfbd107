import { defineTest } from './lib/test-api.js';
import { addQcow2 } from './lib/helpers.js';

// Intermediate commit: mid's data moves down into base; top then reads the same bytes.
export default defineTest({
  groups: ['quick', 'commit'],
  async run(t) {
    await t.img.create('qcow2', t.path('base.qcow2'), '4M');
    await t.io(t.path('base.qcow2'), ['write -P 0xe1 0 64k']);
    await t.img.create('qcow2', t.path('mid.qcow2'), '4M', { backing: t.path('base.qcow2'), backingFormat: 'qcow2' });
    await t.io(t.path('mid.qcow2'), ['write -P 0xe2 1M 64k']);
    await t.img.create('qcow2', t.path('top.qcow2'), '4M', { backing: t.path('mid.qcow2'), backingFormat: 'qcow2' });
    await t.io(t.path('top.qcow2'), ['write -P 0xe3 2M 64k']);
    const vm = await t.launchVm();
    await addQcow2(vm, 'top', t.path('top.qcow2'));
    await vm.qmpLog('block-commit', { 'job-id': 'c0', device: 'top', top: t.path('mid.qcow2'), base: t.path('base.qcow2') });
    await vm.runJob('c0', { autoDismiss: true });
    await vm.shutdown();
    await t.io(t.path('base.qcow2'), ['read -P 0xe1 0 64k', 'read -P 0xe2 1M 64k', 'read -P 0 2M 64k']);
    await t.img.check(t.path('base.qcow2'));
  },
});
