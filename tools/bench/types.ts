/** One figure printed by `npm run bench`. */
export interface BenchResult {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** The same figure measured on real QEMU in the same run, when it is installed. */
  readonly qemu?: number;
  /** value / qemu (or qemu / value for time-like units where lower is better), when qemu is set. */
  readonly ratio?: number;
  readonly note?: string;
}

export interface BenchCase {
  readonly name: string;
  /** Groups for `--only`. */
  readonly group: string;
  run(): BenchResult[] | Promise<BenchResult[]>;
}

/** Wall time of `fn` in ms (tools/ may read the host clock). */
export function timeMs(fn: () => void): number {
  const start = performance.now();
  fn();
  return performance.now() - start;
}

/** Runs `fn` repeatedly until at least `minMs` passed; returns operations per second. */
export function opsPerSecond(fn: () => number, minMs = 300): number {
  fn(); // warm up
  let ops = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < minMs) {
    ops += fn();
    elapsed = performance.now() - start;
  }
  return (ops / elapsed) * 1000;
}
