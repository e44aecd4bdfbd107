import { defineTest } from './lib/test-api.js';
import { addQcow2, guestIo, logBitmaps } from './lib/helpers.js';

// Two incremental backups in a row: the second copies only what changed after the first.
export default defineTest({
  groups: ['backup', 'bitmap'],
  async run(t) {
    await t.img.create('qcow2', t.path('src.qcow2'), '4M');
    for (const n of ['full', 'inc1', 'inc2']) await t.img.create('qcow2', t.path(`${n}.qcow2`), '4M');
    const vm = await t.launchVm();
    await addQcow2(vm, 'src', t.path('src.qcow2'));
    for (const n of ['full', 'inc1', 'inc2']) await addQcow2(vm, n, t.path(`${n}.qcow2`));
    await guestIo(t, vm, 'src', 'write -P 0x01 0 1M');
    await vm.qmpLog('transaction', {
      actions: [
        { type: 'block-dirty-bitmap-add', data: { node: 'src', name: 'bm', granularity: 65536 } },
        { type: 'blockdev-backup', data: { 'job-id': 'jf', device: 'src', target: 'full', sync: 'full' } },
      ],
    });
    await vm.runJob('jf', { autoDismiss: true });
    await guestIo(t, vm, 'src', 'write -P 0x02 1M 64k');
    await vm.qmpLog('blockdev-backup', { 'job-id': 'j1', device: 'src', target: 'inc1', sync: 'incremental', bitmap: 'bm' });
    await vm.runJob('j1', { autoDismiss: true, filterOffsets: false });
    await guestIo(t, vm, 'src', 'write -P 0x03 2M 128k');
    await logBitmaps(t, vm, 'src');
    await vm.qmpLog('blockdev-backup', { 'job-id': 'j2', device: 'src', target: 'inc2', sync: 'incremental', bitmap: 'bm' });
    await vm.runJob('j2', { autoDismiss: true, filterOffsets: false });
    await logBitmaps(t, vm, 'src');
    await vm.shutdown();
    await t.io(t.path('inc1.qcow2'), ['read -P 0x02 1M 64k', 'read -P 0 0 1M']);
    await t.io(t.path('inc2.qcow2'), ['read -P 0x03 2M 128k', 'read -P 0 1M 64k']);
  },
});
