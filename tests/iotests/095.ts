import { defineTest } from './lib/test-api.js';
import { addNull, addQcow2 } from './lib/helpers.js';

// drive-backup without `format` creates the target in the source's format (QEMU 7.2's
// drive_backup_prepare: bs->drv->format_name); sync=top on a source without a backing file runs
// as sync=full; a raw target cannot carry the backing file sync=none needs; a null-co source's
// format cannot be created.
export default defineTest({
  groups: ['quick', 'backup', 'errors'],
  async run(t) {
    await t.img.create('qcow2', t.path('src.qcow2'), '2M');
    await t.io(t.path('src.qcow2'), ['write -P 0xc1 0 64k', 'write -P 0xc2 1M 64k']);
    await t.img.create('raw', t.path('src.raw'), '1M');
    const vm = await t.launchVm();
    await addQcow2(vm, 'src', t.path('src.qcow2'));
    await vm.qmpLog('drive-backup', { 'job-id': 'b0', device: 'src', target: t.path('b0.img'), sync: 'full' });
    await vm.runJob('b0', { autoDismiss: true });
    await vm.qmpLog('drive-backup', { 'job-id': 'b1', device: 'src', target: t.path('b1.img'), sync: 'top' });
    await vm.runJob('b1', { autoDismiss: true });
    await vm.qmpLog('blockdev-add', { driver: 'raw', 'node-name': 'r', file: { driver: 'file', filename: t.path('src.raw') } });
    await vm.qmpLog('drive-backup', { 'job-id': 'b2', device: 'r', target: t.path('b2.img'), sync: 'none' });
    await vm.qmpLog('drive-backup', { 'job-id': 'b3', device: 'src', target: t.path('b3.img'), sync: 'none', format: 'raw' });
    await addNull(vm, 'n', 1048576);
    await vm.qmpLog('drive-backup', { 'job-id': 'b4', device: 'n', target: t.path('b4.img'), sync: 'full' });
    await vm.qmpLog('query-jobs');
    await vm.shutdown();
    for (const name of ['b0.img', 'b1.img']) {
      const info = await t.img.info(t.path(name));
      t.log({ image: name, format: info['format'], 'virtual-size': info['virtual-size'] });
      await t.img.compare(t.path('src.qcow2'), t.path(name));
    }
  },
});
