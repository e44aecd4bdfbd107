import { CodePages, JumpCache, type TranslatedBlock } from '../../tcg/jump-cache.js';
import { MS } from './constants.js';
import { type Insn, Op } from './decode.js';
import { lt64v, ltu64v, type RiscvHart, sll64, sra64, srl64, TLB_SIZE, TrapSignal } from './hart.js';

/** A block's entry: runs from hart.pc, sets hart.pc / hart.icount itself; `budget` bounds self-loops. */
export type BlockFn = (h: RiscvHart, xi: Int32Array, budget: number) => void;

export interface RvBlock extends TranslatedBlock {
  readonly fn: BlockFn;
}

interface Entry {
  readonly start: number;
  readonly insns: readonly Insn[];
  readonly pcs: readonly number[];
}

/**
 * Regenerations of one page's unit before new entries get functions of their own (bounds compile
 * work). Measured on the benchmark guest: every regeneration makes a fresh function that V8 must
 * tier up again, which cost more than the dispatcher round trips it saves (12 ran slowest, 1 best).
 */
const MAX_UNIT_COMPILES = 1;

/** Longest block in instructions (one pass). */
const MAX_BLOCK_INSNS = 64;
/** Executions of a pc before it is translated (DESIGN.md: compile only hot code). */
export const JIT_HOT_THRESHOLD = 1000;

/** Ops the translator emits inline; any other non-control op goes through the interpreter's execute(). */
const CONTROL_STOP = new Set<number>([
  Op.ECALL, Op.EBREAK, Op.MRET, Op.SRET, Op.WFI, Op.SFENCE_VMA, Op.FENCE_I, Op.ILLEGAL,
  Op.CSRRW, Op.CSRRS, Op.CSRRC, Op.CSRRWI, Op.CSRRSI, Op.CSRRCI,
]);

const helpers = { sll64, srl64, sra64, lt64v, ltu64v, TRAP: TrapSignal.instance };
const PAGE = 4096;
/** First TLB slot of loads and of stores, and the slot mask (the hart's layout: fetch, load, store). */
const TLB_LOAD = TLB_SIZE;
const TLB_STORE = 2 * TLB_SIZE;
const TLB_MASK = TLB_SIZE - 1;

/** Splits a pc-like number into (lo, hi) int32 constants of its XLEN register value. */
function split(v: number, xlen: 32 | 64): [number, number] {
  if (xlen === 32) {
    const lo = v | 0;
    return [lo, lo >> 31];
  }
  const hi = Math.floor(v / 4294967296);
  const lo = v - hi * 4294967296;
  return [lo | 0, hi | 0];
}

/**
 * The RISC-V translator: turns hot guest code into JavaScript functions (one per block, with a
 * self-loop when the block branches back to its start), cached in a typed-array jump cache keyed
 * by (pc, privilege). Exact icount: a block runs only when the budget covers it, and every
 * instruction that can trap or touch MMIO publishes the exact count first.
 */
export class RiscvJit {
  readonly cache: JumpCache<RvBlock>;
  readonly codePages = new CodePages();
  /** Blocks compiled so far (stats). */
  compiled = 0;
  /** Hot entries per (virtual page, privilege): their translations share one function. */
  private readonly units = new Map<string, { entries: Entry[]; compiles: number }>();
  /** Pcs that cannot start a block (first instruction not translatable). */
  private readonly rejected = new Set<number>();

  /** `cacheBits`: log2 of the jump cache's slots (tests that flush per program use a small one). */
  constructor(threshold = JIT_HOT_THRESHOLD, cacheBits = 14) {
    this.cache = new JumpCache<RvBlock>(cacheBits, threshold);
  }

  /** Everything translated is stale (fence.i, satp, sfence.vma, PMP, a write to a code page). */
  flush(): void {
    this.cache.flush();
    this.codePages.clear();
    this.rejected.clear();
    this.units.clear();
  }

  /** Translates the block at hart.pc for the current privilege; returns it or undefined. */
  compile(h: RiscvHart, pc: number): RvBlock | undefined {
    if (this.rejected.has(pc) || this.rejected.size > 1 << 16) return undefined;
    const insns: Insn[] = [];
    const pcs: number[] = [];
    let cur = pc;
    let page = -1;
    let paStart = 0;
    let paEnd = 0;
    const seen = new Set<number>();
    for (let i = 0; i < MAX_BLOCK_INSNS; i++) {
      const fetched = h.peekInsn(cur);
      if (fetched === null) break;
      const [insn, pa] = fetched;
      const p = Math.floor(pa / 4096);
      if (page < 0) {
        page = p;
        paStart = pa;
      }
      if (p !== page || Math.floor((pa + insn.len - 1) / 4096) !== page || !this.codePages.covers(p)) break;
      if (CONTROL_STOP.has(insn.op)) break;
      insns.push(insn);
      pcs.push(cur);
      seen.add(cur);
      paStart = Math.min(paStart, pa);
      paEnd = Math.max(paEnd, pa + insn.len);
      if (insn.op === Op.JALR) break;
      if (insn.op === Op.JAL) {
        // Superblock: follow direct jumps within the page unless they close a loop.
        const target = h.xlen === 32 ? (cur + insn.imm) >>> 0 : cur + insn.imm;
        if (seen.has(target) || Math.floor(target / 4096) !== Math.floor(pc / 4096)) break;
        cur = target;
        continue;
      }
      // Conditional branches are side exits: the trace continues on the fall-through path.
      cur = h.xlen === 32 ? (cur + insn.len) >>> 0 : cur + insn.len;
    }
    if (insns.length === 0) {
      this.rejected.add(pc);
      return undefined;
    }
    if (this.codePages.mark(paStart, paEnd - paStart)) h.dropStoreTlb();
    this.compiled++;
    // Larger units: every hot entry of a (virtual page, privilege) lives in one function, so jumps
    // between them stay inside it and V8 optimizes one hot function instead of many cold ones.
    const key = `${Math.floor(pc / 4096)}:${h.priv}`;
    let unit = this.units.get(key);
    if (unit === undefined) {
      unit = { entries: [], compiles: 0 };
      this.units.set(key, unit);
    }
    const entry: Entry = { start: pc, insns, pcs };
    let members: readonly Entry[];
    if (unit.compiles < MAX_UNIT_COMPILES) {
      unit.entries.push(entry);
      unit.compiles++;
      members = unit.entries;
    } else {
      members = [entry]; // a page that keeps growing: new entries get functions of their own
    }
    const fn = this.generateUnit(h.xlen, members);
    const maxLen = Math.max(...members.map((m) => m.insns.length));
    let mine: RvBlock | undefined;
    for (const m of members) {
      const block: RvBlock = { pc: m.start, mode: h.priv, len: maxLen, pages: [page], fn };
      this.cache.insert(block);
      if (m.start === pc) mine = block;
    }
    return mine;
  }

  /** One function for several entries: a dispatch loop over a switch on the pc. */
  private generateUnit(xlen: 32 | 64, members: readonly Entry[]): BlockFn {
    const allInsns: Insn[] = [];
    const allPcs: number[] = [];
    const cases: string[] = [];
    const starts = new Set(members.map((m) => m.start));
    const maxLen = Math.max(...members.map((m) => m.insns.length));
    for (const m of members) {
      const offset = allInsns.length;
      allInsns.push(...m.insns);
      allPcs.push(...m.pcs);
      cases.push(`case ${m.start}: blk: {\n${this.blockBody(xlen, m.insns, m.pcs, offset)}\n} break;`);
    }
    // Interrupts, stop requests and code invalidation can only start inside a helper call (a slow
    // path), and every helper call is followed by a check that leaves the unit: the loop needs only
    // the budget.
    const loopOk = `budget - n >= ${maxLen}`;
    const src = `
"use strict";
return function unit(h, xi, budget) {
  const ic0 = h.icount;
  const epoch = h.codeEpoch;
  const TT = h.tlbTag, TB = h.tlbBlock, TO = h.tlbOff, VW = h.views, RS = h.reservations, FI = h.fi;
  let n = 0, k = 0, kb = 0, next = h.pc, pc = 0;
  try {
    for (;;) {
      pc = next;
      switch (pc) {
        ${cases.join('\n        ')}
        default:
          h.pc = pc;
          h.icount = ic0 + n;
          return;
      }
      if (next === next && ${loopOk} && (${[...starts].map((st) => `next === ${st}`).join(' || ')})) continue;
      h.pc = next;
      h.icount = ic0 + n;
      return;
    }
  } catch (e) {
    if (e === H.TRAP) { h.pc = P[k]; h.icount = ic0 + n + kb; }
    throw e;
  }
};`;
    const factory = new Function('H', 'I', 'P', 'ea64', src) as (h: typeof helpers, i: readonly Insn[], p: readonly number[], e: typeof ea64) => BlockFn;
    return factory(helpers, allInsns, allPcs, ea64);
  }

  /**
   * Code of one entry inside the unit's switch, labelled `blk`. Leaving it sets `next` and adds the
   * instructions retired to `n`; an exit to a non-entry pc or a stop returns from the unit.
   * Instruction i of the entry is I[offset + i] / P[offset + i].
   */
  private blockBody(xlen: 32 | 64, insns: readonly Insn[], pcs: readonly number[], offset: number): string {
    const len = insns.length;
    const body: string[] = [];
    const R = (r: number): string => `xi[${2 * r}]`;
    const RH = (r: number): string => `xi[${2 * r + 1}]`;
    const set32 = (rd: number, expr: string): void => {
      if (rd === 0) {
        body.push(`${expr};`);
        return;
      }
      body.push(`{ const v = ${expr}; xi[${2 * rd}] = v; xi[${2 * rd + 1}] = v >> 31; }`);
    };
    const setConst = (rd: number, v: number): void => {
      if (rd === 0) return;
      const [lo, hi] = split(v, xlen);
      body.push(`xi[${2 * rd}] = ${lo}; xi[${2 * rd + 1}] = ${hi};`);
    };
    const pcPlus = (p: number, imm: number): number => (xlen === 32 ? (p + imm) >>> 0 : p + imm);
    const publish = (i: number): void => {
      body.push(`k = ${offset + i}; kb = ${i}; h.icount = ic0 + n + ${i};`);
    };
    // After an access that may have reached a device (MMIO sets stopRequested), leave right after the
    // instruction, as the interpreter does: an interrupt it raised is taken at the same instruction.
    const stopCheck = (i: number, next: number): void => {
      body.push(afterSlow(i, next));
    };
    // A write to translated code (codeEpoch moved) also ends the unit right after the instruction.
    const afterSlow = (i: number, next: number): string =>
      `if (h.stopRequested || h.codeEpoch !== epoch) { n += ${i + 1}; h.pc = ${next}; h.icount = ic0 + n; return; }`;
    /** Effective address as a number: exact within ±2^52, and beyond that never equal to a TLB tag. */
    const eaFast = (rs1: number, imm: number): string =>
      xlen === 32 ? `((${R(rs1)} + ${imm}) >>> 0)` : `(${RH(rs1)} * 4294967296 + (${R(rs1)} >>> 0) + ${imm})`;
    const eaExact = (rs1: number, imm: number): string => (xlen === 32 ? 'a' : `ea64(h, xi, ${rs1}, ${imm})`);
    /**
     * Inline TLB probe (the hart's own fast path, same slots) for `size` bytes at rs1+imm: `hit` runs
     * with the DataView `W` and offset `o`; `miss` calls the hart's slow path with pc/icount published.
     */
    const access = (kind: number, rs1: number, imm: number, size: number, i: number, hit: string, miss: string, next: number, fp = false): void => {
      // Stores go slow while any hart holds an LR reservation; FP accesses while the FPU is off (to trap).
      const extra = (kind === TLB_STORE ? ' && RS.active === 0' : '') + (fp ? ` && (h.mstatus & ${MS.FS}) !== 0` : '');
      body.push(
        `{ const a = ${eaFast(rs1, imm)}; const vpn = Math.floor(a / ${PAGE}); const s = ${kind} + (vpn & ${TLB_MASK}); const o0 = a - vpn * ${PAGE};`,
        `  if (TT[s] === vpn && o0 <= ${PAGE - size} && TB[s] >= 0${extra}) { const W = VW[TB[s]]; const o = TO[s] + o0; ${hit} }`,
        `  else { k = ${offset + i}; kb = ${i}; h.icount = ic0 + n + ${i}; ${miss} ${afterSlow(i, next)} } }`,
      );
    };
    let terminal = false;
    for (let i = 0; i < len; i++) {
      const I = insns[i]!;
      const pc = pcs[i]!;
      const next = pcPlus(pc, I.len);
      const { rd, rs1, rs2, imm } = I;
      switch (I.op) {
        case Op.LUI:
          setConst(rd, imm);
          break;
        case Op.AUIPC:
          setConst(rd, pcPlus(pc, imm));
          break;
        case Op.JAL:
          setConst(rd, next);
          if (i === len - 1) {
            body.push(`next = ${pcPlus(pc, imm)};`);
            terminal = true;
          }
          break;
        case Op.JALR:
          if (xlen === 32) {
            body.push(`next = ((${R(rs1)} + ${imm}) & ~1) >>> 0;`);
          } else {
            // Wild targets (beyond ±2^52) go back to the interpreter, which handles them exactly.
            body.push(`{ const hi = ${RH(rs1)}; if (hi < -0x100000 || hi >= 0x100000) { n += ${i}; h.pc = ${pc}; h.icount = ic0 + n; return; }`);
            body.push(`let t = hi * 4294967296 + (${R(rs1)} >>> 0) + ${imm}; t -= ((t % 2) + 2) % 2; next = t; }`);
          }
          setConst(rd, next);
          terminal = true;
          break;
        case Op.BEQ:
        case Op.BNE:
        case Op.BLT:
        case Op.BGE:
        case Op.BLTU:
        case Op.BGEU: {
          let cond: string;
          if (I.op === Op.BEQ) cond = `${R(rs1)} === ${R(rs2)} && ${RH(rs1)} === ${RH(rs2)}`;
          else if (I.op === Op.BNE) cond = `${R(rs1)} !== ${R(rs2)} || ${RH(rs1)} !== ${RH(rs2)}`;
          else if (I.op === Op.BLT) cond = `H.lt64v(${RH(rs1)}, ${R(rs1)}, ${RH(rs2)}, ${R(rs2)})`;
          else if (I.op === Op.BGE) cond = `!H.lt64v(${RH(rs1)}, ${R(rs1)}, ${RH(rs2)}, ${R(rs2)})`;
          else if (I.op === Op.BLTU) cond = `H.ltu64v(${RH(rs1)}, ${R(rs1)}, ${RH(rs2)}, ${R(rs2)})`;
          else cond = `!H.ltu64v(${RH(rs1)}, ${R(rs1)}, ${RH(rs2)}, ${R(rs2)})`;
          const target = pcPlus(pc, imm);
          if (i === len - 1) {
            body.push(`next = (${cond}) ? ${target} : ${next};`);
            terminal = true;
          } else {
            // Side exit: back to the unit's dispatch loop, which continues if the target is an entry.
            body.push(`if (${cond}) { n += ${i + 1}; next = ${target}; break blk; }`);
          }
          break;
        }
        case Op.LB:
        case Op.LH:
        case Op.LW:
        case Op.LBU:
        case Op.LHU:
        case Op.LWU: {
          const size = I.op === Op.LB || I.op === Op.LBU ? 1 : I.op === Op.LH || I.op === Op.LHU ? 2 : 4;
          const get = I.op === Op.LB ? 'getInt8(o)' : I.op === Op.LBU ? 'getUint8(o)' : I.op === Op.LH ? 'getInt16(o, true)' : I.op === Op.LHU ? 'getUint16(o, true)' : 'getInt32(o, true)';
          const slow = `h.loadN(${eaExact(rs1, imm)}, ${size})`;
          const fix = I.op === Op.LB ? `(${slow} << 24) >> 24` : I.op === Op.LH ? `(${slow} << 16) >> 16` : `${slow} | 0`;
          const write = rd === 0 ? '' : `xi[${2 * rd}] = v; xi[${2 * rd + 1}] = ${I.op === Op.LWU ? '0' : 'v >> 31'};`;
          access(TLB_LOAD, rs1, imm, size, i, `const v = W.${get}; ${write}`, `{ const v = ${fix}; ${write} }`, next);
          break;
        }
        case Op.LD: {
          const write = rd === 0 ? '' : `xi[${2 * rd}] = W.getInt32(o, true); xi[${2 * rd + 1}] = W.getInt32(o + 4, true);`;
          access(TLB_LOAD, rs1, imm, 8, i, write, `h.loadPair(${eaExact(rs1, imm)}, ${rd});`, next);
          break;
        }
        case Op.SB:
        case Op.SH:
        case Op.SW: {
          const size = I.op === Op.SB ? 1 : I.op === Op.SH ? 2 : 4;
          const set = I.op === Op.SB ? `W.setInt8(o, ${R(rs2)});` : I.op === Op.SH ? `W.setInt16(o, ${R(rs2)}, true);` : `W.setInt32(o, ${R(rs2)}, true);`;
          access(TLB_STORE, rs1, imm, size, i, set, `h.storeN(${eaExact(rs1, imm)}, ${size}, ${R(rs2)});`, next);
          break;
        }
        case Op.SD:
          access(TLB_STORE, rs1, imm, 8, i, `W.setInt32(o, ${R(rs2)}, true); W.setInt32(o + 4, ${RH(rs2)}, true);`,
            `h.storePair(${eaExact(rs1, imm)}, ${R(rs2)}, ${RH(rs2)});`, next);
          break;
        case Op.ADDI:
          if (rd === 0) break;
          if (rs1 === 0) setConst(rd, imm);
          else if (imm === 0) body.push(`xi[${2 * rd}] = ${R(rs1)}; xi[${2 * rd + 1}] = ${RH(rs1)};`);
          else body.push(`{ const s = (${R(rs1)} >>> 0) + ${imm >>> 0}; xi[${2 * rd + 1}] = (${RH(rs1)} + ${imm >> 31} + (s > 4294967295 ? 1 : 0)) | 0; xi[${2 * rd}] = s | 0; }`);
          break;
        case Op.ADD:
          if (rd === 0) break;
          body.push(`{ const s = (${R(rs1)} >>> 0) + (${R(rs2)} >>> 0), hh = (${RH(rs1)} + ${RH(rs2)} + (s > 4294967295 ? 1 : 0)) | 0; xi[${2 * rd}] = s | 0; xi[${2 * rd + 1}] = hh; }`);
          break;
        case Op.SUB:
          if (rd === 0) break;
          body.push(`{ const s = (${R(rs1)} >>> 0) - (${R(rs2)} >>> 0), hh = (${RH(rs1)} - ${RH(rs2)} - (s < 0 ? 1 : 0)) | 0; xi[${2 * rd}] = s | 0; xi[${2 * rd + 1}] = hh; }`);
          break;
        case Op.SLTI:
          set32(rd, `H.lt64v(${RH(rs1)}, ${R(rs1)}, ${imm >> 31}, ${imm}) ? 1 : 0`);
          break;
        case Op.SLTIU:
          set32(rd, `H.ltu64v(${RH(rs1)}, ${R(rs1)}, ${imm >> 31}, ${imm}) ? 1 : 0`);
          break;
        case Op.SLT:
          set32(rd, `H.lt64v(${RH(rs1)}, ${R(rs1)}, ${RH(rs2)}, ${R(rs2)}) ? 1 : 0`);
          break;
        case Op.SLTU:
          set32(rd, `H.ltu64v(${RH(rs1)}, ${R(rs1)}, ${RH(rs2)}, ${R(rs2)}) ? 1 : 0`);
          break;
        case Op.XORI:
        case Op.ORI:
        case Op.ANDI: {
          if (rd === 0) break;
          const o = I.op === Op.XORI ? '^' : I.op === Op.ORI ? '|' : '&';
          body.push(`{ const l = ${R(rs1)} ${o} ${imm}, hh = ${RH(rs1)} ${o} ${imm >> 31}; xi[${2 * rd}] = l; xi[${2 * rd + 1}] = hh; }`);
          break;
        }
        case Op.XOR:
        case Op.OR:
        case Op.AND: {
          if (rd === 0) break;
          const o = I.op === Op.XOR ? '^' : I.op === Op.OR ? '|' : '&';
          body.push(`{ const l = ${R(rs1)} ${o} ${R(rs2)}, hh = ${RH(rs1)} ${o} ${RH(rs2)}; xi[${2 * rd}] = l; xi[${2 * rd + 1}] = hh; }`);
          break;
        }
        case Op.SLLI:
          if (rd === 0) break;
          if (imm === 0) body.push(`xi[${2 * rd}] = ${R(rs1)}; xi[${2 * rd + 1}] = ${RH(rs1)};`);
          else if (imm < 32) body.push(`{ const l = ${R(rs1)}; xi[${2 * rd + 1}] = (${RH(rs1)} << ${imm}) | (l >>> ${32 - imm}); xi[${2 * rd}] = l << ${imm}; }`);
          else body.push(`xi[${2 * rd + 1}] = ${R(rs1)} << ${imm - 32}; xi[${2 * rd}] = 0;`);
          break;
        case Op.SRLI:
          if (rd === 0) break;
          if (imm === 0) body.push(`xi[${2 * rd}] = ${R(rs1)}; xi[${2 * rd + 1}] = ${RH(rs1)};`);
          else if (imm < 32) body.push(`{ const hh = ${RH(rs1)}; xi[${2 * rd}] = (${R(rs1)} >>> ${imm}) | (hh << ${32 - imm}); xi[${2 * rd + 1}] = hh >>> ${imm}; }`);
          else body.push(`xi[${2 * rd}] = ${RH(rs1)} >>> ${imm - 32}; xi[${2 * rd + 1}] = 0;`);
          break;
        case Op.SRAI:
          if (rd === 0) break;
          if (imm === 0) body.push(`xi[${2 * rd}] = ${R(rs1)}; xi[${2 * rd + 1}] = ${RH(rs1)};`);
          else if (imm < 32) body.push(`{ const hh = ${RH(rs1)}; xi[${2 * rd}] = (${R(rs1)} >>> ${imm}) | (hh << ${32 - imm}); xi[${2 * rd + 1}] = hh >> ${imm}; }`);
          else body.push(`{ const hh = ${RH(rs1)}; xi[${2 * rd}] = hh >> ${imm - 32}; xi[${2 * rd + 1}] = hh >> 31; }`);
          break;
        case Op.SLL:
          if (rd !== 0) body.push(`H.sll64(xi, ${rd}, ${rs1}, ${R(rs2)} & 63);`);
          break;
        case Op.SRL:
          if (rd !== 0) body.push(`H.srl64(xi, ${rd}, ${rs1}, ${R(rs2)} & 63);`);
          break;
        case Op.SRA:
          if (rd !== 0) body.push(`H.sra64(xi, ${rd}, ${rs1}, ${R(rs2)} & 63);`);
          break;
        case Op.ADDIW:
          set32(rd, `(${R(rs1)} + ${imm}) | 0`);
          break;
        case Op.SLLIW:
          set32(rd, `${R(rs1)} << ${imm}`);
          break;
        case Op.SRLIW:
          set32(rd, `(${R(rs1)} >>> ${imm}) | 0`);
          break;
        case Op.SRAIW:
          set32(rd, `${R(rs1)} >> ${imm}`);
          break;
        case Op.ADDW:
          set32(rd, `(${R(rs1)} + ${R(rs2)}) | 0`);
          break;
        case Op.SUBW:
          set32(rd, `(${R(rs1)} - ${R(rs2)}) | 0`);
          break;
        case Op.SLLW:
          set32(rd, `${R(rs1)} << (${R(rs2)} & 31)`);
          break;
        case Op.SRLW:
          set32(rd, `(${R(rs1)} >>> (${R(rs2)} & 31)) | 0`);
          break;
        case Op.SRAW:
          set32(rd, `${R(rs1)} >> (${R(rs2)} & 31)`);
          break;
        case Op.MULW:
          set32(rd, `Math.imul(${R(rs1)}, ${R(rs2)})`);
          break;
        case Op.FLD:
        case Op.FLW: {
          const dbl = I.op === Op.FLD;
          const write = `FI[${2 * rd}] = W.getInt32(o, true); FI[${2 * rd + 1}] = ${dbl ? 'W.getInt32(o + 4, true)' : '-1'}; h.mstatus |= ${MS.FS};`;
          access(TLB_LOAD, rs1, imm, dbl ? 8 : 4, i, write, `h.fpOp(I[${offset + i}]);`, next, true);
          break;
        }
        case Op.FSD:
        case Op.FSW: {
          const dbl = I.op === Op.FSD;
          const set = `W.setInt32(o, FI[${2 * rs2}], true);${dbl ? ` W.setInt32(o + 4, FI[${2 * rs2 + 1}], true);` : ''}`;
          access(TLB_STORE, rs1, imm, dbl ? 8 : 4, i, set, `h.fpOp(I[${offset + i}]);`, next, true);
          break;
        }
        case Op.FENCE:
          break;
        default:
          publish(i);
          if (I.op >= Op.FLW && I.op <= Op.FLE) {
            // F/D: straight to the FP unit (it never changes pc).
            body.push(`h.fpOp(I[${offset + i}]);`);
          } else {
            // Everything else that cannot change control flow or privilege: the interpreter's own code.
            body.push(`h.pc = ${pc}; h.execute(I[${offset + i}]);`);
          }
          stopCheck(i, next);
          break;
      }
    }
    const last = insns[len - 1]!;
    if (!terminal) body.push(`next = ${pcPlus(pcs[len - 1]!, last.len)};`);
    body.push(`n += ${len};`);
    return body.join('\n');
  }
}

/** RV64 effective address as the interpreter computes it (NaN for wild addresses, with the exact value kept). */
function ea64(h: RiscvHart, xi: Int32Array, rs1: number, imm: number): number {
  const hi = xi[rs1 * 2 + 1]!;
  if (hi >= -0x100000 && hi < 0x100000) return hi * 4294967296 + (xi[rs1 * 2]! >>> 0) + imm;
  return h.eaWild(rs1, imm);
}

