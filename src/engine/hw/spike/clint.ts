import { ClockType } from '../../clock.js';
import type { MainLoop } from '../../main-loop.js';
import type { MmioOps } from '../../memory.js';
import type { Timer } from '../../timer.js';

/** 10 MHz timebase: one mtime tick per 100 ns of virtual time. */
export const NS_PER_TICK = 100;

/**
 * A minimal single-hart CLINT for the spike machine (msip at +0, mtimecmp at +0x4000, mtime at
 * +0xbff8). mtime derives from virtual time, which the CPU keeps equal to its instruction count.
 */
export class SpikeClint implements MmioOps {
  private msip = 0;
  /** QEMU's CLINT resets mtimecmp to 0, so MTIP is pending from the start. */
  private mtimecmp = 0n;
  private readonly timer: Timer;

  constructor(
    private readonly loop: MainLoop,
    private readonly setLine: (bit: number, level: boolean) => void,
  ) {
    this.timer = loop.newTimer(ClockType.Virtual, 'clint.mtimecmp', () => this.update());
    this.update();
  }

  mtime(): bigint {
    return BigInt(Math.floor(this.loop.clocks.virtualNs / NS_PER_TICK));
  }

  private update(): void {
    const now = this.mtime();
    if (now >= this.mtimecmp) {
      this.setLine(7, true);
      this.timer.del();
    } else {
      this.setLine(7, false);
      const deadline = this.mtimecmp * BigInt(NS_PER_TICK);
      if (deadline < BigInt(Number.MAX_SAFE_INTEGER)) this.timer.mod(Number(deadline));
      else this.timer.del();
    }
  }

  read(offset: number, size: 1 | 2 | 4): number {
    const v = this.read64(offset & ~7);
    const shift = BigInt((offset & 7) * 8);
    return Number((v >> shift) & ((1n << BigInt(size * 8)) - 1n));
  }

  read64(offset: number): bigint {
    if (offset === 0) return BigInt(this.msip);
    if (offset === 0x4000) return this.mtimecmp;
    if (offset === 0xbff8) return this.mtime();
    return 0n;
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    if (offset < 4) {
      if (offset === 0) {
        this.msip = value & 1;
        this.setLine(3, this.msip === 1);
      }
      return;
    }
    const base = offset & ~7;
    const shift = BigInt((offset & 7) * 8);
    const mask = ((1n << BigInt(size * 8)) - 1n) << shift;
    if (base === 0x4000) {
      this.mtimecmp = (this.mtimecmp & ~mask) | ((BigInt(value) << shift) & mask);
      this.update();
    }
  }

  write64(offset: number, value: bigint): void {
    if (offset === 0x4000) {
      this.mtimecmp = value;
      this.update();
    } else if (offset === 0) {
      this.write(0, 4, Number(value & 1n));
    }
  }
}
