import { defineTest } from './lib/test-api.js';
import { addQcow2, guestIo, logBitmaps } from './lib/helpers.js';

// Merging bitmaps ORs their bits into the target; clear empties one; a disabled bitmap does not
// record.
export default defineTest({
  groups: ['quick', 'bitmap'],
  async run(t) {
    await t.img.create('qcow2', t.path('d.qcow2'), '4M');
    const vm = await t.launchVm();
    await addQcow2(vm, 'd', t.path('d.qcow2'));
    await vm.qmpLog('block-dirty-bitmap-add', { node: 'd', name: 'a', granularity: 65536 });
    await guestIo(t, vm, 'd', 'write 0 64k');
    await vm.qmpLog('block-dirty-bitmap-add', { node: 'd', name: 'b', granularity: 65536 });
    await guestIo(t, vm, 'd', 'write 1M 128k');
    await vm.qmpLog('block-dirty-bitmap-disable', { node: 'd', name: 'a' });
    await guestIo(t, vm, 'd', 'write 2M 64k');
    await vm.qmpLog('block-dirty-bitmap-add', { node: 'd', name: 'sum', granularity: 65536, disabled: true });
    await vm.qmpLog('block-dirty-bitmap-merge', { node: 'd', target: 'sum', bitmaps: ['a', 'b'] });
    await logBitmaps(t, vm, 'd');
    await vm.qmpLog('block-dirty-bitmap-clear', { node: 'd', name: 'b' });
    await vm.qmpLog('block-dirty-bitmap-remove', { node: 'd', name: 'a' });
    await logBitmaps(t, vm, 'd');
  },
});
