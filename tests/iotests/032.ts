import { defineTest } from './lib/test-api.js';
import { addQcow2 } from './lib/helpers.js';

// blockdev-snapshot with an overlay node created by blockdev-add (backing: null).
export default defineTest({
  groups: ['transaction'],
  async run(t) {
    await t.img.create('qcow2', t.path('base.qcow2'), '4M');
    await t.io(t.path('base.qcow2'), ['write -P 0x31 0 64k']);
    await t.img.create('qcow2', t.path('over.qcow2'), '4M', { backing: t.path('base.qcow2'), backingFormat: 'qcow2' });
    const vm = await t.launchVm();
    await addQcow2(vm, 'base', t.path('base.qcow2'));
    await addQcow2(vm, 'over', t.path('over.qcow2'), { backing: null });
    await vm.qmpLog('transaction', { actions: [{ type: 'blockdev-snapshot', data: { node: 'base', overlay: 'over' } }] });
    await vm.qmpLog('blockdev-snapshot', { node: 'base', overlay: 'over' });
    await vm.qmp('human-monitor-command', { 'command-line': 'qemu-io over "write -P 0x32 64k 64k"' });
    await vm.shutdown();
    await t.io(t.path('over.qcow2'), ['read -P 0x31 0 64k', 'read -P 0x32 64k 64k']);
  },
});
