import { defineTest } from './lib/test-api.js';
import { addQcow2 } from './lib/helpers.js';

// block-commit refusals: a top that is not in the chain, a base above the top.
export default defineTest({
  groups: ['commit', 'errors'],
  async run(t) {
    await t.img.create('qcow2', t.path('base.qcow2'), '4M');
    await t.img.create('qcow2', t.path('top.qcow2'), '4M', { backing: t.path('base.qcow2'), backingFormat: 'qcow2' });
    const vm = await t.launchVm();
    await addQcow2(vm, 'top', t.path('top.qcow2'));
    await vm.qmpLog('block-commit', { 'job-id': 'c0', device: 'top', top: t.path('nope.qcow2') });
    await vm.qmpLog('block-commit', { 'job-id': 'c0', device: 'top', base: t.path('nope.qcow2') });
    await vm.qmpLog('block-commit', { 'job-id': 'c0', device: 'nosuch' });
  },
});
