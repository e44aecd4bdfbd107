/**
 * RISC-V instruction decoder: RV64GC and RV32GC from one table. Compressed instructions decode
 * straight to the same `Insn` shape as their 32-bit expansions. On RV32 the register-register ALU
 * operations decode to their RV64 "W" forms: registers hold sign-extended 32-bit values, so the
 * W semantics are exactly the RV32 semantics.
 */

/** Operation codes. Numbers, so the interpreter switches on small integers. */
export const Op = {
  ILLEGAL: 0,
  LUI: 1, AUIPC: 2, JAL: 3, JALR: 4,
  BEQ: 5, BNE: 6, BLT: 7, BGE: 8, BLTU: 9, BGEU: 10,
  LB: 11, LH: 12, LW: 13, LD: 14, LBU: 15, LHU: 16, LWU: 17,
  SB: 18, SH: 19, SW: 20, SD: 21,
  ADDI: 22, SLTI: 23, SLTIU: 24, XORI: 25, ORI: 26, ANDI: 27, SLLI: 28, SRLI: 29, SRAI: 30,
  ADD: 31, SUB: 32, SLL: 33, SLT: 34, SLTU: 35, XOR: 36, SRL: 37, SRA: 38, OR: 39, AND: 40,
  ADDIW: 41, SLLIW: 42, SRLIW: 43, SRAIW: 44,
  ADDW: 45, SUBW: 46, SLLW: 47, SRLW: 48, SRAW: 49,
  MUL: 50, MULH: 51, MULHSU: 52, MULHU: 53, DIV: 54, DIVU: 55, REM: 56, REMU: 57,
  MULW: 58, DIVW: 59, DIVUW: 60, REMW: 61, REMUW: 62,
  MULH32: 63, MULHSU32: 64, MULHU32: 65,
  FENCE: 66, FENCE_I: 67,
  ECALL: 68, EBREAK: 69, MRET: 70, SRET: 71, WFI: 72, SFENCE_VMA: 73,
  CSRRW: 74, CSRRS: 75, CSRRC: 76, CSRRWI: 77, CSRRSI: 78, CSRRCI: 79,
  LR: 80, SC: 81, AMOSWAP: 82, AMOADD: 83, AMOXOR: 84, AMOAND: 85, AMOOR: 86,
  AMOMIN: 87, AMOMAX: 88, AMOMINU: 89, AMOMAXU: 90,
  FLW: 91, FLD: 92, FSW: 93, FSD: 94,
  FMADD: 95, FMSUB: 96, FNMSUB: 97, FNMADD: 98,
  FADD: 99, FSUB: 100, FMUL: 101, FDIV: 102, FSQRT: 103,
  FSGNJ: 104, FSGNJN: 105, FSGNJX: 106, FMIN: 107, FMAX: 108,
  FCVT_W: 109, FCVT_WU: 110, FCVT_L: 111, FCVT_LU: 112,
  FCVT_FROM_W: 113, FCVT_FROM_WU: 114, FCVT_FROM_L: 115, FCVT_FROM_LU: 116,
  FCVT_S_D: 117, FCVT_D_S: 118, FMV_X: 119, FMV_F: 120, FCLASS: 121,
  FEQ: 122, FLT: 123, FLE: 124,
  /** C.ADDI4SPN etc. with a reserved encoding, or an all-zero halfword. */
} as const;

/** One decoded instruction. `dbl` selects D (true) or F (false) for FP ops; `w` is the AMO width. */
export interface Insn {
  readonly op: number;
  readonly rd: number;
  readonly rs1: number;
  readonly rs2: number;
  readonly rs3: number;
  /** Sign-extended immediate (fits in 32 bits), or CSR number, or AMO aq/rl bits. */
  readonly imm: number;
  /** Instruction length in bytes (2 or 4). */
  readonly len: 2 | 4;
  /** The raw encoding (for mtval on illegal instructions). */
  readonly raw: number;
  /** FP rounding mode field, or AMO/LR/SC/FP-load width in bytes. */
  readonly rm: number;
  readonly dbl: boolean;
}

function mk(op: number, raw: number, len: 2 | 4, rd = 0, rs1 = 0, rs2 = 0, imm = 0, rm = 0, dbl = false, rs3 = 0): Insn {
  return { op, rd, rs1, rs2, rs3, imm, len, raw, rm, dbl };
}

const illegal = (raw: number, len: 2 | 4): Insn => mk(Op.ILLEGAL, raw, len);

function sext(value: number, bits: number): number {
  const shift = 32 - bits;
  return (value << shift) >> shift;
}

/** Decodes a 32-bit instruction word. */
export function decode32(raw: number, xlen: 32 | 64): Insn {
  const opcode = raw & 0x7f;
  const rd = (raw >>> 7) & 31;
  const f3 = (raw >>> 12) & 7;
  const rs1 = (raw >>> 15) & 31;
  const rs2 = (raw >>> 20) & 31;
  const f7 = raw >>> 25;
  const immI = raw >> 20;
  const immS = ((raw >> 25) << 5) | ((raw >>> 7) & 31);
  const immB = (((raw >> 31) << 12) | (((raw >>> 7) & 1) << 11) | (((raw >>> 25) & 0x3f) << 5) | (((raw >>> 8) & 0xf) << 1));
  const immU = raw & 0xfffff000;
  const immJ = (((raw >> 31) << 20) | (((raw >>> 12) & 0xff) << 12) | (((raw >>> 20) & 1) << 11) | (((raw >>> 21) & 0x3ff) << 1));
  const rv64 = xlen === 64;
  const L = 4 as const;
  switch (opcode) {
    case 0x37:
      return mk(Op.LUI, raw, L, rd, 0, 0, immU | 0);
    case 0x17:
      return mk(Op.AUIPC, raw, L, rd, 0, 0, immU | 0);
    case 0x6f:
      return mk(Op.JAL, raw, L, rd, 0, 0, immJ);
    case 0x67:
      return f3 === 0 ? mk(Op.JALR, raw, L, rd, rs1, 0, immI) : illegal(raw, L);
    case 0x63: {
      const ops = [Op.BEQ, Op.BNE, -1, -1, Op.BLT, Op.BGE, Op.BLTU, Op.BGEU];
      const op = ops[f3]!;
      return op < 0 ? illegal(raw, L) : mk(op, raw, L, 0, rs1, rs2, immB);
    }
    case 0x03: {
      const ops = [Op.LB, Op.LH, Op.LW, rv64 ? Op.LD : -1, Op.LBU, Op.LHU, rv64 ? Op.LWU : -1, -1];
      const op = ops[f3]!;
      return op < 0 ? illegal(raw, L) : mk(op, raw, L, rd, rs1, 0, immI);
    }
    case 0x23: {
      const ops = [Op.SB, Op.SH, Op.SW, rv64 ? Op.SD : -1];
      const op = ops[f3] ?? -1;
      return op < 0 ? illegal(raw, L) : mk(op, raw, L, 0, rs1, rs2, immS);
    }
    case 0x13: {
      switch (f3) {
        case 0: return mk(Op.ADDI, raw, L, rd, rs1, 0, immI);
        case 2: return mk(Op.SLTI, raw, L, rd, rs1, 0, immI);
        case 3: return mk(Op.SLTIU, raw, L, rd, rs1, 0, immI);
        case 4: return mk(Op.XORI, raw, L, rd, rs1, 0, immI);
        case 6: return mk(Op.ORI, raw, L, rd, rs1, 0, immI);
        case 7: return mk(Op.ANDI, raw, L, rd, rs1, 0, immI);
        default: {
          const shamt = (raw >>> 20) & 0x3f;
          const top = raw >>> 26;
          if (!rv64 && shamt >= 32) return illegal(raw, L);
          if (f3 === 1) return top === 0 ? mk(rv64 ? Op.SLLI : Op.SLLIW, raw, L, rd, rs1, 0, shamt) : illegal(raw, L);
          if (top === 0) return mk(rv64 ? Op.SRLI : Op.SRLIW, raw, L, rd, rs1, 0, shamt);
          if (top === 0x10) return mk(rv64 ? Op.SRAI : Op.SRAIW, raw, L, rd, rs1, 0, shamt);
          return illegal(raw, L);
        }
      }
    }
    case 0x1b: {
      if (!rv64) return illegal(raw, L);
      if (f3 === 0) return mk(Op.ADDIW, raw, L, rd, rs1, 0, immI);
      const shamt = (raw >>> 20) & 0x1f;
      if (f3 === 1 && f7 === 0) return mk(Op.SLLIW, raw, L, rd, rs1, 0, shamt);
      if (f3 === 5 && f7 === 0) return mk(Op.SRLIW, raw, L, rd, rs1, 0, shamt);
      if (f3 === 5 && f7 === 0x20) return mk(Op.SRAIW, raw, L, rd, rs1, 0, shamt);
      return illegal(raw, L);
    }
    case 0x33: {
      let op = -1;
      if (f7 === 0) op = [rv64 ? Op.ADD : Op.ADDW, rv64 ? Op.SLL : Op.SLLW, Op.SLT, Op.SLTU, Op.XOR, rv64 ? Op.SRL : Op.SRLW, Op.OR, Op.AND][f3]!;
      else if (f7 === 0x20) op = f3 === 0 ? (rv64 ? Op.SUB : Op.SUBW) : f3 === 5 ? (rv64 ? Op.SRA : Op.SRAW) : -1;
      else if (f7 === 1) {
        op = rv64
          ? [Op.MUL, Op.MULH, Op.MULHSU, Op.MULHU, Op.DIV, Op.DIVU, Op.REM, Op.REMU][f3]!
          : [Op.MULW, Op.MULH32, Op.MULHSU32, Op.MULHU32, Op.DIVW, Op.DIVUW, Op.REMW, Op.REMUW][f3]!;
      }
      return op < 0 ? illegal(raw, L) : mk(op, raw, L, rd, rs1, rs2);
    }
    case 0x3b: {
      if (!rv64) return illegal(raw, L);
      let op = -1;
      if (f7 === 0) op = f3 === 0 ? Op.ADDW : f3 === 1 ? Op.SLLW : f3 === 5 ? Op.SRLW : -1;
      else if (f7 === 0x20) op = f3 === 0 ? Op.SUBW : f3 === 5 ? Op.SRAW : -1;
      else if (f7 === 1) op = [Op.MULW, -1, -1, -1, Op.DIVW, Op.DIVUW, Op.REMW, Op.REMUW][f3]!;
      return op < 0 ? illegal(raw, L) : mk(op, raw, L, rd, rs1, rs2);
    }
    case 0x0f:
      if (f3 === 0) return mk(Op.FENCE, raw, L);
      if (f3 === 1) return mk(Op.FENCE_I, raw, L);
      return illegal(raw, L);
    case 0x73: {
      if (f3 === 0) {
        if (raw === 0x00000073) return mk(Op.ECALL, raw, L);
        if (raw === 0x00100073) return mk(Op.EBREAK, raw, L);
        if (raw === 0x30200073) return mk(Op.MRET, raw, L);
        if (raw === 0x10200073) return mk(Op.SRET, raw, L);
        if (raw === 0x10500073) return mk(Op.WFI, raw, L);
        if (f7 === 0x09 && rd === 0) return mk(Op.SFENCE_VMA, raw, L, 0, rs1, rs2);
        return illegal(raw, L);
      }
      if (f3 === 4) return illegal(raw, L);
      const csr = (raw >>> 20) & 0xfff;
      const op = [0, Op.CSRRW, Op.CSRRS, Op.CSRRC, 0, Op.CSRRWI, Op.CSRRSI, Op.CSRRCI][f3]!;
      return mk(op, raw, L, rd, rs1, 0, csr);
    }
    case 0x2f: {
      const width = f3 === 2 ? 4 : f3 === 3 && rv64 ? 8 : 0;
      if (width === 0) return illegal(raw, L);
      const f5 = raw >>> 27;
      const table: Record<number, number> = {
        0x02: Op.LR, 0x03: Op.SC, 0x01: Op.AMOSWAP, 0x00: Op.AMOADD, 0x04: Op.AMOXOR, 0x0c: Op.AMOAND,
        0x08: Op.AMOOR, 0x10: Op.AMOMIN, 0x14: Op.AMOMAX, 0x18: Op.AMOMINU, 0x1c: Op.AMOMAXU,
      };
      const op = table[f5];
      if (op === undefined || (op === Op.LR && rs2 !== 0)) return illegal(raw, L);
      return mk(op, raw, L, rd, rs1, rs2, 0, width);
    }
    case 0x07:
      if (f3 === 2) return mk(Op.FLW, raw, L, rd, rs1, 0, immI, 4);
      if (f3 === 3) return mk(Op.FLD, raw, L, rd, rs1, 0, immI, 8, true);
      return illegal(raw, L);
    case 0x27:
      if (f3 === 2) return mk(Op.FSW, raw, L, 0, rs1, rs2, immS, 4);
      if (f3 === 3) return mk(Op.FSD, raw, L, 0, rs1, rs2, immS, 8, true);
      return illegal(raw, L);
    case 0x43:
    case 0x47:
    case 0x4b:
    case 0x4f: {
      const fmt = (raw >>> 25) & 3;
      if (fmt > 1) return illegal(raw, L);
      const op = opcode === 0x43 ? Op.FMADD : opcode === 0x47 ? Op.FMSUB : opcode === 0x4b ? Op.FNMSUB : Op.FNMADD;
      return mk(op, raw, L, rd, rs1, rs2, 0, f3, fmt === 1, raw >>> 27);
    }
    case 0x53:
      return decodeOpFp(raw, rv64);
    default:
      return illegal(raw, L);
  }
}

function decodeOpFp(raw: number, rv64: boolean): Insn {
  const L = 4 as const;
  const rd = (raw >>> 7) & 31;
  const rm = (raw >>> 12) & 7;
  const rs1 = (raw >>> 15) & 31;
  const rs2 = (raw >>> 20) & 31;
  const f7 = raw >>> 25;
  const fmt = f7 & 3;
  if (fmt > 1) return illegal(raw, L);
  const dbl = fmt === 1;
  const f5 = f7 >>> 2;
  const r = (op: number): Insn => mk(op, raw, L, rd, rs1, rs2, 0, rm, dbl);
  switch (f5) {
    case 0x00: return r(Op.FADD);
    case 0x01: return r(Op.FSUB);
    case 0x02: return r(Op.FMUL);
    case 0x03: return r(Op.FDIV);
    case 0x0b: return rs2 === 0 ? r(Op.FSQRT) : illegal(raw, L);
    case 0x04: return rm <= 2 ? r([Op.FSGNJ, Op.FSGNJN, Op.FSGNJX][rm]!) : illegal(raw, L);
    case 0x05: return rm <= 1 ? r(rm === 0 ? Op.FMIN : Op.FMAX) : illegal(raw, L);
    case 0x08:
      // fcvt.s.d (fmt=S, rs2=1) / fcvt.d.s (fmt=D, rs2=0)
      if (!dbl && rs2 === 1) return r(Op.FCVT_S_D);
      if (dbl && rs2 === 0) return r(Op.FCVT_D_S);
      return illegal(raw, L);
    case 0x14: return rm <= 2 ? r([Op.FLE, Op.FLT, Op.FEQ][rm]!) : illegal(raw, L);
    case 0x18: {
      const ops = [Op.FCVT_W, Op.FCVT_WU, Op.FCVT_L, Op.FCVT_LU];
      if (rs2 > 3 || (!rv64 && rs2 > 1)) return illegal(raw, L);
      return r(ops[rs2]!);
    }
    case 0x1a: {
      const ops = [Op.FCVT_FROM_W, Op.FCVT_FROM_WU, Op.FCVT_FROM_L, Op.FCVT_FROM_LU];
      if (rs2 > 3 || (!rv64 && rs2 > 1)) return illegal(raw, L);
      return r(ops[rs2]!);
    }
    case 0x1c:
      if (rs2 !== 0) return illegal(raw, L);
      if (rm === 0 && (!dbl || rv64)) return r(Op.FMV_X);
      if (rm === 1) return r(Op.FCLASS);
      return illegal(raw, L);
    case 0x1e:
      if (rs2 !== 0 || rm !== 0 || (dbl && !rv64)) return illegal(raw, L);
      return r(Op.FMV_F);
    default:
      return illegal(raw, L);
  }
}

/** Decodes a 16-bit compressed instruction into its 32-bit equivalent's `Insn`. */
export function decode16(raw: number, xlen: 32 | 64): Insn {
  const C = 2 as const;
  const rv64 = xlen === 64;
  const q = raw & 3;
  const f3 = (raw >>> 13) & 7;
  const rdp = ((raw >>> 2) & 7) + 8; // rd' / rs2'
  const rs1p = ((raw >>> 7) & 7) + 8;
  const rd = (raw >>> 7) & 31;
  const rs2 = (raw >>> 2) & 31;
  const bit = (n: number): number => (raw >>> n) & 1;
  if (raw === 0) return illegal(raw, C);
  if (q === 0) {
    switch (f3) {
      case 0: {
        const imm = (((raw >>> 7) & 0xf) << 6) | (((raw >>> 11) & 3) << 4) | (bit(5) << 3) | (bit(6) << 2);
        return imm === 0 ? illegal(raw, C) : mk(Op.ADDI, raw, C, rdp, 2, 0, imm);
      }
      case 1: return mk(Op.FLD, raw, C, rdp, rs1p, 0, ldOff(raw), 8, true);
      case 2: return mk(Op.LW, raw, C, rdp, rs1p, 0, lwOff(raw));
      case 3: return rv64 ? mk(Op.LD, raw, C, rdp, rs1p, 0, ldOff(raw)) : mk(Op.FLW, raw, C, rdp, rs1p, 0, lwOff(raw), 4);
      case 5: return mk(Op.FSD, raw, C, 0, rs1p, rdp, ldOff(raw), 8, true);
      case 6: return mk(Op.SW, raw, C, 0, rs1p, rdp, lwOff(raw));
      case 7: return rv64 ? mk(Op.SD, raw, C, 0, rs1p, rdp, ldOff(raw)) : mk(Op.FSW, raw, C, 0, rs1p, rdp, lwOff(raw), 4);
      default: return illegal(raw, C);
    }
  }
  if (q === 1) {
    const imm6 = sext((bit(12) << 5) | ((raw >>> 2) & 31), 6);
    switch (f3) {
      case 0: return mk(Op.ADDI, raw, C, rd, rd, 0, imm6);
      case 1:
        if (rv64) return rd === 0 ? illegal(raw, C) : mk(Op.ADDIW, raw, C, rd, rd, 0, imm6);
        return mk(Op.JAL, raw, C, 1, 0, 0, cjOff(raw));
      case 2: return mk(Op.ADDI, raw, C, rd, 0, 0, imm6);
      case 3:
        if (rd === 2) {
          const imm = sext((bit(12) << 9) | (bit(4) << 8) | (bit(3) << 7) | (bit(5) << 6) | (bit(2) << 5) | (bit(6) << 4), 10);
          return imm === 0 ? illegal(raw, C) : mk(Op.ADDI, raw, C, 2, 2, 0, imm);
        }
        return imm6 === 0 ? illegal(raw, C) : mk(Op.LUI, raw, C, rd, 0, 0, imm6 << 12);
      case 4: {
        const f2 = (raw >>> 10) & 3;
        const shamt = (bit(12) << 5) | ((raw >>> 2) & 31);
        if (f2 === 0 || f2 === 1) {
          if (!rv64 && bit(12)) return illegal(raw, C);
          const op = f2 === 0 ? (rv64 ? Op.SRLI : Op.SRLIW) : rv64 ? Op.SRAI : Op.SRAIW;
          return mk(op, raw, C, rs1p, rs1p, 0, shamt);
        }
        if (f2 === 2) return mk(Op.ANDI, raw, C, rs1p, rs1p, 0, imm6);
        const f = (raw >>> 5) & 3;
        if (bit(12) === 0) {
          const op = [rv64 ? Op.SUB : Op.SUBW, Op.XOR, Op.OR, Op.AND][f]!;
          return mk(op, raw, C, rs1p, rs1p, rdp);
        }
        if (!rv64 || f >= 2) return illegal(raw, C);
        return mk(f === 0 ? Op.SUBW : Op.ADDW, raw, C, rs1p, rs1p, rdp);
      }
      case 5: return mk(Op.JAL, raw, C, 0, 0, 0, cjOff(raw));
      default: {
        const off = sext((bit(12) << 8) | (bit(6) << 7) | (bit(5) << 6) | (bit(2) << 5) | (bit(11) << 4) | (bit(10) << 3) | (bit(4) << 2) | (bit(3) << 1), 9);
        return mk(f3 === 6 ? Op.BEQ : Op.BNE, raw, C, 0, rs1p, 0, off);
      }
    }
  }
  if (q === 2) {
    switch (f3) {
      case 0: {
        const shamt = (bit(12) << 5) | ((raw >>> 2) & 31);
        if (!rv64 && bit(12)) return illegal(raw, C);
        return mk(rv64 ? Op.SLLI : Op.SLLIW, raw, C, rd, rd, 0, shamt);
      }
      case 1: return mk(Op.FLD, raw, C, rd, 2, 0, ldspOff(raw), 8, true);
      case 2: return rd === 0 ? illegal(raw, C) : mk(Op.LW, raw, C, rd, 2, 0, lwspOff(raw));
      case 3:
        if (rv64) return rd === 0 ? illegal(raw, C) : mk(Op.LD, raw, C, rd, 2, 0, ldspOff(raw));
        return mk(Op.FLW, raw, C, rd, 2, 0, lwspOff(raw), 4);
      case 4:
        if (bit(12) === 0) {
          if (rs2 === 0) return rd === 0 ? illegal(raw, C) : mk(Op.JALR, raw, C, 0, rd, 0, 0);
          return mk(rv64 ? Op.ADD : Op.ADDW, raw, C, rd, 0, rs2);
        }
        if (rs2 === 0) {
          if (rd === 0) return mk(Op.EBREAK, raw, C);
          return mk(Op.JALR, raw, C, 1, rd, 0, 0);
        }
        return mk(rv64 ? Op.ADD : Op.ADDW, raw, C, rd, rd, rs2);
      case 5: return mk(Op.FSD, raw, C, 0, 2, rs2, sdspOff(raw), 8, true);
      case 6: return mk(Op.SW, raw, C, 0, 2, rs2, swspOff(raw));
      default:
        if (rv64) return mk(Op.SD, raw, C, 0, 2, rs2, sdspOff(raw));
        return mk(Op.FSW, raw, C, 0, 2, rs2, swspOff(raw), 4);
    }
  }
  return illegal(raw, C);
}

function lwOff(raw: number): number {
  return (((raw >>> 10) & 7) << 3) | (((raw >>> 6) & 1) << 2) | (((raw >>> 5) & 1) << 6);
}
function ldOff(raw: number): number {
  return (((raw >>> 10) & 7) << 3) | (((raw >>> 5) & 3) << 6);
}
function lwspOff(raw: number): number {
  return (((raw >>> 12) & 1) << 5) | (((raw >>> 4) & 7) << 2) | (((raw >>> 2) & 3) << 6);
}
function ldspOff(raw: number): number {
  return (((raw >>> 12) & 1) << 5) | (((raw >>> 5) & 3) << 3) | (((raw >>> 2) & 7) << 6);
}
function swspOff(raw: number): number {
  return (((raw >>> 9) & 0xf) << 2) | (((raw >>> 7) & 3) << 6);
}
function sdspOff(raw: number): number {
  return (((raw >>> 10) & 7) << 3) | (((raw >>> 7) & 7) << 6);
}
function cjOff(raw: number): number {
  const b = (n: number): number => (raw >>> n) & 1;
  return sext((b(12) << 11) | (b(8) << 10) | (((raw >>> 9) & 3) << 8) | (b(6) << 7) | (b(7) << 6) | (b(2) << 5) | (b(11) << 4) | (((raw >>> 3) & 7) << 1), 12);
}

const DC_BITS = 16;

/** Decoded-instruction cache keyed by the raw bits (decoding is a pure function of them). */
export class DecodeCache {
  private readonly map = new Map<number, Insn>();
  /** Direct-mapped front: a typed-array tag check before the Map. */
  private readonly tags = new Float64Array(1 << DC_BITS).fill(-1);
  private readonly vals: Insn[] = new Array<Insn>(1 << DC_BITS);
  constructor(private readonly xlen: 32 | 64) {}

  get(raw: number): Insn {
    const slot = (raw ^ (raw >>> 13) ^ (raw >>> 24)) & ((1 << DC_BITS) - 1);
    if (this.tags[slot] === raw) return this.vals[slot]!;
    const insn = this.slow(raw);
    this.tags[slot] = raw;
    this.vals[slot] = insn;
    return insn;
  }

  private slow(raw: number): Insn {
    let insn = this.map.get(raw);
    if (insn === undefined) {
      insn = (raw & 3) === 3 ? decode32(raw | 0, this.xlen) : decode16(raw & 0xffff, this.xlen);
      // RV32: registers hold sign-extended 32-bit values, so ADDI is ADDIW.
      if (this.xlen === 32 && insn.op === Op.ADDI) insn = { ...insn, op: Op.ADDIW };
      if (this.map.size > 1 << 20) this.map.clear();
      this.map.set(raw, insn);
    }
    return insn;
  }
}
