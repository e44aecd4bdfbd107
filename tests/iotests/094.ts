import { defineTest } from './lib/test-api.js';
import { addNull, addQcow2 } from './lib/helpers.js';

// Size mismatches in mirror and active commit (QEMU 7.2's mirror_run): blockdev-mirror accepts a
// smaller or larger target and the started job fails with "Source and target image have
// different sizes"; an active commit grows a smaller base to the top's size (blk_truncate) and
// completes, and a base that cannot grow (null-co) fails the job.
export default defineTest({
  groups: ['quick', 'mirror', 'commit', 'errors'],
  async run(t) {
    await t.img.create('qcow2', t.path('base.qcow2'), '1M');
    await t.io(t.path('base.qcow2'), ['write -P 0xb1 0 64k']);
    await t.img.create('qcow2', t.path('top.qcow2'), '2M', { backing: t.path('base.qcow2'), backingFormat: 'qcow2' });
    await t.io(t.path('top.qcow2'), ['write -P 0xb2 1536k 64k']);
    await t.img.create('qcow2', t.path('ntop.qcow2'), '2M');
    const vm = await t.launchVm();
    await addNull(vm, 'src', 1048576);
    await addNull(vm, 'small', 65536);
    await addNull(vm, 'big', 2097152);
    await vm.qmpLog('blockdev-mirror', { 'job-id': 'm0', device: 'src', target: 'small', sync: 'full' });
    await vm.runJob('m0');
    await vm.qmpLog('blockdev-mirror', { 'job-id': 'm1', device: 'src', target: 'big', sync: 'full' });
    await vm.runJob('m1');
    await addQcow2(vm, 'top', t.path('top.qcow2'));
    await vm.qmpLog('block-commit', { 'job-id': 'c0', device: 'top' });
    await vm.runJob('c0', { autoDismiss: true });
    await addNull(vm, 'nbase', 65536);
    await addQcow2(vm, 'ntop', t.path('ntop.qcow2'), { backing: 'nbase' });
    await vm.qmpLog('block-commit', { 'job-id': 'c1', device: 'ntop' });
    await vm.runJob('c1');
    await vm.shutdown();
    const info = await t.img.info(t.path('base.qcow2'));
    t.log({ 'base virtual-size': info['virtual-size'] });
    await t.io(t.path('base.qcow2'), ['read -P 0xb1 0 64k', 'read -P 0xb2 1536k 64k', 'read -P 0 1M 64k']);
    await t.img.check(t.path('base.qcow2'));
  },
});
