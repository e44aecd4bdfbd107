import { assert } from '../assert.js';

/** A translated unit: runs guest code from `pc` and returns; `len` guest instructions per pass. */
export interface TranslatedBlock {
  readonly pc: number;
  /** Key extra (privilege / MMU mode) the translation is valid for. */
  readonly mode: number;
  /** Guest instructions in one pass of the block (the budget check uses it). */
  readonly len: number;
  /** Physical page numbers the block's code came from (for invalidation). */
  readonly pages: readonly number[];
  readonly fn: (...args: never[]) => unknown;
}

/**
 * tb_jmp_cache: a direct-mapped, typed-array indexed cache from (pc, mode) to translated blocks,
 * plus per-slot hotness counters so only code that ran `threshold` times gets translated.
 */
export class JumpCache<B extends TranslatedBlock> {
  readonly size: number;
  /** Exposed so a dispatcher can probe the cache inline (same hash as slotOf). */
  readonly tagPc: Float64Array;
  readonly tagMode: Int32Array;
  readonly blocks: (B | undefined)[];
  private readonly heat: Uint16Array;
  private readonly heatPc: Float64Array;
  /** Translations thrown away (invalidations), for tests and stats. */
  flushes = 0;

  constructor(
    bits: number,
    readonly threshold: number,
  ) {
    assert(bits >= 4 && bits <= 20, `bad jump cache size 2^${bits}`);
    assert(threshold >= 1 && threshold < 65535, `bad hotness threshold ${threshold}`);
    this.size = 1 << bits;
    this.tagPc = new Float64Array(this.size).fill(NaN);
    this.tagMode = new Int32Array(this.size);
    this.blocks = new Array<B | undefined>(this.size);
    this.heat = new Uint16Array(this.size);
    this.heatPc = new Float64Array(this.size).fill(NaN);
  }

  slotOf(pc: number): number {
    // pc is a (possibly negative, up to 2^52) integer: fold both halves.
    const lo = pc | 0;
    const hi = (pc / 4294967296) | 0;
    return ((lo >>> 1) ^ (lo >>> 13) ^ hi) & (this.size - 1);
  }

  lookup(pc: number, mode: number): B | undefined {
    const slot = this.slotOf(pc);
    if (this.tagPc[slot] === pc && this.tagMode[slot] === mode) return this.blocks[slot];
    return undefined;
  }

  /** Counts one execution of `pc`; true when it just became hot. */
  touch(pc: number): boolean {
    const slot = this.slotOf(pc);
    if (this.heatPc[slot] !== pc) {
      this.heatPc[slot] = pc;
      this.heat[slot] = 1;
      return this.threshold === 1;
    }
    const h = this.heat[slot]! + 1;
    this.heat[slot] = h;
    return h === this.threshold;
  }

  insert(block: B): void {
    const slot = this.slotOf(block.pc);
    this.tagPc[slot] = block.pc;
    this.tagMode[slot] = block.mode;
    this.blocks[slot] = block;
  }

  /** Forgets every translation (fence.i, satp writes, sfence.vma, writes to translated pages). */
  flush(): void {
    this.tagPc.fill(NaN);
    this.blocks.fill(undefined);
    this.heatPc.fill(NaN);
    this.flushes++;
  }
}

/**
 * Physical memory holding translated code: a page bitmap for the common "no code here" answer and,
 * per marked page, the exact byte ranges, so data that shares a page with code (globals right after
 * .text) does not throw translations away.
 */
export class CodePages {
  private readonly bits = new Uint8Array((2 ** 32 + 2 ** 31) / 4096);
  private readonly ranges = new Map<number, number[]>();

  /** True if the page starting at `pagePaddr` holds translated code. */
  pageHasCode(pagePaddr: number): boolean {
    return this.bits[Math.floor(pagePaddr / 4096)] === 1;
  }

  /** Records that [paddr, paddr+len) (within one page) holds translated code; true if the page is new. */
  mark(paddr: number, len: number): boolean {
    const page = Math.floor(paddr / 4096);
    if (!this.covers(page)) return false;
    const fresh = this.bits[page] !== 1;
    this.bits[page] = 1;
    let list = this.ranges.get(page);
    if (list === undefined) {
      list = [];
      this.ranges.set(page, list);
    }
    list.push(paddr, paddr + len);
    return fresh;
  }

  /** True if [paddr, paddr+len) overlaps translated code. */
  hit(paddr: number, len: number): boolean {
    if (this.ranges.size === 0) return false;
    const first = Math.floor(paddr / 4096);
    const last = Math.floor((paddr + len - 1) / 4096);
    for (let page = first; page <= last; page++) {
      if (this.bits[page] !== 1) continue;
      const list = this.ranges.get(page);
      if (list === undefined) continue;
      for (let i = 0; i < list.length; i += 2) {
        if (paddr < list[i + 1]! && paddr + len > list[i]!) return true;
      }
    }
    return false;
  }

  clear(): void {
    if (this.ranges.size === 0) return;
    for (const page of this.ranges.keys()) this.bits[page] = 0;
    this.ranges.clear();
  }

  /** Pages representable in the bitmap (others are never translated). */
  covers(page: number): boolean {
    return page >= 0 && page < this.bits.length;
  }
}
