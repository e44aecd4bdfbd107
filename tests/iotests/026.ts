import { defineTest } from './lib/test-api.js';
import { addNull } from './lib/helpers.js';

// Refusals inside transactions: grouped mode with a non-backup action, the abort action alone,
// a failing second action (the first one's effect is undone), unknown action types.
export default defineTest({
  groups: ['quick', 'transaction', 'errors'],
  async run(t) {
    const vm = await t.launchVm();
    await addNull(vm, 'd', 1048576);
    await vm.qmpLog('transaction', {
      actions: [{ type: 'block-dirty-bitmap-add', data: { node: 'd', name: 'x' } }],
      properties: { 'completion-mode': 'grouped' },
    });
    await vm.qmpLog('transaction', { actions: [{ type: 'abort', data: {} }] });
    await vm.qmpLog('transaction', {
      actions: [
        { type: 'block-dirty-bitmap-add', data: { node: 'd', name: 'first' } },
        { type: 'block-dirty-bitmap-add', data: { node: 'd', name: 'first' } },
      ],
    });
    await vm.qmpLog('transaction', { actions: [{ type: 'block-dirty-bitmap-remove', data: { node: 'd', name: 'missing' } }] });
    await vm.qmpLog('transaction', { actions: [{ type: 'no-such-action', data: {} }] });
    await vm.qmpLog('transaction', { actions: [] });
    await vm.qmpLog('query-named-block-nodes', { flat: true }, [(v) => JSON.parse(JSON.stringify(v, (k, x) => (['image', 'cache', 'detect_zeroes', 'write_threshold', 'iops', 'bps', 'iops_rd', 'iops_wr', 'bps_rd', 'bps_wr', 'encrypted', 'ro', 'backing_file_depth', 'file', 'drv'].includes(k) ? undefined : x)))]);
  },
});
