import { defineTest } from './lib/test-api.js';
import { addQcow2 } from './lib/helpers.js';

// Streaming with a base: only the data above the base moves into the top; the top then backs
// directly onto the base.
export default defineTest({
  groups: ['stream'],
  async run(t) {
    await t.img.create('qcow2', t.path('base.qcow2'), '4M');
    await t.io(t.path('base.qcow2'), ['write -P 0xd1 0 64k']);
    await t.img.create('qcow2', t.path('mid.qcow2'), '4M', { backing: t.path('base.qcow2'), backingFormat: 'qcow2' });
    await t.io(t.path('mid.qcow2'), ['write -P 0xd2 1M 64k']);
    await t.img.create('qcow2', t.path('top.qcow2'), '4M', { backing: t.path('mid.qcow2'), backingFormat: 'qcow2' });
    const vm = await t.launchVm();
    await addQcow2(vm, 'top', t.path('top.qcow2'));
    await vm.qmpLog('block-stream', { 'job-id': 's0', device: 'top', 'base-node': 'top' });
    await vm.qmpLog('block-stream', { 'job-id': 's0', device: 'top', base: t.path('base.qcow2') });
    await vm.runJob('s0', { autoDismiss: true });
    await vm.shutdown();
    const info = await t.img.info(t.path('top.qcow2'));
    t.log({ 'backing-filename': info['backing-filename'] ?? null });
    await t.io(t.path('top.qcow2'), ['read -P 0xd2 1M 64k', 'read -P 0xd1 0 64k', 'map']);
  },
});
