import { assert } from '../engine/assert.js';

/** Block jobs account their speed in slices of this length (BLOCK_JOB_SLICE_TIME). */
export const BLOCK_JOB_SLICE_NS = 100_000_000;

/**
 * QEMU's RateLimit: bytes are counted per time slice; once a slice's quota is used up the caller
 * is told how long to sleep until the slice that would have covered those bytes ends. Time comes
 * from the caller (the realtime clock), so a limited job sleeps in virtual time only.
 */
export class RateLimit {
  private sliceNs = BLOCK_JOB_SLICE_NS;
  /** Bytes per slice; 0 means unlimited. */
  private sliceQuota = 0;
  private sliceStartNs = 0;
  private sliceEndNs = 0;
  private dispatched = 0;

  get enabled(): boolean {
    return this.sliceQuota !== 0;
  }

  /** ratelimit_set_speed: `speedBytesPerSecond` 0 disables the limit. */
  setSpeed(speedBytesPerSecond: number, sliceNs: number = BLOCK_JOB_SLICE_NS): void {
    assert(Number.isSafeInteger(speedBytesPerSecond) && speedBytesPerSecond >= 0, `bad speed ${speedBytesPerSecond}`);
    assert(Number.isSafeInteger(sliceNs) && sliceNs > 0, `bad slice ${sliceNs}`);
    this.sliceNs = sliceNs;
    this.sliceQuota = speedBytesPerSecond === 0 ? 0 : Math.max(Math.floor((speedBytesPerSecond * sliceNs) / 1e9), 1);
  }

  /**
   * ratelimit_calculate_delay: accounts `bytes` dispatched at `nowNs` and returns how many ns the
   * caller should wait before dispatching more (0: go on).
   */
  calculateDelay(nowNs: number, bytes: number): number {
    assert(Number.isSafeInteger(bytes) && bytes >= 0, `bad byte count ${bytes}`);
    if (this.sliceQuota === 0) return 0;
    if (this.sliceEndNs < nowNs) {
      // The previous (possibly extended) slice is over: start accounting afresh.
      this.sliceStartNs = nowNs;
      this.sliceEndNs = nowNs + this.sliceNs;
      this.dispatched = 0;
    }
    this.dispatched += bytes;
    if (this.dispatched < this.sliceQuota) return 0;
    this.sliceEndNs = this.sliceStartNs + Math.floor(this.dispatched / this.sliceQuota) * this.sliceNs;
    return this.sliceEndNs - nowNs;
  }
}
