import { defineTest } from './lib/test-api.js';
import { addQcow2 } from './lib/helpers.js';

// A node already used by a job can't start a second job.
export default defineTest({
  tsqemuGap: "block-stream does not insert QEMU's copy-on-read filter and blockdev-mirror lacks the root-node check (issue 4)",
  groups: ['stream', 'errors'],
  async run(t) {
    await t.img.create('qcow2', t.path('base.qcow2'), '64M');
    await t.io(t.path('base.qcow2'), ['write -P 0x72 0 1M']);
    await t.img.create('qcow2', t.path('top.qcow2'), '64M', { backing: t.path('base.qcow2'), backingFormat: 'qcow2' });
    await t.img.create('qcow2', t.path('tgt.qcow2'), '64M');
    const vm = await t.launchVm();
    await addQcow2(vm, 'top', t.path('top.qcow2'));
    await addQcow2(vm, 'tgt', t.path('tgt.qcow2'));
    await vm.qmpLog('block-stream', { 'job-id': 's0', device: 'top', speed: 65536 });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 's0', status: 'running' });
    await vm.qmpLog('block-stream', { 'job-id': 's1', device: 'top' });
    await vm.qmpLog('blockdev-mirror', { 'job-id': 'm1', device: 'top', target: 'tgt', sync: 'full' });
    await vm.qmpLog('job-cancel', { id: 's0' });
    await vm.runJob('s0', { autoDismiss: true });
  },
});
