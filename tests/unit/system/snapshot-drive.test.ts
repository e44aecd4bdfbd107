import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startMachine } from '../../../src/system/machine.js';
import { parseCommandLine } from '../../../src/system/options.js';
import { createVm } from '../../../src/system/vm.js';

const dir = mkdtempSync(join(tmpdir(), 'tsqemu-snapshot-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function image(name: string): { path: string; bytes: Buffer } {
  const path = join(dir, name);
  const bytes = Buffer.alloc(1 << 20, 0x42);
  writeFileSync(path, bytes);
  return { path, bytes };
}

/** Runs the command line's drives on a `-M none` VM, writes through qemu-io and reads back. */
function session(args: string[]): { out: string[]; nodes: string[] } {
  const vm = createVm(parseCommandLine(['-M', 'none', ...args]), { cwd: dir });
  const out: string[] = [];
  vm.services.set('stdout', (line: string) => out.push(line));
  const board = startMachine(vm, { onQuit: () => undefined, warn: (m) => out.push(`warning: ${m}`) });
  expect(vm.qmp('human-monitor-command', { 'command-line': 'qemu-io d0 "write -P 0x11 0 64k"' })).toEqual({ return: '' });
  expect(vm.qmp('human-monitor-command', { 'command-line': 'qemu-io d0 "read -P 0x11 0 64k"' })).toEqual({ return: '' });
  const nodes = [...vm.graph.nodes.values()].map((bs) => bs.drv.formatName).sort();
  vm.shutdown();
  board.close();
  return { out, nodes };
}

describe('-drive snapshot=on, -snapshot, and drives under record/replay', () => {
  it('snapshot=on: the guest sees its writes, the image file is unchanged afterwards', () => {
    const { path, bytes } = image('a.raw');
    const { out, nodes } = session(['-drive', `file=${path},format=raw,if=none,id=d0,snapshot=on`]);
    expect(out.join('\n')).toContain('read 65536/65536 bytes at offset 0');
    expect(out.join('\n')).not.toContain('Pattern verification failed');
    expect(nodes).toEqual(['file', 'raw', 'snapshot-overlay']);
    expect(readFileSync(path).equals(bytes)).toBe(true);
  });

  it('-snapshot applies it to every drive; without it the write reaches the image', () => {
    const a = image('b.raw');
    session(['-snapshot', '-drive', `file=${a.path},format=raw,if=none,id=d0`]);
    expect(readFileSync(a.path).equals(a.bytes)).toBe(true);
    const b = image('c.raw');
    session(['-drive', `file=${b.path},format=raw,if=none,id=d0`]);
    expect(readFileSync(b.path)[0]).toBe(0x11);
  });

  it('-icount rr=record opens every drive with snapshot=on, so replay starts from the same bytes', () => {
    const { path, bytes } = image('d.raw');
    const { nodes } = session(['-icount', `shift=0,rr=record,rrfile=${join(dir, 'x.tsqr')}`, '-drive', `file=${path},format=raw,if=none,id=d0`]);
    expect(nodes).toContain('snapshot-overlay');
    expect(readFileSync(path).equals(bytes)).toBe(true);
  });

  it('readonly=on drives stay plain read-only nodes (nothing to protect)', () => {
    const { path } = image('e.raw');
    const vm = createVm(parseCommandLine(['-M', 'none', '-snapshot', '-drive', `file=${path},format=raw,if=none,id=d0,readonly=on`]), { cwd: dir });
    const board = startMachine(vm, { onQuit: () => undefined, warn: () => undefined });
    expect([...vm.graph.nodes.values()].map((bs) => bs.drv.formatName).sort()).toEqual(['file', 'raw']);
    vm.shutdown();
    board.close();
  });
});
