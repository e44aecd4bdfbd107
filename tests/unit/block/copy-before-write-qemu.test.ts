import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockBackend, devicePerms } from '../../../src/block/block-backend.js';
import { newGraph, run, tempDir } from './helpers.js';

const haveQemuIo = spawnSync('qemu-io', ['--version']).status === 0;
let cleanup: () => void = () => {};
afterEach(() => cleanup());

const SIZE = 1 << 20;

type Write = { offset: number; bytes: number; fill: number | 'zero' };

function images(dir: string, tag: string): { source: string; target: string } {
  const source = join(dir, `${tag}-src.img`);
  const target = join(dir, `${tag}-tgt.img`);
  const data = new Uint8Array(SIZE);
  for (let i = 0; i < SIZE; i++) data[i] = (i * 7 + 3) & 0xff;
  writeFileSync(source, data);
  writeFileSync(target, new Uint8Array(SIZE));
  return { source, target };
}

describe.skipIf(!haveQemuIo)('copy-before-write agrees with qemu-io (QEMU 7.2) byte for byte', () => {
  it('leaves the same source and target images after the same writes', () => {
    const t = tempDir();
    cleanup = t.cleanup;
    const writes: Write[] = [
      { offset: 100000, bytes: 512, fill: 0xaa },
      { offset: 0, bytes: 10, fill: 0xbb },
      { offset: 500000, bytes: 70000, fill: 'zero' },
      { offset: 100100, bytes: 300, fill: 0xcc },
      { offset: SIZE - 4096, bytes: 4096, fill: 0x11 },
    ];
    const q = images(t.dir, 'qemu');
    const args = writes.flatMap((w) => ['-c', w.fill === 'zero' ? `write -z ${w.offset} ${w.bytes}` : `write -P ${w.fill} ${w.offset} ${w.bytes}`]);
    const out = spawnSync('qemu-io', [...args, '--image-opts', `driver=copy-before-write,file.driver=file,file.filename=${q.source},target.driver=file,target.filename=${q.target}`], { encoding: 'utf8', timeout: 10_000 });
    expect(out.status).toBe(0);

    const o = images(t.dir, 'ours');
    const { loop, graph } = newGraph();
    const filter = graph.blockdevAdd({ driver: 'copy-before-write', file: { driver: 'file', filename: o.source }, target: { driver: 'file', filename: o.target } });
    const blk = BlockBackend.withNode(graph, filter, devicePerms(false));
    for (const w of writes) {
      const ret = w.fill === 'zero' ? run(loop, blk.coPwriteZeroes(w.offset, w.bytes)) : run(loop, blk.coPwritev(w.offset, w.bytes, new Uint8Array(w.bytes).fill(w.fill)));
      expect(ret).toBe(0);
    }
    blk.dispose();
    graph.closeAll();
    expect(Buffer.compare(readFileSync(o.source), readFileSync(q.source))).toBe(0);
    expect(Buffer.compare(readFileSync(o.target), readFileSync(q.target))).toBe(0);
  });
});
