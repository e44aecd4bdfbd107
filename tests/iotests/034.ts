import { defineTest } from './lib/test-api.js';
import { addQcow2, logBitmaps } from './lib/helpers.js';

// Found by tsqemu-fuzz: a transaction adds a bitmap and starts a backup that uses it
// (sync=full, bitmap-mode=always), then a later action fails. The abort must undo everything:
// the job is cancelled and the new bitmap disappears.
export default defineTest({
  groups: ['transaction', 'bitmap', 'backup'],
  async run(t) {
    await t.img.create('qcow2', t.path('d.qcow2'), '1M');
    await t.img.create('qcow2', t.path('t.qcow2'), '1M');
    const vm = await t.launchVm();
    await addQcow2(vm, 'd', t.path('d.qcow2'));
    await addQcow2(vm, 't', t.path('t.qcow2'));
    await vm.qmpLog('transaction', {
      actions: [
        { type: 'block-dirty-bitmap-add', data: { node: 'd', name: 'b1', granularity: 65536 } },
        { type: 'blockdev-backup', data: { 'job-id': 'j0', device: 'd', target: 't', sync: 'full', 'auto-finalize': false, bitmap: 'b1', 'bitmap-mode': 'always' } },
        { type: 'block-dirty-bitmap-clear', data: { node: 'd', name: 'missing' } },
      ],
    });
    await logBitmaps(t, vm, 'd');
    await vm.qmpLog('query-jobs');
  },
});
