import { assert } from '../../assert.js';
import type { CpuDriver, MainLoop } from '../../main-loop.js';
import { RiscvHart, type HartOptions } from './hart.js';
import { RiscvJit } from './translate.js';

/** Options of the CPU driver. */
export interface RiscvCpuOptions extends Omit<HartOptions, 'readTime'> {
  /** `-icount shift=N`: each instruction takes 2^N ns of virtual time. */
  readonly icountShift?: number;
  /** Translate hot code to JavaScript (default true); false = `-accel tcg,jit=off`. */
  readonly jit?: boolean;
  /** Executions before a block is translated (tests lower it). */
  readonly jitThreshold?: number;
  /** mtime source; defaults to virtual ns / 100 (10 MHz timebase); null = no `time` CSR (QEMU's spike). */
  readonly readTime?: (() => bigint) | null;
}

/** Instructions between checks of the input gate inside a slice. */
const GATE_CHECK_INSNS = 65536;

/**
 * The main loop's view of a RISC-V hart: runs it in slices, keeps virtual time exactly equal to the
 * instruction count << shift, stops at exact instruction counts (timer deadlines, replay inputs).
 */
export class RiscvCpu implements CpuDriver {
  readonly hart: RiscvHart;
  readonly shift: number;
  private readonly nsPerInsn: number;
  private sliceBaseNs = 0;
  private sliceBaseIcount = 0;
  private inSlice = false;
  /** The translator, or null when the hart only interprets. */
  private readonly jit: RiscvJit | null = null;

  constructor(
    private readonly loop: MainLoop,
    options: RiscvCpuOptions,
  ) {
    this.shift = options.icountShift ?? 0;
    assert(Number.isInteger(this.shift) && this.shift >= 0 && this.shift <= 10, `bad icount shift ${this.shift}`);
    this.nsPerInsn = 2 ** this.shift;
    const readTime = options.readTime === undefined ? () => BigInt(Math.floor(loop.clocks.virtualNs / 100)) : options.readTime;
    this.hart = new RiscvHart({ ...options, readTime });
    this.hart.syncClock = () => this.syncClock();
    if (options.jit ?? true) {
      this.jit = new RiscvJit(options.jitThreshold);
      this.hart.attachJit(this.jit);
    }
  }

  /** Units of guest code translated so far (always 0 under `-accel tcg,jit=off`). */
  get translatedBlocks(): number {
    return this.jit?.compiled ?? 0;
  }

  get runnable(): boolean {
    return this.hart.runnable;
  }

  get icount(): number {
    return this.hart.icount;
  }

  /** Moves the clocks to match the instructions retired so far in this slice. */
  syncClock(): void {
    if (!this.inSlice) return;
    const target = this.sliceBaseNs + (this.hart.icount - this.sliceBaseIcount) * this.nsPerInsn;
    const now = this.loop.clocks.realtimeNs;
    if (target > now) this.loop.clocks.advance(target - now);
  }

  execute(untilNs: number): void {
    const clocks = this.loop.clocks;
    const gate = this.loop.gate;
    const now = clocks.realtimeNs;
    if (untilNs <= now && !Number.isFinite(gate.nextDueIcount)) return;
    let budget = Math.max(1, Math.ceil((untilNs - now) / this.nsPerInsn));
    const due = gate.nextDueIcount;
    if (Number.isFinite(due)) budget = Math.min(budget, Math.max(0, due - this.hart.icount));
    this.sliceBaseNs = now;
    this.sliceBaseIcount = this.hart.icount;
    this.inSlice = true;
    try {
      let left = budget;
      while (left > 0) {
        const chunk = Math.min(left, GATE_CHECK_INSNS);
        const done = this.hart.run(chunk);
        left -= done;
        if (done < chunk || this.hart.stopRequested || !this.hart.runnable) break;
        if (gate.hasPending) break;
      }
      this.syncClock();
    } finally {
      this.inSlice = false;
    }
  }
}
