import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { FdtBuilder, FDT_MAGIC } from '../../../src/engine/hw/fdt.js';
import { buildResetVector } from '../../../src/engine/hw/virt/boot-rom.js';
import { buildVirtMachine, MachineConfigError } from '../../../src/engine/hw/virt/machine.js';

const have = (cmd: string, args: string[]) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
const haveDtc = have('dtc', ['--version']);
const haveQemu = have('qemu-system-riscv64', ['--version']);

function dts(blob: Uint8Array): string {
  const dir = mkdtempSync(join(tmpdir(), 'fdt-'));
  const file = join(dir, 'x.dtb');
  writeFileSync(file, blob);
  return execFileSync('dtc', ['-I', 'dtb', '-O', 'dts', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Parses dtc's output into node path -> sorted "prop = value" lines (order-insensitive comparison). */
function nodes(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const stack: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('/dts-v1/')) continue;
    const open = /^([^\s=]+) \{$/.exec(line);
    if (open) {
      stack.push(open[1] === '/' ? '' : open[1]!);
      out.set(stack.join('/') || '/', []);
      continue;
    }
    if (line === '};') {
      stack.pop();
      continue;
    }
    out.get(stack.join('/') || '/')!.push(line);
  }
  for (const v of out.values()) v.sort();
  return out;
}

describe('FDT writer', () => {
  it('writes a v17 blob that dtc reads back', () => {
    const fdt = new FdtBuilder();
    fdt.root.cells('#address-cells', 2).set('compatible', ['a', 'b']).set('flag', null);
    const child = fdt.root.node('child@10');
    child.set('bytes', Uint8Array.of(1, 2, 3)).set('u64', { u64: [0x1_0000_0002] });
    fdt.reservations.push({ address: 0x8000_0000, size: 0x1000 });
    const blob = fdt.toBlob();
    const v = new DataView(blob.buffer);
    expect(v.getUint32(0)).toBe(FDT_MAGIC);
    expect(v.getUint32(4)).toBe(blob.length);
    expect(v.getUint32(20)).toBe(17);
    if (!haveDtc) return;
    const text = dts(blob);
    expect(text).toContain('/memreserve/\t0x0000000080000000 0x0000000000001000;');
    expect(text).toContain('compatible = "a\\0b";');
    expect(text).toContain('flag;');
    expect(text).toContain('bytes = [01 02 03];');
    expect(text).toContain('u64 = <0x01 0x02>;');
  });
});

describe('boot ROM', () => {
  it('encodes the same reset vector instructions as QEMU', () => {
    const rom = buildResetVector({ startAddr: 0x8000_0000, fdtAddr: 0x8fe0_0000, nextAddr: 0x8020_0000 });
    const v = new DataView(rom.buffer);
    // QEMU's riscv_setup_rom_reset_vec, RV64.
    const qemu = [0x00000297, 0x02828613, 0xf1402573, 0x0202b583, 0x0182b283, 0x00028067];
    expect(qemu.map((_, i) => v.getUint32(4 * i, true))).toEqual(qemu);
    expect(v.getBigUint64(24, true)).toBe(0x8000_0000n);
    expect(v.getBigUint64(32, true)).toBe(0x8fe0_0000n);
    expect(v.getBigUint64(40, true)).toBe(0x4942534fn); // "OSBI"
    expect(v.getBigUint64(48, true)).toBe(2n);
    expect(v.getBigUint64(56, true)).toBe(0x8020_0000n);
    expect(v.getBigUint64(64, true)).toBe(1n); // next mode S
  });
});

describe('virt machine', () => {
  it('places images and the DTB as QEMU does and rejects bad configs', () => {
    const loop = new MainLoop();
    const fw = new Uint8Array(115328).fill(0x13);
    const m = buildVirtMachine(loop, { ramSizeBytes: 256 * 1024 * 1024, bios: fw, kernel: Uint8Array.of(1, 2, 3, 4), append: 'console=ttyS0' });
    expect(m.kernelAddr).toBe(0x8020_0000);
    expect(m.fdtAddr).toBe(0x8fe0_0000);
    expect(m.as.load(0x8020_0000, 4).value).toBe(0x04030201);
    expect(m.as.load(0x8fe0_0000, 4).value).toBe(0xedfe0dd0); // big-endian magic read little-endian
    expect(m.as.load(0x1000, 4).value).toBe(0x00000297);
    // Empty virtio slots: magic, version 1, device id 0.
    for (let i = 0; i < 8; i++) {
      const base = 0x1000_1000 + 0x1000 * i;
      expect([m.as.load(base, 4).value, m.as.load(base + 4, 4).value, m.as.load(base + 8, 4).value]).toEqual([0x74726976, 1, 0]);
    }
    expect(() => buildVirtMachine(new MainLoop(), { ramSizeBytes: 1000 })).toThrow(MachineConfigError);
    expect(() => buildVirtMachine(new MainLoop(), { bios: '/nonexistent/fw.bin' })).toThrow(MachineConfigError);
  });

  it('loads an initrd above the kernel and describes it in /chosen', () => {
    const initrd = new Uint8Array(4096).fill(0x77);
    const m = buildVirtMachine(new MainLoop(), { ramSizeBytes: 256 * 1024 * 1024, bios: new Uint8Array(1000), kernel: new Uint8Array(1000), initrd, append: 'root=/dev/ram' });
    const start = 0x8020_0000 + 128 * 1024 * 1024;
    expect(m.as.load(start, 4).value).toBe(0x77777777);
    if (!haveDtc) return;
    const text = dts(m.dtb);
    expect(text).toContain(`linux,initrd-start = <0x00 ${'0x' + start.toString(16)}>;`);
    expect(text).toContain(`linux,initrd-end = <0x00 ${'0x' + (start + 4096).toString(16)}>;`);
    expect(text).toContain('bootargs = "root=/dev/ram";');
  });

  it('digests device state (registers, queues, timers) for replay checkpoints', () => {
    const m = buildVirtMachine(new MainLoop());
    const before = m.deviceStateDigest();
    expect(buildVirtMachine(new MainLoop()).deviceStateDigest()).toBe(before);
    m.as.store(0x1000_0007, 1, 0x42); // UART scratch register
    const afterUart = m.deviceStateDigest();
    expect(afterUart).not.toBe(before);
    m.as.store(0x0c00_0004, 4, 1); // PLIC priority
    expect(m.deviceStateDigest()).not.toBe(afterUart);
  });

  it('is deterministic: same seed, same DTB (rng-seed included)', () => {
    const a = buildVirtMachine(new MainLoop({ seed: 7 })).dtb;
    const b = buildVirtMachine(new MainLoop({ seed: 7 })).dtb;
    const c = buildVirtMachine(new MainLoop({ seed: 8 })).dtb;
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(Buffer.from(a).equals(Buffer.from(c))).toBe(false);
  });

  it.skipIf(!haveDtc || !haveQemu)('matches QEMU 7.2 dumpdtb node for node where the devices overlap (needs dtc and qemu-system-riscv64)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'virt-'));
    const qemuDtb = join(dir, 'qemu.dtb');
    const kernel = join(dir, 'kernel.bin');
    writeFileSync(kernel, new Uint8Array(64));
    spawnSync('qemu-system-riscv64', ['-M', `virt,dumpdtb=${qemuDtb}`, '-m', '256M', '-smp', '2', '-nographic', '-bios', 'none', '-kernel', kernel, '-append', 'console=ttyS0 root=/dev/vda'], { stdio: 'ignore' });
    const theirs = nodes(dts(new Uint8Array(readFileSync(qemuDtb))));
    const m = buildVirtMachine(new MainLoop(), { ramSizeBytes: 256 * 1024 * 1024, smp: 2, kernel: new Uint8Array(64), append: 'console=ttyS0 root=/dev/vda' });
    const ours = nodes(dts(m.dtb));
    // Nodes QEMU has that we do not: devices tsqemu does not model, so it does not describe them.
    const absent = [...theirs.keys()].filter((k) => !ours.has(k));
    expect(absent.sort()).toEqual(['/flash@20000000', '/fw-cfg@10100000', '/platform-bus@4000000', '/pmu', '/soc/pci@30000000'].sort());
    expect([...ours.keys()].filter((k) => !theirs.has(k))).toEqual([]);
    // Properties that legitimately differ: the CPU model's ISA and MMU, phandle numbering, the random seed.
    const normalise = (props: string[]) => props.filter((p) => !/^(riscv,isa|mmu-type|phandle|rng-seed|interrupt-parent|regmap|cpu|interrupts-extended) =/.test(p));
    for (const [path, props] of ours) {
      expect(normalise(props), path).toEqual(normalise(theirs.get(path)!));
    }
    // Phandle-carrying properties have the same shape.
    expect(ours.get('/soc/plic@c000000')!.find((p) => p.startsWith('interrupts-extended'))!.split(' ').length).toBe(theirs.get('/soc/plic@c000000')!.find((p) => p.startsWith('interrupts-extended'))!.split(' ').length);
  });
});
