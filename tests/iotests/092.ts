import { defineTest } from './lib/test-api.js';
import { addQcow2, guestIo, logBitmaps } from './lib/helpers.js';

// A persistent bitmap is stored in the qcow2 file when the node closes, and comes back (with
// its bits) when the image is opened again — by the VM and by qemu-img info.
export default defineTest({
  groups: ['bitmap'],
  async run(t) {
    await t.img.create('qcow2', t.path('d.qcow2'), '4M');
    const vm = await t.launchVm();
    await addQcow2(vm, 'd', t.path('d.qcow2'));
    await vm.qmpLog('block-dirty-bitmap-add', { node: 'd', name: 'keep', granularity: 65536, persistent: true });
    await vm.qmpLog('block-dirty-bitmap-add', { node: 'd', name: 'lose', granularity: 65536 });
    await guestIo(t, vm, 'd', 'write 0 128k');
    await vm.qmpLog('blockdev-del', { 'node-name': 'd' });
    await addQcow2(vm, 'd', t.path('d.qcow2'));
    await logBitmaps(t, vm, 'd');
    await vm.shutdown();
    const info = await t.img.info(t.path('d.qcow2'));
    const specific = (info['format-specific'] as { data?: { bitmaps?: unknown } } | undefined)?.data;
    t.log({ bitmaps: specific?.bitmaps ?? null });
  },
});
