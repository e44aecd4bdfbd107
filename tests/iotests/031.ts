import { defineTest } from './lib/test-api.js';
import { addQcow2, guestIo } from './lib/helpers.js';

// blockdev-snapshot-sync creates a new overlay file on top of a node; the old image keeps its
// data and becomes the overlay's backing file. A second snapshot onto a node that now has a
// parent is refused.
export default defineTest({
  groups: ['quick', 'transaction'],
  async run(t) {
    await t.img.create('qcow2', t.path('base.qcow2'), '4M');
    const vm = await t.launchVm();
    await addQcow2(vm, 'base', t.path('base.qcow2'));
    await guestIo(t, vm, 'base', 'write -P 0x10 0 64k');
    await vm.qmpLog('blockdev-snapshot-sync', { 'node-name': 'base', 'snapshot-file': t.path('snap.qcow2'), 'snapshot-node-name': 'snap', format: 'qcow2' });
    await vm.qmpLog('blockdev-snapshot-sync', { 'node-name': 'nosuch', 'snapshot-file': t.path('x.qcow2'), format: 'qcow2' });
    const nodes = await vm.qmp('query-named-block-nodes', { flat: true });
    if ('return' in nodes) {
      const names = (nodes.return as Record<string, unknown>[]).map((n) => String(n['node-name'])).filter((n) => !n.startsWith('#')).sort();
      t.log({ nodes: names });
    }
    await vm.shutdown();
    await t.io(t.path('base.qcow2'), ['read -P 0x10 0 64k']);
    await t.io(t.path('snap.qcow2'), ['read -P 0x10 0 64k', 'map']);
    const info = await t.img.info(t.path('snap.qcow2'));
    t.log({ 'backing-filename': info['backing-filename'] ?? null });
  },
});
