import { describe, expect, it } from 'vitest';
import { BlockBackend, devicePerms } from '../../../src/block/block-backend.js';
import { BlockError } from '../../../src/block/error.js';
import { blkdebugState } from '../../../src/block/drivers/blkdebug.js';
import { bdrvDebugEvent } from '../../../src/block/io.js';
import { Errno } from '../../../src/block/errno.js';
import type { BlockdevOptions } from '../../../src/block/options.js';
import { newGraph, run } from './helpers.js';

function setup(blkdebug: Record<string, unknown>) {
  const { loop, graph } = newGraph();
  const options: BlockdevOptions = { driver: 'raw', 'node-name': 'fmt', file: { driver: 'blkdebug', 'node-name': 'dbg', image: { driver: 'null-co', 'read-zeroes': true, size: 1 << 20 }, ...blkdebug } };
  const bs = graph.blockdevAdd(options);
  const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
  const dbg = graph.findNode('dbg')!;
  const read = (offset = 0, bytes = 512): number => run(loop, blk.coPreadv(offset, bytes, new Uint8Array(bytes)));
  const write = (offset = 0, bytes = 512): number => run(loop, blk.coPwritev(offset, bytes, new Uint8Array(bytes)));
  return { loop, graph, bs, blk, dbg, read, write };
}

describe('blkdebug', () => {
  it('injects EIO on every read after read_aio (not once)', () => {
    const { read, write } = setup({ 'inject-error': [{ event: 'read_aio' }] });
    expect(read()).toBe(-Errno.EIO);
    expect(read()).toBe(-Errno.EIO);
    // The default iotype mask covers writes too, once a rule is armed.
    expect(write()).toBe(-Errno.EIO);
  });

  it('honours once, errno, iotype and sector', () => {
    const once = setup({ 'inject-error': [{ event: 'read_aio', errno: Errno.ENOSPC, once: true }] });
    expect(once.read()).toBe(-Errno.ENOSPC);
    expect(once.read()).toBe(0);
    const typed = setup({ 'inject-error': [{ event: 'write_aio', iotype: 'write' }] });
    expect(typed.read()).toBe(0);
    expect(typed.write()).toBe(-Errno.EIO);
    expect(typed.read()).toBe(0);
    const sector = setup({ 'inject-error': [{ event: 'read_aio', sector: 8 }] });
    expect(sector.read(0, 4096)).toBe(0);
    expect(sector.read(4096, 512)).toBe(-Errno.EIO);
    expect(sector.read(4000, 200)).toBe(-Errno.EIO);
  });

  it('runs a state machine starting at state 1', () => {
    const { dbg, read, write, loop, blk } = setup({
      'inject-error': [{ event: 'read_aio', state: 2, once: true }],
      'set-state': [
        { event: 'flush_to_disk', state: 1, new_state: 2 },
        { event: 'read_aio', state: 2, new_state: 3 },
      ],
    });
    expect(blkdebugState(dbg)).toBe(1);
    expect(read()).toBe(0);
    expect(write()).toBe(0);
    expect(run(loop, blk.coFlush())).toBe(0);
    expect(blkdebugState(dbg)).toBe(2);
    // Rules match the state before the event: the inject rule (state 2) is armed, then state 3.
    expect(read()).toBe(-Errno.EIO);
    expect(blkdebugState(dbg)).toBe(3);
    expect(read()).toBe(0);
  });

  it('completes injected errors asynchronously unless immediately', () => {
    const later = setup({ 'inject-error': [{ event: 'l2_load' }] });
    bdrvDebugEvent(later.dbg, 'l2_load');
    const co1 = later.loop.enter('r', later.blk.coPreadv(0, 512, new Uint8Array(512)));
    expect(co1.done).toBe(false);
    later.loop.runUntilIdle();
    expect(co1.result).toBe(-Errno.EIO);
    const now = setup({ 'inject-error': [{ event: 'l2_load', immediately: true }] });
    bdrvDebugEvent(now.dbg, 'l2_load');
    const co2 = now.loop.enter('r', now.blk.coPreadv(0, 512, new Uint8Array(512)));
    expect(co2.done).toBe(true);
    expect(co2.result).toBe(-Errno.EIO);
  });

  it('fails flushes with the flush iotype', () => {
    const { loop, blk, read } = setup({ 'inject-error': [{ event: 'flush_to_os', iotype: 'flush', once: true }] });
    expect(run(loop, blk.coFlush())).toBe(-Errno.EIO);
    expect(run(loop, blk.coFlush())).toBe(0);
    expect(read()).toBe(0);
  });

  it('refuses malformed rules', () => {
    const { graph } = newGraph();
    const open = (file: Record<string, unknown>): string => {
      try {
        graph.blockdevAdd({ driver: 'blkdebug', image: { driver: 'null-co' }, ...file });
      } catch (error) {
        expect(error).toBeInstanceOf(BlockError);
        return (error as Error).message;
      }
      return 'opened';
    };
    expect(open({ 'inject-error': [{ event: 'bogus' }] })).toBe("Parameter 'event' does not accept value 'bogus'");
    expect(open({ 'inject-error': [{}] })).toBe("Parameter 'inject-error[0].event' is missing");
    expect(open({ 'inject-error': [{ event: 'read_aio', iotype: 'x' }] })).toBe("Parameter 'iotype' does not accept value 'x'");
    expect(open({ 'set-state': [{ event: 'read_aio' }] })).toBe("Parameter 'set-state[0].new_state' is missing");
    expect(open({ align: 3000 })).toBe('Cannot meet constraints with align 3000');
    expect(open({ 'inject-error': 'x' })).toBe("Invalid parameter type for 'inject-error', expected: array");
    expect(graph.nodes.size).toBe(0);
  });
});
