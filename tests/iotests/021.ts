import { defineTest } from './lib/test-api.js';
import { logBitmaps } from './lib/helpers.js';
import { twoDrives, incrementalActions } from './lib/grouped.js';

// Grouped transaction of two incremental backups where b's first read fails: the failing job
// ends COMPLETED with an error, its sibling is CANCELLED, both bitmaps keep their dirty bits;
// a rerun of the same transaction then succeeds and cleans both bitmaps.
export default defineTest({
  groups: ['transaction', 'backup', 'bitmap', 'errors'],
  async run(t) {
    const vm = await twoDrives(t, true);
    await vm.qmpLog('transaction', { actions: incrementalActions('1'), properties: { 'completion-mode': 'grouped' } });
    for (const id of ['ja1', 'jb1']) {
      const done = await vm.eventWait('JOB_STATUS_CHANGE', { id, status: 'null' });
      t.log(`${id} gone: ${String(done.data?.['status'])}`);
    }
    const ends = vm.takeEvents().filter((e) => e.event.startsWith('BLOCK_JOB_'));
    for (const e of ends.sort((x, y) => String(x.data?.['device']).localeCompare(String(y.data?.['device'])))) {
      const data = { ...e.data };
      if ('len' in data) Object.assign(data, { len: 'LEN', offset: 'OFFSET' });
      t.log({ event: e.event, data });
    }
    await logBitmaps(t, vm, 'a');
    await logBitmaps(t, vm, 'b');
    await vm.qmpLog('transaction', { actions: incrementalActions('2'), properties: { 'completion-mode': 'grouped' } });
    await vm.runJob('ja2', { autoDismiss: true, filterOffsets: false });
    await vm.eventWait('JOB_STATUS_CHANGE', { id: 'jb2', status: 'null' });
    await logBitmaps(t, vm, 'a');
    await logBitmaps(t, vm, 'b');
  },
});
