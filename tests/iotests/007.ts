import { defineTest } from './lib/test-api.js';
import { addQcow2, guestIo, logBitmaps } from './lib/helpers.js';

// Incremental backup: the bitmap records guest writes; sync=incremental copies only the dirty
// clusters and leaves the bitmap clean afterwards.
export default defineTest({
  groups: ['quick', 'backup', 'bitmap'],
  async run(t) {
    await t.img.create('qcow2', t.path('src.qcow2'), '4M');
    await t.img.create('qcow2', t.path('tgt.qcow2'), '4M');
    const vm = await t.launchVm();
    await addQcow2(vm, 'src', t.path('src.qcow2'));
    await addQcow2(vm, 'tgt', t.path('tgt.qcow2'));
    await vm.qmpLog('block-dirty-bitmap-add', { node: 'src', name: 'bm0', granularity: 65536 });
    await guestIo(t, vm, 'src', 'write -P 0x11 0 64k');
    await guestIo(t, vm, 'src', 'write -P 0x22 2M 192k');
    await logBitmaps(t, vm, 'src');
    await vm.qmpLog('blockdev-backup', { 'job-id': 'job0', device: 'src', target: 'tgt', sync: 'incremental', bitmap: 'bm0' });
    await vm.runJob('job0', { autoDismiss: true, filterOffsets: false });
    await logBitmaps(t, vm, 'src');
    await vm.shutdown();
    await t.io(t.path('tgt.qcow2'), ['read -P 0x11 0 64k', 'read -P 0x22 2M 192k', 'map']);
  },
});
