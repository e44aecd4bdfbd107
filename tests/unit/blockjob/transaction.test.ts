import { afterEach, describe, expect, it } from 'vitest';
import { blockRig, type BlockRig } from './block-helpers.js';
import { observeTransactions, runTransaction, type ActionSpec } from '../../../src/blockjob/transaction.js';
import { blockDirtyBitmapAdd } from '../../../src/blockjob/bitmap-actions.js';

let rig: BlockRig | null = null;
let unobserve: (() => void) | null = null;
afterEach(() => {
  rig?.cleanup();
  rig = null;
  unobserve?.();
  unobserve = null;
});

const MiB = 1 << 20;

function refusal(fn: () => void): { message: string; errorClass: string } {
  try {
    fn();
  } catch (e) {
    return { message: (e as Error).message, errorClass: (e as { errorClass: string }).errorClass };
  }
  throw new Error('expected a refusal');
}

function phases(): string[] {
  const out: string[] = [];
  unobserve = observeTransactions({ phase: (_t, action, index, phase) => out.push(`${phase} ${index}:${action}`) });
  return out;
}

const backup = (id: string, extra: Record<string, unknown> = {}): ActionSpec => ({ type: 'blockdev-backup', data: { 'device': 'src', 'target': `tgt-${id}`, 'sync': 'full', 'job-id': id, ...extra } });

describe('transaction engine', () => {
  it('prepares in order, then commits and cleans in reverse order', () => {
    rig = blockRig();
    rig.nullNode('src', MiB);
    const log = phases();
    runTransaction(rig.env, [
      { type: 'block-dirty-bitmap-add', data: { node: 'src', name: 'a' } },
      { type: 'block-dirty-bitmap-add', data: { node: 'src', name: 'b' } },
    ]);
    expect(log).toEqual(['prepare 0:block-dirty-bitmap-add', 'prepare 1:block-dirty-bitmap-add', 'commit 1:block-dirty-bitmap-add', 'commit 0:block-dirty-bitmap-add', 'clean 1:block-dirty-bitmap-add', 'clean 0:block-dirty-bitmap-add']);
    expect(rig.graph.lookupNode('src').dirtyBitmaps.map((b) => b.name)).toEqual(['a', 'b']);
  });

  it('the abort action fails; every prepared action (and the failing one) is aborted and cleaned', () => {
    rig = blockRig();
    const src = rig.nullNode('src', MiB);
    blockDirtyBitmapAdd(rig.env, { node: 'src', name: 'keep', disabled: true });
    src.findDirtyBitmap('keep')!.setRange(0, 65536);
    const log = phases();
    const error = refusal(() =>
      runTransaction(rig!.env, [
        { type: 'block-dirty-bitmap-add', data: { node: 'src', name: 'new' } },
        { type: 'block-dirty-bitmap-enable', data: { node: 'src', name: 'keep' } },
        { type: 'block-dirty-bitmap-clear', data: { node: 'src', name: 'keep' } },
        { type: 'abort', data: {} },
        { type: 'block-dirty-bitmap-add', data: { node: 'src', name: 'never' } },
      ]),
    );
    expect(error).toEqual({ message: 'Transaction aborted using Abort action', errorClass: 'GenericError' });
    expect(log).toEqual([
      'prepare 0:block-dirty-bitmap-add', 'prepare 1:block-dirty-bitmap-enable', 'prepare 2:block-dirty-bitmap-clear', 'prepare 3:abort', 'prepare-failed 3:abort',
      'abort 3:abort', 'abort 2:block-dirty-bitmap-clear', 'abort 1:block-dirty-bitmap-enable', 'abort 0:block-dirty-bitmap-add',
      'clean 3:abort', 'clean 2:block-dirty-bitmap-clear', 'clean 1:block-dirty-bitmap-enable', 'clean 0:block-dirty-bitmap-add',
    ]);
    const keep = src.findDirtyBitmap('keep')!;
    expect([keep.count, keep.disabled]).toEqual([65536, true]);
    expect(src.dirtyBitmaps.map((b) => b.name)).toEqual(['keep']);
  });

  it('bitmap remove, disable and merge are undone on abort and applied on commit', () => {
    rig = blockRig();
    const src = rig.nullNode('src', MiB);
    blockDirtyBitmapAdd(rig.env, { node: 'src', name: 'a' });
    blockDirtyBitmapAdd(rig.env, { node: 'src', name: 'b' });
    src.findDirtyBitmap('a')!.setRange(0, 65536);
    src.findDirtyBitmap('b')!.setRange(MiB - 65536, 65536);
    const actions: ActionSpec[] = [
      { type: 'block-dirty-bitmap-merge', data: { node: 'src', target: 'a', bitmaps: ['b'] } },
      { type: 'block-dirty-bitmap-disable', data: { node: 'src', name: 'a' } },
      { type: 'block-dirty-bitmap-remove', data: { node: 'src', name: 'b' } },
    ];
    refusal(() => runTransaction(rig!.env, [...actions, { type: 'abort', data: {} }]));
    expect(src.dirtyBitmaps.map((b) => [b.name, b.count, b.disabled, b.busy])).toEqual([['a', 65536, false, false], ['b', 65536, false, false]]);
    runTransaction(rig.env, actions);
    expect(src.dirtyBitmaps.map((b) => [b.name, b.count, b.disabled])).toEqual([['a', 131072, true]]);
  });

  it('bitmap action errors carry QEMU messages', () => {
    rig = blockRig();
    rig.nullNode('src', MiB);
    expect(refusal(() => runTransaction(rig!.env, [{ type: 'block-dirty-bitmap-clear', data: { node: 'nope', name: 'x' } }])).message).toBe("Node 'nope' not found");
    expect(refusal(() => runTransaction(rig!.env, [{ type: 'block-dirty-bitmap-clear', data: { node: 'src', name: 'x' } }])).message).toBe("Dirty bitmap 'x' not found");
    blockDirtyBitmapAdd(rig.env, { node: 'src', name: 'x' });
    expect(refusal(() => runTransaction(rig!.env, [{ type: 'block-dirty-bitmap-add', data: { node: 'src', name: 'x' } }])).message).toBe('Bitmap already exists: x');
    expect(refusal(() => runTransaction(rig!.env, [{ type: 'block-dirty-bitmap-add', data: { node: 'src', name: '' } }])).message).toBe('Bitmap name cannot be empty');
  });

  it('grouped completion-mode accepts only backup actions', () => {
    rig = blockRig();
    rig.nullNode('src', MiB);
    const log = phases();
    const error = refusal(() => runTransaction(rig!.env, [{ type: 'block-dirty-bitmap-add', data: { node: 'src', name: 'x' } }], { 'completion-mode': 'grouped' }));
    expect(error.message).toBe("Action 'block-dirty-bitmap-add' does not support Transaction property completion-mode = grouped");
    expect(log).toEqual([]);
  });

  it('a backup in an aborted transaction is created, never started, and leaves nothing behind', () => {
    rig = blockRig();
    rig.nullNode('src', MiB);
    rig.nullNode('tgt-j', MiB);
    refusal(() => runTransaction(rig!.env, [backup('j'), { type: 'abort', data: {} }]));
    rig.loop.runUntilIdle();
    expect(rig.eventNames()).toEqual(['created', 'aborting', 'concluded', 'null']);
    expect(rig.graph.lookupNode('tgt-j').parents.length).toBe(0);
    expect(rig.graph.lookupNode('src').quiesceCounter).toBe(0);
  });

  it('grouped: one failing job cancels its sibling (CANCELLED) and itself COMPLETES with error', () => {
    rig = blockRig();
    rig.nullNode('src', 4 * MiB);
    rig.nullNode('tgt-a', 4 * MiB);
    // A target whose writes fail: a too-small null-co is refused up front, so use a read-only node.
    rig.graph.blockdevAdd({ 'driver': 'null-co', 'node-name': 'tgt-b', 'size': 4 * MiB });
    const tgtB = rig.graph.lookupNode('tgt-b');
    runTransaction(rig.env, [backup('a', { speed: MiB }), backup('b')], { 'completion-mode': 'grouped' });
    // Make b's writes fail now that the job holds its edges: the node turns read-only under it.
    tgtB.readOnly = true;
    rig.loop.runUntilIdle();
    const blockEvents = rig.events.filter((e) => e.event.startsWith('BLOCK_JOB_')).map((e) => `${e.event} ${'device' in e.data ? String(e.data.device) : ''}${'error' in e.data ? ` ${String(e.data.error)}` : ''}`);
    expect(blockEvents).toEqual(['BLOCK_JOB_ERROR b', 'BLOCK_JOB_CANCELLED a', 'BLOCK_JOB_COMPLETED b Operation not permitted']);
  });
});

describe('legacyStartInPrepare (TEST-ONLY)', () => {
  const scenario = (legacy: boolean) => {
    rig = blockRig({ legacyStartInPrepare: legacy });
    rig.nullNode('src', MiB);
    rig.nullNode('tgt-empty', MiB);
    rig.nullNode('tgt-x', MiB);
    blockDirtyBitmapAdd(rig.env, { node: 'src', name: 'clean' });
    const error = refusal(() =>
      runTransaction(rig!.env, [
        backup('empty', { sync: 'incremental', bitmap: 'clean' }),
        backup('x', { sync: 'incremental', bitmap: 'missing' }),
      ]),
    );
    rig.loop.runUntilIdle();
    return { error: error.message, names: rig.eventNames() };
  };

  it('off: the empty backup of an aborted transaction never starts', () => {
    const { error, names } = scenario(false);
    expect(error).toBe("Bitmap 'missing' could not be found");
    expect(names).toEqual(['created', 'aborting', 'concluded', 'null']);
  });

  it('on: the empty backup completes although the transaction aborted (the 2016 race)', () => {
    const { error, names } = scenario(true);
    expect(error).toBe("Bitmap 'missing' could not be found");
    expect(names).toContain('BLOCK_JOB_COMPLETED');
  });
});
