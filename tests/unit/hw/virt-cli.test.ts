import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { startVirtFromCli } from '../../../src/engine/hw/virt/virt-cli.js';
import { MachineConfigError } from '../../../src/engine/hw/virt/machine.js';
import { DEFAULT_HOST_BASE_SECONDS } from '../../../src/engine/clock.js';

const dir = mkdtempSync(join(tmpdir(), 'virt-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const T0 = 5;
const T1 = 6;
const lui = (rd: number, imm20: number) => ((imm20 << 12) | (rd << 7) | 0x37) >>> 0;
const addi = (rd: number, rs1: number, imm: number) => (((imm & 0xfff) << 20) | (rs1 << 15) | (rd << 7) | 0x13) >>> 0;
const store = (f3: number, rs2: number, rs1: number, imm: number) => ((((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 0x1f) << 7) | 0x23) >>> 0;

/** A bare-metal "kernel": prints "OK\n" on UART0, then writes FAIL|code<<16 to the test finisher. */
function kernel(exitCode: number): Uint8Array {
  const insns = [
    lui(T0, 0x10000),
    addi(T1, 0, 0x4f), store(0, T1, T0, 0),
    addi(T1, 0, 0x4b), store(0, T1, T0, 0),
    addi(T1, 0, 0x0a), store(0, T1, T0, 0),
    lui(T0, 0x100),
    lui(T1, exitCode === 0 ? 0x5 : (exitCode << 4) | 3), addi(T1, T1, exitCode === 0 ? 0x555 : 0x333), store(2, T1, T0, 0),
    0x0000006f, // j .
  ];
  const out = new Uint8Array(insns.length * 4);
  const v = new DataView(out.buffer);
  insns.forEach((insn, i) => v.setUint32(4 * i, insn, true));
  return out;
}

const bne = (rs1: number, rs2: number, off: number) =>
  ((((off >> 12) & 1) << 31) | (((off >> 5) & 0x3f) << 25) | (rs2 << 20) | (rs1 << 15) | (1 << 12) | (((off >> 1) & 0xf) << 8) | (((off >> 11) & 1) << 7) | 0x63) >>> 0;
const A0 = 10;
const T2 = 7;

/** Every hart prints its id; hart 0 then waits a while and powers off, the others spin. */
function smpKernel(): Uint8Array {
  const insns = [
    0xf1402573, // csrr a0, mhartid
    addi(T1, A0, 0x30),
    lui(T0, 0x10000),
    store(0, T1, T0, 0),
    bne(A0, 0, 32), // harts other than 0: to the spin at the end
    addi(T2, 0, 2000),
    addi(T2, T2, -1),
    bne(T2, 0, -4),
    lui(T0, 0x100),
    lui(T1, 0x5),
    addi(T1, T1, 0x555),
    store(2, T1, T0, 0),
    0x0000006f, // j .
  ];
  const out = new Uint8Array(insns.length * 4);
  const v = new DataView(out.buffer);
  insns.forEach((insn, i) => v.setUint32(4 * i, insn, true));
  return out;
}

/** Prints R; on the first run sets a RAM marker and asks the test device for a reset; on the second powers off. */
function resetKernel(): Uint8Array {
  const lw = (rd: number, rs1: number) => ((rs1 << 15) | (2 << 12) | (rd << 7) | 0x03) >>> 0;
  const auipc = (rd: number, imm20: number) => ((imm20 << 12) | (rd << 7) | 0x17) >>> 0;
  const insns = [
    lui(T0, 0x10000), addi(T1, 0, 0x52), store(0, T1, T0, 0),
    auipc(T0, 0x100), lw(T1, T0), bne(T1, 0, 32),
    addi(T1, 0, 1), store(2, T1, T0, 0),
    lui(T0, 0x100), lui(T1, 0x7), addi(T1, T1, 0x777), store(2, T1, T0, 0),
    0x0000006f,
    lui(T0, 0x100), lui(T1, 0x5), addi(T1, T1, 0x555), store(2, T1, T0, 0),
    0x0000006f,
  ];
  const out = new Uint8Array(insns.length * 4);
  const v = new DataView(out.buffer);
  insns.forEach((insn, i) => v.setUint32(4 * i, insn, true));
  return out;
}

describe('virt from command-line options', () => {
  it('a guest reset request (0x7777) resets the board and the harts start over', () => {
    const kpath = join(dir, 'reset.bin');
    const serial = join(dir, 'reset.txt');
    writeFileSync(kpath, resetKernel());
    const loop = new MainLoop();
    const session = startVirtFromCli(loop, { memoryBytes: 64 * 1024 * 1024, bios: 'none', kernel: kpath, append: null, initrd: null, smp: null, icount: null, nographic: false, nodefaults: false, serial: [`file:${serial}`], drives: [], onQuit: () => {} });
    const resets: string[] = [];
    loop.trace.onEvent((e) => {
      if (e.name === 'machine.reset') resets.push(String(e.fields['reason']));
    });
    loop.runUntil(() => session.exitCode !== null, { untilNs: 1e8 });
    session.close();
    expect(resets).toEqual(['guest']);
    expect(session.exitCode).toBe(0);
    expect(readFileSync(serial, 'utf8')).toBe('RR');
  });

  it('-smp 3 runs every hart round-robin, deterministically', () => {
    const kpath = join(dir, 'smp.bin');
    writeFileSync(kpath, smpKernel());
    const run = () => {
      const serial = join(dir, 'smp.txt');
      const loop = new MainLoop();
      const session = startVirtFromCli(loop, { memoryBytes: 64 * 1024 * 1024, bios: 'none', kernel: kpath, append: null, initrd: null, smp: '3', icount: null, nographic: false, nodefaults: false, serial: [`file:${serial}`], drives: [], onQuit: () => {} });
      loop.runUntil(() => session.exitCode !== null, { untilNs: 1e8 });
      session.close();
      return { code: session.exitCode, out: readFileSync(serial, 'utf8'), digest: loop.trace.digestHex(), icount: loop.cpu!.icount };
    };
    const a = run();
    expect(a.code).toBe(0);
    expect([...a.out].sort().join('')).toBe('012');
    expect(a.icount).toBeGreaterThan(2 * 2000);
    expect(run()).toEqual(a);
  });

  it.each([0, 3])('-bios none -kernel runs the kernel from the boot ROM and exits with its code %i', (code) => {
    const kpath = join(dir, `k${code}.bin`);
    const serial = join(dir, `serial${code}.txt`);
    writeFileSync(kpath, kernel(code));
    const loop = new MainLoop();
    const session = startVirtFromCli(loop, { memoryBytes: 64 * 1024 * 1024, bios: 'none', kernel: kpath, append: null, initrd: null, smp: null, icount: null, nographic: false, nodefaults: false, serial: [`file:${serial}`], drives: [], onQuit: () => {} });
    expect(session.machine.startAddr).toBe(0x8000_0000);
    loop.runUntil(() => session.exitCode !== null, { untilNs: 1e8 });
    session.close();
    expect(session.exitCode).toBe(code);
    expect(readFileSync(serial, 'utf8')).toBe('OK\n');
  });

  it('-rtc base= moves the guest RTC only; clock=host reads the host through the input gate', () => {
    const base = { memoryBytes: 64 * 1024 * 1024, bios: 'none', kernel: null, append: null, initrd: null, smp: null, icount: null, nographic: false, nodefaults: true, serial: [], drives: [], onQuit: () => {} };
    const rtcNs = (m: { as: { load(a: number, s: 4): { value: number } } }) => {
      const lo = BigInt(m.as.load(0x10_1000, 4).value);
      return (BigInt(m.as.load(0x10_1004, 4).value) << 32n) | lo;
    };
    const loop = new MainLoop();
    const dated = startVirtFromCli(loop, { ...base, rtc: 'base=2006-06-17T16:01:21' });
    expect(rtcNs(dated.machine)).toBe(1150560081n * 1_000_000_000n);
    expect(loop.clocks.hostTime().seconds).toBe(DEFAULT_HOST_BASE_SECONDS); // QMP's clock is untouched
    const hostLoop = new MainLoop();
    const reads: string[] = [];
    hostLoop.gate.observe((i) => reads.push(i.kind));
    const host = startVirtFromCli(hostLoop, { ...base, rtc: 'base=utc,clock=host' });
    const seconds = Number(rtcNs(host.machine) / 1_000_000_000n);
    expect(reads).toContain('host-clock');
    expect(seconds).toBeGreaterThan(1_700_000_000);
    expect(() => startVirtFromCli(new MainLoop(), { ...base, rtc: 'base=tomorrow' })).toThrow(MachineConfigError);
  });

  it('refuses what it cannot run', () => {
    const base = { memoryBytes: 64 * 1024 * 1024, bios: 'none', kernel: null, append: null, initrd: null, icount: null, nographic: false, nodefaults: true, serial: [], drives: [], onQuit: () => {} };
    expect(() => startVirtFromCli(new MainLoop(), { ...base, smp: '9' })).toThrow(MachineConfigError);
    expect(() => startVirtFromCli(new MainLoop(), { ...base, smp: null, memoryBytes: 3 })).toThrow(MachineConfigError);
  });
});

const FW_ELF = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.elf';

describe.skipIf(!existsSync(FW_ELF))('ELF images (needs Debian opensbi)', () => {
  it('loads -bios as an ELF at its own addresses and starts at its entry (OpenSBI fw_dynamic.elf prints its banner)', () => {
    const serial = join(dir, 'elf.txt');
    const kpath = join(dir, 'elf-kernel.bin');
    writeFileSync(kpath, kernel(0));
    const loop = new MainLoop();
    const session = startVirtFromCli(loop, { memoryBytes: 64 * 1024 * 1024, bios: FW_ELF, kernel: kpath, append: null, initrd: null, smp: null, icount: null, nographic: false, nodefaults: false, serial: [`file:${serial}`], drives: [], onQuit: () => {} });
    expect(session.machine.startAddr).toBe(0x8000_0000);
    expect(session.machine.kernelAddr).toBe(0x8020_0000);
    // fw_dynamic takes the kernel address from fw_dynamic_info (a2), boots it in S-mode, and the kernel powers off.
    loop.runUntil(() => session.exitCode !== null, { untilNs: 1e9 });
    session.close();
    const out = readFileSync(serial, 'utf8');
    expect(out).toContain('OpenSBI v1.1');
    expect(out).toContain('Domain0 Next Address      : 0x0000000080200000');
    expect(out.endsWith('OK\n')).toBe(true);
    expect(session.exitCode).toBe(0);
  });
});
