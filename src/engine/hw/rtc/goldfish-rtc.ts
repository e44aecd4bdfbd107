import { assert } from '../../assert.js';
import { ClockType, hostTimeToBigNs } from '../../clock.js';
import { IrqPin } from '../../irq.js';
import type { MainLoop } from '../../main-loop.js';
import type { MmioOps } from '../../memory.js';
import type { Timer } from '../../timer.js';

export const RTC_TIME_LOW = 0x00;
export const RTC_TIME_HIGH = 0x04;
export const RTC_ALARM_LOW = 0x08;
export const RTC_ALARM_HIGH = 0x0c;
export const RTC_IRQ_ENABLED = 0x10;
export const RTC_CLEAR_ALARM = 0x14;
export const RTC_ALARM_STATUS = 0x18;
export const RTC_CLEAR_INTERRUPT = 0x1c;

const U64 = (1n << 64n) - 1n;
const LOW = 0xffffffffn;

/** RTC state for machine snapshots: 64-bit values as decimal strings; the alarm timer is the kernel's. */
export interface GoldfishRtcState {
  readonly tickOffset: string;
  readonly alarmNext: string;
  readonly alarmRunning: boolean;
  readonly irqPending: boolean;
  readonly irqEnabled: boolean;
  readonly timeHigh: number;
  readonly irq: boolean;
}

function parseU64(text: unknown, what: string): bigint {
  assert(typeof text === 'string' && /^[0-9]{1,20}$/.test(text), () => `bad restored ${what}: ${String(text)}`);
  const value = BigInt(text);
  assert(value <= U64, () => `restored ${what} does not fit 64 bits`);
  return value;
}

/**
 * Google's goldfish RTC: a 64-bit nanosecond clock read as TIME_LOW then TIME_HIGH (the low read
 * latches the high half), and one alarm. Time comes from the clocks' `hostTime()`: a deterministic
 * base plus elapsed time by default (`-rtc base=` moves the base), or the host's wall clock through
 * the input gate in host mode, so a recording replays it. The alarm runs on the host clock's timer
 * axis, which in deterministic mode is exact.
 */
export class GoldfishRtc {
  readonly irq: IrqPin;
  readonly mmio: MmioOps;
  /** Guest writes to TIME_* move the guest's clock relative to the host clock (QEMU's tick_offset). */
  private tickOffset = 0n;
  private alarmNext = 0n;
  private alarmRunning = false;
  private irqPending = false;
  private irqEnabled = false;
  private timeHigh = 0;
  private readonly alarm: Timer;

  constructor(
    private readonly loop: MainLoop,
    readonly path: string,
    /** `-rtc base=`: where the guest's clock starts, in seconds since the epoch (default: the host clock's base). */
    baseSeconds?: number,
  ) {
    // QEMU computes tick_offset once, at realize, from the -rtc base; a reset keeps it.
    if (baseSeconds !== undefined) this.tickOffset = BigInt(baseSeconds - loop.clocks.hostBaseSeconds) * 1_000_000_000n;
    this.irq = new IrqPin(`${path}/irq`);
    this.alarm = loop.newTimer(ClockType.Host, `${path}:alarm`, () => this.alarmFired());
    this.mmio = {
      read: (offset) => this.read(offset),
      write: (offset, _size, value) => this.write(offset, value >>> 0),
    };
  }

  reset(): void {
    this.alarm.del();
    this.alarmNext = 0n;
    this.alarmRunning = false;
    this.irqPending = false;
    this.irqEnabled = false;
    this.timeHigh = 0;
    this.updateIrq();
  }

  /** The guest's clock: host time in ns plus the guest's adjustments. */
  count(): bigint {
    return (hostTimeToBigNs(this.loop.clocks.hostTime()) + this.tickOffset) & U64;
  }

  private updateIrq(): void {
    this.irq.set(this.irqPending && this.irqEnabled);
  }

  private clearAlarm(): void {
    this.alarm.del();
    this.alarmRunning = false;
  }

  private setAlarm(): void {
    const ticks = this.count();
    if (this.alarmNext <= ticks) {
      this.clearAlarm();
      this.irqPending = true;
      this.updateIrq();
      return;
    }
    const deadline = BigInt(this.loop.clocks.read(ClockType.Host)) + (this.alarmNext - ticks);
    if (deadline > BigInt(Number.MAX_SAFE_INTEGER)) {
      // Further away than the clocks can count (104 days): it stays armed but never fires in this run.
      this.alarm.del();
      this.alarmRunning = true;
      return;
    }
    this.alarm.mod(Number(deadline));
    this.alarmRunning = true;
  }

  private alarmFired(): void {
    this.clearAlarm();
    this.irqPending = true;
    this.updateIrq();
  }

  saveState(): GoldfishRtcState {
    return {
      tickOffset: this.tickOffset.toString(),
      alarmNext: this.alarmNext.toString(),
      alarmRunning: this.alarmRunning,
      irqPending: this.irqPending,
      irqEnabled: this.irqEnabled,
      timeHigh: this.timeHigh,
      irq: this.irq.level,
    };
  }

  restoreState(s: GoldfishRtcState): void {
    assert(Number.isInteger(s.timeHigh) && s.timeHigh >= 0 && s.timeHigh <= 0xffffffff, () => `${this.path}: bad restored TIME_HIGH latch`);
    this.tickOffset = parseU64(s.tickOffset, 'RTC tick offset');
    this.alarmNext = parseU64(s.alarmNext, 'RTC alarm');
    this.alarmRunning = s.alarmRunning === true;
    this.irqPending = s.irqPending === true;
    this.irqEnabled = s.irqEnabled === true;
    this.timeHigh = s.timeHigh;
    this.irq.restoreLevel(s.irq);
  }

  /** State for digests (replay checkpoints). */
  snapshotState(): number[] {
    const words = (v: bigint) => [Number(v >> 32n), Number(v & LOW)];
    return [...words(this.tickOffset), ...words(this.alarmNext), this.alarmRunning ? 1 : 0, this.irqPending ? 1 : 0, this.irqEnabled ? 1 : 0, this.timeHigh];
  }

  private read(offset: number): number {
    switch (offset) {
      case RTC_TIME_LOW: {
        const now = this.count();
        this.timeHigh = Number(now >> 32n);
        return Number(now & LOW);
      }
      case RTC_TIME_HIGH:
        return this.timeHigh;
      case RTC_ALARM_LOW:
        return Number(this.alarmNext & LOW);
      case RTC_ALARM_HIGH:
        return Number(this.alarmNext >> 32n);
      case RTC_IRQ_ENABLED:
        return this.irqEnabled ? 1 : 0;
      case RTC_ALARM_STATUS:
        return this.alarmRunning ? 1 : 0;
      default:
        return 0;
    }
  }

  private write(offset: number, value: number): void {
    const v = BigInt(value);
    switch (offset) {
      case RTC_TIME_LOW: {
        const current = this.count();
        const wanted = (current & ~LOW & U64) | v;
        this.tickOffset = (this.tickOffset + wanted - current) & U64;
        return;
      }
      case RTC_TIME_HIGH: {
        const current = this.count();
        const wanted = (current & LOW) | (v << 32n);
        this.tickOffset = (this.tickOffset + wanted - current) & U64;
        return;
      }
      case RTC_ALARM_LOW:
        this.alarmNext = (this.alarmNext & ~LOW & U64) | v;
        this.setAlarm();
        return;
      case RTC_ALARM_HIGH:
        this.alarmNext = (this.alarmNext & LOW) | (v << 32n);
        return;
      case RTC_IRQ_ENABLED:
        this.irqEnabled = (value & 1) !== 0;
        this.updateIrq();
        return;
      case RTC_CLEAR_ALARM:
        this.clearAlarm();
        return;
      case RTC_CLEAR_INTERRUPT:
        this.irqPending = false;
        this.updateIrq();
        return;
      default:
        return;
    }
  }
}
