import { defineTest } from './lib/test-api.js';
import { addQcow2 } from './lib/helpers.js';

// block-stream pulls the backing file's data into the top image and drops the backing link.
export default defineTest({
  groups: ['quick', 'stream'],
  async run(t) {
    await t.img.create('qcow2', t.path('base.qcow2'), '4M');
    await t.io(t.path('base.qcow2'), ['write -P 0xc1 0 512k', 'write -P 0xc2 2M 64k']);
    await t.img.create('qcow2', t.path('top.qcow2'), '4M', { backing: t.path('base.qcow2'), backingFormat: 'qcow2' });
    await t.io(t.path('top.qcow2'), ['write -P 0xc3 2M 64k']);
    const vm = await t.launchVm();
    await addQcow2(vm, 'top', t.path('top.qcow2'));
    await vm.qmpLog('block-stream', { 'job-id': 's0', device: 'top' });
    await vm.runJob('s0', { autoDismiss: true });
    await vm.shutdown();
    const info = await t.img.info(t.path('top.qcow2'));
    t.log({ 'backing-filename': info['backing-filename'] ?? null });
    await t.io(t.path('top.qcow2'), ['read -P 0xc1 0 512k', 'read -P 0xc3 2M 64k', 'map']);
  },
});
