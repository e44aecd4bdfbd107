import { defineTest } from './lib/test-api.js';
import { mirrorPair } from './lib/mirror.js';

// A mirror with auto-finalize and auto-dismiss off walks through pending and concluded on
// explicit commands.
export default defineTest({
  groups: ['mirror', 'jobs'],
  async run(t) {
    const vm = await mirrorPair(t);
    await vm.qmpLog('blockdev-mirror', { 'job-id': 'm0', device: 'src', target: 'tgt', sync: 'full', 'auto-finalize': false, 'auto-dismiss': false });
    await vm.runJob('m0', { autoFinalize: false, autoDismiss: false });
  },
});
