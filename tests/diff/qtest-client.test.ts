// The TypeScript qtest client against the reference: qemu-system-riscv64 spawned as libqtest does
// (it connects to our unix socket), with a QMP side channel; and against tsqemu the same way once
// its command line serves -qtest (skipped with the reason until then).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { QtestSpawnError } from '../../src/engine/host/qtest-process.js';
import { QtestClient } from '../../src/qtest/client.js';

let qemu = false;
try {
  execFileSync('qemu-system-riscv64', ['--version'], { stdio: 'ignore' });
  qemu = true;
} catch {
  qemu = false;
}
const tsqemuBin = join(import.meta.dirname, '..', '..', 'dist', 'tools', 'tsqemu.js');

async function exercise(qt: QtestClient): Promise<void> {
  expect(await qt.endianness()).toBe('little');
  expect(await qt.readl(0x1000_1000)).toBe(0x74726976);
  await qt.writeq(0x8000_0000, 0xfeedface_cafef00dn);
  expect(await qt.readq(0x8000_0000)).toBe(0xfeedface_cafef00dn);
  const data = new Uint8Array(4096).map((_, i) => i & 0xff);
  await qt.memwrite(0x8000_1000, data);
  expect(Buffer.compare(await qt.bufread(0x8000_1000, 4096), data)).toBe(0);
  await qt.memset(0x8000_1000, 16, 0x5a);
  expect([...(await qt.memread(0x8000_1000, 4))]).toEqual([0x5a, 0x5a, 0x5a, 0x5a]);
  // the UART's THRE interrupt at the PLIC, seen through QEMU's QOM path
  await qt.irqInterceptOut('/machine/unattached/device[2]');
  await qt.writel(0xc00_0028, 1);
  await qt.writel(0xc00_2000, 1 << 10);
  await qt.writeb(0x1000_0001, 0x02);
  expect(qt.getIrq(1)).toBe(true);
  expect(await qt.readl(0xc20_0004)).toBe(10);
  expect(qt.getIrq(1)).toBe(false);
  await expect(qt.command('nonsense')).rejects.toThrow("answered 'FAIL Unknown command 'nonsense''");
}

describe('qtest client (spawned emulator, unix socket, QMP side channel)', () => {
  it.skipIf(!qemu)(`drives qemu-system-riscv64 ${qemu ? '' : '(skipped: not installed)'}`, async () => {
    const qt = await QtestClient.spawn(['-M', 'virt', '-bios', 'none', '-display', 'none', '-nodefaults'], { binary: 'qemu-system-riscv64', qmp: true });
    try {
      await exercise(qt);
      expect(await qt.qmp('query-status')).toMatchObject({ status: 'running' });
      await qt.qmp('stop');
      expect(await qt.qmp('query-status')).toMatchObject({ status: 'paused' });
    } finally {
      await qt.quit();
    }
  });

  it('drives tsqemu -M virt -accel qtest', async (ctx) => {
    if (!existsSync(tsqemuBin)) ctx.skip(true, 'tsqemu is not built (npm run build)');
    let qt: QtestClient;
    try {
      qt = await QtestClient.spawn(['-M', 'virt', '-accel', 'qtest', '-display', 'none', '-nodefaults'], { qmp: true, connectTimeoutMs: 3_000 });
    } catch (e) {
      if (e instanceof QtestSpawnError) return ctx.skip(true, `tsqemu does not serve -qtest yet: ${e.message.split('\n')[0]}`);
      throw e;
    }
    try {
      await exercise(qt);
      expect(await qt.clockStep(1_000)).toBe(1_000);
      expect(await qt.readq(0x200_bff8)).toBe(10n);
      expect(await qt.qmp('query-status')).toMatchObject({ status: 'running' });
    } finally {
      await qt.quit();
    }
  });
});
