/**
 * Whole-machine snapshots of a `virt` board at quiescent points, for replay seek: restore the
 * nearest snapshot, run forward. A restore goes into the same live objects (a seek inside one
 * play session) or into a freshly built board from the same description, and the run then
 * continues exactly as it did the first time: same guest state, same trace digest and event
 * numbers, same task ids, same timer order.
 *
 * What a snapshot holds: the kernel (clocks, loop counters, digest, RNG streams, armed timers,
 * input-gate counter, choices), every hart, the RAM bytes, every device and the machine's
 * shutdown request, plus the caller's extra parts (the disks' overlays). ROM is not copied: its
 * digest is, and must match at restore.
 */
import { assert } from '../engine/assert.js';
import { Digest } from '../engine/digest.js';
import type { KernelState, MainLoop } from '../engine/main-loop.js';
import type { RamBlock } from '../engine/memory.js';
import type { VirtBoardState, VirtMachine } from '../engine/hw/virt/machine.js';
import { VIRTIO_IRQ, VIRT_RTC_IRQ, VIRT_UART0_IRQ } from '../engine/hw/virt/memmap.js';
import { RoundRobin } from '../engine/hw/virt/riscv-harts.js';
import { Irq } from '../engine/targets/riscv/constants.js';
import { RiscvCpu } from '../engine/targets/riscv/cpu.js';
import { type HartState, restoreHartState, saveHartState } from '../engine/targets/riscv/hart-state.js';
import type { MachineSnapshotter, SnapshotPart } from './machine.js';

export type { SnapshotPart } from './machine.js';

export const VIRT_SNAPSHOT_FORMAT = 'tsqemu-virt-snapshot';
export const VIRT_SNAPSHOT_VERSION = 1;

/** Bound on extra parts (a handful of disks in practice). */
export const MAX_SNAPSHOT_PARTS = 64;

/** Granule of the sparse RAM image: pages of zeroes are left out. */
export const RAM_IMAGE_PAGE_BYTES = 4096;
const ZERO_PAGE = new Uint8Array(RAM_IMAGE_PAGE_BYTES);

/**
 * One writable RAM block's bytes, sparse: the indexes of its pages that are not all zero, and
 * their bytes one after the other (a copy). Most of a guest's RAM is zero, so a 64 MiB board's
 * snapshot is the size of what the guest touched.
 */
export interface RamImage {
  readonly name: string;
  readonly base: number;
  readonly sizeBytes: number;
  readonly pages: readonly number[];
  readonly data: Uint8Array;
}

/** A read-only block, by digest: the board rebuilds it, a restore checks it is the same. */
export interface RomDigest {
  readonly name: string;
  readonly base: number;
  readonly sizeBytes: number;
  readonly digest: string;
}

/** The whole snapshot: plain data, msgpack-able (bytes as Uint8Array, 64-bit values as strings). */
export interface VirtSnapshot {
  readonly format: typeof VIRT_SNAPSHOT_FORMAT;
  readonly version: typeof VIRT_SNAPSHOT_VERSION;
  readonly kernel: KernelState;
  readonly harts: readonly HartState[];
  /** The multi-hart driver's next turn, or null with one hart. */
  readonly roundRobinNext: number | null;
  readonly ram: readonly RamImage[];
  readonly rom: readonly RomDigest[];
  readonly board: VirtBoardState;
  /** Extra parts' states by part name. */
  readonly parts: Readonly<Record<string, unknown>>;
}

/** A snapshot that is not one, or is for another machine (a user error: wrong file, other build). */
export class SnapshotFormatError extends Error {
  override readonly name = 'SnapshotFormatError';
}

/** A snapshot was asked for at a point that is not quiescent. */
export class NotQuiescentError extends Error {
  override readonly name = 'NotQuiescentError';
}

function saveRam(block: RamBlock): RamImage {
  const bytes = block.bytes;
  const page = RAM_IMAGE_PAGE_BYTES;
  const host = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const pages: number[] = [];
  for (let offset = 0; offset < bytes.length; offset += page) {
    const end = Math.min(bytes.length, offset + page);
    // One memcmp per page against a zero page.
    if (host.compare(ZERO_PAGE, 0, end - offset, offset, end) !== 0) pages.push(offset / page);
  }
  const data = new Uint8Array(pages.length * page);
  pages.forEach((index, i) => {
    const start = index * page;
    data.set(bytes.subarray(start, Math.min(bytes.length, start + page)), i * page);
  });
  return { name: block.name, base: block.base, sizeBytes: bytes.length, pages, data };
}

/**
 * Writes the image back. Pages the image leaves out must be zero: they are compared first and
 * cleared only when they are not, so RAM the guest never touched stays untouched (a blanket fill
 * would make the host commit every page of a fresh machine's RAM).
 */
function restoreRam(block: RamBlock, image: RamImage): void {
  const bytes = block.bytes;
  const page = RAM_IMAGE_PAGE_BYTES;
  const host = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  let next = 0; // index into image.pages (ascending, checked by ramImageFits)
  for (let offset = 0, index = 0; offset < bytes.length; offset += page, index++) {
    const end = Math.min(bytes.length, offset + page);
    if (image.pages[next] === index) {
      bytes.set(image.data.subarray(next * page, next * page + (end - offset)), offset);
      next++;
    } else if (host.compare(ZERO_PAGE, 0, end - offset, offset, end) !== 0) {
      bytes.fill(0, offset, end);
    }
  }
  assert(next === image.pages.length, 'every page of the RAM image was written');
}

/** A RAM image that fits `block`: pages in range, ascending, and the data to go with them. */
function ramImageFits(image: unknown, block: RamBlock): boolean {
  if (!isRecord(image) || image['name'] !== block.name || image['base'] !== block.base || image['sizeBytes'] !== block.sizeBytes) return false;
  const pages = image['pages'];
  const data = image['data'];
  if (!Array.isArray(pages) || !(data instanceof Uint8Array) || data.length !== pages.length * RAM_IMAGE_PAGE_BYTES) return false;
  const pageCount = Math.ceil(block.sizeBytes / RAM_IMAGE_PAGE_BYTES);
  let previous = -1;
  for (const index of pages) {
    if (!Number.isInteger(index) || (index as number) <= previous || (index as number) >= pageCount) return false;
    previous = index as number;
  }
  return true;
}

function romDigest(block: RamBlock): string {
  return new Digest().bytes(block.bytes).hex();
}

/** The RISC-V CPUs the loop runs, in hart order, and the round-robin driver when there are several. */
function cpusOf(loop: MainLoop): { cpus: readonly RiscvCpu[]; roundRobin: RoundRobin | null } {
  const driver = loop.cpu;
  if (driver === null) return { cpus: [], roundRobin: null };
  if (driver instanceof RiscvCpu) return { cpus: [driver], roundRobin: null };
  if (driver instanceof RoundRobin) return { cpus: driver.harts, roundRobin: driver };
  throw new SnapshotFormatError('the machine runs a CPU driver snapshots do not know');
}

/**
 * Where the board's interrupt wires disagree with their ends, or null. Every wire carries its
 * level to its sink on each set, so at any instruction boundary a device's line equals the PLIC
 * source it drives, and the PLIC's and CLINT's outputs equal the harts' mip bits. Levels are
 * restored without sink calls, so this is what says the pieces of a snapshot fit together.
 */
function wiringMismatch(machine: VirtMachine, cpus: readonly RiscvCpu[]): string | null {
  const plic = machine.plic;
  const wires: [string, boolean, number][] = [
    ['uart0', machine.uart.irq.level, VIRT_UART0_IRQ],
    ['rtc', machine.rtc.irq.level, VIRT_RTC_IRQ],
    ...machine.virtio.map((t, i): [string, boolean, number] => [t.path, t.irq.level, VIRTIO_IRQ + i]),
  ];
  for (const [name, level, source] of wires) {
    if (plic.sources[source]?.level !== level) return `${name}'s line is ${level ? 'high' : 'low'}, PLIC source ${source} is not`;
  }
  for (const cpu of cpus) {
    const hart = cpu.hart;
    const h = hart.hartId;
    const bits: [string, boolean | undefined, number][] = [
      ['msip', machine.clint.msip[h]?.level, Irq.MSI],
      ['mtip', machine.clint.mtip[h]?.level, Irq.MTI],
      ['meip', plic.meip(h).level, Irq.MEI],
      ['seip', plic.seip(h).level, Irq.SEI],
    ];
    for (const [name, level, bit] of bits) {
      if (level !== ((hart.mipHw >>> bit) & 1) > 0) return `hart ${h}: ${name} line is ${level === true ? 'high' : 'low'}, its mip bit is not`;
    }
  }
  return null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

/**
 * Snapshots of `machine` (run by `loop`) with `extraParts` alongside. The parts' names must be
 * unique; they name the parts' entries, so a restore finds each part's state by name.
 */
export function createVirtSnapshotter(loop: MainLoop, machine: VirtMachine, extraParts: readonly SnapshotPart[]): MachineSnapshotter {
  if (machine.loop !== loop) throw new TypeError('the machine is run by another main loop');
  if (extraParts.length > MAX_SNAPSHOT_PARTS) throw new RangeError(`more than ${MAX_SNAPSHOT_PARTS} snapshot parts`);
  const partNames = new Set<string>();
  for (const part of extraParts) {
    if (partNames.has(part.name)) throw new TypeError(`two snapshot parts are named '${part.name}'`);
    partNames.add(part.name);
  }
  const { cpus, roundRobin } = cpusOf(loop);
  if (cpus.length !== 0 && cpus.length !== machine.numHarts) throw new TypeError(`the loop runs ${cpus.length} harts, the board has ${machine.numHarts}`);
  const ramBlocks: RamBlock[] = [];
  const romBlocks: RamBlock[] = [];
  for (const region of machine.as.allRegions) {
    if (region.kind !== 'ram') continue;
    (region.block.readonly ? romBlocks : ramBlocks).push(region.block);
  }

  function notQuiescent(): string | null {
    const kernel = loop.notQuiescent();
    if (kernel !== null) return kernel;
    const inFlight = machine.requestsInFlight;
    if (inFlight > 0) return `${inFlight} virtio request(s) in flight`;
    for (const part of extraParts) {
      const reason = part.notQuiescent?.() ?? null;
      if (reason !== null) return `${part.name}: ${reason}`;
    }
    return null;
  }

  function save(): VirtSnapshot {
    const reason = notQuiescent();
    if (reason !== null) throw new NotQuiescentError(`no snapshot now: ${reason}`);
    const wiring = wiringMismatch(machine, cpus);
    assert(wiring === null, () => `interrupt wiring inconsistent before a save: ${wiring}`);
    const parts: Record<string, unknown> = {};
    for (const part of extraParts) parts[part.name] = part.save();
    return {
      format: VIRT_SNAPSHOT_FORMAT,
      version: VIRT_SNAPSHOT_VERSION,
      kernel: loop.saveKernelState(),
      harts: cpus.map((cpu) => saveHartState(cpu.hart)),
      roundRobinNext: roundRobin === null ? null : roundRobin.nextIndex,
      ram: ramBlocks.map(saveRam),
      rom: romBlocks.map((block) => ({ name: block.name, base: block.base, sizeBytes: block.sizeBytes, digest: romDigest(block) })),
      board: machine.saveBoardState(),
      parts,
    };
  }

  /** Shape checks that make a foreign or damaged snapshot a clear error before anything changes. */
  function check(state: unknown): VirtSnapshot {
    if (!isRecord(state) || state['format'] !== VIRT_SNAPSHOT_FORMAT) throw new SnapshotFormatError('not a tsqemu virt snapshot');
    if (state['version'] !== VIRT_SNAPSHOT_VERSION) throw new SnapshotFormatError(`snapshot version ${String(state['version'])}, this build reads ${VIRT_SNAPSHOT_VERSION}`);
    for (const key of ['kernel', 'board', 'parts'] as const) if (!isRecord(state[key])) throw new SnapshotFormatError(`snapshot without ${key}`);
    for (const key of ['harts', 'ram', 'rom'] as const) if (!Array.isArray(state[key])) throw new SnapshotFormatError(`snapshot without ${key}`);
    const s = state as unknown as VirtSnapshot;
    if (s.harts.length !== cpus.length) throw new SnapshotFormatError(`snapshot has ${s.harts.length} harts, this machine ${cpus.length}`);
    if ((s.roundRobinNext === null) !== (roundRobin === null)) throw new SnapshotFormatError('snapshot is for another hart driver');
    if (s.ram.length !== ramBlocks.length) throw new SnapshotFormatError(`snapshot has ${s.ram.length} RAM blocks, this machine ${ramBlocks.length}`);
    ramBlocks.forEach((block, i) => {
      if (!ramImageFits(s.ram[i], block)) {
        throw new SnapshotFormatError(`RAM block ${i} of the snapshot does not match '${block.name}' (${block.sizeBytes} bytes at 0x${block.base.toString(16)})`);
      }
    });
    if (s.rom.length !== romBlocks.length) throw new SnapshotFormatError(`snapshot has ${s.rom.length} ROM blocks, this machine ${romBlocks.length}`);
    romBlocks.forEach((block, i) => {
      const rom = s.rom[i]!;
      if (!isRecord(rom) || rom.name !== block.name || rom.base !== block.base || rom.sizeBytes !== block.sizeBytes || rom.digest !== romDigest(block)) {
        throw new SnapshotFormatError(`ROM '${block.name}' differs from the snapshot's (another firmware or board configuration)`);
      }
    });
    for (const name of partNames) if (!Object.hasOwn(s.parts, name)) throw new SnapshotFormatError(`snapshot has no state for part '${name}'`);
    for (const name of Object.keys(s.parts)) if (!partNames.has(name)) throw new SnapshotFormatError(`snapshot has state for part '${name}', which this machine does not have`);
    return s;
  }

  /**
   * Restores `state` (a `save()` result, possibly through msgpack). Shape, RAM sizes, ROM and part
   * names are checked before anything changes; the interrupt wiring can only be checked once the
   * pieces are in place, so a snapshot failing that check leaves a machine to be rebuilt.
   */
  function restore(state: unknown): void {
    const s = check(state);
    // The kernel first: it refuses (before changing anything) while a coroutine is mid-flight.
    loop.restoreKernelState(s.kernel);
    ramBlocks.forEach((block, i) => restoreRam(block, s.ram[i]!));
    machine.restoreBoardState(s.board);
    // After RAM: restoring a hart drops its TLB and every translation made from the old bytes.
    cpus.forEach((cpu, i) => restoreHartState(cpu.hart, s.harts[i]!));
    if (roundRobin !== null) roundRobin.nextIndex = s.roundRobinNext!;
    for (const part of extraParts) part.restore(s.parts[part.name]);
    const wiring = wiringMismatch(machine, cpus);
    if (wiring !== null) throw new SnapshotFormatError(`the snapshot's interrupt lines do not fit together: ${wiring}`);
  }

  return { notQuiescent, save, restore };
}
