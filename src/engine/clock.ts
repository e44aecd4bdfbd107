import { assert, assertNs } from './assert.js';
import type { HostClockSource, HostTime } from './host/wallclock.js';

/** QEMU's clock types. Numbers, so they index arrays on hot paths. */
export const ClockType = { Realtime: 0, Virtual: 1, Host: 2 } as const;
export type ClockType = (typeof ClockType)[keyof typeof ClockType];
export const CLOCK_NAMES: readonly string[] = ['realtime', 'virtual', 'host'];

/** 2026-01-01T00:00:00Z: the host clock's base in deterministic mode, unless `-rtc base=` says otherwise. */
export const DEFAULT_HOST_BASE_SECONDS = 1_767_225_600;

export type { HostClockSource, HostTime } from './host/wallclock.js';

/** Nanoseconds since the epoch as a bigint (the goldfish RTC's 64-bit register). */
export function hostTimeToBigNs(time: HostTime): bigint {
  return BigInt(time.seconds) * 1_000_000_000n + BigInt(time.nanos);
}

/** What a machine snapshot keeps of the clocks. */
export interface ClocksState {
  readonly realtimeNs: number;
  readonly virtualNs: number;
  readonly running: boolean;
}

/**
 * The engine's clocks in integer nanoseconds.
 *
 * `realtimeNs` is the master: it only moves forward, through `advance()`, and drives the scheduler.
 * `virtualNs` moves with it while the VM runs and stands still while the VM is stopped (as
 * QEMU_CLOCK_VIRTUAL does), so block jobs, which sleep on the realtime clock, still progress under
 * `-S`. The host clock is `hostBaseSeconds + realtimeNs` in deterministic mode; in host mode it is
 * read through the input gate so a recording can replay it. Timers on the host clock count ns
 * from the start of the run (the same axis as realtime), which keeps them exact.
 */
export class Clocks {
  private realtimeNsValue = 0;
  private virtualNsValue = 0;
  private vmRunning = true;
  private hostSource: HostClockSource | null = null;

  constructor(readonly hostBaseSeconds: number = DEFAULT_HOST_BASE_SECONDS) {
    assert(Number.isSafeInteger(hostBaseSeconds) && hostBaseSeconds >= 0, `bad host clock base ${hostBaseSeconds}`);
  }

  get realtimeNs(): number {
    return this.realtimeNsValue;
  }

  get virtualNs(): number {
    return this.virtualNsValue;
  }

  get running(): boolean {
    return this.vmRunning;
  }

  /** QMP `stop`/`cont`: the virtual clock stands still while the VM is stopped. */
  setRunning(running: boolean): void {
    this.vmRunning = running;
  }

  /** Host mode: host-clock reads go to this source (the input gate), never to `Date` directly. */
  setHostSource(source: HostClockSource | null): void {
    this.hostSource = source;
  }

  /** The wall clock the guest and QMP timestamps see. */
  hostTime(): HostTime {
    if (this.hostSource !== null) return this.hostSource.readHostTime();
    const ns = this.realtimeNsValue;
    return { seconds: this.hostBaseSeconds + Math.floor(ns / 1e9), nanos: ns % 1e9 };
  }

  /** Timer axis of each clock (host timers share realtime's axis; see the class comment). */
  read(clock: ClockType): number {
    return clock === ClockType.Virtual ? this.virtualNsValue : this.realtimeNsValue;
  }

  /** Snapshot state (the host-clock source and base are configuration, not state). */
  saveState(): ClocksState {
    return { realtimeNs: this.realtimeNsValue, virtualNs: this.virtualNsValue, running: this.vmRunning };
  }

  /**
   * Puts the clocks back to a saved instant: the one place time may move backwards, because a
   * restore moves the whole machine back with it (replay seek).
   */
  restoreState(state: ClocksState): void {
    assertNs(state.realtimeNs, 'restored realtime clock');
    assertNs(state.virtualNs, 'restored virtual clock');
    assert(state.virtualNs <= state.realtimeNs, () => `restored virtual clock ${state.virtualNs} ns is ahead of realtime ${state.realtimeNs} ns`);
    assert(typeof state.running === 'boolean', 'restored clock running flag is not a boolean');
    this.realtimeNsValue = state.realtimeNs;
    this.virtualNsValue = state.virtualNs;
    this.vmRunning = state.running;
  }

  /** Moves time forward by `deltaNs`; the only way time changes. */
  advance(deltaNs: number): void {
    assert(Number.isSafeInteger(deltaNs) && deltaNs >= 0, () => `time cannot go backwards (delta ${deltaNs} ns)`);
    if (deltaNs === 0) return;
    const realtimeNs = this.realtimeNsValue + deltaNs;
    assertNs(realtimeNs, 'realtime clock');
    this.realtimeNsValue = realtimeNs;
    if (this.vmRunning) {
      this.virtualNsValue += deltaNs;
      assertNs(this.virtualNsValue, 'virtual clock');
    }
  }

  /**
   * Converts a deadline on `clock` to a master (realtime) deadline, or Infinity if that clock does
   * not move (the virtual clock of a stopped VM).
   */
  toMasterDeadline(clock: ClockType, deadlineNs: number): number {
    if (clock === ClockType.Realtime) return deadlineNs;
    if (clock === ClockType.Virtual) {
      if (!this.vmRunning) return Infinity;
      return this.realtimeNsValue + Math.max(0, deadlineNs - this.virtualNsValue);
    }
    return deadlineNs;
  }
}
