import { assert } from '../../assert.js';
import { Digest } from '../../digest.js';
import { type GuestMemory, MemTx, type RamBlock } from '../../memory.js';
import { Access, Csr, Exc, Irq, MS, Priv, QEMU_MARCHID, QEMU_MIMPID } from './constants.js';
import { DecodeCache, type Insn, Op } from './decode.js';
import * as sf from './softfloat.js';

/** Thrown (as a singleton) to unwind an instruction that raised a synchronous exception. */
export class TrapSignal {
  private constructor() {}
  static readonly instance = new TrapSignal();
}
const TRAP = TrapSignal.instance;

/** Options of a hart. */
export interface HartOptions {
  readonly xlen: 32 | 64;
  readonly hartId: number;
  /** Physical reset vector. */
  readonly resetPc: number;
  readonly memory: GuestMemory;
  /** mtime in 10 MHz ticks (the machine derives it from virtual time); null or absent: no `time` CSR. */
  readonly readTime?: (() => bigint) | null;
}

/** What the hart needs from a translator (src/engine/targets/riscv/translate.ts implements it). */
export interface HartJit {
  readonly cache: {
    readonly size: number;
    readonly tagPc: Float64Array;
    readonly tagMode: Int32Array;
    readonly blocks: ({ readonly len: number; readonly fn: (h: RiscvHart, xi: Int32Array, budget: number) => void } | undefined)[];
    touch(pc: number): boolean;
  };
  readonly codePages: { hit(paddr: number, len: number): boolean; pageHasCode(pagePaddr: number): boolean };
  compile(h: RiscvHart, pc: number): unknown;
  flush(): void;
}

/** TLB slots per access kind (fetch, load, store); translated code indexes the same slots. */
export const TLB_SIZE = 256;
const PAGE = 4096;
/** Largest |virtual address| handled on the number fast path (2^52: exact in a double). */
const SAFE_VA = 2 ** 52;
const PMP_COUNT = 16;
const MEDELEG_MASK = 0xb3ff;
const MIDELEG_MASK = (1 << Irq.SSI) | (1 << Irq.STI) | (1 << Irq.SEI);
const MIE_MASK = 0xaaa;
const MIP_SW_MASK = (1 << Irq.SSI) | (1 << Irq.STI) | (1 << Irq.SEI);
const SSTATUS_MASK = MS.SIE | MS.SPIE | MS.UBE | MS.SPP | MS.FS | MS.SUM | MS.MXR;
const MSTATUS_WMASK = MS.SIE | MS.MIE | MS.SPIE | MS.MPIE | MS.SPP | MS.MPP | MS.FS | MS.MPRV | MS.SUM | MS.MXR | MS.TVM | MS.TW | MS.TSR;
/** Interrupt priority order (highest first), as the privileged spec lists it. */
const IRQ_ORDER = [Irq.MEI, Irq.MSI, Irq.MTI, Irq.SEI, Irq.SSI, Irq.STI];
const NAN_BOX = 0xffffffff00000000n;

/**
 * The LR reservations of every hart on one physical memory, so that a store by one hart breaks
 * another hart's reservation on the same bytes (the spec's "SC must fail if a store from another
 * hart to the reservation set can be observed between the LR and the SC"). `active` lets every
 * store skip the check with one comparison while no hart holds a reservation.
 */
export class ReservationTable {
  /** Harts whose reservation is valid right now. */
  active = 0;
  readonly harts: RiscvHart[] = [];

  /** A store of [paddr, paddr+len) by `writer`: breaks the other harts' overlapping reservations. */
  storeBy(writer: RiscvHart, paddr: number, len: number): void {
    const harts = this.harts;
    for (let i = 0; i < harts.length; i++) {
      const h = harts[i]!;
      if (h === writer || !h.resValid) continue;
      if (paddr < h.resPaddr + h.resBytes && paddr + len > h.resPaddr) h.resValid = false;
    }
  }
}

/** One table per physical memory: the harts of one machine share it. */
const reservationTables = new WeakMap<GuestMemory, ReservationTable>();

function reservationTableOf(memory: GuestMemory): ReservationTable {
  let table = reservationTables.get(memory);
  if (table === undefined) {
    table = new ReservationTable();
    reservationTables.set(memory, table);
  }
  return table;
}

/**
 * Bound on loop steps for a run of `budget` instructions: a run ends when exactly `budget`
 * instructions retired (interpreter and JIT agree), or after this many steps in a trap storm.
 */
function maxStepsFor(budget: number): number {
  return 2 * budget + 64;
}

// ---- 64-bit integer arithmetic on int32 pairs (register i = xi[2i] low, xi[2i+1] high) ----------
// No BigInt on the hot path: BigInt64Array element reads allocate.

/** xi[rd] = (alo, ahi) + (blo, bhi). */
export function add64(xi: Int32Array, rd: number, alo: number, ahi: number, blo: number, bhi: number): void {
  const lo = (alo >>> 0) + (blo >>> 0);
  xi[rd * 2 + 1] = (ahi + bhi + (lo > 0xffffffff ? 1 : 0)) | 0;
  xi[rd * 2] = lo | 0;
}

export function sub64(xi: Int32Array, rd: number, rs1: number, rs2: number): void {
  const lo = (xi[rs1 * 2]! >>> 0) - (xi[rs2 * 2]! >>> 0);
  xi[rd * 2 + 1] = (xi[rs1 * 2 + 1]! - xi[rs2 * 2 + 1]! - (lo < 0 ? 1 : 0)) | 0;
  xi[rd * 2] = lo | 0;
}

export function sll64(xi: Int32Array, rd: number, rs1: number, sh: number): void {
  const lo = xi[rs1 * 2]!;
  const hi = xi[rs1 * 2 + 1]!;
  if (sh === 0) {
    xi[rd * 2] = lo;
    xi[rd * 2 + 1] = hi;
  } else if (sh < 32) {
    xi[rd * 2 + 1] = (hi << sh) | (lo >>> (32 - sh));
    xi[rd * 2] = lo << sh;
  } else {
    xi[rd * 2 + 1] = lo << (sh - 32);
    xi[rd * 2] = 0;
  }
}

export function srl64(xi: Int32Array, rd: number, rs1: number, sh: number): void {
  const lo = xi[rs1 * 2]!;
  const hi = xi[rs1 * 2 + 1]!;
  if (sh === 0) {
    xi[rd * 2] = lo;
    xi[rd * 2 + 1] = hi;
  } else if (sh < 32) {
    xi[rd * 2] = (lo >>> sh) | (hi << (32 - sh));
    xi[rd * 2 + 1] = hi >>> sh;
  } else {
    xi[rd * 2] = hi >>> (sh - 32);
    xi[rd * 2 + 1] = 0;
  }
}

export function sra64(xi: Int32Array, rd: number, rs1: number, sh: number): void {
  const lo = xi[rs1 * 2]!;
  const hi = xi[rs1 * 2 + 1]!;
  if (sh === 0) {
    xi[rd * 2] = lo;
    xi[rd * 2 + 1] = hi;
  } else if (sh < 32) {
    xi[rd * 2] = (lo >>> sh) | (hi << (32 - sh));
    xi[rd * 2 + 1] = hi >> sh;
  } else {
    xi[rd * 2] = hi >> (sh - 32);
    xi[rd * 2 + 1] = hi >> 31;
  }
}

/** Signed (ahi:alo) < (bhi:blo). */
export function lt64v(ahi: number, alo: number, bhi: number, blo: number): boolean {
  return ahi < bhi || (ahi === bhi && alo >>> 0 < blo >>> 0);
}

export function ltu64v(ahi: number, alo: number, bhi: number, blo: number): boolean {
  return ahi >>> 0 < bhi >>> 0 || (ahi === bhi && alo >>> 0 < blo >>> 0);
}

export function lt64(xi: Int32Array, a: number, b: number): boolean {
  return lt64v(xi[a * 2 + 1]!, xi[a * 2]!, xi[b * 2 + 1]!, xi[b * 2]!);
}

export function ltu64(xi: Int32Array, a: number, b: number): boolean {
  return ltu64v(xi[a * 2 + 1]!, xi[a * 2]!, xi[b * 2 + 1]!, xi[b * 2]!);
}

/**
 * One RISC-V hart: architectural state, MMU (Sv32/Sv39/Sv48 with a typed-array TLB), PMP, CSRs,
 * traps and an exact interpreter. Registers live in a BigInt64Array with an Int32Array alias (32-bit
 * operations and address computation never allocate BigInts). On RV32 registers hold sign-extended
 * 32-bit values.
 */
export class RiscvHart {
  readonly xlen: 32 | 64;
  readonly hartId: number;
  readonly resetPc: number;
  readonly memory: GuestMemory;
  readonly x = new BigInt64Array(32);
  readonly xu = new BigUint64Array(this.x.buffer);
  readonly xi = new Int32Array(this.x.buffer);
  readonly f = new BigUint64Array(32);
  /** Views of the FP register file: doubles and raw 32-bit halves (the FP fast paths avoid BigInt). */
  readonly ff = new Float64Array(this.f.buffer);
  readonly fi = new Int32Array(this.f.buffer);
  private readonly scratchI32 = new Int32Array(1);
  private readonly scratchF32 = new Float32Array(this.scratchI32.buffer);
  /** Program counter: RV64 as a signed number (exact within ±2^52), RV32 as an unsigned 32-bit number. */
  pc = 0;
  priv: number = Priv.M;
  /** Instructions retired. */
  icount = 0;
  /** Waiting for an interrupt (WFI). */
  wfi = false;
  /** Set by the machine (e.g. HTIF exit): the hart never runs again until reset. */
  halted = false;
  /** Set by slow paths (MMIO) so the run loop returns to the main loop at the next instruction boundary. */
  stopRequested = false;
  /** Called before any MMIO access or time read so devices see exact virtual time. */
  syncClock: () => void = () => {};
  /** Called when a RAM write hits a page that holds decoded/translated code (the JIT hooks in). */
  onCodeWrite: ((paddr: number, len: number) => void) | null = null;
  /** Called on fence.i / satp / sfence: translated code may be stale. */
  onFlush: (() => void) | null = null;
  readTime: (() => bigint) | null;

  // ---- CSR state ----
  mstatus = 0;
  mie = 0;
  /** Software-visible pending bits (SSIP/STIP/SEIP written by software or edge sources). */
  mipSw = 0;
  /** Level-triggered pending bits driven by devices. */
  mipHw = 0;
  medeleg = 0;
  mideleg = 0;
  mtvec = 0n;
  stvec = 0n;
  mepc = 0n;
  sepc = 0n;
  mcause = 0n;
  scause = 0n;
  mtval = 0n;
  stval = 0n;
  mscratch = 0n;
  sscratch = 0n;
  satp = 0n;
  mcounteren = 0;
  scounteren = 0;
  mcountinhibit = 0;
  menvcfg = 0n;
  senvcfg = 0n;
  fflags = 0;
  frm = 0;
  /** minstret/mcycle = icount + 1 + offset: like QEMU with -icount, a read counts the reading instruction. */
  instretOffset = 0n;
  cycleOffset = 0n;
  readonly pmpcfg = new Uint8Array(PMP_COUNT);
  readonly pmpaddr: bigint[] = new Array<bigint>(PMP_COUNT).fill(0n);
  private readonly pmpLo = new Float64Array(PMP_COUNT);
  private readonly pmpHi = new Float64Array(PMP_COUNT);
  private pmpActive = 0;

  // ---- LR/SC ----
  private resValidFlag = false;
  /** Virtual address LR reserved (SC must name the same one). */
  resAddr = 0;
  /** Physical address and width of the reservation (a store by another hart there breaks it). */
  resPaddr = 0;
  resBytes = 0;
  /** The value LR read: SC also fails if memory no longer holds it (QEMU 7.2's cmpxchg). */
  resValue = 0n;
  /** Shared with the other harts on the same memory (translated stores read `active`). */
  readonly reservations: ReservationTable;

  // ---- MMU / TLB ----
  // Translated code (translate.ts) probes the TLB and RAM views inline: these are read there, by name.
  /** Virtual page number cached in each slot (fetch, load, store: TLB_SIZE slots each; NaN = empty). */
  readonly tlbTag = new Float64Array(TLB_SIZE * 3).fill(NaN);
  readonly tlbPage = new Float64Array(TLB_SIZE * 3);
  /** Index into `views` of the RAM block holding the page, or -1: take the slow path. */
  readonly tlbBlock = new Int32Array(TLB_SIZE * 3);
  /** Offset of the page inside its RAM block's bytes (valid when tlbBlock >= 0). */
  readonly tlbOff = new Float64Array(TLB_SIZE * 3);
  private readonly blocks: RamBlock[] = [];
  readonly views: DataView[] = [];
  private readonly blockIndex = new Map<RamBlock, number>();
  private wildAddr = 0n;
  private wildPc = 0n;

  private readonly decoder: DecodeCache;
  /** The translator, or null for the pure interpreter (`-accel tcg,jit=off`). */
  private jit: HartJit | null = null;
  /** Bumped whenever translated code is thrown away (a running block stops looping). */
  codeEpoch = 0;
  /** The instruction being executed (for mtval of illegal instructions). */
  private cur: Insn | null = null;
  trapCause = 0;
  trapTval = 0n;

  constructor(options: HartOptions) {
    assert(options.xlen === 32 || options.xlen === 64, 'xlen must be 32 or 64');
    this.xlen = options.xlen;
    this.hartId = options.hartId;
    this.resetPc = options.resetPc;
    this.memory = options.memory;
    this.readTime = options.readTime ?? null;
    this.decoder = new DecodeCache(this.xlen);
    this.reservations = reservationTableOf(this.memory);
    this.reservations.harts.push(this);
    this.reset();
  }

  /** True while an LR reservation is held; setting it keeps the shared table's count exact. */
  get resValid(): boolean {
    return this.resValidFlag;
  }

  set resValid(valid: boolean) {
    if (valid === this.resValidFlag) return;
    this.resValidFlag = valid;
    this.reservations.active += valid ? 1 : -1;
    assert(this.reservations.active >= 0 && this.reservations.active <= this.reservations.harts.length, 'reservation count out of range');
  }

  /** Power-on reset: registers zero, M-mode, pc at `pc` (default: the reset vector). */
  reset(pc: number = this.resetPc): void {
    this.x.fill(0n);
    this.f.fill(0n);
    this.pc = pc;
    this.priv = Priv.M;
    this.wfi = false;
    this.halted = false;
    this.mstatus = 0;
    this.mie = 0;
    this.mipSw = 0;
    this.medeleg = 0;
    this.mideleg = 0;
    this.mtvec = this.stvec = this.mepc = this.sepc = 0n;
    this.mcause = this.scause = this.mtval = this.stval = 0n;
    this.mscratch = this.sscratch = this.satp = 0n;
    this.mcounteren = this.scounteren = this.mcountinhibit = 0;
    this.menvcfg = this.senvcfg = 0n;
    this.fflags = this.frm = 0;
    this.instretOffset = this.cycleOffset = -BigInt(this.icount);
    this.pmpcfg.fill(0);
    this.pmpaddr.fill(0n);
    this.recomputePmp();
    this.resValid = false;
    this.flushTlb();
  }

  /** A page now holds translated code: its direct-store TLB entries must go (see translate()). */
  dropStoreTlb(): void {
    this.tlbTag.fill(NaN, 2 * TLB_SIZE, 3 * TLB_SIZE);
  }

  /** Connects a translator: hot code then runs as generated JavaScript. */
  attachJit(jit: HartJit): void {
    this.jit = jit;
    this.onFlush = () => {
      jit.flush();
      this.codeEpoch++;
    };
    this.onCodeWrite = (paddr, len) => {
      if (jit.codePages.hit(paddr, len)) {
        jit.flush();
        this.codeEpoch++;
      }
    };
  }

  get jitEnabled(): boolean {
    return this.jit !== null;
  }

  /** Fetches and decodes the instruction at `va` for the translator; null if fetching would fault. */
  peekInsn(va: number): [Insn, number] | null {
    try {
      const pa = this.translate(va, Access.Fetch);
      const block = this.memory.ramAt(pa);
      if (block === undefined || pa + 2 > block.base + block.sizeBytes) return null;
      const o = pa - block.base;
      const lo = block.bytes[o]! | (block.bytes[o + 1]! << 8);
      if ((lo & 3) !== 3) return [this.decoder.get(lo), pa];
      if ((pa + 2) % PAGE === 0 || pa + 4 > block.base + block.sizeBytes) return null;
      const hi = block.bytes[o + 2]! | (block.bytes[o + 3]! << 8);
      return [this.decoder.get((lo | (hi << 16)) >>> 0), pa];
    } catch (e) {
      if (e === TRAP) return null;
      throw e;
    }
  }

  /** RV64 wild effective address: remembers the exact value for the fault and returns NaN. */
  eaWild(rs1: number, imm: number): number {
    this.wildAddr = BigInt.asIntN(64, this.x[rs1]! + BigInt(imm));
    return NaN;
  }

  // ---- public API for machines, gdb and replay ----------------------------------------------

  /** Drives an interrupt input (MEIP/MTIP/MSIP/SEIP as levels; SSIP/STIP set or clear the bit). */
  setInterruptLine(bit: number, level: boolean): void {
    assert(bit >= 0 && bit < 16, `bad interrupt bit ${bit}`);
    const mask = 1 << bit;
    if (bit === Irq.SSI || bit === Irq.STI) {
      this.mipSw = level ? this.mipSw | mask : this.mipSw & ~mask;
    } else {
      this.mipHw = level ? this.mipHw | mask : this.mipHw & ~mask;
    }
    if ((this.mip & this.mie) !== 0) this.wfi = false;
  }

  get mip(): number {
    return this.mipSw | this.mipHw;
  }

  /** True when the hart would execute instructions now. */
  get runnable(): boolean {
    if (this.halted) return false;
    if (this.wfi && (this.mip & this.mie) !== 0) this.wfi = false;
    return !this.wfi;
  }

  /** Reads integer register `i` as an unsigned-for-XLEN bigint. */
  getX(i: number): bigint {
    return this.xlen === 64 ? this.xu[i]! : this.xu[i]! & 0xffffffffn;
  }

  setX(i: number, value: bigint): void {
    if (i === 0) return;
    this.x[i] = this.xlen === 64 ? value : BigInt.asIntN(32, value);
  }

  /** The pc as an unsigned XLEN bigint. */
  getPc(): bigint {
    if (Number.isNaN(this.pc)) return BigInt.asUintN(this.xlen, this.wildPc);
    return BigInt.asUintN(this.xlen, BigInt(this.pc));
  }

  setPc(value: bigint): void {
    this.jumpTo(BigInt.asIntN(this.xlen, value));
  }

  /** CSR read for debuggers: no privilege checks, no side effects. Undefined if not implemented. */
  debugReadCsr(csr: number): bigint | undefined {
    const savedPriv = this.priv;
    try {
      this.priv = Priv.M;
      return BigInt.asUintN(this.xlen, this.csrRead(csr));
    } catch (e) {
      if (e === TRAP) return undefined;
      throw e;
    } finally {
      this.priv = savedPriv;
    }
  }

  /** CSR write for debuggers; returns false if the CSR does not exist. */
  debugWriteCsr(csr: number, value: bigint): boolean {
    const savedPriv = this.priv;
    try {
      this.priv = Priv.M;
      this.csrWrite(csr, value);
      return true;
    } catch (e) {
      if (e === TRAP) return false;
      throw e;
    } finally {
      if (this.priv === Priv.M) this.priv = savedPriv;
    }
  }

  /** Digest of the architectural state (registers, pc, privilege, CSRs, counters). */
  stateDigest(): string {
    const d = new Digest();
    for (let i = 0; i < 64; i++) d.int(this.xi[i]!);
    const fi = new Int32Array(this.f.buffer);
    for (let i = 0; i < 64; i++) d.int(fi[i]!);
    d.value({
      pc: this.getPc(), priv: this.priv, icount: this.icount, wfi: this.wfi, mstatus: this.mstatus, mie: this.mie,
      mip: this.mip, medeleg: this.medeleg, mideleg: this.mideleg, mtvec: this.mtvec, stvec: this.stvec,
      mepc: this.mepc, sepc: this.sepc, mcause: this.mcause, scause: this.scause, mtval: this.mtval,
      stval: this.stval, mscratch: this.mscratch, sscratch: this.sscratch, satp: this.satp,
      mcounteren: this.mcounteren, scounteren: this.scounteren, fflags: this.fflags, frm: this.frm,
      pmpcfg: Array.from(this.pmpcfg), pmpaddr: this.pmpaddr, menvcfg: this.menvcfg, senvcfg: this.senvcfg,
    });
    return d.hex();
  }

  // ---- running ------------------------------------------------------------------------------

  /**
   * Executes at most `budget` instructions (exactly, counting retired ones); returns early on WFI,
   * halt or a stop request. Returns the number of instructions retired.
   */
  run(budget: number): number {
    if (this.jit !== null) return this.runJit(budget, this.jit);
    const start = this.icount;
    const end = start + budget;
    this.stopRequested = false;
    // Steps that only take a trap retire nothing; bound them too so a trap storm cannot hang the host.
    const maxSteps = maxStepsFor(budget);
    for (let steps = 0; steps < maxSteps && this.icount < end; steps++) {
      if (this.wfi || this.halted) break;
      this.stepOne();
      if (this.stopRequested) break;
    }
    return this.icount - start;
  }

  private runJit(budget: number, jit: HartJit): number {
    const start = this.icount;
    const end = start + budget;
    const cache = jit.cache;
    const tagPc = cache.tagPc;
    const tagMode = cache.tagMode;
    const blocks = cache.blocks;
    const mask = cache.size - 1;
    const xi = this.xi;
    this.stopRequested = false;
    const maxSteps = maxStepsFor(budget);
    for (let steps = 0; steps < maxSteps && this.icount < end; steps++) {
      if (this.wfi || this.halted) break;
      if ((this.mipSw | this.mipHw) & this.mie && this.takeInterrupt()) continue;
      const pc = this.pc;
      const lo = pc | 0;
      const slot = ((lo >>> 1) ^ (lo >>> 13) ^ ((pc / 4294967296) | 0)) & mask;
      if (tagPc[slot] === pc && tagMode[slot] === this.priv) {
        const block = blocks[slot]!;
        const left = end - this.icount;
        if (block.len <= left) {
          try {
            block.fn(this, xi, left);
          } catch (e) {
            if (e !== TRAP) throw e;
            this.enterTrap(this.trapCause, false, this.trapTval);
          }
          if (this.stopRequested) break;
          continue;
        }
      } else if (cache.touch(pc)) {
        jit.compile(this, pc);
      }
      this.stepOne();
      if (this.stopRequested) break;
    }
    return this.icount - start;
  }

  /** An F/D instruction run from translated code (pc already published by the caller). */
  fpOp(insn: Insn): void {
    this.cur = insn;
    if (insn.op === Op.FLD) {
      this.requireFs();
      this.loadPairF(this.ea(insn.rs1, insn.imm), insn.rd);
      this.mstatus |= MS.FS;
      return;
    }
    if (insn.op === Op.FSD) {
      this.requireFs();
      const fi = this.fi;
      this.storePair(this.ea(insn.rs1, insn.imm), fi[insn.rs2 * 2]!, fi[insn.rs2 * 2 + 1]!);
      return;
    }
    this.execFp(insn);
  }

  private loadPairF(va: number, rd: number): void {
    const vpn = Math.floor(va / PAGE);
    const slot = TLB_SIZE + (vpn & (TLB_SIZE - 1));
    const off = va - vpn * PAGE;
    if (this.tlbTag[slot] === vpn && off + 8 <= PAGE) {
      const idx = this.tlbBlock[slot]!;
      if (idx >= 0) {
        const view = this.views[idx]!;
        const o = this.tlbOff[slot]! + off;
        this.fi[rd * 2] = view.getInt32(o, true);
        this.fi[rd * 2 + 1] = view.getInt32(o + 4, true);
        return;
      }
    }
    this.f[rd] = this.load64(va);
  }

  /** Executes one instruction (or takes one pending interrupt / exception). */
  stepOne(): void {
    if ((this.mipSw | this.mipHw) & this.mie) {
      if (this.takeInterrupt()) return;
    }
    try {
      const insn = this.fetch();
      this.cur = insn;
      this.execute(insn);
      this.icount++;
    } catch (e) {
      if (e !== TRAP) throw e;
      this.enterTrap(this.trapCause, false, this.trapTval);
    }
  }

  // ---- traps ----------------------------------------------------------------------------------

  /** Raises a synchronous exception: unwinds the current instruction. */
  raise(cause: number, tval: bigint = 0n): never {
    this.trapCause = cause;
    this.trapTval = tval;
    throw TRAP;
  }

  private illegal(): never {
    return this.raise(Exc.IllegalInsn, BigInt(this.cur === null ? 0 : this.cur.len === 2 ? this.cur.raw & 0xffff : this.cur.raw >>> 0));
  }

  private pendingInterrupt(): number {
    const pending = this.mip & this.mie;
    if (pending === 0) return -1;
    const mEnabled = this.priv < Priv.M || (this.mstatus & MS.MIE) !== 0;
    const sEnabled = this.priv < Priv.S || (this.priv === Priv.S && (this.mstatus & MS.SIE) !== 0);
    const mPending = mEnabled ? pending & ~this.mideleg : 0;
    const sPending = sEnabled ? pending & this.mideleg : 0;
    const candidates = mPending !== 0 ? mPending : sPending;
    if (candidates === 0) return -1;
    for (const bit of IRQ_ORDER) if (candidates & (1 << bit)) return bit;
    return 31 - Math.clz32(candidates);
  }

  private takeInterrupt(): boolean {
    this.wfi = false;
    const cause = this.pendingInterrupt();
    if (cause < 0) return false;
    this.enterTrap(cause, true, 0n);
    return true;
  }

  private enterTrap(cause: number, interrupt: boolean, tval: bigint): void {
    const epc = Number.isNaN(this.pc) ? this.wildPc : BigInt(this.pc);
    const deleg = interrupt ? this.mideleg : this.medeleg;
    const causeBits = BigInt(cause) | (interrupt ? 1n << BigInt(this.xlen - 1) : 0n);
    const causeVal = BigInt.asIntN(this.xlen, causeBits);
    let ms = this.mstatus;
    let vector: bigint;
    if (this.priv <= Priv.S && (deleg >>> cause) & 1) {
      this.scause = causeVal;
      this.sepc = BigInt.asIntN(this.xlen, epc);
      this.stval = BigInt.asIntN(this.xlen, tval);
      ms = (ms & ~MS.SPP) | (this.priv === Priv.S ? MS.SPP : 0);
      ms = (ms & ~MS.SPIE) | (ms & MS.SIE ? MS.SPIE : 0);
      ms &= ~MS.SIE;
      this.setPriv(Priv.S);
      vector = this.stvec;
    } else {
      this.mcause = causeVal;
      this.mepc = BigInt.asIntN(this.xlen, epc);
      this.mtval = BigInt.asIntN(this.xlen, tval);
      ms = (ms & ~MS.MPP) | (this.priv << 11);
      ms = (ms & ~MS.MPIE) | (ms & MS.MIE ? MS.MPIE : 0);
      ms &= ~MS.MIE;
      this.setPriv(Priv.M);
      vector = this.mtvec;
    }
    this.mstatus = ms;
    this.flushTlb();
    let target = vector & ~3n;
    if (interrupt && (vector & 3n) === 1n) target += BigInt(4 * cause);
    this.jumpTo(BigInt.asIntN(this.xlen, target));
  }

  private setPriv(priv: number): void {
    this.priv = priv;
  }

  /** Sets pc from a signed XLEN bigint. */
  private jumpTo(target: bigint): void {
    if (this.xlen === 32) {
      this.pc = Number(BigInt.asUintN(32, target));
    } else if (target >= -(1n << 52n) && target < 1n << 52n) {
      this.pc = Number(target);
    } else {
      this.pc = NaN;
      this.wildPc = target;
    }
  }

  // ---- memory -----------------------------------------------------------------------------------

  flushTlb(): void {
    this.tlbTag.fill(NaN);
  }

  /** Effective address rs1 + imm as a number (NaN if outside the exactly representable range). */
  private ea(rs1: number, imm: number): number {
    if (this.xlen === 32) return (this.xi[rs1 * 2]! + imm) >>> 0;
    const hi = this.xi[rs1 * 2 + 1]!;
    if (hi >= -0x100000 && hi < 0x100000) return hi * 4294967296 + (this.xi[rs1 * 2]! >>> 0) + imm;
    this.wildAddr = BigInt.asIntN(64, this.x[rs1]! + BigInt(imm));
    return NaN;
  }

  private dataPriv(): number {
    if ((this.mstatus & MS.MPRV) !== 0 && this.priv === Priv.M) return (this.mstatus >>> 11) & 3;
    return this.priv;
  }

  private faultCause(access: Access, page: boolean): number {
    if (page) return access === Access.Fetch ? Exc.InsnPageFault : access === Access.Load ? Exc.LoadPageFault : Exc.StorePageFault;
    return access === Access.Fetch ? Exc.InsnAccessFault : access === Access.Load ? Exc.LoadAccessFault : Exc.StoreAccessFault;
  }

  private vaBig(va: number): bigint {
    return Number.isNaN(va) ? this.wildAddr : BigInt(va);
  }

  private ramIndex(block: RamBlock): number {
    let idx = this.blockIndex.get(block);
    if (idx === undefined) {
      idx = this.blocks.length;
      this.blocks.push(block);
      this.views.push(new DataView(block.bytes.buffer, block.bytes.byteOffset, block.bytes.byteLength));
      this.blockIndex.set(block, idx);
    }
    return idx;
  }

  /**
   * Translates `va` for `access`, filling the TLB; returns the physical address. Raises page or
   * access faults. `tlbSlot` receives the TLB index used (or -1 when the page cannot be cached).
   */
  translate(va: number, access: Access): number {
    if (Number.isNaN(va)) return this.raise(this.faultCause(access, this.pagingOn(access)), this.wildAddr);
    const vpn = Math.floor(va / PAGE);
    const slot = access * TLB_SIZE + (vpn & (TLB_SIZE - 1));
    if (this.tlbTag[slot] === vpn) return this.tlbPage[slot]! + (va - vpn * PAGE);
    const priv = access === Access.Fetch ? this.priv : this.dataPriv();
    let pa: number;
    let pageOk = true;
    if (priv === Priv.M || this.satpMode() === 0) {
      if (va < 0 || (this.xlen === 64 && va >= SAFE_VA)) return this.raise(this.faultCause(access, false), this.vaBig(va));
      pa = va;
    } else {
      pa = this.walk(va, access, priv);
    }
    const paPage = pa - (pa % PAGE);
    if (!this.pmpAllows(pa, 1, access, priv)) return this.raise(this.faultCause(access, false), this.vaBig(va));
    if (!this.pmpPageUniform(paPage, priv)) pageOk = false;
    if (pageOk) {
      const block = this.memory.ramAt(paPage);
      let idx = -1;
      if (block !== undefined && block.base <= paPage && paPage + PAGE <= block.base + block.sizeBytes && !(access === Access.Store && block.readonly)) {
        idx = this.ramIndex(block);
      }
      // Stores to pages holding translated code take the slow path, which checks for invalidation
      // (QEMU's TLB_NOTDIRTY); everything else writes straight into RAM.
      if (idx >= 0 && access === Access.Store && this.jit !== null && this.jit.codePages.pageHasCode(paPage)) idx = -1;
      // A block that watches writes gets them through the slow path (noteRamWrite), never inline.
      if (idx >= 0 && access === Access.Store && block !== undefined && block.onWrite !== undefined) idx = -1;
      this.tlbTag[slot] = vpn;
      this.tlbPage[slot] = paPage;
      this.tlbBlock[slot] = idx;
      if (idx >= 0) this.tlbOff[slot] = paPage - this.blocks[idx]!.base;
    }
    return pa;
  }

  private satpMode(): number {
    if (this.xlen === 32) return Number((this.satp >> 31n) & 1n);
    return Number((BigInt.asUintN(64, this.satp) >> 60n) & 0xfn);
  }

  private pagingOn(access: Access): boolean {
    const priv = access === Access.Fetch ? this.priv : this.dataPriv();
    return priv !== Priv.M && this.satpMode() !== 0;
  }

  /** Page-table walk (Sv32/Sv39/Sv48) with hardware A/D updates, as QEMU does. */
  private walk(va: number, access: Access, priv: number): number {
    const mode = this.satpMode();
    const levels = this.xlen === 32 ? 2 : mode === 8 ? 3 : 4;
    const vpnBits = this.xlen === 32 ? 10 : 9;
    const pteSize = this.xlen === 32 ? 4 : 8;
    const vaBits = 12 + levels * vpnBits;
    const pageFault = (): never => this.raise(this.faultCause(access, true), this.vaBig(va));
    if (this.xlen === 64) {
      const limit = 2 ** (vaBits - 1);
      if (va >= limit || va < -limit) pageFault();
    }
    const uva = this.xlen === 32 ? va : va < 0 ? va + 2 ** vaBits : va;
    let base = Number(this.satp & (this.xlen === 32 ? 0x3fffffn : 0xfffffffffffn)) * PAGE;
    const sum = (this.mstatus & MS.SUM) !== 0;
    const mxr = (this.mstatus & MS.MXR) !== 0;
    for (let level = levels - 1; level >= 0; level--) {
      const vpn = Math.floor(uva / 2 ** (12 + level * vpnBits)) % 2 ** vpnBits;
      const pteAddr = base + vpn * pteSize;
      if (!this.pmpAllows(pteAddr, pteSize, Access.Load, Priv.S)) this.raise(this.faultCause(access, false), this.vaBig(va));
      let pte: bigint;
      if (pteSize === 8) {
        const r = this.memory.load64(pteAddr);
        if (r.status !== MemTx.Ok) this.raise(this.faultCause(access, false), this.vaBig(va));
        pte = r.value;
      } else {
        const r = this.memory.load(pteAddr, 4);
        if (r.status !== MemTx.Ok) this.raise(this.faultCause(access, false), this.vaBig(va));
        pte = BigInt(r.value >>> 0);
      }
      const lo = Number(pte & 0x3ffn);
      const ppn = Number((pte >> 10n) & (this.xlen === 32 ? 0x3fffffn : 0xfffffffffffn));
      const v = lo & 1;
      const r = (lo >> 1) & 1;
      const w = (lo >> 2) & 1;
      const xb = (lo >> 3) & 1;
      if (!v || (!r && w)) return pageFault();
      if (this.xlen === 64 && pte >> 61n !== 0n) return pageFault();
      if (!r && !xb) {
        if ((lo & 0xd0) !== 0) return pageFault(); // D, A, U must be clear on non-leaf entries
        base = ppn * PAGE;
        continue;
      }
      // Leaf.
      const u = (lo >> 4) & 1;
      if (priv === Priv.U && !u) return pageFault();
      if (priv === Priv.S && u && (access === Access.Fetch || !sum)) return pageFault();
      if (access === Access.Fetch && !xb) return pageFault();
      if (access === Access.Load && !(r || (mxr && xb))) return pageFault();
      if (access === Access.Store && !w) return pageFault();
      const superSpan = 2 ** (level * vpnBits);
      if (ppn % superSpan !== 0) return pageFault();
      const a = (lo >> 6) & 1;
      const d = (lo >> 7) & 1;
      if (!a || (access === Access.Store && !d)) {
        const updated = pte | 0x40n | (access === Access.Store ? 0x80n : 0n);
        if (!this.pmpAllows(pteAddr, pteSize, Access.Store, Priv.S)) this.raise(this.faultCause(access, false), this.vaBig(va));
        const st = pteSize === 8 ? this.memory.store64(pteAddr, updated) : this.memory.store(pteAddr, 4, Number(updated));
        if (st !== MemTx.Ok) this.raise(this.faultCause(access, false), this.vaBig(va));
        this.noteRamWrite(pteAddr, pteSize);
      }
      const offsetInSuper = uva % (superSpan * PAGE);
      return ppn * PAGE + offsetInSuper;
    }
    return pageFault();
  }

  private noteRamWrite(paddr: number, len: number): void {
    const block = this.memory.ramAt(paddr);
    if (block !== undefined) block.onWrite?.(paddr - block.base, len);
    this.onCodeWrite?.(paddr, len);
    if (this.reservations.active !== 0) this.reservations.storeBy(this, paddr, len);
  }

  // ---- PMP -------------------------------------------------------------------------------------

  private recomputePmp(): void {
    this.pmpActive = 0;
    for (let i = 0; i < PMP_COUNT; i++) {
      const cfg = this.pmpcfg[i]!;
      const a = (cfg >> 3) & 3;
      let lo = 0;
      let hi = 0;
      const addr = this.pmpaddr[i]!;
      if (a === 1) {
        lo = i === 0 ? 0 : Number(this.pmpaddr[i - 1]! << 2n);
        hi = Number(addr << 2n);
      } else if (a === 2) {
        lo = Number(addr << 2n);
        hi = lo + 4;
      } else if (a === 3) {
        let ones = 0n;
        while (ones < 64n && ((addr >> ones) & 1n) === 1n) ones++;
        const size = 1n << (ones + 3n);
        const start = (addr << 2n) & ~(size - 1n);
        lo = Number(start);
        hi = Number(start + size);
      }
      if (a !== 0) this.pmpActive++;
      this.pmpLo[i] = lo;
      this.pmpHi[i] = a === 0 ? 0 : hi;
    }
    this.flushTlb();
    this.onFlush?.();
  }

  /** PMP check of [pa, pa+size) for `priv`. */
  private pmpAllows(pa: number, size: number, access: Access, priv: number): boolean {
    if (this.pmpActive === 0) return true;
    for (let i = 0; i < PMP_COUNT; i++) {
      const lo = this.pmpLo[i]!;
      const hi = this.pmpHi[i]!;
      if (hi <= lo) continue;
      const startIn = pa >= lo && pa < hi;
      const endIn = pa + size - 1 >= lo && pa + size - 1 < hi;
      if (!startIn && !endIn) continue;
      if (!(startIn && endIn)) return false; // partial match fails
      const cfg = this.pmpcfg[i]!;
      const locked = (cfg & 0x80) !== 0;
      if (priv === Priv.M && !locked) return true;
      const bit = access === Access.Fetch ? 4 : access === Access.Load ? 1 : 2;
      return (cfg & bit) !== 0;
    }
    return priv === Priv.M;
  }

  /** True when every byte of the page gets the same PMP verdict (safe to cache in the TLB). */
  private pmpPageUniform(page: number, _priv: number): boolean {
    if (this.pmpActive === 0) return true;
    for (let i = 0; i < PMP_COUNT; i++) {
      const lo = this.pmpLo[i]!;
      const hi = this.pmpHi[i]!;
      if (hi <= lo) continue;
      if (hi <= page || lo >= page + PAGE) continue;
      return lo <= page && hi >= page + PAGE;
    }
    return true;
  }

  // ---- loads and stores -------------------------------------------------------------------------

  private fetch(): Insn {
    const pc = this.pc;
    if (Number.isNaN(pc)) return this.raise(this.faultCause(Access.Fetch, this.pagingOn(Access.Fetch)), this.wildPc);
    const lo = this.fetch16(pc);
    if ((lo & 3) !== 3) return this.decoder.get(lo);
    const hi = this.fetch16(this.xlen === 32 ? (pc + 2) >>> 0 : pc + 2);
    return this.decoder.get((lo | (hi << 16)) >>> 0);
  }

  private fetch16(va: number): number {
    const vpn = Math.floor(va / PAGE);
    const slot = vpn & (TLB_SIZE - 1);
    const off = va - vpn * PAGE;
    if (this.tlbTag[slot] === vpn) {
      const idx = this.tlbBlock[slot]!;
      if (idx >= 0) return this.views[idx]!.getUint16(this.tlbOff[slot]! + off, true);
    }
    const pa = this.translate(va, Access.Fetch);
    const block = this.memory.ramAt(pa);
    if (block !== undefined && pa + 2 <= block.base + block.sizeBytes) {
      return block.bytes[pa - block.base]! | (block.bytes[pa - block.base + 1]! << 8);
    }
    this.syncClock();
    const r = this.memory.load(pa, 2);
    if (r.status !== MemTx.Ok) this.raise(Exc.InsnAccessFault, BigInt(va));
    return r.value;
  }

  /** Loads `size` (1/2/4) bytes unsigned as a number. */
  loadN(va: number, size: 1 | 2 | 4): number {
    const vpn = Math.floor(va / PAGE);
    const slot = TLB_SIZE + (vpn & (TLB_SIZE - 1));
    const off = va - vpn * PAGE;
    if (this.tlbTag[slot] === vpn && off + size <= PAGE) {
      const idx = this.tlbBlock[slot]!;
      if (idx >= 0) {
        const view = this.views[idx]!;
        const o = this.tlbOff[slot]! + off;
        return size === 4 ? view.getUint32(o, true) : size === 2 ? view.getUint16(o, true) : view.getUint8(o);
      }
    }
    return this.loadSlow(va, size);
  }

  private loadSlow(va: number, size: 1 | 2 | 4): number {
    if (!Number.isNaN(va) && (va % PAGE) + size > PAGE && size > 1) {
      let v = 0;
      for (let i = size - 1; i >= 0; i--) v = v * 256 + this.loadN(this.wrapVa(va + i), 1);
      return v;
    }
    const pa = this.translate(va, Access.Load);
    const block = this.memory.ramAt(pa);
    if (block !== undefined && pa + size <= block.base + block.sizeBytes) {
      const o = pa - block.base;
      const b = block.bytes;
      let v = 0;
      for (let i = size - 1; i >= 0; i--) v = v * 256 + b[o + i]!;
      return v;
    }
    this.syncClock();
    this.stopRequested = true;
    if (pa % size !== 0) {
      let v = 0;
      for (let i = size - 1; i >= 0; i--) {
        const r = this.memory.load(pa + i, 1);
        if (r.status !== MemTx.Ok) this.raise(Exc.LoadAccessFault, this.vaBig(va));
        v = v * 256 + r.value;
      }
      return v;
    }
    const r = this.memory.load(pa, size);
    if (r.status !== MemTx.Ok) this.raise(Exc.LoadAccessFault, this.vaBig(va));
    return r.value >>> 0;
  }

  private wrapVa(va: number): number {
    return this.xlen === 32 ? va >>> 0 : va;
  }

  load64(va: number): bigint {
    const vpn = Math.floor(va / PAGE);
    const slot = TLB_SIZE + (vpn & (TLB_SIZE - 1));
    const off = va - vpn * PAGE;
    if (this.tlbTag[slot] === vpn && off + 8 <= PAGE) {
      const idx = this.tlbBlock[slot]!;
      if (idx >= 0) return this.views[idx]!.getBigUint64(this.tlbOff[slot]! + off, true);
    }
    if (!Number.isNaN(va) && (va % PAGE) + 8 > PAGE) {
      const lo = this.loadN(va, 4);
      const hi = this.loadN(this.wrapVa(va + 4), 4);
      return (BigInt(hi) << 32n) | BigInt(lo);
    }
    const pa = this.translate(va, Access.Load);
    const block = this.memory.ramAt(pa);
    if (block !== undefined && pa + 8 <= block.base + block.sizeBytes) {
      return new DataView(block.bytes.buffer, block.bytes.byteOffset).getBigUint64(pa - block.base, true);
    }
    this.syncClock();
    this.stopRequested = true;
    if (pa % 8 !== 0) {
      const lo = this.loadN(va, 4);
      const hi = this.loadN(va + 4, 4);
      return (BigInt(hi) << 32n) | BigInt(lo);
    }
    const r = this.memory.load64(pa);
    if (r.status !== MemTx.Ok) this.raise(Exc.LoadAccessFault, this.vaBig(va));
    return BigInt.asUintN(64, r.value);
  }

  /** 64-bit load straight into register rd (no BigInt on the fast path). */
  loadPair(va: number, rd: number): void {
    const vpn = Math.floor(va / PAGE);
    const slot = TLB_SIZE + (vpn & (TLB_SIZE - 1));
    const off = va - vpn * PAGE;
    if (this.tlbTag[slot] === vpn && off + 8 <= PAGE) {
      const idx = this.tlbBlock[slot]!;
      if (idx >= 0) {
        const view = this.views[idx]!;
        const o = this.tlbOff[slot]! + off;
        const lo = view.getInt32(o, true);
        const hi = view.getInt32(o + 4, true);
        if (rd !== 0) {
          this.xi[rd * 2] = lo;
          this.xi[rd * 2 + 1] = hi;
        }
        return;
      }
    }
    const v = this.load64(va);
    if (rd !== 0) this.x[rd] = BigInt.asIntN(64, v);
  }

  /** 64-bit store of the pair (lo, hi). */
  storePair(va: number, lo: number, hi: number): void {
    const vpn = Math.floor(va / PAGE);
    const slot = 2 * TLB_SIZE + (vpn & (TLB_SIZE - 1));
    const off = va - vpn * PAGE;
    if (this.tlbTag[slot] === vpn && off + 8 <= PAGE) {
      const idx = this.tlbBlock[slot]!;
      if (idx >= 0) {
        const block = this.blocks[idx]!;
        const view = this.views[idx]!;
        const o = this.tlbOff[slot]! + off;
        view.setInt32(o, lo, true);
        view.setInt32(o + 4, hi, true);
        if (block.onWrite !== undefined) block.onWrite(o, 8);
        if (this.reservations.active !== 0) this.reservations.storeBy(this, this.tlbPage[slot]! + off, 8);
        return;
      }
    }
    this.store64(va, (BigInt(hi) << 32n) | BigInt(lo >>> 0));
  }

  storeN(va: number, size: 1 | 2 | 4, value: number): void {
    const vpn = Math.floor(va / PAGE);
    const slot = 2 * TLB_SIZE + (vpn & (TLB_SIZE - 1));
    const off = va - vpn * PAGE;
    if (this.tlbTag[slot] === vpn && off + size <= PAGE) {
      const idx = this.tlbBlock[slot]!;
      if (idx >= 0) {
        const view = this.views[idx]!;
        const block = this.blocks[idx]!;
        const o = this.tlbOff[slot]! + off;
        if (size === 4) view.setUint32(o, value >>> 0, true);
        else if (size === 2) view.setUint16(o, value & 0xffff, true);
        else view.setUint8(o, value & 0xff);
        if (block.onWrite !== undefined) block.onWrite(o, size);
        if (this.reservations.active !== 0) this.reservations.storeBy(this, this.tlbPage[slot]! + off, size);
        return;
      }
    }
    this.storeSlow(va, size, value);
  }

  private storeSlow(va: number, size: 1 | 2 | 4, value: number): void {
    if (!Number.isNaN(va) && (va % PAGE) + size > PAGE && size > 1) {
      // Translate both pages first so a fault leaves memory untouched.
      this.translate(va, Access.Store);
      this.translate(this.wrapVa(va + size - 1), Access.Store);
      for (let i = 0; i < size; i++) this.storeN(this.wrapVa(va + i), 1, (value >>> (8 * i)) & 0xff);
      return;
    }
    const pa = this.translate(va, Access.Store);
    const block = this.memory.ramAt(pa);
    if (block !== undefined && !block.readonly && pa + size <= block.base + block.sizeBytes) {
      const o = pa - block.base;
      for (let i = 0; i < size; i++) block.bytes[o + i] = (value >>> (8 * i)) & 0xff;
      this.noteRamWrite(pa, size);
      return;
    }
    this.syncClock();
    this.stopRequested = true;
    if (pa % size !== 0) {
      for (let i = 0; i < size; i++) {
        if (this.memory.store(pa + i, 1, (value >>> (8 * i)) & 0xff) !== MemTx.Ok) this.raise(Exc.StoreAccessFault, this.vaBig(va));
      }
      return;
    }
    const mask = size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
    if (this.memory.store(pa, size, (value & mask) >>> 0) !== MemTx.Ok) this.raise(Exc.StoreAccessFault, this.vaBig(va));
  }

  store64(va: number, value: bigint): void {
    const vpn = Math.floor(va / PAGE);
    const slot = 2 * TLB_SIZE + (vpn & (TLB_SIZE - 1));
    const off = va - vpn * PAGE;
    if (this.tlbTag[slot] === vpn && off + 8 <= PAGE) {
      const idx = this.tlbBlock[slot]!;
      if (idx >= 0) {
        const block = this.blocks[idx]!;
        const o = this.tlbOff[slot]! + off;
        this.views[idx]!.setBigUint64(o, BigInt.asUintN(64, value), true);
        if (block.onWrite !== undefined) block.onWrite(o, 8);
        if (this.reservations.active !== 0) this.reservations.storeBy(this, this.tlbPage[slot]! + off, 8);
        return;
      }
    }
    const lo = Number(value & 0xffffffffn);
    const hi = Number((value >> 32n) & 0xffffffffn);
    if (!Number.isNaN(va) && (va % PAGE) + 8 > PAGE) {
      this.translate(va, Access.Store);
      this.translate(this.wrapVa(va + 7), Access.Store);
      this.storeN(va, 4, lo);
      this.storeN(this.wrapVa(va + 4), 4, hi);
      return;
    }
    const pa = this.translate(va, Access.Store);
    const block = this.memory.ramAt(pa);
    if (block !== undefined && !block.readonly && pa + 8 <= block.base + block.sizeBytes) {
      new DataView(block.bytes.buffer, block.bytes.byteOffset).setBigUint64(pa - block.base, BigInt.asUintN(64, value), true);
      this.noteRamWrite(pa, 8);
      return;
    }
    this.syncClock();
    this.stopRequested = true;
    if (pa % 8 !== 0) {
      this.storeSlow(va, 4, lo);
      this.storeSlow(va + 4, 4, hi);
      return;
    }
    if (this.memory.store64(pa, BigInt.asUintN(64, value)) !== MemTx.Ok) this.raise(Exc.StoreAccessFault, this.vaBig(va));
  }

  // ---- integer register helpers -----------------------------------------------------------------

  /** Writes a signed int32 to rd, sign-extended. */
  private setI32(rd: number, v: number): void {
    if (rd === 0) return;
    this.xi[rd * 2] = v;
    this.xi[rd * 2 + 1] = v >> 31;
  }

  /** Writes a pc-like number (signed RV64 value / unsigned RV32 value) to rd. */
  private setNum(rd: number, v: number): void {
    if (rd === 0) return;
    if (this.xlen === 32) {
      this.setI32(rd, v | 0);
    } else if (v >= -2147483648 && v <= 2147483647) {
      this.setI32(rd, v);
    } else {
      this.x[rd] = BigInt(v);
    }
  }

  private nextPc(len: number): number {
    return this.xlen === 32 ? (this.pc + len) >>> 0 : this.pc + len;
  }

  private pcPlus(imm: number): number {
    if (this.xlen === 32) return (this.pc + imm) >>> 0;
    return this.pc + imm;
  }

  // ---- the interpreter ------------------------------------------------------------------------

  /** Executes one decoded instruction at `this.pc` (advances pc; raises on exceptions). */
  execute(insn: Insn): void {
    this.cur = insn;
    const x = this.x;
    const xi = this.xi;
    const rd = insn.rd;
    const rs1 = insn.rs1;
    const rs2 = insn.rs2;
    const imm = insn.imm;
    let next = this.nextPc(insn.len);
    switch (insn.op) {
      case Op.LUI:
        this.setI32(rd, imm);
        break;
      case Op.AUIPC:
        this.setNum(rd, this.pcPlus(imm));
        break;
      case Op.JAL: {
        const target = this.pcPlus(imm);
        this.setNum(rd, next);
        next = target;
        break;
      }
      case Op.JALR: {
        let target: number;
        if (this.xlen === 32) {
          target = ((xi[rs1 * 2]! + imm) & ~1) >>> 0;
        } else {
          target = this.ea(rs1, imm);
          if (Number.isNaN(target)) {
            this.setNum(rd, next);
            this.pc = NaN;
            this.wildPc = this.wildAddr & ~1n;
            return;
          }
          target -= ((target % 2) + 2) % 2;
        }
        this.setNum(rd, next);
        next = target;
        break;
      }
      case Op.BEQ:
        if (xi[rs1 * 2] === xi[rs2 * 2] && xi[rs1 * 2 + 1] === xi[rs2 * 2 + 1]) next = this.pcPlus(imm);
        break;
      case Op.BNE:
        if (xi[rs1 * 2] !== xi[rs2 * 2] || xi[rs1 * 2 + 1] !== xi[rs2 * 2 + 1]) next = this.pcPlus(imm);
        break;
      case Op.BLT:
        if (lt64(xi, rs1, rs2)) next = this.pcPlus(imm);
        break;
      case Op.BGE:
        if (!lt64(xi, rs1, rs2)) next = this.pcPlus(imm);
        break;
      case Op.BLTU:
        if (ltu64(xi, rs1, rs2)) next = this.pcPlus(imm);
        break;
      case Op.BGEU:
        if (!ltu64(xi, rs1, rs2)) next = this.pcPlus(imm);
        break;
      case Op.LB:
        this.setI32(rd, (this.loadN(this.ea(rs1, imm), 1) << 24) >> 24);
        break;
      case Op.LH:
        this.setI32(rd, (this.loadN(this.ea(rs1, imm), 2) << 16) >> 16);
        break;
      case Op.LW:
        this.setI32(rd, this.loadN(this.ea(rs1, imm), 4) | 0);
        break;
      case Op.LBU:
        this.setI32(rd, this.loadN(this.ea(rs1, imm), 1));
        break;
      case Op.LHU:
        this.setI32(rd, this.loadN(this.ea(rs1, imm), 2));
        break;
      case Op.LWU: {
        const v = this.loadN(this.ea(rs1, imm), 4);
        if (rd !== 0) {
          xi[rd * 2] = v | 0;
          xi[rd * 2 + 1] = 0;
        }
        break;
      }
      case Op.LD:
        this.loadPair(this.ea(rs1, imm), rd);
        break;
      case Op.SB:
        this.storeN(this.ea(rs1, imm), 1, xi[rs2 * 2]!);
        break;
      case Op.SH:
        this.storeN(this.ea(rs1, imm), 2, xi[rs2 * 2]!);
        break;
      case Op.SW:
        this.storeN(this.ea(rs1, imm), 4, xi[rs2 * 2]!);
        break;
      case Op.SD:
        this.storePair(this.ea(rs1, imm), xi[rs2 * 2]!, xi[rs2 * 2 + 1]!);
        break;
      case Op.ADDI:
        if (rd !== 0) add64(xi, rd, xi[rs1 * 2]!, xi[rs1 * 2 + 1]!, imm, imm >> 31);
        break;
      case Op.SLTI:
        this.setI32(rd, lt64v(xi[rs1 * 2 + 1]!, xi[rs1 * 2]!, imm >> 31, imm) ? 1 : 0);
        break;
      case Op.SLTIU:
        this.setI32(rd, ltu64v(xi[rs1 * 2 + 1]!, xi[rs1 * 2]!, imm >> 31, imm) ? 1 : 0);
        break;
      case Op.XORI:
        if (rd !== 0) {
          xi[rd * 2 + 1] = xi[rs1 * 2 + 1]! ^ (imm >> 31);
          xi[rd * 2] = xi[rs1 * 2]! ^ imm;
        }
        break;
      case Op.ORI:
        if (rd !== 0) {
          xi[rd * 2 + 1] = xi[rs1 * 2 + 1]! | (imm >> 31);
          xi[rd * 2] = xi[rs1 * 2]! | imm;
        }
        break;
      case Op.ANDI:
        if (rd !== 0) {
          xi[rd * 2 + 1] = xi[rs1 * 2 + 1]! & (imm >> 31);
          xi[rd * 2] = xi[rs1 * 2]! & imm;
        }
        break;
      case Op.SLLI:
        if (rd !== 0) sll64(xi, rd, rs1, imm);
        break;
      case Op.SRLI:
        if (rd !== 0) srl64(xi, rd, rs1, imm);
        break;
      case Op.SRAI:
        if (rd !== 0) sra64(xi, rd, rs1, imm);
        break;
      case Op.ADD:
        if (rd !== 0) add64(xi, rd, xi[rs1 * 2]!, xi[rs1 * 2 + 1]!, xi[rs2 * 2]!, xi[rs2 * 2 + 1]!);
        break;
      case Op.SUB:
        if (rd !== 0) sub64(xi, rd, rs1, rs2);
        break;
      case Op.SLL:
        if (rd !== 0) sll64(xi, rd, rs1, xi[rs2 * 2]! & 63);
        break;
      case Op.SLT:
        this.setI32(rd, lt64(xi, rs1, rs2) ? 1 : 0);
        break;
      case Op.SLTU:
        this.setI32(rd, ltu64(xi, rs1, rs2) ? 1 : 0);
        break;
      case Op.XOR:
        if (rd !== 0) {
          xi[rd * 2 + 1] = xi[rs1 * 2 + 1]! ^ xi[rs2 * 2 + 1]!;
          xi[rd * 2] = xi[rs1 * 2]! ^ xi[rs2 * 2]!;
        }
        break;
      case Op.SRL:
        if (rd !== 0) srl64(xi, rd, rs1, xi[rs2 * 2]! & 63);
        break;
      case Op.SRA:
        if (rd !== 0) sra64(xi, rd, rs1, xi[rs2 * 2]! & 63);
        break;
      case Op.OR:
        if (rd !== 0) {
          xi[rd * 2 + 1] = xi[rs1 * 2 + 1]! | xi[rs2 * 2 + 1]!;
          xi[rd * 2] = xi[rs1 * 2]! | xi[rs2 * 2]!;
        }
        break;
      case Op.AND:
        if (rd !== 0) {
          xi[rd * 2 + 1] = xi[rs1 * 2 + 1]! & xi[rs2 * 2 + 1]!;
          xi[rd * 2] = xi[rs1 * 2]! & xi[rs2 * 2]!;
        }
        break;
      case Op.ADDIW:
        this.setI32(rd, (xi[rs1 * 2]! + imm) | 0);
        break;
      case Op.SLLIW:
        this.setI32(rd, xi[rs1 * 2]! << imm);
        break;
      case Op.SRLIW:
        this.setI32(rd, (xi[rs1 * 2]! >>> imm) | 0);
        break;
      case Op.SRAIW:
        this.setI32(rd, xi[rs1 * 2]! >> imm);
        break;
      case Op.ADDW:
        this.setI32(rd, (xi[rs1 * 2]! + xi[rs2 * 2]!) | 0);
        break;
      case Op.SUBW:
        this.setI32(rd, (xi[rs1 * 2]! - xi[rs2 * 2]!) | 0);
        break;
      case Op.SLLW:
        this.setI32(rd, xi[rs1 * 2]! << (xi[rs2 * 2]! & 31));
        break;
      case Op.SRLW:
        this.setI32(rd, (xi[rs1 * 2]! >>> (xi[rs2 * 2]! & 31)) | 0);
        break;
      case Op.SRAW:
        this.setI32(rd, xi[rs1 * 2]! >> (xi[rs2 * 2]! & 31));
        break;
      case Op.MUL:
        if (rd !== 0) x[rd] = x[rs1]! * x[rs2]!;
        break;
      case Op.MULH:
        if (rd !== 0) x[rd] = (x[rs1]! * x[rs2]!) >> 64n;
        break;
      case Op.MULHSU:
        if (rd !== 0) x[rd] = (x[rs1]! * this.xu[rs2]!) >> 64n;
        break;
      case Op.MULHU:
        if (rd !== 0) x[rd] = BigInt.asIntN(64, (this.xu[rs1]! * this.xu[rs2]!) >> 64n);
        break;
      case Op.DIV: {
        const a = x[rs1]!;
        const b = x[rs2]!;
        if (rd !== 0) x[rd] = b === 0n ? -1n : a / b;
        break;
      }
      case Op.DIVU: {
        const a = this.xu[rs1]!;
        const b = this.xu[rs2]!;
        if (rd !== 0) x[rd] = b === 0n ? -1n : BigInt.asIntN(64, a / b);
        break;
      }
      case Op.REM: {
        const a = x[rs1]!;
        const b = x[rs2]!;
        if (rd !== 0) x[rd] = b === 0n ? a : a % b;
        break;
      }
      case Op.REMU: {
        const a = this.xu[rs1]!;
        const b = this.xu[rs2]!;
        if (rd !== 0) x[rd] = b === 0n ? BigInt.asIntN(64, a) : BigInt.asIntN(64, a % b);
        break;
      }
      case Op.MULW:
        this.setI32(rd, Math.imul(xi[rs1 * 2]!, xi[rs2 * 2]!));
        break;
      case Op.DIVW: {
        const a = xi[rs1 * 2]!;
        const b = xi[rs2 * 2]!;
        this.setI32(rd, b === 0 ? -1 : (a / b) | 0);
        break;
      }
      case Op.DIVUW: {
        const a = xi[rs1 * 2]! >>> 0;
        const b = xi[rs2 * 2]! >>> 0;
        this.setI32(rd, b === 0 ? -1 : Math.trunc(a / b) | 0);
        break;
      }
      case Op.REMW: {
        const a = xi[rs1 * 2]!;
        const b = xi[rs2 * 2]!;
        this.setI32(rd, b === 0 ? a : a % b | 0);
        break;
      }
      case Op.REMUW: {
        const a = xi[rs1 * 2]! >>> 0;
        const b = xi[rs2 * 2]! >>> 0;
        this.setI32(rd, b === 0 ? a | 0 : a % b | 0);
        break;
      }
      case Op.MULH32:
        this.setI32(rd, Number(BigInt.asIntN(32, (BigInt(xi[rs1 * 2]!) * BigInt(xi[rs2 * 2]!)) >> 32n)));
        break;
      case Op.MULHSU32:
        this.setI32(rd, Number(BigInt.asIntN(32, (BigInt(xi[rs1 * 2]!) * BigInt(xi[rs2 * 2]! >>> 0)) >> 32n)));
        break;
      case Op.MULHU32:
        this.setI32(rd, Number(BigInt.asIntN(32, (BigInt(xi[rs1 * 2]! >>> 0) * BigInt(xi[rs2 * 2]! >>> 0)) >> 32n)));
        break;
      case Op.FENCE:
        break;
      case Op.FENCE_I:
        this.onFlush?.();
        break;
      case Op.ECALL:
        return this.raise(this.priv === Priv.U ? Exc.EcallU : this.priv === Priv.S ? Exc.EcallS : Exc.EcallM, 0n);
      case Op.EBREAK:
        return this.raise(Exc.Breakpoint, 0n); // QEMU 7.2 leaves tval 0 for ebreak
      case Op.MRET: {
        if (this.priv < Priv.M) this.illegal();
        let ms = this.mstatus;
        const mpp = (ms >>> 11) & 3;
        // QEMU 7.2: mret to S/U with no PMP rule configured is an illegal instruction.
        if (mpp !== Priv.M && this.pmpActive === 0) this.illegal();
        ms = (ms & ~MS.MIE) | (ms & MS.MPIE ? MS.MIE : 0);
        ms |= MS.MPIE;
        ms &= ~MS.MPP;
        if (mpp !== Priv.M) ms &= ~MS.MPRV;
        this.mstatus = ms;
        this.setPriv(mpp);
        this.flushTlb();
        this.jumpTo(BigInt.asIntN(this.xlen, this.mepc & ~1n));
        return;
      }
      case Op.SRET: {
        if (this.priv < Priv.S || (this.priv === Priv.S && this.mstatus & MS.TSR)) this.illegal();
        let ms = this.mstatus;
        const spp = (ms >>> 8) & 1;
        ms = (ms & ~MS.SIE) | (ms & MS.SPIE ? MS.SIE : 0);
        ms |= MS.SPIE;
        ms &= ~MS.SPP;
        ms &= ~MS.MPRV;
        this.mstatus = ms;
        this.setPriv(spp);
        this.flushTlb();
        this.jumpTo(BigInt.asIntN(this.xlen, this.sepc & ~1n));
        return;
      }
      case Op.WFI:
        if (this.priv === Priv.U || (this.priv === Priv.S && this.mstatus & MS.TW)) this.illegal();
        if ((this.mip & this.mie) === 0) this.wfi = true;
        break;
      case Op.SFENCE_VMA:
        if (this.priv === Priv.U || (this.priv === Priv.S && this.mstatus & MS.TVM)) this.illegal();
        this.flushTlb();
        this.onFlush?.();
        break;
      case Op.CSRRW:
      case Op.CSRRS:
      case Op.CSRRC:
      case Op.CSRRWI:
      case Op.CSRRSI:
      case Op.CSRRCI:
        this.execCsr(insn);
        break;
      case Op.LR:
      case Op.SC:
      case Op.AMOSWAP:
      case Op.AMOADD:
      case Op.AMOXOR:
      case Op.AMOAND:
      case Op.AMOOR:
      case Op.AMOMIN:
      case Op.AMOMAX:
      case Op.AMOMINU:
      case Op.AMOMAXU:
        this.execAmo(insn);
        break;
      case Op.ILLEGAL:
        return this.illegal();
      default:
        this.execFp(insn);
        break;
    }
    this.pc = next;
  }

  // ---- CSRs -------------------------------------------------------------------------------------

  private execCsr(insn: Insn): void {
    const csr = insn.imm;
    const op = insn.op;
    const isImm = op >= Op.CSRRWI;
    const src = isImm ? BigInt(insn.rs1) : this.x[insn.rs1]!;
    const isWrite = op === Op.CSRRW || op === Op.CSRRWI || insn.rs1 !== 0;
    const isRead = !(op === Op.CSRRW || op === Op.CSRRWI) || insn.rd !== 0;
    const csrPriv = (csr >>> 8) & 3;
    if (this.priv < csrPriv) this.illegal();
    if (isWrite && csr >>> 10 === 3) this.illegal();
    const old = isRead || op !== Op.CSRRW ? this.csrRead(csr) : this.csrProbe(csr);
    if (isWrite) {
      let value: bigint;
      if (op === Op.CSRRW || op === Op.CSRRWI) value = src;
      else if (op === Op.CSRRS || op === Op.CSRRSI) value = old | src;
      else value = old & ~src;
      this.csrWrite(csr, value);
    }
    if (insn.rd !== 0) this.x[insn.rd] = this.xlen === 32 ? BigInt.asIntN(32, old) : old;
  }

  /** Checks the CSR exists and is accessible without reading it (csrrw with rd=x0). */
  private csrProbe(csr: number): bigint {
    return this.csrRead(csr);
  }

  private counterAllowed(index: number): void {
    if (this.priv < Priv.M && !((this.mcounteren >>> index) & 1)) this.illegal();
    if (this.priv < Priv.S && !((this.scounteren >>> index) & 1)) this.illegal();
  }

  private requireFs(): void {
    if ((this.mstatus & MS.FS) === 0) this.illegal();
  }

  private readMstatus(): bigint {
    const ms = this.mstatus;
    const dirty = (ms & MS.FS) === MS.FS;
    if (this.xlen === 32) return BigInt.asIntN(32, BigInt(ms) | (dirty ? 1n << 31n : 0n));
    return BigInt.asIntN(64, BigInt(ms) | (2n << 32n) | (2n << 34n) | (dirty ? 1n << 63n : 0n));
  }

  private readSstatus(): bigint {
    const ms = this.mstatus & SSTATUS_MASK;
    const dirty = (this.mstatus & MS.FS) === MS.FS;
    if (this.xlen === 32) return BigInt.asIntN(32, BigInt(ms) | (dirty ? 1n << 31n : 0n));
    return BigInt.asIntN(64, BigInt(ms) | (2n << 32n) | (dirty ? 1n << 63n : 0n));
  }

  private lo32(v: bigint): number {
    return Number(BigInt.asUintN(32, v));
  }

  /** Reads a CSR (privilege already checked by the caller for instructions). */
  csrRead(csr: number): bigint {
    const rv32 = this.xlen === 32;
    switch (csr) {
      case Csr.fflags:
        this.requireFs();
        return BigInt(this.fflags);
      case Csr.frm:
        this.requireFs();
        return BigInt(this.frm);
      case Csr.fcsr:
        this.requireFs();
        return BigInt((this.frm << 5) | this.fflags);
      case Csr.cycle:
        this.counterAllowed(0);
        return this.xlenValue(BigInt(this.icount + 1) + this.cycleOffset);
      case Csr.time:
        if (this.readTime === null) return this.illegal();
        this.counterAllowed(1);
        this.syncClock();
        return this.xlenValue(this.readTime());
      case Csr.instret:
        this.counterAllowed(2);
        return this.xlenValue(BigInt(this.icount + 1) + this.instretOffset);
      case Csr.sstatus:
        return this.readSstatus();
      case Csr.sie:
        return BigInt(this.mie & this.mideleg);
      case Csr.stvec:
        return this.stvec;
      case Csr.scounteren:
        return BigInt(this.scounteren);
      case Csr.senvcfg:
        return this.senvcfg;
      case Csr.sscratch:
        return this.sscratch;
      case Csr.sepc:
        return this.sepc;
      case Csr.scause:
        return this.scause;
      case Csr.stval:
        return this.stval;
      case Csr.sip:
        return BigInt(this.mip & this.mideleg);
      case Csr.satp:
        if (this.priv === Priv.S && this.mstatus & MS.TVM) this.illegal();
        return this.satp;
      case Csr.mstatus:
        return this.readMstatus();
      case Csr.misa:
        return this.misa();
      case Csr.medeleg:
        return BigInt(this.medeleg);
      case Csr.mideleg:
        return BigInt(this.mideleg);
      case Csr.mie:
        return BigInt(this.mie);
      case Csr.mtvec:
        return this.mtvec;
      case Csr.mcounteren:
        return BigInt(this.mcounteren);
      case Csr.menvcfg:
        return rv32 ? BigInt.asIntN(32, this.menvcfg) : this.menvcfg;
      case Csr.mcountinhibit:
        return BigInt(this.mcountinhibit);
      case Csr.mscratch:
        return this.mscratch;
      case Csr.mepc:
        return this.mepc;
      case Csr.mcause:
        return this.mcause;
      case Csr.mtval:
        return this.mtval;
      case Csr.mip:
        return BigInt(this.mip);
      case Csr.mcycle:
        return this.xlenValue(BigInt(this.icount + 1) + this.cycleOffset);
      case Csr.minstret:
        return this.xlenValue(BigInt(this.icount + 1) + this.instretOffset);
      case Csr.mvendorid:
        return 0n;
      case Csr.marchid:
        return BigInt(QEMU_MARCHID);
      case Csr.mimpid:
        return BigInt(QEMU_MIMPID);
      case Csr.mhartid:
        return BigInt(this.hartId);
      case Csr.mconfigptr:
        return 0n;
      default:
        break;
    }
    if (rv32) {
      switch (csr) {
        case Csr.cycleh:
          this.counterAllowed(0);
          return BigInt.asIntN(32, (BigInt(this.icount + 1) + this.cycleOffset) >> 32n);
        case Csr.timeh:
          if (this.readTime === null) return this.illegal();
          this.counterAllowed(1);
          this.syncClock();
          return BigInt.asIntN(32, this.readTime() >> 32n);
        case Csr.instreth:
          this.counterAllowed(2);
          return BigInt.asIntN(32, (BigInt(this.icount + 1) + this.instretOffset) >> 32n);
        case Csr.mcycleh:
          return BigInt.asIntN(32, (BigInt(this.icount + 1) + this.cycleOffset) >> 32n);
        case Csr.minstreth:
          return BigInt.asIntN(32, (BigInt(this.icount + 1) + this.instretOffset) >> 32n);
        case Csr.mstatush:
          return 0n;
        case Csr.menvcfgh:
          return BigInt.asIntN(32, this.menvcfg >> 32n);
        default:
          break;
      }
      if (csr >= 0xc83 && csr <= 0xc9f) {
        this.counterAllowed(csr - 0xc80);
        return 0n;
      }
      if (csr >= 0xb83 && csr <= 0xb9f) return 0n;
    }
    if (csr >= 0xc03 && csr <= 0xc1f) {
      this.counterAllowed(csr - 0xc00);
      return 0n;
    }
    if ((csr >= 0xb03 && csr <= 0xb1f) || (csr >= 0x323 && csr <= 0x33f)) return 0n;
    if (csr >= Csr.pmpcfg0 && csr < Csr.pmpcfg0 + 4) {
      const n = csr - Csr.pmpcfg0;
      if (!rv32 && n % 2 === 1) this.illegal();
      const per = rv32 ? 4 : 8;
      let v = 0n;
      for (let i = per - 1; i >= 0; i--) v = (v << 8n) | BigInt(this.pmpcfg[n * 4 + i] ?? 0);
      return this.xlenValue(v);
    }
    if (csr >= Csr.pmpaddr0 && csr < Csr.pmpaddr0 + PMP_COUNT) return this.pmpaddr[csr - Csr.pmpaddr0]!;
    return this.illegal();
  }

  private xlenValue(v: bigint): bigint {
    return BigInt.asIntN(this.xlen, v);
  }

  private misa(): bigint {
    const ext = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 8) | (1 << 12) | (1 << 18) | (1 << 20);
    if (this.xlen === 32) return BigInt.asIntN(32, (1n << 30n) | BigInt(ext));
    return BigInt.asIntN(64, (2n << 62n) | BigInt(ext));
  }

  csrWrite(csr: number, value: bigint): void {
    const rv32 = this.xlen === 32;
    const v = this.xlenValue(value);
    const low = this.lo32(v);
    switch (csr) {
      case Csr.fflags:
        this.requireFs();
        this.fflags = low & 0x1f;
        this.mstatus |= MS.FS;
        return;
      case Csr.frm:
        this.requireFs();
        this.frm = low & 7;
        this.mstatus |= MS.FS;
        return;
      case Csr.fcsr:
        this.requireFs();
        this.fflags = low & 0x1f;
        this.frm = (low >>> 5) & 7;
        this.mstatus |= MS.FS;
        return;
      case Csr.sstatus:
        this.writeMstatus((this.mstatus & ~SSTATUS_MASK) | (low & SSTATUS_MASK));
        return;
      case Csr.sie:
        this.mie = (this.mie & ~this.mideleg) | (low & this.mideleg & MIE_MASK);
        return;
      case Csr.stvec:
        if ((v & 3n) < 2n) this.stvec = v;
        return;
      case Csr.scounteren:
        this.scounteren = low;
        return;
      case Csr.senvcfg:
        this.senvcfg = 0n;
        return;
      case Csr.sscratch:
        this.sscratch = v;
        return;
      case Csr.sepc:
        this.sepc = v; // QEMU 7.2 keeps bit 0 as written (xRET ignores it)
        return;
      case Csr.scause:
        this.scause = v;
        return;
      case Csr.stval:
        this.stval = v;
        return;
      case Csr.sip: {
        const mask = this.mideleg & (1 << Irq.SSI);
        this.mipSw = (this.mipSw & ~mask) | (low & mask);
        return;
      }
      case Csr.satp:
        if (this.priv === Priv.S && this.mstatus & MS.TVM) this.illegal();
        this.writeSatp(v);
        return;
      case Csr.mstatus:
        this.writeMstatus(low);
        return;
      case Csr.misa:
        return;
      case Csr.medeleg:
        this.medeleg = low & MEDELEG_MASK;
        return;
      case Csr.mideleg:
        this.mideleg = low & MIDELEG_MASK;
        return;
      case Csr.mie:
        this.mie = low & MIE_MASK;
        return;
      case Csr.mtvec:
        if ((v & 3n) < 2n) this.mtvec = v;
        return;
      case Csr.mcounteren:
        this.mcounteren = low;
        return;
      case Csr.menvcfg:
        return; // no writable fields without Sstc/Zicbom
      case Csr.mcountinhibit:
        this.mcountinhibit = low & ~2;
        return;
      case Csr.mscratch:
        this.mscratch = v;
        return;
      case Csr.mepc:
        this.mepc = v; // QEMU 7.2 keeps bit 0 as written (xRET ignores it)
        return;
      case Csr.mcause:
        this.mcause = v;
        return;
      case Csr.mtval:
        this.mtval = v;
        return;
      case Csr.mip:
        this.mipSw = (this.mipSw & ~MIP_SW_MASK) | (low & MIP_SW_MASK);
        return;
      case Csr.mcycle:
        this.cycleOffset = rv32
          ? (((BigInt(this.icount + 1) + this.cycleOffset) >> 32n) << 32n | BigInt(low)) - BigInt(this.icount + 1)
          : BigInt.asUintN(64, v) - BigInt(this.icount + 1);
        return;
      case Csr.minstret:
        this.instretOffset = rv32
          ? (((BigInt(this.icount + 1) + this.instretOffset) >> 32n) << 32n | BigInt(low)) - BigInt(this.icount + 1)
          : BigInt.asUintN(64, v) - BigInt(this.icount + 1);
        return;
      default:
        break;
    }
    if (rv32) {
      switch (csr) {
        case Csr.mcycleh: {
          const cur = BigInt(this.icount + 1) + this.cycleOffset;
          this.cycleOffset = ((BigInt(low) << 32n) | (cur & 0xffffffffn)) - BigInt(this.icount + 1);
          return;
        }
        case Csr.minstreth: {
          const cur = BigInt(this.icount + 1) + this.instretOffset;
          this.instretOffset = ((BigInt(low) << 32n) | (cur & 0xffffffffn)) - BigInt(this.icount + 1);
          return;
        }
        case Csr.mstatush:
        case Csr.menvcfgh:
          return;
        default:
          break;
      }
      if (csr >= 0xb83 && csr <= 0xb9f) return;
    }
    if ((csr >= 0xb03 && csr <= 0xb1f) || (csr >= 0x323 && csr <= 0x33f)) return;
    if (csr >= Csr.pmpcfg0 && csr < Csr.pmpcfg0 + 4) {
      const n = csr - Csr.pmpcfg0;
      if (!rv32 && n % 2 === 1) this.illegal();
      const per = rv32 ? 4 : 8;
      const raw = BigInt.asUintN(this.xlen, v);
      for (let i = 0; i < per; i++) {
        const idx = n * 4 + i;
        if (idx >= PMP_COUNT) break;
        if (this.pmpcfg[idx]! & 0x80) continue;
        let cfg = Number((raw >> BigInt(8 * i)) & 0xffn) & 0x9f;
        if ((cfg & 3) === 2) cfg &= ~3; // W without R is reserved: QEMU clears RW
        this.pmpcfg[idx] = cfg;
      }
      this.recomputePmp();
      return;
    }
    if (csr >= Csr.pmpaddr0 && csr < Csr.pmpaddr0 + PMP_COUNT) {
      const i = csr - Csr.pmpaddr0;
      if (this.pmpcfg[i]! & 0x80) return;
      const nextCfg = this.pmpcfg[i + 1];
      if (nextCfg !== undefined && nextCfg & 0x80 && ((nextCfg >> 3) & 3) === 1) return;
      this.pmpaddr[i] = rv32 ? BigInt.asUintN(32, v) : BigInt.asUintN(54, v);
      this.recomputePmp();
      return;
    }
    this.csrRead(csr); // raises for unknown CSRs; known read-only ones were caught by the caller
  }

  private writeMstatus(value: number): void {
    let ms = (this.mstatus & ~MSTATUS_WMASK) | (value & MSTATUS_WMASK);
    if (((ms >>> 11) & 3) === 2) ms &= ~MS.MPP;
    const changed = ms ^ this.mstatus;
    this.mstatus = ms;
    if (changed & (MS.MPRV | MS.MPP | MS.SUM | MS.MXR)) this.flushTlb();
  }

  private writeSatp(v: bigint): void {
    if (this.xlen === 32) {
      this.satp = BigInt.asIntN(32, v);
    } else {
      const mode = Number((BigInt.asUintN(64, v) >> 60n) & 0xfn);
      if (mode !== 0 && mode !== 8 && mode !== 9) return;
      this.satp = v;
    }
    this.flushTlb();
    this.onFlush?.();
  }

  // ---- atomics ----------------------------------------------------------------------------------

  /**
   * Atomics as QEMU 7.2 does them: misaligned LR/AMO raise load-address-misaligned (QEMU's atomic
   * path reports them as loads), bus errors surface from the load half (load access fault), page and
   * PMP faults come from the write-permission probe (store faults). SC succeeds only with a valid
   * reservation at the same address whose memory still holds the value LR read; otherwise it fails
   * without touching memory.
   */
  private execAmo(insn: Insn): void {
    const width = insn.rm;
    const va = this.ea(insn.rs1, 0);
    const misaligned = !Number.isNaN(va) && va % width !== 0;
    if (insn.op === Op.LR) {
      if (misaligned) this.raise(Exc.LoadMisaligned, this.vaBig(va));
      const v = width === 8 ? BigInt.asIntN(64, this.load64(va)) : BigInt(this.loadN(va, 4) | 0);
      this.resPaddr = this.translate(va, Access.Load);
      this.resBytes = width;
      this.resAddr = va;
      this.resValue = v;
      this.resValid = true;
      if (insn.rd !== 0) this.x[insn.rd] = v;
      return;
    }
    if (insn.op === Op.SC) {
      let ok = this.resValid && this.resAddr === va;
      this.resValid = false;
      if (ok) {
        if (misaligned) this.raise(Exc.LoadMisaligned, this.vaBig(va));
        this.translate(va, Access.Store);
        const cur = width === 8 ? BigInt.asIntN(64, this.load64(va)) : BigInt(this.loadN(va, 4) | 0);
        ok = cur === this.resValue;
        if (ok) {
          if (width === 8) this.store64(va, this.x[insn.rs2]!);
          else this.storeN(va, 4, this.xi[insn.rs2 * 2]!);
        }
      }
      this.setI32(insn.rd, ok ? 0 : 1);
      return;
    }
    if (misaligned) this.raise(Exc.LoadMisaligned, this.vaBig(va));
    this.translate(va, Access.Store);
    const old = width === 8 ? BigInt.asIntN(64, this.load64(va)) : BigInt(this.loadN(va, 4) | 0);
    const src = width === 8 ? this.x[insn.rs2]! : BigInt(this.xi[insn.rs2 * 2]!);
    const bits = BigInt(width * 8);
    const u = (a: bigint): bigint => BigInt.asUintN(Number(bits), a);
    let res: bigint;
    switch (insn.op) {
      case Op.AMOSWAP: res = src; break;
      case Op.AMOADD: res = old + src; break;
      case Op.AMOXOR: res = old ^ src; break;
      case Op.AMOAND: res = old & src; break;
      case Op.AMOOR: res = old | src; break;
      case Op.AMOMIN: res = old < src ? old : src; break;
      case Op.AMOMAX: res = old > src ? old : src; break;
      case Op.AMOMINU: res = u(old) < u(src) ? old : src; break;
      default: res = u(old) > u(src) ? old : src; break;
    }
    if (width === 8) this.store64(va, res);
    else this.storeN(va, 4, Number(BigInt.asIntN(32, res)));
    if (insn.rd !== 0) this.x[insn.rd] = old;
  }

  // ---- floating point ---------------------------------------------------------------------------

  private rmOf(insn: Insn): number {
    const rm = insn.rm === 7 ? this.frm : insn.rm;
    if (rm > 4) this.illegal();
    return rm;
  }

  private getF(r: number, dbl: boolean): bigint {
    const v = this.f[r]!;
    if (dbl) return v;
    return v >> 32n === 0xffffffffn ? v & 0xffffffffn : 0x7fc00000n;
  }

  private setF(r: number, dbl: boolean, bits: bigint): void {
    this.f[r] = dbl ? bits : bits | NAN_BOX;
    this.mstatus |= MS.FS;
  }

  private accrue(): void {
    if (sf.fpState.flags !== 0) {
      this.fflags |= sf.fpState.flags;
      sf.fpState.flags = 0;
      this.mstatus |= MS.FS;
    }
  }

  /** RNE fast path for the common arithmetic ops; false = take the exact path. */
  private fastFp(insn: Insn): boolean {
    const op = insn.op;
    let kind: 0 | 1 | 2 | 3 | 4;
    if (op === Op.FADD) kind = 0;
    else if (op === Op.FSUB) kind = 1;
    else if (op === Op.FMUL) kind = 2;
    else if (op === Op.FDIV) kind = 3;
    else if (op === Op.FSQRT) kind = 4;
    else if (op === Op.FMADD && insn.dbl) {
      const r = sf.fastFma64(this.ff[insn.rs1]!, this.ff[insn.rs2]!, this.ff[insn.rs3]!);
      if (r === undefined) return false;
      this.ff[insn.rd] = r;
      return true;
    } else return false;
    if (insn.dbl) {
      const r = sf.fastOp64(kind, this.ff[insn.rs1]!, this.ff[insn.rs2]!);
      if (r === undefined) return false;
      this.ff[insn.rd] = r;
      return true;
    }
    const fi = this.fi;
    if (fi[insn.rs1 * 2 + 1] !== -1 || (kind !== 4 && fi[insn.rs2 * 2 + 1] !== -1)) return false;
    this.scratchI32[0] = fi[insn.rs1 * 2]!;
    const a = this.scratchF32[0]!;
    this.scratchI32[0] = fi[insn.rs2 * 2]!;
    const b = this.scratchF32[0]!;
    const r = sf.fastOp32(kind, a, b);
    if (r === undefined) return false;
    this.scratchF32[0] = r;
    fi[insn.rd * 2] = this.scratchI32[0]!;
    fi[insn.rd * 2 + 1] = -1;
    return true;
  }

  private execFp(insn: Insn): void {
    this.requireFs();
    sf.fpState.flags = 0;
    if ((insn.rm === 0 || (insn.rm === 7 && this.frm === 0)) && insn.op >= Op.FMADD && insn.op <= Op.FSQRT && this.fastFp(insn)) {
      this.mstatus |= MS.FS;
      this.accrue();
      return;
    }
    const dbl = insn.dbl;
    const fmt = dbl ? sf.F64 : sf.F32;
    const rd = insn.rd;
    switch (insn.op) {
      case Op.FLW:
      case Op.FLD: {
        const va = this.ea(insn.rs1, insn.imm);
        const v = insn.op === Op.FLD ? this.load64(va) : BigInt(this.loadN(va, 4));
        this.setF(rd, insn.op === Op.FLD, v);
        return;
      }
      case Op.FSW:
        this.storeN(this.ea(insn.rs1, insn.imm), 4, Number(this.f[insn.rs2]! & 0xffffffffn));
        return;
      case Op.FSD:
        this.store64(this.ea(insn.rs1, insn.imm), this.f[insn.rs2]!);
        return;
      case Op.FMADD:
      case Op.FMSUB:
      case Op.FNMSUB:
      case Op.FNMADD: {
        const rm = this.rmOf(insn);
        const negProd = insn.op === Op.FNMSUB || insn.op === Op.FNMADD;
        const negAdd = insn.op === Op.FMSUB || insn.op === Op.FNMADD;
        const r = sf.ffma(this.getF(insn.rs1, dbl), this.getF(insn.rs2, dbl), this.getF(insn.rs3, dbl), negProd, negAdd, fmt, rm);
        this.setF(rd, dbl, r);
        break;
      }
      case Op.FADD:
        this.setF(rd, dbl, sf.fadd(this.getF(insn.rs1, dbl), this.getF(insn.rs2, dbl), fmt, this.rmOf(insn)));
        break;
      case Op.FSUB:
        this.setF(rd, dbl, sf.fsub(this.getF(insn.rs1, dbl), this.getF(insn.rs2, dbl), fmt, this.rmOf(insn)));
        break;
      case Op.FMUL:
        this.setF(rd, dbl, sf.fmul(this.getF(insn.rs1, dbl), this.getF(insn.rs2, dbl), fmt, this.rmOf(insn)));
        break;
      case Op.FDIV:
        this.setF(rd, dbl, sf.fdiv(this.getF(insn.rs1, dbl), this.getF(insn.rs2, dbl), fmt, this.rmOf(insn)));
        break;
      case Op.FSQRT:
        this.setF(rd, dbl, sf.fsqrt(this.getF(insn.rs1, dbl), fmt, this.rmOf(insn)));
        break;
      case Op.FSGNJ:
      case Op.FSGNJN:
      case Op.FSGNJX: {
        const a = this.getF(insn.rs1, dbl);
        const b = this.getF(insn.rs2, dbl);
        const signBit = 1n << BigInt(fmt.totalBits - 1);
        let sign = b & signBit;
        if (insn.op === Op.FSGNJN) sign ^= signBit;
        else if (insn.op === Op.FSGNJX) sign ^= a & signBit;
        this.setF(rd, dbl, (a & ~signBit) | sign);
        return;
      }
      case Op.FMIN:
      case Op.FMAX:
        this.setF(rd, dbl, sf.fminmax(this.getF(insn.rs1, dbl), this.getF(insn.rs2, dbl), fmt, insn.op === Op.FMAX));
        break;
      case Op.FCVT_W:
      case Op.FCVT_WU:
      case Op.FCVT_L:
      case Op.FCVT_LU: {
        const rm = this.rmOf(insn);
        const bits = insn.op === Op.FCVT_W || insn.op === Op.FCVT_WU ? 32 : 64;
        const signed = insn.op === Op.FCVT_W || insn.op === Op.FCVT_L;
        const r = sf.fcvtToInt(this.getF(insn.rs1, dbl), fmt, rm, bits, signed);
        if (rd !== 0) this.x[rd] = bits === 32 ? BigInt.asIntN(32, r) : BigInt.asIntN(64, r);
        this.accrue();
        return;
      }
      case Op.FCVT_FROM_W:
      case Op.FCVT_FROM_WU:
      case Op.FCVT_FROM_L:
      case Op.FCVT_FROM_LU: {
        const rm = this.rmOf(insn);
        const s = this.x[insn.rs1]!;
        let v: bigint;
        if (insn.op === Op.FCVT_FROM_W) v = BigInt.asIntN(32, s);
        else if (insn.op === Op.FCVT_FROM_WU) v = BigInt.asUintN(32, s);
        else if (insn.op === Op.FCVT_FROM_L) v = s;
        else v = BigInt.asUintN(64, s);
        this.setF(rd, dbl, sf.fcvtFromInt(v, fmt, rm));
        break;
      }
      case Op.FCVT_S_D:
        this.setF(rd, false, sf.fcvtFloat(this.getF(insn.rs1, true), sf.F64, sf.F32, this.rmOf(insn)));
        break;
      case Op.FCVT_D_S:
        this.setF(rd, true, sf.fcvtFloat(this.getF(insn.rs1, false), sf.F32, sf.F64, this.rmOf(insn)));
        break;
      case Op.FMV_X: {
        const v = this.f[insn.rs1]!;
        if (rd !== 0) this.x[rd] = dbl ? BigInt.asIntN(64, v) : BigInt.asIntN(32, v);
        return;
      }
      case Op.FMV_F:
        this.setF(rd, dbl, dbl ? this.xu[insn.rs1]! : this.xu[insn.rs1]! & 0xffffffffn);
        return;
      case Op.FCLASS:
        this.setI32(rd, sf.fclass(this.getF(insn.rs1, dbl), fmt));
        return;
      case Op.FEQ:
      case Op.FLT:
      case Op.FLE: {
        const kind = insn.op === Op.FEQ ? 0 : insn.op === Op.FLT ? 1 : 2;
        this.setI32(rd, sf.fcompare(this.getF(insn.rs1, dbl), this.getF(insn.rs2, dbl), fmt, kind));
        this.accrue();
        return;
      }
      default:
        return this.illegal();
    }
    this.accrue();
  }
}
