import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BlockBackend, devicePerms } from '../../src/block/block-backend.js';
import { BlockGraph } from '../../src/block/graph.js';
import { findDriver } from '../../src/block/registry.js';
// The qcow2 driver registers itself when its module loads.
import '../../src/block/qcow2/driver.js';
import { MainLoop } from '../../src/engine/main-loop.js';
import { buildVirtMachine } from '../../src/engine/hw/virt/machine.js';
import { riscvCpuFactory } from '../../src/engine/hw/virt/riscv-harts.js';
import { ConsoleCapture, ConsoleScript } from '../../src/engine/hw/virt/console-script.js';

const FW = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';
const UBOOT = '/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin';
const haveFirmware = existsSync(FW) && existsSync(UBOOT);
const haveQemuImg = spawnSync('qemu-img', ['--version'], { stdio: 'ignore' }).status === 0;

const dir = mkdtempSync(join(tmpdir(), 'boot-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const LOAD_ADDR = 0x84000000;
const DISK_BYTES = 1024 * 1024;

function makeDisk(): { raw: string; bytes: Uint8Array } {
  const bytes = new Uint8Array(DISK_BYTES);
  const label = new TextEncoder().encode('tsqemu boot disk: hello from sector 0!');
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + 7) & 0xff;
  bytes.set(label, 0);
  const raw = join(dir, 'disk.raw');
  writeFileSync(raw, bytes);
  return { raw, bytes };
}

/** U-Boot's `md.b ADDR 0x30` lines for these bytes. */
function mdLines(addr: number, bytes: Uint8Array): string[] {
  const lines: string[] = [];
  for (let off = 0; off < bytes.length; off += 16) {
    const row = bytes.subarray(off, off + 16);
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, '0')).join(' ');
    const ascii = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${(addr + off).toString(16).padStart(8, "0")}: ${hex}  ${ascii}`);
  }
  return lines;
}

interface BootRun {
  readonly output: string;
  readonly exitCode: number | null;
  readonly digest: string;
  readonly failedStep: number;
  readonly icount: number;
  readonly deviceDigest: string;
}

/**
 * `-icount shift=3` (8 ns per instruction): U-Boot's `poweroff` waits 100 ms of guest time in a
 * busy loop before it writes the syscon, which at shift 0 is 100M interpreted instructions.
 */
const ICOUNT_SHIFT = 3;
/** Virtual time per host slice: the test yields to vitest's RPC between slices. */
const SLICE_NS = 20_000_000;

async function boot(image: string, format: 'raw' | 'qcow2'): Promise<BootRun> {
  const loop = new MainLoop();
  const graph = new BlockGraph(loop);
  const node = graph.blockdevAdd({ driver: format, 'node-name': 'disk0', file: { driver: 'file', filename: image } });
  const backend = BlockBackend.withNode(graph, node, { name: 'd0', ...devicePerms(false) });
  const capture = new ConsoleCapture();
  const machine = buildVirtMachine(loop, { ramSizeBytes: 256 * 1024 * 1024, bios: FW, kernel: UBOOT, drives: [{ backend }], serialOutput: capture, cpu: riscvCpuFactory({ icountShift: ICOUNT_SHIFT }) });
  const script = new ConsoleScript(loop, capture, 'serial0', [
    { expect: 'Hit any key to stop autoboot', send: ' ' },
    { expect: '=> ', send: 'virtio scan\r' },
    { expect: '=> ', send: 'virtio info\r' },
    { expect: '=> ', send: `virtio read ${LOAD_ADDR.toString(16)} 0 8\r` },
    { expect: '=> ', send: `md.b ${LOAD_ADDR.toString(16)} 0x30\r` },
    { expect: '=> ', send: 'poweroff\r' },
  ]);
  // Bounded in virtual time: the whole conversation takes about a second of guest time.
  const limitNs = 10e9;
  const off = () => machine.shutdown !== null;
  while (!off() && loop.nowNs < limitNs) {
    if (script.done) loop.runUntil(off, { untilNs: loop.nowNs + SLICE_NS });
    else script.advance(loop.nowNs + SLICE_NS, off);
    await new Promise((resolve) => setImmediate(resolve));
  }
  return {
    output: capture.text,
    exitCode: machine.shutdown?.kind === 'poweroff' ? machine.shutdown.exitCode : null,
    digest: loop.trace.digestHex(),
    failedStep: script.done ? -1 : script.currentStep,
    icount: loop.cpu?.icount ?? 0,
    deviceDigest: machine.deviceStateDigest(),
  };
}

function checkSession(run: BootRun, disk: Uint8Array): void {
  expect(run.failedStep, run.output.slice(-2000)).toBe(-1);
  expect(run.output).toContain('OpenSBI');
  expect(run.output).toContain('U-Boot 2023.01');
  expect(run.output).toMatch(/Device 0: QEMU VirtIO Block Device[\s\S]*Capacity: 1\.0 MB = 0\.0 GB \(2048 x 512\)/);
  expect(run.output).toContain('virtio read: device 0 block # 0, count 8 ... 8 blocks read: OK');
  for (const line of mdLines(LOAD_ADDR, disk.subarray(0, 0x30))) expect(run.output).toContain(line);
  expect(run.exitCode).toBe(0);
}

describe.skipIf(!haveFirmware)('OpenSBI + U-Boot on virt (needs Debian opensbi and u-boot-qemu)', () => {
  const disk = makeDisk();
  let first: BootRun | null = null;

  it('boots to the prompt, reads the raw disk with virtio and powers off with status 0', async () => {
    first = await boot(disk.raw, 'raw');
    checkSession(first, disk.bytes);
  }, 300_000);

  it('gives the same bytes and trace digest on a second run', async () => {
    const again = await boot(disk.raw, 'raw');
    expect(first).not.toBeNull();
    expect(again.output).toBe(first!.output);
    expect(again.digest).toBe(first!.digest);
    expect(again.icount).toBe(first!.icount);
    expect(again.deviceDigest).toBe(first!.deviceDigest);
  }, 300_000);

  it.skipIf(!haveQemuImg || findDriver('qcow2') === undefined)('does the same on a qcow2 disk (needs qemu-img and the qcow2 driver)', async () => {
    const qcow2 = join(dir, 'disk.qcow2');
    expect(spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', disk.raw, qcow2]).status).toBe(0);
    checkSession(await boot(qcow2, 'qcow2'), disk.bytes);
  }, 300_000);
});
