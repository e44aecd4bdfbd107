/**
 * What the gdb stub needs of the machine it debugs. Registers follow gdb's RISC-V numbering
 * without floating point: 0..31 are x0..x31, 32 is pc (the target description says so).
 */

/** Why the target stopped after a step or a run. */
export type GdbStop =
  | { readonly kind: 'trap' }
  | { readonly kind: 'interrupt' }
  /** Replay only: play reached the start or the end of the recording. */
  | { readonly kind: 'history'; readonly end: 'begin' | 'end' }
  /** The guest powered off (sifive_test / HTIF) with this status. */
  | { readonly kind: 'exited'; readonly code: number };

export interface GdbTarget {
  /** Harts, as gdb threads 1..N. */
  readonly threadCount: number;
  /** XLEN of the harts (gdb's register width). */
  readonly xlen: 32 | 64;
  /** True when execution can also go backwards (a replay with snapshots). */
  readonly reversible: boolean;
  /** True when registers and memory may be written (not during replay: the run would diverge). */
  readonly writable: boolean;
  readRegister(thread: number, regno: number): bigint | undefined;
  writeRegister(thread: number, regno: number, value: bigint): boolean;
  /** Guest memory as hart 0 sees it (physical addresses); null when unmapped. */
  readMemory(addr: number, length: number): Uint8Array | null;
  writeMemory(addr: number, data: Uint8Array): boolean;
  /** The program counter of `thread`. */
  pc(thread: number): number;
  /** Executes exactly one instruction (of the machine, whichever hart runs it). */
  step(): GdbStop;
  /**
   * Runs forward at most `budget` instructions, stopping after the first instruction that leaves
   * some hart's pc at a breakpoint. Returns null when the budget ran out without a stop.
   */
  runSlice(breakpoints: ReadonlySet<number>, budget: number): GdbStop | null;
  /** Reverse single step (reversible targets). */
  reverseStep?(): GdbStop;
  /** Reverse continue: back to the latest breakpoint hit before now, or the start. */
  reverseContinue?(breakpoints: ReadonlySet<number>): GdbStop;
}
