import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GdbFramer, gdbChecksum, gdbEscape, gdbUnescape } from '../../src/engine/host/gdb-transport.js';

const BIN = join(process.cwd(), 'dist/tools/tsqemu-replay.js');
const haveGdb = spawnSync('sh', ['-c', 'command -v gdb-multiarch'], { stdio: 'ignore' }).status === 0;
const dir = mkdtempSync(join(tmpdir(), 'rr-gdb-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** puts_ in fixtures/demo/demo.elf (riscv64-unknown-elf-nm): called once per line the demo prints. */
const PUTS = 0x8000007c;

describe('gdb remote protocol framing', () => {
  it('checksums, escapes, splits packets, nacks bad ones and sees Ctrl-C', () => {
    expect(gdbChecksum('g')).toBe('67');
    expect(gdbUnescape(gdbEscape('a$b#c}d*e'))).toBe('a$b#c}d*e');
    const framer = new GdbFramer();
    expect(framer.feed('+$g#67$m8000')).toEqual([{ kind: 'packet', data: 'g' }]);
    expect(framer.feed('0000,4#')).toEqual([]);
    expect(framer.feed(`${gdbChecksum('m80000000,4')}\x03$s#00`)).toEqual([{ kind: 'packet', data: 'm80000000,4' }, { kind: 'interrupt' }, { kind: 'bad' }]);
  });
});

describe.skipIf(!haveGdb || !existsSync(BIN))('tsqemu-replay play --gdb with gdb-multiarch (needs npm run build, gdb-multiarch)', () => {
  it('stepi, breakpoints, continue, reverse-stepi and reverse-continue over a recording', async () => {
    const log = join(dir, 'demo.tsqr');
    const rec = spawnSync(process.execPath, [BIN, 'record', '-o', log, '--checkpoint', '1024', '--', '-M', 'virt', '-m', '64M', '-bios', 'none', '-kernel', 'fixtures/demo/demo.elf', '-drive', 'file=fixtures/demo/demo-disk.img,if=virtio,format=raw'], { input: 'hello gdb\rquit\r', encoding: 'utf8', timeout: 60_000 });
    expect(rec.status, rec.stderr).toBe(0);
    const play = spawn(process.execPath, [BIN, 'play', log, '--serial', 'null', '--gdb', 'tcp::0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    const port = await new Promise<number>((resolve, reject) => {
      play.stderr.on('data', (c: Buffer) => {
        stderr += c.toString();
        const m = /waiting for gdb on port (\d+)/.exec(stderr);
        if (m !== null) resolve(Number(m[1]));
      });
      play.on('exit', () => reject(new Error(stderr)));
    });
    const exited = new Promise<number | null>((resolve) => play.on('exit', resolve));
    const commands = [
      'set architecture riscv:rv64',
      `target remote :${port}`,
      'p/x $pc',
      'stepi',
      'stepi',
      'p/x $pc',
      'reverse-stepi',
      'p/x $pc',
      'x/2xw 0x80000000',
      `break *${PUTS}`,
      'continue',
      'p/x $a0',
      'continue',
      'p/x $a0',
      'continue',
      'p/x $a0',
      'reverse-continue',
      'p/x $a0',
      'reverse-continue',
      'p/x $a0',
      'reverse-continue',
      'p/x $pc',
      'detach',
    ];
    const gdb = spawnSync('gdb-multiarch', ['-batch', '-nx', ...commands.flatMap((c) => ['-ex', c])], { encoding: 'utf8', timeout: 120_000 });
    const out = gdb.stdout + gdb.stderr;
    const values = [...out.matchAll(/^\$\d+ = (0x[0-9a-f]+)$/gm)].map((m) => m[1]!);
    expect(values.length, out).toBe(9);
    // The reset vector: 0x1000, two instructions on, one back.
    expect(values.slice(0, 3)).toEqual(['0x1000', '0x1008', '0x1004']);
    expect(out).toMatch(/0x80000000:\s+0x00008117\s+0x01010113/);
    const [a1, a2, a3, back2, back1] = values.slice(3, 8);
    expect(new Set([a1, a2, a3]).size).toBe(3);
    // Each reverse-continue lands on the previous call, with the argument it had then.
    expect(back2).toBe(a2);
    expect(back1).toBe(a1);
    // Before the first call there is no earlier hit: play goes back to the start of the recording.
    expect(out).toMatch(/No more reverse-execution history/);
    expect(values[8]).toBe('0x1000');
    expect(await exited, stderr).toBe(0);
    expect(stderr).toMatch(/gdb left play at icount 0 /);
  }, 120_000);
});
