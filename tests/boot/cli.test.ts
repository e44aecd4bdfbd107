import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const FW = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';
const UBOOT = '/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin';
const BIN = process.env['TSQEMU_BIN'] ?? join(import.meta.dirname, '../../dist/tools/tsqemu.js');
const haveFirmware = existsSync(FW) && existsSync(UBOOT);
const haveQemuImg = spawnSync('qemu-img', ['--version'], { stdio: 'ignore' }).status === 0;

const dir = mkdtempSync(join(tmpdir(), 'boot-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the tsqemu bin and answers U-Boot's prompts on stdin. */
function session(args: string[], commands: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let pressed = false;
    let sent = 0;
    let prompts = 0;
    const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
    const onData = (chunk: Buffer): void => {
      out += chunk.toString('latin1');
      if (!pressed && out.includes('Hit any key to stop autoboot')) {
        pressed = true;
        child.stdin.write(' ');
      }
      const seen = out.split('=> ').length - 1;
      if (seen > prompts && sent < commands.length) {
        prompts = seen;
        child.stdin.write(commands[sent++]!);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString('latin1')));
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe.skipIf(!haveFirmware || !haveQemuImg)('tsqemu CLI boots OpenSBI + U-Boot (needs opensbi, u-boot-qemu, qemu-img)', () => {
  it.each(['raw', 'qcow2'])('reads a %s disk at the U-Boot prompt and powers off with status 0', async (format) => {
    const bytes = new Uint8Array(1024 * 1024);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 17 + 3) & 0xff;
    bytes.set(new TextEncoder().encode('tsqemu cli disk'), 0);
    const raw = join(dir, `disk-${format}.raw`);
    writeFileSync(raw, bytes);
    let image = raw;
    if (format === 'qcow2') {
      image = join(dir, 'disk.qcow2');
      expect(spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, image]).status).toBe(0);
    }
    const { code, out } = await session(
      ['-M', 'virt', '-m', '256M', '-nographic', '-bios', FW, '-kernel', UBOOT, '-drive', `file=${image},format=${format},if=none,id=d0`, '-device', 'virtio-blk-device,drive=d0', '-icount', 'shift=3'],
      ['virtio scan\r', 'virtio info\r', 'virtio read 84000000 0 8\r', 'md.b 84000000 0x10\r', 'poweroff\r'],
    );
    expect(out).toContain('Device 0: QEMU VirtIO Block Device');
    expect(out).toContain('8 blocks read: OK');
    expect(out).toContain('84000000: 74 73 71 65 6d 75 20 63 6c 69 20 64 69 73 6b 02  tsqemu cli disk.');
    expect(code).toBe(0);
  }, 300_000);
});
