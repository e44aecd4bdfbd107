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

/**
 * The SiFive PLIC as QEMU's virt wires it: per-source priority, pending bits, per-context enables,
 * threshold and claim/complete; context 2h is hart h's M mode (MEIP), 2h+1 its S mode (SEIP).
 * Sources are level-triggered: a source whose line is still high at completion is pending again.
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
      this.sources.push(new IrqPin(`${path}/source[${s}]`, (level) => this.lineChanged(source, level)));
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

  reset(): void {
    this.priority.fill(0);
    this.pending.fill(0);
    this.claimed.fill(0);
    this.enable.fill(0);
    this.threshold.fill(0);
    for (let s = 1; s < this.numSources; s++) if (this.sources[s]!.level) this.setPending(s, true);
    this.update();
  }

  private lineChanged(source: number, level: boolean): void {
    if (source === 0) return;
    this.setPending(source, level);
    this.update();
  }

  private setPending(source: number, on: boolean): void {
    const bit = 1 << (source & 31);
    const w = source >> 5;
    this.pending[w] = on ? this.pending[w]! | bit : this.pending[w]! & ~bit;
  }

  private isEnabled(context: number, source: number): boolean {
    return ((this.enable[context * this.words + (source >> 5)]! >>> (source & 31)) & 1) === 1;
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
        // Stored as written, as QEMU 7.2 does (source 0's bit too: it can never be pending).
        this.enable[context * this.words + w] = value >>> 0;
        this.update();
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
      const source = value;
      if (source === 0 || source >= this.numSources || !this.isEnabled(context, source)) return;
      this.claimed[source >> 5] = this.claimed[source >> 5]! & ~(1 << (source & 31));
      if (this.sources[source]!.level) this.setPending(source, true);
      this.update();
    }
  }

  /** State for digests and tests. */
  snapshotState(): number[] {
    return [...this.priority, ...this.pending, ...this.claimed, ...this.enable, ...this.threshold];
  }
}
