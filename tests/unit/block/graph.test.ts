import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockBackend, devicePerms } from '../../../src/block/block-backend.js';
import { BlockError } from '../../../src/block/error.js';
import { Errno, strerror } from '../../../src/block/errno.js';
import { newGraph, patternFile, tempDir } from './helpers.js';

let cleanup: () => void = () => {};
afterEach(() => cleanup());

function fileImage(size = 65536): string {
  const t = tempDir();
  cleanup = t.cleanup;
  const path = join(t.dir, 'disk.img');
  patternFile(path, size);
  return path;
}

function message(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(BlockError);
    return (error as Error).message;
  }
  throw new Error('expected a BlockError');
}

describe('errno', () => {
  it("has Linux's texts", () => {
    expect(strerror(-Errno.EIO)).toBe('Input/output error');
    expect(strerror(Errno.ENOSPC)).toBe('No space left on device');
    expect(strerror(Errno.EPERM)).toBe('Operation not permitted');
    expect(strerror(Errno.ENOMEDIUM)).toBe('No medium found');
    expect(strerror(Errno.ECANCELED)).toBe('Operation canceled');
    expect(strerror(Errno.EROFS)).toBe('Read-only file system');
    expect(strerror(9999)).toBe('Unknown error 9999');
  });
});

describe('blockdev-add', () => {
  it('opens a tree with explicit and generated node names', () => {
    const path = fileImage();
    const { graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'raw', 'node-name': 'disk', file: { driver: 'file', filename: path } });
    expect(bs.nodeName).toBe('disk');
    // "#block" + counter + two random digits, as QEMU's id_generate (seeded: reproducible).
    expect(bs.file!.bs.nodeName).toMatch(/^#block0\d\d$/);
    expect(newGraph().graph.generateNodeName()).toBe(newGraph().graph.generateNodeName());
    expect(bs.file!.bs.autoNodeName).toBe(true);
    expect(bs.filename).toBe(path);
    expect([...graph.nodes.keys()].sort()).toEqual([bs.file!.bs.nodeName, 'disk'].sort());
  });

  it('refers to existing nodes by name', () => {
    const path = fileImage();
    const { graph } = newGraph();
    graph.blockdevAdd({ driver: 'file', 'node-name': 'proto', filename: path });
    const fmt = graph.blockdevAdd({ driver: 'raw', 'node-name': 'fmt', file: 'proto' });
    expect(fmt.file!.bs.nodeName).toBe('proto');
  });

  it("refuses bad options with QEMU's messages and leaves nothing behind", () => {
    const path = fileImage();
    const { graph } = newGraph();
    expect(message(() => graph.blockdevAdd({ 'node-name': 'x' }))).toBe("Parameter 'driver' is missing");
    expect(message(() => graph.blockdevAdd({ driver: 'nope' }))).toBe("Parameter 'driver' does not accept value 'nope'");
    expect(message(() => graph.blockdevAdd({ driver: 'nope' }, { driverMessage: 'legacy' }))).toBe("Unknown driver 'nope'");
    expect(message(() => graph.blockdevAdd({ driver: 'raw' }))).toBe("Parameter 'file' is missing");
    expect(message(() => graph.blockdevAdd({ driver: 'file' }))).toBe("Parameter 'filename' is missing");
    expect(message(() => graph.blockdevAdd({ driver: 'raw', file: { driver: 'file' } }))).toBe("Parameter 'file.filename' is missing");
    expect(message(() => graph.blockdevAdd({ driver: 'raw', file: 'ghost' }))).toBe("Cannot find device='ghost' nor node-name='ghost'");
    expect(message(() => graph.blockdevAdd({ driver: 'file', filename: join(path, '..', 'missing.img') }))).toBe(`Could not open '${join(path, '..', 'missing.img')}': No such file or directory`);
    expect(message(() => graph.blockdevAdd({ driver: 'null-co', bogus: 1 }))).toBe("Parameter 'bogus' is unexpected");
    expect(message(() => graph.blockdevAdd({ driver: 'raw', file: { driver: 'null-co', bogus: 1 } }))).toBe("Parameter 'file.bogus' is unexpected");
    expect(message(() => graph.blockdevAdd({ driver: 'null-co', size: 'x' }))).toBe("Invalid parameter type for 'size', expected: integer");
    expect(message(() => graph.blockdevAdd({ driver: 'null-co', 'node-name': '1abc' }))).toBe("Invalid node-name: '1abc'");
    expect(message(() => graph.blockdevAdd({ driver: 'null-co', 'node-name': 'a'.repeat(32) }))).toBe('Node name too long');
    expect(message(() => graph.blockdevAdd({ driver: 'file', filename: '/tmp' }))).toBe("Could not open '/tmp': Is a directory");
    expect(message(() => graph.blockdevAdd({ driver: 'null-co', 'detect-zeroes': 'unmap' }))).toBe('setting detect-zeroes to unmap is not allowed without setting discard operation to unmap');
    expect(message(() => graph.blockdevAdd({ driver: 'null-co', 'detect-zeroes': 'maybe' }))).toBe("Parameter 'detect-zeroes' does not accept value 'maybe'");
    expect(graph.nodes.size).toBe(0);
    graph.blockdevAdd({ driver: 'null-co', 'node-name': 'n0' });
    expect(message(() => graph.blockdevAdd({ driver: 'null-co', 'node-name': 'n0' }))).toBe("Duplicate nodes with node-name='n0'");
    // A failure in a nested child after the parent got its name frees the name again.
    expect(message(() => graph.blockdevAdd({ driver: 'raw', 'node-name': 'top', file: { driver: 'file', filename: '/nonexistent/x' } }))).toBe("Could not open '/nonexistent/x': No such file or directory");
    expect([...graph.nodes.keys()]).toEqual(['n0']);
  });

  it('checks raw windows', () => {
    const path = fileImage(8192);
    const { graph } = newGraph();
    expect(message(() => graph.blockdevAdd({ driver: 'raw', offset: 9000, file: { driver: 'file', filename: path } }))).toBe('Offset (9000) cannot be greater than size of the containing file (8192)');
    expect(message(() => graph.blockdevAdd({ driver: 'raw', offset: 4096, size: 8192, file: { driver: 'file', filename: path } }))).toBe(
      'The sum of offset (4096) and size (8192) has to be smaller or equal to the  actual size of the containing file (8192)',
    );
    expect(message(() => graph.blockdevAdd({ driver: 'raw', size: 1000, file: { driver: 'file', filename: path } }))).toBe('Specified size is not multiple of 512');
    const bs = graph.blockdevAdd({ driver: 'raw', offset: 512, size: 4096, file: { driver: 'file', filename: path } });
    expect(bs.totalBytes).toBe(4096);
  });
});

describe('blockdev-del', () => {
  it("refuses what QEMU refuses, in QEMU's order", () => {
    const { graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'raw', 'node-name': 'fmt', file: { driver: 'null-co', 'node-name': 'proto' } });
    expect(message(() => graph.blockdevDel('ghost'))).toBe("Failed to find node with node-name='ghost'");
    expect(message(() => graph.blockdevDel('proto'))).toBe('Node proto is not owned by the monitor');
    const blocker = new BlockError('block device is in use by block job: backup');
    bs.opBlockAll(blocker);
    expect(message(() => graph.blockdevDel('fmt'))).toBe("Node 'fmt' is busy: block device is in use by block job: backup");
    bs.opUnblockAll(blocker);
    const blk = BlockBackend.withNode(graph, bs, { name: 'drive0', ...devicePerms(false) });
    expect(message(() => graph.blockdevDel('fmt'))).toBe('Node fmt is in use');
    blk.dispose();
    graph.blockdevDel('fmt');
    // The implicit child went with it.
    expect(graph.nodes.size).toBe(0);
    expect(bs.closed).toBe(true);
  });

  it('keeps monitor-owned children', () => {
    const { graph } = newGraph();
    graph.blockdevAdd({ driver: 'null-co', 'node-name': 'proto' });
    graph.blockdevAdd({ driver: 'raw', 'node-name': 'fmt', file: 'proto' });
    expect(message(() => graph.blockdevDel('proto'))).toBe('Block device proto is in use');
    graph.blockdevDel('fmt');
    expect([...graph.nodes.keys()]).toEqual(['proto']);
    graph.blockdevDel('proto');
    expect(graph.nodes.size).toBe(0);
  });
});
