/**
 * Random qtest scripts over the time-independent parts of the virt board, for differential runs
 * against QEMU (`tsqemu-qtest fuzz-diff`, tests/diff/qtest-fuzz.test.ts). Seeded and deterministic.
 * Areas: RAM, the PLIC's priority/enable/threshold/claim registers, empty virtio-mmio slots, and the
 * UART's scratch/line-control/divisor/interrupt-enable registers (no loopback: its receive timeout
 * runs on time, which moves with QEMU's CPU but not under -accel qtest).
 */

export type FuzzArea = 'ram' | 'plic' | 'virtio' | 'uart';
export const FUZZ_AREAS: readonly FuzzArea[] = ['ram', 'plic', 'virtio', 'uart'];

/** xorshift32: a tiny seeded generator (scripts must not depend on the host). */
class Rand {
  private s: number;
  constructor(seed: number) {
    this.s = (seed >>> 0) || 0x9e3779b9;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  below(n: number): number {
    return this.next() % n;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }
}

const hex = (v: number | bigint): string => `0x${v.toString(16)}`;
const RAM = 0x8000_0000;
const PLIC = 0xc00_0000;

function ramLine(r: Rand): string {
  const addr = RAM + r.below(0x1000);
  const width = r.pick(['b', 'w', 'l', 'q'] as const);
  switch (r.below(7)) {
    case 0:
      return `write${width} ${hex(addr)} ${hex(r.next())}`;
    case 1:
      return `read${width} ${hex(addr)}`;
    case 2: {
      const len = 1 + r.below(16);
      const data = Array.from({ length: len }, () => r.below(256).toString(16).padStart(2, '0')).join('');
      return `write ${hex(addr)} ${len} 0x${data}`;
    }
    case 3:
      return `read ${hex(addr)} ${1 + r.below(32)}`;
    case 4:
      return `b64read ${hex(addr)} ${1 + r.below(32)}`;
    case 5:
      return `memset ${hex(addr)} ${r.below(64)} ${hex(r.below(256))}`;
    default:
      return `writeq ${hex(addr - (addr % 8))} ${hex((BigInt(r.next()) << 32n) | BigInt(r.next()))}`;
  }
}

function plicLine(r: Rand): string {
  const ctx = r.below(2);
  const src = 1 + r.below(95);
  const regs = [PLIC + 4 * src, PLIC + 0x2000 + 0x80 * ctx + 4 * r.below(3), PLIC + 0x20_0000 + 0x1000 * ctx, PLIC + 0x20_0004 + 0x1000 * ctx, PLIC + 0x1000 + 4 * r.below(3)];
  const addr = r.pick(regs);
  return r.below(2) === 0 ? `readl ${hex(addr)}` : `writel ${hex(addr)} ${hex(r.pick([0, 1, 2, 7, 0xffffffff, r.next()]))}`;
}

function virtioLine(r: Rand): string {
  const slot = 0x1000_1000 + 0x1000 * r.below(8);
  const off = 4 * r.below(0x48);
  return r.below(3) === 0 ? `writel ${hex(slot + off)} ${hex(r.next())}` : `readl ${hex(slot + off)}`;
}

function uartLine(r: Rand): string {
  const base = 0x1000_0000;
  switch (r.below(6)) {
    case 0:
      return `writeb ${hex(base + 7)} ${hex(r.below(256))}`;
    case 1:
      return `writeb ${hex(base + 3)} ${hex(r.pick([0x03, 0x83, 0x1b, 0x80 | r.below(0x40)]))}`;
    case 2:
      return `writeb ${hex(base + r.below(2))} ${hex(r.below(256))}`;
    default:
      return `readb ${hex(base + r.pick([0, 1, 2, 3, 4, 5, 6, 7]))}`;
  }
}

const GENERATORS: Readonly<Record<FuzzArea, (r: Rand) => string>> = { ram: ramLine, plic: plicLine, virtio: virtioLine, uart: uartLine };

/** `count` commands drawn from `areas`. */
export function randomScript(seed: number, count: number, areas: readonly FuzzArea[] = FUZZ_AREAS): string[] {
  if (!(Number.isSafeInteger(count) && count >= 0 && count <= 1 << 20)) throw new RangeError(`bad command count ${count}`);
  if (areas.length === 0) throw new RangeError('no fuzz areas');
  const r = new Rand(seed);
  return Array.from({ length: count }, () => GENERATORS[r.pick(areas)](r));
}
