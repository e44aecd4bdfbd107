import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BlockBackend, devicePerms } from '../../../src/block/block-backend.js';
import { strerror } from '../../../src/block/errno.js';
import { newGraph, run, tempDir } from './helpers.js';

const haveQemuIo = spawnSync('qemu-io', ['--version']).status === 0;
const t = tempDir();
afterAll(() => t.cleanup());

type Cmd = ['read' | 'write' | 'flush', number, number];

/** One line per command, as qemu-io reports it ("read ok" stands for its two success lines). */
function qemuIo(path: string, blkdebug: Record<string, unknown>, cmds: Cmd[]): string[] {
  const spec = { driver: 'raw', file: { driver: 'blkdebug', ...blkdebug, image: { driver: 'file', filename: path } } };
  const args = cmds.flatMap(([op, offset, bytes]) => ['-c', op === 'flush' ? 'flush' : `${op} ${offset} ${bytes}`]);
  const out = spawnSync('qemu-io', [...args, `json:${JSON.stringify(spec)}`], { encoding: 'utf8', timeout: 10_000 });
  const lines: string[] = [];
  for (const line of out.stdout.split('\n')) {
    if (/^read \d+\/\d+ bytes/.test(line)) lines.push('read ok');
    else if (/^wrote \d+\/\d+ bytes/.test(line)) lines.push('write ok');
    else if (/^(read|write) failed: /.test(line)) lines.push(line);
  }
  return lines;
}

function ours(path: string, blkdebug: Record<string, unknown>, cmds: Cmd[]): string[] {
  const { loop, graph } = newGraph();
  const bs = graph.blockdevAdd({ driver: 'raw', file: { driver: 'blkdebug', ...blkdebug, image: { driver: 'file', filename: path } } });
  const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
  const lines: string[] = [];
  for (const [op, offset, bytes] of cmds) {
    if (op === 'flush') {
      run(loop, blk.coFlush());
      continue;
    }
    const ret = run(loop, op === 'read' ? blk.coPreadv(offset, bytes, new Uint8Array(bytes)) : blk.coPwritev(offset, bytes, new Uint8Array(bytes)));
    lines.push(ret < 0 ? `${op} failed: ${strerror(ret)}` : `${op} ok`);
  }
  return lines;
}

const scenarios: Array<[string, Record<string, unknown>, Cmd[]]> = [
  ['armed rule stays armed, default iotypes', { 'inject-error': [{ event: 'read_aio' }] }, [['read', 0, 512], ['write', 0, 512], ['read', 512, 512]]],
  ['once with errno', { 'inject-error': [{ event: 'read_aio', errno: 28, once: true }] }, [['read', 0, 512], ['read', 0, 512]]],
  ['iotype write', { 'inject-error': [{ event: 'write_aio', iotype: 'write' }] }, [['read', 0, 512], ['write', 0, 512], ['read', 0, 512], ['write', 4096, 512]]],
  ['sector', { 'inject-error': [{ event: 'read_aio', sector: 8 }] }, [['read', 0, 4096], ['read', 4096, 512], ['read', 4000, 200], ['read', 8192, 512]]],
  [
    'state machine',
    {
      'inject-error': [{ event: 'read_aio', state: 2, once: true }],
      'set-state': [
        { event: 'flush_to_disk', state: 1, new_state: 2 },
        { event: 'read_aio', state: 2, new_state: 3 },
      ],
    },
    [['read', 0, 512], ['write', 0, 512], ['flush', 0, 0], ['read', 0, 512], ['read', 4096, 512]],
  ],
  ['immediately', { 'inject-error': [{ event: 'write_aio', immediately: true, errno: 1 }] }, [['write', 0, 512], ['read', 0, 512]]],
  ['set-state without matching state', { 'inject-error': [{ event: 'read_aio', state: 5 }], 'set-state': [{ event: 'write_aio', new_state: 5 }] }, [['read', 0, 512], ['write', 0, 512], ['read', 0, 512]]],
];

describe.skipIf(!haveQemuIo)('blkdebug agrees with qemu-io (QEMU 7.2) request by request', () => {
  for (const [name, blkdebug, cmds] of scenarios) {
    it(name, () => {
      const path = join(t.dir, `${name.replace(/\W/g, '_')}.img`);
      writeFileSync(path, new Uint8Array(65536));
      const expected = qemuIo(path, blkdebug, cmds);
      expect(expected.length).toBe(cmds.filter((c) => c[0] !== 'flush').length);
      expect(ours(path, blkdebug, cmds)).toEqual(expected);
    });
  }
});
