import { assert } from '../../assert.js';
import { ClockType } from '../../clock.js';
import { IrqPin } from '../../irq.js';
import type { MainLoop } from '../../main-loop.js';
import type { MmioOps } from '../../memory.js';
import type { Timer } from '../../timer.js';

/** The virt board's timebase (mtime ticks per second). */
export const CLINT_TIMEBASE_HZ = 10_000_000;
/** Offsets inside the 64 KiB CLINT window. */
export const CLINT_MSIP_OFFSET = 0x0;
export const CLINT_MTIMECMP_OFFSET = 0x4000;
export const CLINT_MTIME_OFFSET = 0xbff8;
export const CLINT_SIZE = 0x10000;

const U64 = (1n << 64n) - 1n;
const NS_PER_S = 1_000_000_000n;

/** CLINT state for machine snapshots: 64-bit values as decimal strings (any msgpack coder keeps them). */
export interface ClintState {
  readonly timeDelta: string;
  readonly mtimecmp: readonly string[];
  readonly msip: readonly boolean[];
  readonly mtip: readonly boolean[];
}

function parseU64(text: unknown, what: string): bigint {
  assert(typeof text === 'string' && /^[0-9]{1,20}$/.test(text), () => `bad restored ${what}: ${String(text)}`);
  const value = BigInt(text);
  assert(value <= U64, () => `restored ${what} does not fit 64 bits`);
  return value;
}

/**
 * SiFive CLINT (ACLINT MSWI + MTIMER in one window, as QEMU's virt maps them): msip per hart at
 * +0, mtimecmp per hart at +0x4000, mtime at +0xbff8. mtime is derived from the virtual clock at
 * the timebase (so from the instruction count when a CPU runs), plus an offset a guest write sets.
 * A mtimecmp in the future arms a virtual-clock timer that raises MTIP when it comes due.
 */
export class Clint {
  readonly msip: IrqPin[] = [];
  readonly mtip: IrqPin[] = [];
  readonly mmio: MmioOps;
  private readonly mtimecmp: bigint[] = [];
  private readonly timers: Timer[] = [];
  /** mtime = ticks(virtual ns) + timeDelta (mod 2^64). */
  private timeDelta = 0n;

  constructor(
    private readonly loop: MainLoop,
    readonly path: string,
    readonly numHarts: number,
    readonly timebaseHz = CLINT_TIMEBASE_HZ,
  ) {
    assert(Number.isSafeInteger(numHarts) && numHarts >= 1 && numHarts <= 4095, `bad hart count ${numHarts}`);
    for (let h = 0; h < numHarts; h++) {
      this.msip.push(new IrqPin(`${path}/msip[${h}]`));
      this.mtip.push(new IrqPin(`${path}/mtip[${h}]`));
      this.mtimecmp.push(0n);
      this.timers.push(loop.newTimer(ClockType.Virtual, `${path}:mtimecmp[${h}]`, () => this.timerFired(h)));
    }
    this.mmio = {
      read: (offset, size) => this.read(offset, size),
      write: (offset, size, value) => this.write(offset, size, value),
      read64: (offset) => this.read64(offset),
      write64: (offset, value) => this.write64(offset, value),
    };
  }

  reset(): void {
    this.timeDelta = 0n;
    for (let h = 0; h < this.numHarts; h++) {
      this.mtimecmp[h] = 0n;
      this.timers[h]!.del();
      this.msip[h]!.lower();
      this.mtip[h]!.lower();
    }
  }

  /** The `time` CSR and mtime: ticks of the timebase since the start of virtual time. */
  readMtime(): bigint {
    const ns = BigInt(this.loop.clocks.virtualNs);
    return ((ns * BigInt(this.timebaseHz)) / NS_PER_S + this.timeDelta) & U64;
  }

  private writeMtime(value: bigint): void {
    const ns = BigInt(this.loop.clocks.virtualNs);
    this.timeDelta = (value - (ns * BigInt(this.timebaseHz)) / NS_PER_S) & U64;
    for (let h = 0; h < this.numHarts; h++) this.rearm(h);
  }

  /** riscv_aclint_mtimer_write_timecmp. */
  private rearm(hart: number): void {
    const cmp = this.mtimecmp[hart]!;
    const now = this.readMtime();
    const timer = this.timers[hart]!;
    if (cmp <= now) {
      timer.del();
      this.mtip[hart]!.raise();
      return;
    }
    this.mtip[hart]!.lower();
    const diffTicks = cmp - now;
    // Round up so the timer never fires before mtime has reached mtimecmp.
    const rate = BigInt(this.timebaseHz);
    const diffNs = (diffTicks * NS_PER_S + rate - 1n) / rate;
    const deadline = BigInt(this.loop.clocks.virtualNs) + diffNs;
    if (deadline > BigInt(Number.MAX_SAFE_INTEGER)) {
      timer.del(); // beyond 2^53 ns (104 days of virtual time): never, for this run
      return;
    }
    timer.mod(Number(deadline));
  }

  private timerFired(hart: number): void {
    if (this.mtimecmp[hart]! <= this.readMtime()) this.mtip[hart]!.raise();
    else this.rearm(hart);
  }

  /** Snapshot state; the mtimecmp timers are armed by the kernel's restore. */
  saveState(): ClintState {
    return {
      timeDelta: this.timeDelta.toString(),
      mtimecmp: this.mtimecmp.map((v) => v.toString()),
      msip: this.msip.map((p) => p.level),
      mtip: this.mtip.map((p) => p.level),
    };
  }

  restoreState(s: ClintState): void {
    const n = this.numHarts;
    assert(s.mtimecmp.length === n && s.msip.length === n && s.mtip.length === n, () => `${this.path}: snapshot is for another hart count`);
    this.timeDelta = parseU64(s.timeDelta, 'CLINT time delta');
    for (let h = 0; h < n; h++) {
      this.mtimecmp[h] = parseU64(s.mtimecmp[h], `mtimecmp[${h}]`);
      this.msip[h]!.restoreLevel(s.msip[h]!);
      this.mtip[h]!.restoreLevel(s.mtip[h]!);
    }
  }

  /** State for digests (replay checkpoints). */
  snapshotState(): number[] {
    const out = [Number(this.timeDelta >> 32n), Number(this.timeDelta & 0xffffffffn)];
    for (let h = 0; h < this.numHarts; h++) {
      out.push(Number(this.mtimecmp[h]! >> 32n), Number(this.mtimecmp[h]! & 0xffffffffn), this.msip[h]!.level ? 1 : 0, this.mtip[h]!.level ? 1 : 0);
    }
    return out;
  }

  private read64(offset: number): bigint {
    if (offset === CLINT_MTIME_OFFSET) return this.readMtime();
    const hart = this.timecmpHart(offset);
    if (hart !== undefined) return this.mtimecmp[hart]!;
    return BigInt(this.read(offset, 4) >>> 0) | (BigInt(this.read(offset + 4, 4) >>> 0) << 32n);
  }

  private write64(offset: number, value: bigint): void {
    if (offset === CLINT_MTIME_OFFSET) {
      this.writeMtime(value);
      return;
    }
    const hart = this.timecmpHart(offset);
    if (hart !== undefined) {
      this.mtimecmp[hart] = value & U64;
      this.rearm(hart);
      return;
    }
    this.write(offset, 4, Number(value & 0xffffffffn));
    this.write(offset + 4, 4, Number((value >> 32n) & 0xffffffffn));
  }

  private timecmpHart(offset: number): number | undefined {
    if (offset < CLINT_MTIMECMP_OFFSET || offset >= CLINT_MTIMECMP_OFFSET + 8 * this.numHarts || offset % 8 !== 0) return undefined;
    return (offset - CLINT_MTIMECMP_OFFSET) / 8;
  }

  private read(offset: number, size: number): number {
    if (offset < CLINT_MTIMECMP_OFFSET) {
      const hart = offset >> 2;
      if (size !== 4 || offset % 4 !== 0 || hart >= this.numHarts) return 0;
      return this.msip[hart]!.level ? 1 : 0;
    }
    if (size !== 4) return 0;
    const base = offset & ~7;
    const high = (offset & 4) !== 0;
    let value: bigint;
    if (base === CLINT_MTIME_OFFSET) value = this.readMtime();
    else {
      const hart = this.timecmpHart(base);
      if (hart === undefined) return 0;
      value = this.mtimecmp[hart]!;
    }
    return Number(high ? value >> 32n : value & 0xffffffffn);
  }

  private write(offset: number, size: number, value: number): void {
    if (offset < CLINT_MTIMECMP_OFFSET) {
      const hart = offset >> 2;
      if (size !== 4 || offset % 4 !== 0 || hart >= this.numHarts) return;
      this.msip[hart]!.set((value & 1) !== 0);
      return;
    }
    if (size !== 4) return;
    const base = offset & ~7;
    const high = (offset & 4) !== 0;
    const v = BigInt(value >>> 0);
    if (base === CLINT_MTIME_OFFSET) {
      const now = this.readMtime();
      this.writeMtime(high ? (now & 0xffffffffn) | (v << 32n) : (now & ~0xffffffffn & U64) | v);
      return;
    }
    const hart = this.timecmpHart(base);
    if (hart === undefined) return;
    const old = this.mtimecmp[hart]!;
    this.mtimecmp[hart] = high ? (old & 0xffffffffn) | (v << 32n) : (old & (U64 ^ 0xffffffffn)) | v;
    this.rearm(hart);
  }
}
