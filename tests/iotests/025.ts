import { defineTest } from './lib/test-api.js';
import { logBitmaps } from './lib/helpers.js';

// The same bitmap actions when the transaction commits: every change sticks.
export default defineTest({
  groups: ['quick', 'transaction', 'bitmap'],
  async run(t) {
    await t.img.create('qcow2', t.path('d.qcow2'), '4M');
    const vm = await t.launchVm();
    await vm.qmpLog('blockdev-add', { driver: 'qcow2', 'node-name': 'd', file: { driver: 'file', filename: t.path('d.qcow2') } });
    await vm.qmpLog('block-dirty-bitmap-add', { node: 'd', name: 'dirty', granularity: 65536 });
    await vm.qmpLog('block-dirty-bitmap-add', { node: 'd', name: 'off', granularity: 65536, disabled: true });
    await vm.qmpLog('block-dirty-bitmap-add', { node: 'd', name: 'on', granularity: 65536 });
    await vm.qmpLog('block-dirty-bitmap-add', { node: 'd', name: 'dst', granularity: 65536, disabled: true });
    await vm.qmp('human-monitor-command', { 'command-line': 'qemu-io d "write 0 192k"' });
    await vm.qmpLog('transaction', {
      actions: [
        { type: 'block-dirty-bitmap-add', data: { node: 'd', name: 'new', granularity: 65536 } },
        { type: 'block-dirty-bitmap-merge', data: { node: 'd', target: 'dst', bitmaps: ['dirty'] } },
        { type: 'block-dirty-bitmap-clear', data: { node: 'd', name: 'dirty' } },
        { type: 'block-dirty-bitmap-enable', data: { node: 'd', name: 'off' } },
        { type: 'block-dirty-bitmap-disable', data: { node: 'd', name: 'on' } },
      ],
    });
    await logBitmaps(t, vm, 'd');
    await vm.qmp('human-monitor-command', { 'command-line': 'qemu-io d "write 1M 64k"' });
    await logBitmaps(t, vm, 'd');
  },
});
