import { defineTest } from './lib/test-api.js';

// Argument validation happens before any side effect, with QEMU's messages.
export default defineTest({
  groups: ['quick', 'errors'],
  async run(t) {
    const vm = await t.launchVm();
    await vm.qmpLog('blockdev-add', { driver: 'null-co', 'node-name': 'n', size: 'big' });
    await vm.qmpLog('blockdev-add', { driver: 'null-co', 'node-name': 'n', bogus: 1 });
    await vm.qmpLog('blockdev-add', { driver: 'no-such-driver', 'node-name': 'n' });
    await vm.qmpLog('blockdev-add', { 'node-name': 'n' });
    await vm.qmpLog('blockdev-add', { driver: 'null-co', 'node-name': 'n', size: 1048576 });
    await vm.qmpLog('blockdev-add', { driver: 'null-co', 'node-name': 'n', size: 1048576 });
    await vm.qmpLog('blockdev-add', { driver: 'null-co', 'node-name': '1bad', size: 1048576 });
    await vm.qmpLog('blockdev-backup', { device: 'n', target: 'n' });
    await vm.qmpLog('blockdev-backup', { device: 'n', target: 'n', sync: 'full', speed: 'fast' });
    await vm.qmpLog('block-dirty-bitmap-add', { node: 'n', name: 'b', granularity: 1000 });
    await vm.qmpLog('block-dirty-bitmap-add', { node: 'n', name: 'b' });
    await vm.qmpLog('block-dirty-bitmap-add', { node: 'n', name: 'b' });
    await vm.qmpLog('block-dirty-bitmap-remove', { node: 'n', name: 'nope' });
    await vm.qmpLog('block-dirty-bitmap-merge', { node: 'n', target: 'b', bitmaps: ['nope'] });
    await vm.qmpLog('no-such-command');
    await vm.qmpLog('blockdev-del', { 'node-name': 'nope' });
  },
});
