// qtest figures: commands per second (in-process, over a unix socket, and real QEMU's over the same
// client when it is installed) and the wall time of the virt device script suite.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostLoop } from '../../src/engine/host/host-loop.js';
import { repoRoot } from '../../src/engine/host/qtest-process.js';
import { buildVirtMachine } from '../../src/engine/hw/virt/machine.js';
import { MainLoop } from '../../src/engine/main-loop.js';
import { QtestClient } from '../../src/qtest/client.js';
import { parseScript, runScript } from '../../src/qtest/script.js';
import { startVirtQtest } from '../../src/qtest/setup.js';
import { QEMU_VIRT_ARGS, openQtestTarget, qemuDriveArgs } from '../../src/qtest/targets.js';
import { inProcessVirt } from '../../src/qtest/virt.js';
import type { BenchCase, BenchResult } from './types.js';

const MEASURE_MS = 500;

/** Round trips of `readl` on RAM per second, one command in flight (as libqtest works). */
async function commandsPerSecond(client: QtestClient): Promise<number> {
  for (let i = 0; i < 200; i++) await client.raw('readl 0x80000000'); // warm up
  let count = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < MEASURE_MS) {
    for (let i = 0; i < 100; i++) await client.raw('readl 0x80000000');
    count += 100;
    elapsed = performance.now() - start;
  }
  return (count / elapsed) * 1000;
}

function haveQemu(): boolean {
  try {
    execFileSync('qemu-system-riscv64', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function qemuRate(): Promise<number | undefined> {
  if (!haveQemu()) return undefined;
  const qemu = await openQtestTarget({ kind: 'qemu', args: [...QEMU_VIRT_ARGS] });
  try {
    return await commandsPerSecond(qemu);
  } finally {
    await qemu.quit();
  }
}

async function inProcess(): Promise<BenchResult[]> {
  const { client } = inProcessVirt(new MainLoop());
  const value = await commandsPerSecond(client);
  await client.quit();
  return [{ name: 'qtest readl round trips, in-process', value, unit: 'cmd/s', note: 'through the input gate, no socket' }];
}

async function unixSocket(): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'qtest-bench-'));
  const path = join(dir, 'qtest.sock');
  const loop = new MainLoop();
  const session = startVirtQtest(buildVirtMachine(loop), { chardev: `unix:${path},server=on,wait=off`, accelQtest: true });
  const host = new HostLoop(loop);
  const running = host.run();
  try {
    const client = await QtestClient.connect(`unix:${path}`);
    const value = await commandsPerSecond(client);
    await client.quit();
    const qemu = await qemuRate();
    return [
      {
        name: 'qtest readl round trips, unix socket',
        value,
        unit: 'cmd/s',
        ...(qemu !== undefined ? { qemu, ratio: value / qemu } : {}),
        note: 'server and client in one Node process; QEMU: qemu-system-riscv64 -M virt over the same client',
      },
    ];
  } finally {
    host.stop();
    await running;
    session.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function tsqemuChild(): Promise<BenchResult[]> {
  if (!existsSync(join(repoRoot(), 'dist', 'tools', 'tsqemu.js'))) return [];
  const client = await openQtestTarget({ kind: 'tsqemu', args: ['-M', 'virt', '-accel', 'qtest', '-display', 'none', '-nodefaults'] });
  let value: number;
  try {
    value = await commandsPerSecond(client);
  } finally {
    await client.quit();
  }
  const qemu = await qemuRate();
  return [
    {
      name: 'qtest readl round trips, tsqemu child (unix socket)',
      value,
      unit: 'cmd/s',
      ...(qemu !== undefined ? { qemu, ratio: value / qemu } : {}),
      note: 'libqtest setup: the emulator is a separate process connected to our socket',
    },
  ];
}

async function deviceSuite(): Promise<BenchResult[]> {
  const scriptsDir = join(repoRoot(), 'tests', 'qtest', 'scripts');
  if (!existsSync(scriptsDir)) return [];
  const files = readdirSync(scriptsDir).filter((f) => f.endsWith('.qtest')).sort();
  const dir = mkdtempSync(join(tmpdir(), 'qtest-bench-'));
  const drive = join(dir, 'drive0.raw');
  execFileSync('truncate', ['-s', '64K', drive]);
  const texts = files.map((f) => readFileSync(join(scriptsDir, f), 'latin1'));
  const needsDrive = (t: string): string[] => (/^# requires: drive$/m.test(t) ? [drive] : []);
  let commands = 0;
  const start = performance.now();
  for (const text of texts) {
    const steps = parseScript(text);
    const client = await openQtestTarget({ kind: 'in-process', drives: needsDrive(text) });
    await runScript(client, steps);
    await client.quit();
    commands += steps.length;
  }
  const ours = performance.now() - start;
  let qemuMs: number | undefined;
  if (haveQemu()) {
    const qStart = performance.now();
    for (const text of texts) {
      if (/^# requires: accel-qtest$/m.test(text)) continue;
      const client = await openQtestTarget({ kind: 'qemu', args: [...QEMU_VIRT_ARGS, ...qemuDriveArgs(needsDrive(text))] });
      await runScript(client, parseScript(text));
      await client.quit();
    }
    qemuMs = performance.now() - qStart;
  }
  rmSync(dir, { recursive: true, force: true });
  return [
    {
      name: `qtest virt script suite (${files.length} scripts, ${commands} cmds)`,
      value: ours,
      unit: 'ms',
      ...(qemuMs !== undefined ? { qemu: qemuMs, ratio: qemuMs / ours } : {}),
      note: 'in-process machines; QEMU: the time-independent scripts, one qemu-system-riscv64 each',
    },
  ];
}

export const benchCases: BenchCase[] = [
  { name: 'qtest in-process', group: 'qtest', run: inProcess },
  { name: 'qtest unix socket', group: 'qtest', run: unixSocket },
  { name: 'qtest tsqemu child', group: 'qtest', run: tsqemuChild },
  { name: 'qtest device suite', group: 'qtest', run: deviceSuite },
];
