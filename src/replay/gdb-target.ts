/**
 * The gdb stub's target during play: registers and memory of the replayed harts, execution by
 * play itself (so every step stays on the recording), and reverse execution by seek: a reverse
 * step is a seek to one instruction earlier, a reverse continue scans backwards window by window
 * (from one snapshot to the next) for the last breakpoint hit. Writes are refused: a changed
 * register would make play diverge from the log.
 */
import { assert } from '../engine/assert.js';
import type { RiscvHart } from '../engine/targets/riscv/hart.js';
import type { GdbStop, GdbTarget } from '../gdbstub/target.js';
import type { Player } from './player.js';

/** Bound on loop slices spent reaching one stop point (a stuck play ends the wait with a trap). */
const MAX_ADVANCES = 1 << 24;

export class ReplayGdbTarget implements GdbTarget {
  readonly reversible = true;
  readonly writable = false;
  private readonly harts: RiscvHart[];

  /** `harts`: the machine's, taken before play wraps the CPU driver (riscvHarts of the board). */
  constructor(
    private readonly player: Player,
    harts: readonly RiscvHart[],
  ) {
    assert(harts.length > 0, 'gdb needs a machine with harts');
    this.harts = [...harts];
    player.start();
  }

  get threadCount(): number {
    return this.harts.length;
  }

  get xlen(): 32 | 64 {
    return this.harts[0]!.xlen;
  }

  private hart(thread: number): RiscvHart {
    return this.harts[thread - 1] ?? this.harts[0]!;
  }

  readRegister(thread: number, regno: number): bigint | undefined {
    const hart = this.hart(thread);
    if (regno >= 0 && regno < 32) return hart.getX(regno);
    if (regno === 32) return hart.getPc();
    return undefined;
  }

  writeRegister(): boolean {
    return false;
  }

  writeMemory(): boolean {
    return false;
  }

  pc(thread: number): number {
    return Number(this.hart(thread).getPc());
  }

  readMemory(addr: number, length: number): Uint8Array | null {
    const memory = this.harts[0]!.memory;
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) {
      const { value, status } = memory.load(addr + i, 1);
      if (status !== 0) return i === 0 ? null : out.subarray(0, i);
      out[i] = value;
    }
    return out;
  }

  /** Plays until the instruction count is `icount` (or play ends); the stop that says which. */
  private playTo(icount: number): GdbStop {
    const player = this.player;
    if (icount > player.endIcount) icount = player.endIcount;
    player.setBreak(icount);
    try {
      for (let i = 0; i < MAX_ADVANCES && !player.paused; i++) {
        const result = player.advance(1000);
        if (result !== null) {
          const shutdown = result.reachedEnd;
          return shutdown ? { kind: 'history', end: 'end' } : { kind: 'trap' };
        }
      }
    } finally {
      player.setBreak(null);
    }
    return player.icount >= player.endIcount ? { kind: 'history', end: 'end' } : { kind: 'trap' };
  }

  step(): GdbStop {
    if (this.player.icount >= this.player.endIcount) return { kind: 'history', end: 'end' };
    return this.playTo(this.player.icount + 1);
  }

  private hit(breakpoints: ReadonlySet<number>): boolean {
    for (const hart of this.harts) if (breakpoints.has(Number(hart.getPc()))) return true;
    return false;
  }

  runSlice(breakpoints: ReadonlySet<number>, budget: number): GdbStop | null {
    if (breakpoints.size === 0) {
      const end = Math.min(this.player.endIcount, this.player.icount + budget);
      const stop = this.playTo(end);
      return stop.kind === 'history' ? stop : this.player.icount >= this.player.endIcount ? { kind: 'history', end: 'end' } : null;
    }
    for (let i = 0; i < budget; i++) {
      const stop = this.step();
      if (stop.kind !== 'trap') return stop;
      if (this.hit(breakpoints)) return stop;
    }
    return null;
  }

  reverseStep(): GdbStop {
    const now = this.player.icount;
    if (now === 0) return { kind: 'history', end: 'begin' };
    this.player.seek(now - 1);
    return this.playTo(now - 1);
  }

  /**
   * The latest instruction count before now at which a breakpoint is hit: replays each window
   * between snapshots forward (newest window first) noting hits, and goes to the last one.
   */
  reverseContinue(breakpoints: ReadonlySet<number>): GdbStop {
    const end = this.player.icount;
    let windowEnd = end;
    for (let guard = 0; guard < 1 << 20 && windowEnd > 0; guard++) {
      const snapshot = this.player.snapshots.nearest(windowEnd - 1);
      const windowStart = snapshot?.point.icount ?? 0;
      this.player.seek(windowStart);
      this.playTo(windowStart);
      let last = -1;
      if (this.hit(breakpoints) && windowStart < end) last = windowStart;
      while (this.player.icount < windowEnd - 1) {
        if (this.step().kind !== 'trap') break;
        if (this.hit(breakpoints)) last = this.player.icount;
      }
      if (last >= 0) {
        this.player.seek(last);
        return this.playTo(last);
      }
      windowEnd = windowStart;
    }
    this.player.seek(0);
    this.playTo(0);
    return { kind: 'history', end: 'begin' };
  }
}
