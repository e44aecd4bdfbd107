import { defineTest } from './lib/test-api.js';
import { mirrorPair } from './lib/mirror.js';

// Mirror sync=full: the job becomes READY, job-complete pivots, the target holds the data.
export default defineTest({
  groups: ['quick', 'mirror'],
  async run(t) {
    const vm = await mirrorPair(t);
    await vm.qmpLog('blockdev-mirror', { 'job-id': 'm0', device: 'src', target: 'tgt', sync: 'full' });
    await vm.runJob('m0', { autoDismiss: true });
    await vm.shutdown();
    await t.img.compare(t.path('src.qcow2'), t.path('tgt.qcow2'));
  },
});
