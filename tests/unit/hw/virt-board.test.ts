import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BlockGraph } from '../../../src/block/graph.js';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { type VirtBoardConfig, VirtBoardError, startVirtBoard } from '../../../src/system/virt-board.js';

const dir = mkdtempSync(join(tmpdir(), 'virt-board-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const haveQemuImg = spawnSync('qemu-img', ['--version'], { stdio: 'ignore' }).status === 0;

const base: VirtBoardConfig = { memoryBytes: 64 * 1024 * 1024, nographic: false, nodefaults: true, drives: [], devices: [], accel: [], bios: 'none', kernel: null, append: null, initrd: null, serial: [], smp: null, icount: null };

function start(config: Partial<VirtBoardConfig>) {
  const loop = new MainLoop();
  return startVirtBoard(loop, new BlockGraph(loop), { ...base, ...config }, () => {});
}

describe('startVirtBoard (the command line’s -M virt)', () => {
  it('maps -drive and -device virtio-blk-device to virtio-mmio slots in command-line order', () => {
    const a = join(dir, 'a.raw');
    const b = join(dir, 'b.raw');
    writeFileSync(a, new Uint8Array(4096));
    writeFileSync(b, new Uint8Array(8192));
    const session = start({
      drives: [{ file: a, format: 'raw', if: 'none', id: 'd0' }, { file: b, format: 'raw', if: 'none', id: 'd1', readonly: 'on' }],
      devices: [{ driver: 'virtio-blk-device', drive: 'd1' }, { driver: 'virtio-blk-device', drive: 'd0', serial: 'S0' }],
    });
    const m = session.machine;
    // First -device on the top slot (0x10008000), second below it.
    expect(m.as.load(0x1000_8000 + 8, 4).value).toBe(2);
    expect(m.as.load64(0x1000_8000 + 0x100).value).toBe(16n);
    expect(m.as.load64(0x1000_7000 + 0x100).value).toBe(8n);
    expect(m.as.load(0x1000_8000 + 0x10, 4).value & (1 << 5)).toBe(1 << 5); // read-only drive: VIRTIO_BLK_F_RO
    expect(m.as.load(0x1000_6000 + 8, 4).value).toBe(0);
    session.close();
  });

  it.skipIf(!haveQemuImg)('opens qcow2 drives (needs qemu-img)', () => {
    const q = join(dir, 'q.qcow2');
    expect(spawnSync('qemu-img', ['create', '-f', 'qcow2', q, '1M']).status).toBe(0);
    const session = start({ drives: [{ file: q, format: 'qcow2', if: 'virtio', id: 'q0' }] });
    expect(session.machine.as.load64(0x1000_8000 + 0x100).value).toBe(2048n);
  });

  it('reports bad options as VirtBoardError with QEMU-like messages', () => {
    expect(() => start({ devices: [{ driver: 'virtio-blk-device', drive: 'nope' }] })).toThrow(/can't find value 'nope'/);
    expect(() => start({ devices: [{ driver: 'e1000' }] })).toThrow(VirtBoardError);
    expect(() => start({ drives: [{ id: 'x' }] })).toThrow(/a file is required/);
    expect(() => start({ drives: [{ file: join(dir, 'missing.raw'), id: 'm' }] })).toThrow(VirtBoardError);
    expect(() => start({ drives: [{ file: join(dir, 'a.raw'), id: 'i', if: 'ide' }] })).toThrow(/if=ide/);
    expect(() => start({ kernel: join(dir, 'missing.bin') })).toThrow(VirtBoardError);
    expect(() => start({ serial: ['bogus:1'] })).toThrow(VirtBoardError);
    expect(() => start({ memoryBytes: 1 })).toThrow(VirtBoardError);
  });
});
