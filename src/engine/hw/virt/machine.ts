import { readFileSync } from 'node:fs';
import { assert } from '../../assert.js';
import { Digest } from '../../digest.js';
import type { IrqPin } from '../../irq.js';
import type { CpuDriver, MainLoop } from '../../main-loop.js';
import { AddressSpace } from '../address-space.js';
import { type CharOutput, Ns16550a, type Ns16550aState } from '../char/ns16550a.js';
import { Clint, type ClintState } from '../intc/clint.js';
import { Plic, type PlicState } from '../intc/plic.js';
import { type ShutdownRequest, SifiveTest } from '../misc/sifive-test.js';
import { GoldfishRtc, type GoldfishRtcState } from '../rtc/goldfish-rtc.js';
import { VirtioBlk, type VirtioBlkBackend, type VirtioBlkState } from '../virtio/virtio-blk.js';
import { VirtioMmio, type VirtioMmioState } from '../virtio/virtio-mmio.js';
import { buildResetVector } from './boot-rom.js';
import { ElfError, isElf, parseElf } from '../loader/elf.js';
import { MiB, VIRTIO_COUNT, VIRTIO_IRQ, VIRT_DEFAULT_RAM_BYTES, VIRT_MEMMAP, VIRT_RTC_IRQ, VIRT_UART0_IRQ } from './memmap.js';
import { buildVirtFdt } from './virt-fdt.js';

declare module '../../trace.js' {
  interface TraceEventMap {
    'machine.shutdown': { kind: string; exitCode: number };
    'machine.reset': { reason: string };
  }
}

/** A user error in the machine configuration (bad -m, unreadable -bios file, ...). */
export class MachineConfigError extends Error {
  override readonly name = 'MachineConfigError';
}

/** Interrupt lines of a hart that the board drives. */
export type HartIrqLine = 'msip' | 'mtip' | 'meip' | 'seip';

/** The hart side the board needs (the RISC-V CPU model implements it). */
export interface BoardHart {
  readonly hartId: number;
  setIrqLine(line: HartIrqLine, level: boolean): void;
  /** Hart reset: pc = `pc`, everything else architectural reset state. */
  reset(pc: number): void;
}

/** What the board gives a CPU model when it creates hart `hartId`. */
export interface HartContext {
  readonly loop: MainLoop;
  readonly memory: AddressSpace;
  readonly hartId: number;
  /** The `time` CSR: the CLINT's mtime. */
  readonly readTime: () => bigint;
}

/** Creates the harts and the CpuDriver that runs them (the target layer provides it). */
export interface CpuFactory {
  /** ISA string for the device tree, e.g. `rv64imafdc_zicsr_zifencei`. */
  readonly isa: string;
  /** `riscv,sv39` etc., or null. */
  readonly mmuType: string | null;
  createHarts(contexts: readonly HartContext[]): {
    harts: BoardHart[];
    driver: CpuDriver | null;
    /** Makes the harts return to the main loop at the next instruction boundary. */
    stop?: () => void;
    /** Stops the harts for good (power off) until a reset. */
    halt?: () => void;
  };
}

/** An image: a host path or the bytes themselves. */
export type ImageSource = string | Uint8Array;

export interface VirtDriveConfig {
  readonly backend: VirtioBlkBackend;
  /** QOM-like id (`-device ...,id=`); default `virtio-blk<N>`. */
  readonly id?: string;
  readonly serial?: string;
}

export interface VirtMachineConfig {
  readonly ramSizeBytes?: number;
  /** Firmware at 0x80000000, or 'none' to jump straight to the kernel. */
  readonly bios?: ImageSource | 'none';
  readonly kernel?: ImageSource;
  readonly append?: string;
  readonly initrd?: ImageSource;
  readonly smp?: number;
  /** virtio-blk devices, in -device order (the first lands on the highest virtio-mmio slot, as in QEMU). */
  readonly drives?: readonly VirtDriveConfig[];
  /** Modern (version 2) virtio-mmio instead of QEMU's default legacy transport. */
  readonly virtioModern?: boolean;
  /** Where UART0's output goes. */
  readonly serialOutput?: CharOutput | null;
  /** Input-gate channel UART0 takes input from (default `serial0`). */
  readonly serialChannel?: string;
  readonly cpu?: CpuFactory;
  /** `-rtc base=`: the goldfish RTC's start, seconds since the epoch (default: the clocks' host base). */
  readonly rtcBaseSeconds?: number;
}

/**
 * Every device of the board and the machine's own state, for machine snapshots (RAM, harts and
 * the kernel are saved beside it). The sifive-test finisher and the boot ROM hold no state.
 */
export interface VirtBoardState {
  readonly uart: Ns16550aState;
  readonly clint: ClintState;
  readonly plic: PlicState;
  readonly rtc: GoldfishRtcState;
  /** One per virtio-mmio slot, in slot order. */
  readonly virtio: readonly VirtioMmioState[];
  /** One per drive, in -device order (`blk[i]`). */
  readonly blk: readonly VirtioBlkState[];
  readonly shutdown: ShutdownRequest | null;
}

/** A device as qtest sees it: a stable path and its IRQ lines. */
export interface BoardDevice {
  readonly path: string;
  readonly base: number;
  /** Lines into the device (gpio-in). */
  readonly irqIn: readonly IrqPin[];
  /** Lines out of the device (gpio-out). */
  readonly irqOut: readonly IrqPin[];
}

const FIRMWARE_BASE = VIRT_MEMMAP.dram.base;
const MAX_RAM_BYTES = 2 * 1024 * MiB;

function loadImage(source: ImageSource, what: string): Uint8Array {
  if (source instanceof Uint8Array) return source;
  try {
    return new Uint8Array(readFileSync(source));
  } catch (e) {
    throw new MachineConfigError(`could not load ${what} '${source}': ${(e as Error).message}`);
  }
}

/** The QEMU `virt` board: memory map, devices, device tree and boot ROM as QEMU 7.2 builds them. */
export class VirtMachine {
  readonly as: AddressSpace;
  readonly uart: Ns16550a;
  readonly clint: Clint;
  readonly plic: Plic;
  readonly rtc: GoldfishRtc;
  readonly test: SifiveTest;
  readonly virtio: VirtioMmio[] = [];
  readonly blk: VirtioBlk[] = [];
  readonly devices: BoardDevice[] = [];
  readonly ramSizeBytes: number;
  readonly numHarts: number;
  readonly harts: BoardHart[] = [];
  readonly dtb: Uint8Array;
  readonly fdtAddr: number;
  readonly kernelAddr: number;
  readonly startAddr: number;
  /** Set when the guest asked to power off; the run should end with its exit code. */
  shutdown: ShutdownRequest | null = null;
  private readonly images: { addr: number; bytes: Uint8Array }[] = [];
  private readonly shutdownListeners: ((req: ShutdownRequest) => void)[] = [];
  private cpuStop: (() => void) | undefined;
  private cpuHalt: (() => void) | undefined;

  constructor(
    readonly loop: MainLoop,
    readonly config: VirtMachineConfig = {},
  ) {
    const ram = config.ramSizeBytes ?? VIRT_DEFAULT_RAM_BYTES;
    if (!(Number.isSafeInteger(ram) && ram >= 16 * MiB && ram <= MAX_RAM_BYTES && ram % 4096 === 0)) {
      throw new MachineConfigError(`RAM size ${ram} bytes is not supported (16 MiB .. 2 GiB, 4 KiB multiple)`);
    }
    this.ramSizeBytes = ram;
    const smp = config.smp ?? 1;
    if (!(Number.isSafeInteger(smp) && smp >= 1 && smp <= 8)) throw new MachineConfigError(`-smp ${smp}: 1 to 8 harts are supported`);
    this.numHarts = smp;
    const drives = config.drives ?? [];
    if (drives.length > VIRTIO_COUNT) throw new MachineConfigError(`at most ${VIRTIO_COUNT} virtio devices fit on virt`);

    const as = new AddressSpace(loop.trace);
    this.as = as;
    const M = VIRT_MEMMAP;

    // Interrupt controllers.
    this.plic = new Plic(`/machine/soc/plic@${M.plic.base.toString(16)}`, smp);
    as.addMmio('riscv.sifive.plic', M.plic.base, M.plic.size, this.plic.mmio, { minAccess: 4, maxAccess: 4 });
    this.clint = new Clint(loop, `/machine/soc/clint@${M.clint.base.toString(16)}`, smp);
    as.addMmio('riscv.aclint', M.clint.base, M.clint.size, this.clint.mmio, { minAccess: 4, maxAccess: 8 });
    this.devices.push({ path: this.plic.path, base: M.plic.base, irqIn: this.plic.sources, irqOut: this.plic.contextIrq });
    this.devices.push({ path: this.clint.path, base: M.clint.base, irqIn: [], irqOut: [...this.clint.msip, ...this.clint.mtip] });

    // Simple devices.
    this.test = new SifiveTest(`/machine/soc/test@${M.test.base.toString(16)}`, (req) => this.requestShutdown(req), loop.trace);
    as.addMmio('riscv.sifive.test', M.test.base, M.test.size, this.test.mmio, { minAccess: 2, maxAccess: 4 });
    this.devices.push({ path: this.test.path, base: M.test.base, irqIn: [], irqOut: [] });

    this.rtc = new GoldfishRtc(loop, `/machine/soc/rtc@${M.rtc.base.toString(16)}`, config.rtcBaseSeconds);
    as.addMmio('goldfish_rtc', M.rtc.base, M.rtc.size, this.rtc.mmio, { minAccess: 4, maxAccess: 4 });
    this.rtc.irq.connect((level) => this.plic.sources[VIRT_RTC_IRQ]!.set(level));
    this.devices.push({ path: this.rtc.path, base: M.rtc.base, irqIn: [], irqOut: [this.rtc.irq] });

    this.uart = new Ns16550a(loop, `/machine/soc/serial@${M.uart0.base.toString(16)}`);
    as.addMmio('serial', M.uart0.base, M.uart0.size, this.uart.mmio, { minAccess: 1, maxAccess: 8, implMin: 1, implMax: 8 });
    this.uart.irq.connect((level) => this.plic.sources[VIRT_UART0_IRQ]!.set(level));
    this.uart.output = config.serialOutput ?? null;
    loop.gate.attach(config.serialChannel ?? 'serial0', this.uart);
    this.devices.push({ path: this.uart.path, base: M.uart0.base, irqIn: [], irqOut: [this.uart.irq] });

    // virtio-mmio slots; -device order fills them from the top, as QEMU's bus lookup does.
    for (let i = 0; i < VIRTIO_COUNT; i++) {
      const base = M.virtio.base + i * M.virtio.size;
      const driveIndex = VIRTIO_COUNT - 1 - i;
      const drive = drives[driveIndex];
      const path = `/machine/soc/virtio_mmio@${base.toString(16)}`;
      let blk: VirtioBlk | null = null;
      if (drive !== undefined) {
        blk = new VirtioBlk(loop, drive.id ?? `virtio-blk${driveIndex}`, drive.backend, { serial: drive.serial });
        this.blk[driveIndex] = blk;
      }
      const transport = new VirtioMmio(as, path, blk, !(config.virtioModern ?? false), loop.trace);
      as.addMmio('virtio-mmio', base, M.virtio.size, transport.mmio, { minAccess: 1, maxAccess: 8 });
      const irq = VIRTIO_IRQ + i;
      transport.irq.connect((level) => this.plic.sources[irq]!.set(level));
      this.virtio.push(transport);
      this.devices.push({ path, base, irqIn: [], irqOut: [transport.irq] });
    }

    // Memory and images.
    as.addRam('riscv_virt_board.ram', M.dram.base, ram);
    const bios = config.bios ?? 'none';
    const biosBytes = bios === 'none' ? null : loadImage(bios, 'firmware');
    let firmwareEnd: number = FIRMWARE_BASE;
    let firmwareEntry: number = FIRMWARE_BASE;
    if (biosBytes !== null) {
      const placed = this.placeImage(FIRMWARE_BASE, biosBytes, 'firmware');
      firmwareEnd = placed.end;
      firmwareEntry = placed.entry;
    }
    // riscv_calc_kernel_start_addr (RV64): the firmware's end rounded up to 2 MiB.
    const kernelBase = biosBytes === null ? FIRMWARE_BASE : Math.ceil(firmwareEnd / (2 * MiB)) * 2 * MiB;
    let kernelEntry = kernelBase;
    let kernelEnd = kernelBase;
    if (config.kernel !== undefined) {
      const placed = this.placeImage(kernelBase, loadImage(config.kernel, 'kernel'), 'kernel');
      kernelEntry = placed.entry;
      kernelEnd = placed.end;
    }
    this.kernelAddr = kernelEntry;
    let initrd: { start: number; end: number } | undefined;
    if (config.initrd !== undefined) {
      const bytes = loadImage(config.initrd, 'initrd');
      // riscv_load_initrd: far enough above the kernel that unpacking it does not clobber the initrd.
      const start = Math.max(kernelEnd, kernelEntry + Math.min(ram / 2, 128 * MiB));
      this.addImage(start, bytes, 'initrd');
      initrd = { start, end: start + bytes.length };
    }
    this.startAddr = biosBytes === null ? kernelEntry : firmwareEntry;

    const rngSeed = new Uint8Array(32);
    loop.rng.stream('virt.fdt.rng-seed').fill(rngSeed);
    this.dtb = buildVirtFdt({
      numHarts: smp,
      ramSizeBytes: ram,
      isa: config.cpu?.isa ?? 'rv64imafdc_zicsr_zifencei',
      mmuType: config.cpu?.mmuType ?? 'riscv,sv39',
      bootargs: config.append,
      initrd,
      rngSeed,
    });
    // riscv_compute_fdt_addr: below min(DRAM end, 3 GiB), aligned down to 2 MiB.
    const dramEnd = M.dram.base + ram;
    const top = Math.min(dramEnd, 3072 * MiB);
    this.fdtAddr = Math.floor((top - this.dtb.length) / (2 * MiB)) * 2 * MiB;
    if (this.fdtAddr < kernelEnd) throw new MachineConfigError('not enough RAM for the images and the device tree');
    this.addImage(this.fdtAddr, this.dtb, 'dtb');

    const resetVec = buildResetVector({ startAddr: this.startAddr, fdtAddr: this.fdtAddr, nextAddr: this.kernelAddr });
    as.addRom('riscv_virt_board.mrom', M.mrom.base, M.mrom.size, resetVec);

    // Harts.
    if (config.cpu !== undefined) {
      const contexts: HartContext[] = [];
      for (let h = 0; h < smp; h++) contexts.push({ loop, memory: as, hartId: h, readTime: () => this.clint.readMtime() });
      const made = config.cpu.createHarts(contexts);
      assert(made.harts.length === smp, 'CPU factory made the wrong number of harts');
      this.harts.push(...made.harts);
      loop.cpu = made.driver;
      this.cpuStop = made.stop;
      this.cpuHalt = made.halt;
      for (const hart of this.harts) {
        const h = hart.hartId;
        this.clint.msip[h]!.connect((level) => hart.setIrqLine('msip', level));
        this.clint.mtip[h]!.connect((level) => hart.setIrqLine('mtip', level));
        this.plic.meip(h).connect((level) => hart.setIrqLine('meip', level));
        this.plic.seip(h).connect((level) => hart.setIrqLine('seip', level));
      }
    }
    this.resetHarts();
  }

  /** Loads a raw image at `addr`, or an ELF image at its own physical addresses. */
  private placeImage(addr: number, bytes: Uint8Array, what: string): { entry: number; end: number } {
    if (!isElf(bytes)) {
      this.addImage(addr, bytes, what);
      return { entry: addr, end: addr + bytes.length };
    }
    let elf;
    try {
      elf = parseElf(bytes);
    } catch (e) {
      if (e instanceof ElfError) throw new MachineConfigError(`${what}: ${e.message}`);
      throw e;
    }
    if (elf.xlen !== 64) throw new MachineConfigError(`${what}: a 32-bit ELF image cannot run on the rv64 virt board`);
    let end = 0;
    for (const seg of elf.segments) {
      const image = new Uint8Array(seg.memSizeBytes);
      image.set(seg.data.subarray(0, Math.min(seg.data.length, seg.memSizeBytes)));
      this.addImage(seg.paddr, image, what);
      end = Math.max(end, seg.paddr + seg.memSizeBytes);
    }
    if (elf.segments.length === 0) throw new MachineConfigError(`${what}: the ELF image has nothing to load`);
    return { entry: elf.entry, end };
  }

  private addImage(addr: number, bytes: Uint8Array, what: string): void {
    const block = this.as.ramAt(addr);
    if (block === undefined || block.readonly || addr + bytes.length > block.base + block.sizeBytes) {
      throw new MachineConfigError(`${what} (${bytes.length} bytes at 0x${addr.toString(16)}) does not fit in RAM`);
    }
    this.images.push({ addr, bytes });
    this.as.writeBytes(addr, bytes, true);
  }

  /** Called on poweroff; the runner ends the run with the exit code. */
  onShutdown(listener: (req: ShutdownRequest) => void): void {
    this.shutdownListeners.push(listener);
  }

  private requestShutdown(req: ShutdownRequest): void {
    this.loop.trace.emit('machine.shutdown', { kind: req.kind, exitCode: req.kind === 'poweroff' ? req.exitCode : -1 });
    if (req.kind === 'reset') {
      // qemu_system_reset_request: done at the next main-loop turn, outside the CPU.
      this.loop.oneshot('machine.reset', () => this.reset('guest'));
      this.cpuStop?.();
      return;
    }
    this.shutdown = req;
    this.cpuHalt?.();
    for (const listener of this.shutdownListeners) listener(req);
  }

  /** System reset: devices to reset state, images reloaded (ROM blobs, as QEMU's rom_reset), harts to 0x1000. */
  reset(reason = 'system'): void {
    this.loop.trace.emit('machine.reset', { reason });
    this.uart.reset();
    this.clint.reset();
    this.plic.reset();
    this.rtc.reset();
    for (const t of this.virtio) t.reset();
    for (const image of this.images) this.as.writeBytes(image.addr, image.bytes, true);
    this.resetHarts();
  }

  private resetHarts(): void {
    for (const hart of this.harts) hart.reset(VIRT_MEMMAP.mrom.base);
  }

  /**
   * A digest of every device's state (not RAM, not the harts: those have their own digests), for
   * replay checkpoints and divergence reports.
   */
  deviceStateDigest(): string {
    const d = new Digest();
    const parts = [this.uart.snapshotState(), this.clint.snapshotState(), this.plic.snapshotState(), this.rtc.snapshotState(), ...this.virtio.map((v) => v.snapshotState())];
    for (const part of parts) {
      d.int(part.length);
      for (const v of part) d.number(v);
    }
    return d.hex();
  }

  /** Devices in flight, if any: a snapshot needs none (a virtio request is a coroutine). */
  get requestsInFlight(): number {
    let n = 0;
    for (const blk of this.blk) n += blk.inFlight;
    return n;
  }

  /** The board's devices and shutdown request (see `VirtBoardState`). */
  saveBoardState(): VirtBoardState {
    assert(this.requestsInFlight === 0, () => `${this.requestsInFlight} virtio request(s) in flight`);
    return {
      uart: this.uart.saveState(),
      clint: this.clint.saveState(),
      plic: this.plic.saveState(),
      rtc: this.rtc.saveState(),
      virtio: this.virtio.map((t) => t.saveState()),
      blk: this.blk.map((b) => b.saveState()),
      shutdown: this.shutdown === null ? null : { ...this.shutdown },
    };
  }

  /** Puts every device back as saved, without any line event (see IrqPin.restoreLevel). */
  restoreBoardState(s: VirtBoardState): void {
    assert(s.virtio.length === this.virtio.length && s.blk.length === this.blk.length, () => `snapshot is for a board with ${s.virtio.length} virtio slots and ${s.blk.length} drives, this one has ${this.virtio.length} and ${this.blk.length}`);
    const shutdown = s.shutdown;
    assert(shutdown === null || (shutdown.kind === 'poweroff' && Number.isInteger(shutdown.exitCode)) || shutdown.kind === 'reset', 'bad restored shutdown request');
    this.uart.restoreState(s.uart);
    this.clint.restoreState(s.clint);
    this.plic.restoreState(s.plic);
    this.rtc.restoreState(s.rtc);
    this.virtio.forEach((t, i) => t.restoreState(s.virtio[i]!));
    this.blk.forEach((b, i) => b.restoreState(s.blk[i]!));
    this.shutdown = shutdown === null ? null : shutdown.kind === 'poweroff' ? { kind: 'poweroff', exitCode: shutdown.exitCode } : { kind: 'reset' };
  }

  /** A device by its path (qtest's QOM paths). */
  device(path: string): BoardDevice | undefined {
    return this.devices.find((d) => d.path === path);
  }
}

/** Builds the virt board (the command line's `-M virt`). */
export function buildVirtMachine(loop: MainLoop, config: VirtMachineConfig = {}): VirtMachine {
  return new VirtMachine(loop, config);
}
