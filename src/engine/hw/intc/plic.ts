import { assert } from '../../assert.js';
import { IrqPin } from '../../irq.js';
import type { MmioOps } from '../../memory.js';

export const PLIC_PRIORITY_BASE = 0x0;
export const PLIC_PENDING_BASE = 0x1000;
export const PLIC_ENABLE_BASE = 0x2000;
export const PLIC_ENABLE_STRIDE = 0x80;
export const PLIC_CONTEXT_BASE = 0x200000;
export const PLIC_CONTEXT_STRIDE = 0x1000;
export const PLIC_SIZE = 0x600000;
/** The virt board's source count (ids 0..95; 0 means "no interrupt"). */
export const VIRT_PLIC_NUM_SOURCES = 96;
/** Priorities are 0..7 (3 bits), as QEMU's virt configures the PLIC. */
export const PLIC_NUM_PRIORITIES = 7;

/** PLIC state for machine snapshots (registers, and the levels of its input and output lines). */
export interface PlicState {
  readonly priority: readonly number[];
  readonly pending: readonly number[];
  readonly claimed: readonly number[];
  readonly enable: readonly number[];
  readonly threshold: readonly number[];
  readonly sources: readonly boolean[];
  readonly outputs: readonly boolean[];
}

/**
 * The SiFive PLIC as QEMU 7.2's virt wires it (qemu-system-riscv64 7.2 as Debian ships it): per-source
 * priority, pending bits, per-context enables, threshold and claim/complete; context 2h is hart h's
 * M mode (MEIP), 2h+1 its S mode (SEIP). A source's pending bit is set by each raise of its line
 * (every qemu_set_irq(1) a device makes, not only a rising edge); lowering the line leaves it, and
 * completion does not look at line levels: devices re-raise their lines on each state update.
 * Like QEMU, a write to an enable word does not re-evaluate the outputs (the next update does).
 */
export class Plic {
  /** Input lines, index = source id (0 is unused but present so indices match). */
  readonly sources: IrqPin[] = [];
  /** Outputs per context: meip for even contexts, seip for odd. */
  readonly contextIrq: IrqPin[] = [];
  readonly mmio: MmioOps;
  private readonly words: number;
  private readonly priority: Uint32Array;
  private readonly pending: Uint32Array;
  private readonly claimed: Uint32Array;
  private readonly enable: Uint32Array;
  private readonly threshold: Uint32Array;

  constructor(
    readonly path: string,
    readonly numHarts: number,
    readonly numSources = VIRT_PLIC_NUM_SOURCES,
  ) {
    assert(numHarts >= 1 && numHarts <= 512 && numSources >= 2 && numSources <= 1024, 'bad PLIC shape');
    this.words = Math.ceil(numSources / 32);
    const contexts = numHarts * 2;
    this.priority = new Uint32Array(numSources);
    this.pending = new Uint32Array(this.words);
    this.claimed = new Uint32Array(this.words);
    this.enable = new Uint32Array(this.words * contexts);
    this.threshold = new Uint32Array(contexts);
    for (let s = 0; s < numSources; s++) {
      const source = s;
      this.sources.push(new IrqPin(`${path}/source[${s}]`, (level) => this.lineSet(source, level)));
    }
    for (let c = 0; c < contexts; c++) this.contextIrq.push(new IrqPin(`${path}/${c % 2 === 0 ? 'meip' : 'seip'}[${c >> 1}]`));
    this.mmio = {
      read: (offset, size) => (size === 4 ? this.read(offset) : 0),
      write: (offset, size, value) => {
        if (size === 4) this.write(offset, value >>> 0);
      },
    };
  }

  get numContexts(): number {
    return this.threshold.length;
  }

  /** The M-mode (MEIP) output of a hart. */
  meip(hart: number): IrqPin {
    return this.contextIrq[hart * 2]!;
  }

  /** The S-mode (SEIP) output of a hart. */
  seip(hart: number): IrqPin {
    return this.contextIrq[hart * 2 + 1]!;
  }

  /** sifive_plic_reset: everything cleared, every output lowered (M then S per hart); line levels are not sampled. */
  reset(): void {
    this.priority.fill(0);
    this.pending.fill(0);
    this.claimed.fill(0);
    this.enable.fill(0);
    this.threshold.fill(0);
    for (let h = 0; h < this.numHarts; h++) {
      this.meip(h).lower();
      this.seip(h).lower();
    }
  }

  /**
   * sifive_plic_irq_request, called on every set of a source line: a raise makes the source pending
   * (again, even if the line was already high) and re-evaluates the outputs; a lower does nothing.
   * Source 0 can pend too (set_irq_in reaches it) but its priority is fixed at 0, so it never wins.
   */
  private lineSet(source: number, level: boolean): void {
    if (!level) return;
    this.setPending(source, true);
    this.update();
  }

  private setPending(source: number, on: boolean): void {
    const bit = 1 << (source & 31);
    const w = source >> 5;
    this.pending[w] = on ? this.pending[w]! | bit : this.pending[w]! & ~bit;
  }

  /** The best claimable source for a context (highest priority above threshold, lowest id on ties), or 0. */
  private best(context: number): number {
    let best = 0;
    let bestPriority = this.threshold[context]!;
    for (let w = 0; w < this.words; w++) {
      let bits = this.pending[w]! & ~this.claimed[w]! & this.enable[context * this.words + w]!;
      while (bits !== 0) {
        const low = bits & -bits;
        const source = w * 32 + (31 - Math.clz32(low));
        bits ^= low;
        if (source === 0 || source >= this.numSources) continue;
        const p = this.priority[source]!;
        if (p > bestPriority) {
          bestPriority = p;
          best = source;
        }
      }
    }
    return best;
  }

  private update(): void {
    for (let c = 0; c < this.numContexts; c++) this.contextIrq[c]!.set(this.best(c) !== 0);
  }

  private read(offset: number): number {
    if (offset < PLIC_PENDING_BASE) {
      const source = (offset - PLIC_PRIORITY_BASE) >> 2;
      return source < this.numSources ? this.priority[source]! : 0;
    }
    if (offset < PLIC_ENABLE_BASE) {
      const w = (offset - PLIC_PENDING_BASE) >> 2;
      return w < this.words ? this.pending[w]! : 0;
    }
    if (offset < PLIC_CONTEXT_BASE) {
      const context = Math.floor((offset - PLIC_ENABLE_BASE) / PLIC_ENABLE_STRIDE);
      const w = ((offset - PLIC_ENABLE_BASE) % PLIC_ENABLE_STRIDE) >> 2;
      return context < this.numContexts && w < this.words ? this.enable[context * this.words + w]! : 0;
    }
    const context = Math.floor((offset - PLIC_CONTEXT_BASE) / PLIC_CONTEXT_STRIDE);
    const reg = (offset - PLIC_CONTEXT_BASE) % PLIC_CONTEXT_STRIDE;
    if (context >= this.numContexts) return 0;
    if (reg === 0) return this.threshold[context]!;
    if (reg === 4) return this.claim(context);
    return 0;
  }

  private claim(context: number): number {
    const source = this.best(context);
    if (source !== 0) {
      this.setPending(source, false);
      this.claimed[source >> 5] = this.claimed[source >> 5]! | (1 << (source & 31));
    }
    this.update();
    return source;
  }

  private write(offset: number, value: number): void {
    if (offset < PLIC_PENDING_BASE) {
      const source = (offset - PLIC_PRIORITY_BASE) >> 2;
      if (source > 0 && source < this.numSources) {
        this.priority[source] = value & PLIC_NUM_PRIORITIES;
        this.update();
      }
      return;
    }
    if (offset < PLIC_ENABLE_BASE) return; // pending bits are read-only
    if (offset < PLIC_CONTEXT_BASE) {
      const context = Math.floor((offset - PLIC_ENABLE_BASE) / PLIC_ENABLE_STRIDE);
      const w = ((offset - PLIC_ENABLE_BASE) % PLIC_ENABLE_STRIDE) >> 2;
      if (context < this.numContexts && w < this.words) {
        // Stored as written, as QEMU 7.2 does (source 0's bit too: it can never be claimed), and,
        // as there, without re-evaluating the outputs.
        this.enable[context * this.words + w] = value >>> 0;
      }
      return;
    }
    const context = Math.floor((offset - PLIC_CONTEXT_BASE) / PLIC_CONTEXT_STRIDE);
    const reg = (offset - PLIC_CONTEXT_BASE) % PLIC_CONTEXT_STRIDE;
    if (context >= this.numContexts) return;
    if (reg === 0) {
      this.threshold[context] = value & PLIC_NUM_PRIORITIES;
      this.update();
    } else if (reg === 4) {
      // Completion: any source below numSources, enabled in this context or not; pending is
      // untouched (a device still holding its line high raises it again when it next updates).
      const source = value;
      if (source >= this.numSources) return;
      this.claimed[source >> 5] = this.claimed[source >> 5]! & ~(1 << (source & 31));
      this.update();
    }
  }

  saveState(): PlicState {
    return {
      priority: Array.from(this.priority),
      pending: Array.from(this.pending),
      claimed: Array.from(this.claimed),
      enable: Array.from(this.enable),
      threshold: Array.from(this.threshold),
      sources: this.sources.map((p) => p.level),
      outputs: this.contextIrq.map((p) => p.level),
    };
  }

  /** Restores registers and line levels without re-evaluating (the harts' mip bits are restored with them). */
  restoreState(s: PlicState): void {
    const words = (name: string, into: Uint32Array, from: readonly number[]): void => {
      assert(from.length === into.length, () => `${this.path}: snapshot ${name} has ${from.length} words, expected ${into.length}`);
      from.forEach((w, i) => {
        assert(Number.isInteger(w) && w >= 0 && w <= 0xffffffff, () => `${this.path}: bad restored ${name}[${i}]`);
        into[i] = w;
      });
    };
    assert(s.sources.length === this.sources.length && s.outputs.length === this.contextIrq.length, () => `${this.path}: snapshot is for another PLIC shape`);
    words('priority', this.priority, s.priority);
    words('pending', this.pending, s.pending);
    words('claimed', this.claimed, s.claimed);
    words('enable', this.enable, s.enable);
    words('threshold', this.threshold, s.threshold);
    s.sources.forEach((level, i) => this.sources[i]!.restoreLevel(level));
    s.outputs.forEach((level, i) => this.contextIrq[i]!.restoreLevel(level));
  }

  /** State for digests and tests. */
  snapshotState(): number[] {
    return [...this.priority, ...this.pending, ...this.claimed, ...this.enable, ...this.threshold];
  }
}
