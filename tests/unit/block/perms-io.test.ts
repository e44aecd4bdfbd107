import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockBackend, devicePerms } from '../../../src/block/block-backend.js';
import { BdrvReq, BlkPerm, BlockStatus } from '../../../src/block/driver.js';
import { Errno } from '../../../src/block/errno.js';
import { BlockError, type Errp } from '../../../src/block/error.js';
import { bdrvCoBlockStatus, bdrvCoPreadv, bdrvCoPwritev, bdrvCoTruncate } from '../../../src/block/io.js';
import type { WriteRequestInfo } from '../../../src/block/node.js';
import { newGraph, patternFile, run, tempDir } from './helpers.js';

let cleanup: () => void = () => {};
afterEach(() => cleanup());

function fileImage(size = 65536): { path: string; data: Uint8Array } {
  const t = tempDir();
  cleanup = t.cleanup;
  const path = join(t.dir, 'disk.img');
  return { path, data: patternFile(path, size) };
}

function thrown(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(BlockError);
    return (error as Error).message;
  }
  throw new Error('expected a BlockError');
}

describe('permissions', () => {
  it('refuses a second writer with the conflict message', () => {
    const { graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'raw', 'node-name': 'disk', file: { driver: 'null-co' } });
    const first = BlockBackend.withNode(graph, bs, { name: 'drive0', ...devicePerms(false) });
    expect(thrown(() => BlockBackend.withNode(graph, bs, { name: 'drive1', ...devicePerms(false) }))).toBe(
      "Permission conflict on node 'disk': permissions 'write' are both required by block device 'drive0' (uses node 'disk' as 'root' child) and unshared by block device 'drive1' (uses node 'disk' as 'root' child).",
    );
    // The failed backend left no trace: its name is free again, a reader may attach.
    expect(graph.backends.has('drive1')).toBe(false);
    // A reader must share 'write' to join a writer (a job's backend does).
    expect(thrown(() => BlockBackend.withNode(graph, bs, { name: 'drive1', ...devicePerms(true) }))).toBe(
      "Permission conflict on node 'disk': permissions 'write' are both required by block device 'drive0' (uses node 'disk' as 'root' child) and unshared by block device 'drive1' (uses node 'disk' as 'root' child).",
    );
    const reader = BlockBackend.withNode(graph, bs, { name: 'drive1', perm: BlkPerm.CONSISTENT_READ, shared: BlkPerm.ALL });
    expect(reader.root!.perm).toBe(BlkPerm.CONSISTENT_READ);
    // share-rw lets two writers in.
    first.dispose();
    reader.dispose();
    BlockBackend.withNode(graph, bs, { name: 'a', ...devicePerms(false, true) });
    BlockBackend.withNode(graph, bs, { name: 'b', ...devicePerms(false, true) });
  });

  it('propagates through filters to the protocol node', () => {
    const { graph } = newGraph();
    graph.blockdevAdd({ driver: 'null-co', 'node-name': 'proto' });
    const a = graph.blockdevAdd({ driver: 'raw', 'node-name': 'a', file: 'proto' });
    const b = graph.blockdevAdd({ driver: 'raw', 'node-name': 'b', file: 'proto' });
    BlockBackend.withNode(graph, a, { name: 'drive0', ...devicePerms(false) });
    expect(thrown(() => BlockBackend.withNode(graph, b, { name: 'drive1', ...devicePerms(false) }))).toBe(
      "Permission conflict on node 'proto': permissions 'write' are both required by node 'a' (uses node 'proto' as 'file' child) and unshared by node 'b' (uses node 'proto' as 'file' child).",
    );
  });

  it('refuses writers on read-only nodes and writes without the permission', () => {
    const { loop, graph } = newGraph();
    const ro = graph.blockdevAdd({ driver: 'null-co', 'node-name': 'ro', 'read-only': true });
    expect(thrown(() => BlockBackend.withNode(graph, ro, devicePerms(false)))).toBe('Block node is read-only');
    const reader = BlockBackend.withNode(graph, ro, devicePerms(true));
    expect(run(loop, reader.coPwritev(0, 512, new Uint8Array(512)))).toBe(-Errno.EPERM);
    expect(run(loop, reader.coPreadv(0, 512, new Uint8Array(512)))).toBe(0);
    const rw = graph.blockdevAdd({ driver: 'null-co', 'node-name': 'rw' });
    const noWrite = BlockBackend.withNode(graph, rw, { perm: BlkPerm.CONSISTENT_READ });
    expect(run(loop, noWrite.coPwritev(0, 512, new Uint8Array(512)))).toBe(-Errno.EPERM);
    expect(run(loop, noWrite.coPdiscard(0, 512))).toBe(-Errno.EPERM);
    // setPerm is all or nothing.
    const other = BlockBackend.withNode(graph, rw, { perm: BlkPerm.CONSISTENT_READ, shared: BlkPerm.CONSISTENT_READ });
    expect(thrown(() => noWrite.setPerm(BlkPerm.WRITE, BlkPerm.ALL))).toBe(
      "Permission conflict on node 'rw': permissions 'write' are both required by an unnamed block device (uses node 'rw' as 'root' child) and unshared by an unnamed block device (uses node 'rw' as 'root' child).",
    );
    expect(noWrite.root!.perm).toBe(BlkPerm.CONSISTENT_READ);
    other.dispose();
    noWrite.setPerm(BlkPerm.WRITE | BlkPerm.CONSISTENT_READ, BlkPerm.ALL);
    expect(run(loop, noWrite.coPwritev(0, 512, new Uint8Array(512)))).toBe(0);
  });
});

describe('I/O path', () => {
  it('checks ranges like QEMU', () => {
    const { loop, graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'null-co', size: 4096, 'read-zeroes': true });
    const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
    const buf = new Uint8Array(512);
    expect(run(loop, blk.coPreadv(4096 - 512, 512, buf))).toBe(0);
    expect(run(loop, blk.coPreadv(4096 - 511, 512, buf))).toBe(-Errno.EIO);
    expect(run(loop, blk.coPreadv(-1, 512, buf))).toBe(-Errno.EIO);
    expect(run(loop, blk.coPwritev(8192, 512, buf))).toBe(-Errno.EIO);
    // At node level, reads past the end return zeroes.
    const big = new Uint8Array(1024).fill(7);
    expect(run(loop, bdrvCoPreadv(bs, 4096 - 512, 1024, big))).toBe(0);
    expect(big.every((b) => b === 0)).toBe(true);
    expect(run(loop, bdrvCoPreadv(bs, -5, 1, new Uint8Array(1)))).toBe(-Errno.EIO);
    blk.removeBs();
    expect(run(loop, blk.coPreadv(0, 512, buf))).toBe(-Errno.ENOMEDIUM);
    expect(blk.getLength()).toBe(-Errno.ENOMEDIUM);
  });

  it('reads and writes a host file through raw with unaligned requests', () => {
    const { path, data } = fileImage(65536);
    const { loop, graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'raw', file: { driver: 'blkdebug', align: 4096, image: { driver: 'file', filename: path } } });
    const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
    const w = new Uint8Array(5000).fill(0x5a);
    expect(run(loop, blk.coPwritev(3000, 5000, w))).toBe(0);
    const expected = data.slice();
    expected.fill(0x5a, 3000, 8000);
    expect(new Uint8Array(readFileSync(path))).toEqual(expected);
    const r = new Uint8Array(777);
    expect(run(loop, blk.coPreadv(2999, 777, r))).toBe(0);
    expect(r).toEqual(expected.subarray(2999, 2999 + 777));
    // An unaligned zero write keeps its neighbours.
    expect(run(loop, blk.coPwriteZeroes(100, 9000))).toBe(0);
    expected.fill(0, 100, 9100);
    expect(new Uint8Array(readFileSync(path))).toEqual(expected);
    // The protocol node saw only aligned requests.
    expect(graph.nodes.size).toBe(3);
  });

  it('grows the file when written past its end, and truncates', () => {
    const { path } = fileImage(4096);
    const { loop, graph } = newGraph();
    const proto = graph.blockdevAdd({ driver: 'file', filename: path, 'node-name': 'proto' });
    expect(run(loop, bdrvCoPwritev(proto, 8192, 512, new Uint8Array(512).fill(1)))).toBe(0);
    expect(proto.totalBytes).toBe(8192 + 512);
    expect(readFileSync(path).length).toBe(8192 + 512);
    const fmt = graph.blockdevAdd({ driver: 'raw', file: 'proto' });
    const blk = BlockBackend.withNode(graph, fmt, { perm: BlkPerm.CONSISTENT_READ | BlkPerm.WRITE | BlkPerm.RESIZE });
    expect(run(loop, blk.coTruncate(1 << 20, true))).toBe(0);
    expect(readFileSync(path).length).toBe(1 << 20);
    expect(blk.getLength()).toBe(1 << 20);
    const errp: Errp = {};
    expect(run(loop, blk.coTruncate(-1, true, 'off', 0, errp))).toBe(-Errno.EINVAL);
    expect(errp.error?.message).toBe('Image size cannot be negative');
    const fixed = graph.blockdevAdd({ driver: 'raw', size: 4096, file: { driver: 'null-co' } });
    const errp2: Errp = {};
    expect(run(loop, bdrvCoTruncate(fixed, 8192, true, 'off', 0, errp2))).toBe(-Errno.ENOTSUP);
    expect(errp2.error?.message).toBe('Cannot resize fixed-size raw disks');
    const ro = graph.blockdevAdd({ driver: 'null-co', 'read-only': true });
    const errp3: Errp = {};
    expect(run(loop, bdrvCoTruncate(ro, 8192, true, 'off', 0, errp3))).toBe(-Errno.EACCES);
    expect(errp3.error?.message).toBe('Image is read-only');
    // Without the resize permission on the edge.
    const noResize = BlockBackend.withNode(graph, graph.blockdevAdd({ driver: 'null-co' }), devicePerms(false));
    expect(run(loop, noResize.coTruncate(4096, true))).toBe(-Errno.EPERM);
  });

  it('turns zero writes into write-zeroes with detect-zeroes and lets hooks see every write', () => {
    const { loop, graph } = newGraph();
    // blkdebug passes discards on (null-co alone has no discard, which makes discard a no-op).
    const bs = graph.blockdevAdd({ driver: 'blkdebug', 'detect-zeroes': 'unmap', discard: 'unmap', image: { driver: 'null-co' } });
    const seen: WriteRequestInfo[] = [];
    const results: number[] = [];
    const remove = bs.addWriteHook({
      name: 'test',
      *before(req) {
        seen.push(req);
        return 0;
      },
      after(_req, ret) {
        results.push(ret);
      },
    });
    const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
    expect(run(loop, blk.coPwritev(0, 4096, new Uint8Array(4096)))).toBe(0);
    expect(run(loop, blk.coPwritev(4096, 4096, new Uint8Array(4096).fill(1)))).toBe(0);
    expect(run(loop, blk.coPdiscard(0, 4096))).toBe(0);
    expect(seen.map((r) => [r.kind, r.offset, (r.flags & BdrvReq.MAY_UNMAP) !== 0])).toEqual([
      ['zero', 0, true],
      ['write', 4096, false],
      ['discard', 0, false],
    ]);
    expect(results).toEqual([0, 0, 0]);
    remove();
    expect(run(loop, blk.coPwritev(0, 512, new Uint8Array(512)))).toBe(0);
    expect(seen.length).toBe(3);
  });

  it('fails a write when a before-hook fails, without reaching the driver', () => {
    const { loop, graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'null-co' });
    bs.addWriteHook({
      name: 'refuse',
      *before() {
        return -Errno.ENOSPC;
      },
    });
    expect(run(loop, bdrvCoPwritev(bs, 0, 512, new Uint8Array(512)))).toBe(-Errno.ENOSPC);
    expect(bs.stats.failedWrOperations).toBe(1);
  });

  it('answers block status through filters', () => {
    const { path } = fileImage(65536);
    const { loop, graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'raw', offset: 4096, file: { driver: 'file', 'node-name': 'proto', filename: path } });
    const st = run(loop, bdrvCoBlockStatus(bs, true, 0, 8192));
    expect(st.ret & (BlockStatus.DATA | BlockStatus.ALLOCATED | BlockStatus.OFFSET_VALID)).toBe(BlockStatus.DATA | BlockStatus.ALLOCATED | BlockStatus.OFFSET_VALID);
    expect(st.pnum).toBe(8192);
    expect(st.map).toBe(4096);
    expect(st.file?.nodeName).toBe('proto');
    const eof = run(loop, bdrvCoBlockStatus(bs, true, 65536, 512));
    expect(eof).toMatchObject({ ret: BlockStatus.EOF, pnum: 0 });
    const zero = graph.blockdevAdd({ driver: 'null-co', size: 4096, 'read-zeroes': true });
    const z = run(loop, bdrvCoBlockStatus(zero, true, 0, 4096));
    expect(z.ret & (BlockStatus.ZERO | BlockStatus.ALLOCATED | BlockStatus.EOF)).toBe(BlockStatus.ZERO | BlockStatus.ALLOCATED | BlockStatus.EOF);
  });

  it('emulates FUA with a flush and counts operations', () => {
    const { loop, graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'raw', file: { driver: 'null-co', 'node-name': 'proto' } });
    const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
    expect(run(loop, blk.coPwritev(0, 512, new Uint8Array(512), BdrvReq.FUA))).toBe(0);
    // null-co has no FUA: the generic layer flushed it.
    expect(graph.findNode('proto')!.stats.flushOperations).toBe(1);
    expect(bs.stats.wrOperations).toBe(1);
    expect(bs.stats.wrBytes).toBe(512);
  });
});

describe('reopen read-only / read-write', () => {
  it('makes a read-only chain writable and back, refusing while a writer is attached', () => {
    const { path, data } = fileImage(8192);
    const { loop, graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'raw', 'node-name': 'base', 'read-only': true, file: { driver: 'file', 'node-name': 'proto', filename: path, 'read-only': true } });
    expect(thrown(() => BlockBackend.withNode(graph, bs, devicePerms(false)))).toBe('Block node is read-only');
    graph.reopenReadOnly(bs, false);
    expect(bs.readOnly).toBe(false);
    expect(graph.findNode('proto')!.readOnly).toBe(false);
    const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
    expect(run(loop, blk.coPwritev(0, 4, new Uint8Array([9, 9, 9, 9])))).toBe(0);
    expect([...readFileSync(path).subarray(0, 5)]).toEqual([9, 9, 9, 9, data[4]]);
    expect(thrown(() => graph.reopenReadOnly(bs, true))).toBe('Block node is read-only');
    expect(bs.readOnly).toBe(false);
    expect(run(loop, blk.coPwritev(0, 1, new Uint8Array([1])))).toBe(0);
    blk.dispose();
    graph.reopenReadOnly(bs, true);
    expect(graph.findNode('proto')!.readOnly).toBe(true);
    expect(run(loop, bdrvCoPwritev(bs, 0, 1, new Uint8Array([1])))).toBe(-Errno.EPERM);
  });
});

describe('BlockBackend error policy and io-status', () => {
  it('maps rerror/werror to actions and records the first stop', () => {
    const { graph } = newGraph();
    const blk = BlockBackend.withNode(graph, graph.blockdevAdd({ driver: 'null-co' }), { name: 'd0', ...devicePerms(false) });
    expect(blk.errorAction(false, -Errno.ENOSPC)).toBe('stop');
    expect(blk.errorAction(false, -Errno.EIO)).toBe('report');
    expect(blk.errorAction(true, -Errno.EIO)).toBe('report');
    blk.onReadError = 'ignore';
    expect(blk.errorAction(true, -Errno.EIO)).toBe('ignore');
    blk.onWriteError = 'stop';
    expect(blk.errorAction(false, -Errno.EIO)).toBe('stop');
    blk.setIoStatusFromError('stop', -Errno.EIO);
    expect(blk.iostatus).toBe('ok');
    blk.iostatusEnabled = true;
    blk.setIoStatusFromError('report', -Errno.EIO);
    expect(blk.iostatus).toBe('ok');
    blk.setIoStatusFromError('stop', -Errno.ENOSPC);
    expect(blk.iostatus).toBe('nospace');
    blk.setIoStatusFromError('stop', -Errno.EIO);
    expect(blk.iostatus).toBe('nospace');
    blk.resetIoStatus();
    expect(blk.iostatus).toBe('ok');
    expect(graph.lookupBs('d0', null)).toBe(blk.bs);
    expect(() => new BlockBackend(graph, { name: 'd0' })).toThrow("Device with id 'd0' already exists");
  });
});
