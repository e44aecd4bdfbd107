import type { IoTestContext, Vm } from './test-api.js';
import { addQcow2, guestIo, logBitmaps } from './helpers.js';

export type Outcome = 'success' | 'cancel' | 'read-error';

/**
 * One cell of the bitmap-mode × outcome matrix: a sync=bitmap backup of a source with three
 * dirty clusters; it succeeds, is cancelled while pending, or fails on its first read. The
 * bitmap's count afterwards shows what the mode does with it; a later write shows it still
 * records.
 */
export async function bitmapModeCell(t: IoTestContext, mode: 'never' | 'on-success' | 'always', outcome: Outcome): Promise<void> {
  await t.img.create('qcow2', t.path('src.qcow2'), '4M');
  await t.img.create('qcow2', t.path('tgt.qcow2'), '4M');
  const vm = await t.launchVm();
  // blkdebug sits under qcow2: its rules fire on events the format driver raises (read_aio for
  // guest-data reads). QEMU refuses an empty inject-error list, so it is given only with a rule.
  const rules = outcome === 'read-error' ? { 'inject-error': [{ event: 'read_aio', errno: 5, once: true }] } : {};
  await vm.qmpLog('blockdev-add', {
    driver: 'qcow2',
    'node-name': 'src',
    file: { driver: 'blkdebug', image: { driver: 'file', filename: t.path('src.qcow2') }, ...rules },
  });
  await addQcow2(vm, 'tgt', t.path('tgt.qcow2'), {}, false);
  await vm.qmpLog('block-dirty-bitmap-add', { node: 'src', name: 'bm0', granularity: 65536 });
  await guestIo(t, vm, 'src', 'write -P 0x11 0 64k');
  await guestIo(t, vm, 'src', 'write -P 0x22 1M 64k');
  await guestIo(t, vm, 'src', 'write -P 0x33 3M 64k');
  await logBitmaps(t, vm, 'src');
  const started = await vm.qmpLog('blockdev-backup', {
    'job-id': 'job0',
    device: 'src',
    target: 'tgt',
    sync: 'bitmap',
    bitmap: 'bm0',
    'bitmap-mode': mode,
    'auto-finalize': outcome !== 'cancel',
  });
  if (!('return' in started)) return;
  // Where a failing job stops depends on how its copy workers interleaved: filtered, as the
  // bitmap's count after a failed bitmap-mode=always backup (it keeps what was not copied).
  const failed = outcome === 'read-error';
  await vm.runJob('job0', { autoFinalize: outcome !== 'cancel', autoDismiss: true, cancel: outcome === 'cancel', filterOffsets: failed });
  if (failed && mode === 'always') await logBitmapBounds(t, vm, 65536, 196608);
  else await logBitmaps(t, vm, 'src');
  await guestIo(t, vm, 'src', 'write -P 0x44 2M 64k');
  if (failed && mode === 'always') await logBitmapBounds(t, vm, 131072, 262144);
  else await logBitmaps(t, vm, 'src');
}

/** Logs whether bm0's count lies in [low, high] (for counts that depend on the schedule). */
async function logBitmapBounds(t: IoTestContext, vm: Vm, low: number, high: number): Promise<void> {
  const reply = await vm.qmp('query-named-block-nodes', { flat: true });
  if (!('return' in reply)) return;
  for (const node of reply.return as Record<string, unknown>[]) {
    if (node['node-name'] !== 'src') continue;
    for (const bm of (node['dirty-bitmaps'] as Record<string, unknown>[] | undefined) ?? []) {
      if (bm['name'] !== 'bm0') continue;
      const count = Number(bm['count']);
      t.log({ bitmap: 'bm0', [`count in [${low}, ${high}]`]: count >= low && count <= high, recording: bm['recording'] });
    }
  }
}
