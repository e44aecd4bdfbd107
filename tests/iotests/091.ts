import { defineTest } from './lib/test-api.js';

// Basic monitor commands answer as QEMU's do.
export default defineTest({
  groups: ['quick'],
  async run(t) {
    const vm = await t.launchVm();
    await vm.qmpLog('query-status');
    await vm.qmpLog('cont');
    await vm.qmpLog('query-status');
    await vm.qmpLog('stop');
    await vm.qmpLog('query-status');
    await vm.qmpLog('query-jobs');
    await vm.qmpLog('query-block-jobs');
    const version = await vm.qmp('query-version');
    if ('return' in version) {
      const q = (version.return as { qemu: Record<string, number> }).qemu;
      t.log({ major: q['major'] });
    }
  },
});
