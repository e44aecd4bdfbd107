import { assert } from '../../assert.js';

/** OpenSBI's fw_dynamic_info (include/sbi/fw_dynamic.h). */
export const FW_DYNAMIC_INFO_MAGIC = 0x4942534f; // "OSBI"
export const FW_DYNAMIC_INFO_VERSION = 2;
export const FW_DYNAMIC_INFO_NEXT_MODE_S = 1;

const REG_T0 = 5;
const REG_A0 = 10;
const REG_A1 = 11;
const REG_A2 = 12;
const CSR_MHARTID = 0xf14;

/** Encoders for the handful of RV64 instructions the reset vector needs (RISC-V unprivileged spec, ch. 2 and 5). */
const encodeU = (opcode: number, rd: number, imm20: number): number => ((imm20 << 12) | (rd << 7) | opcode) >>> 0;
const encodeI = (opcode: number, funct3: number, rd: number, rs1: number, imm12: number): number => (((imm12 & 0xfff) << 20) | (rs1 << 15) | (funct3 << 12) | (rd << 7) | opcode) >>> 0;
export const auipc = (rd: number, imm20: number): number => encodeU(0x17, rd, imm20);
export const addi = (rd: number, rs1: number, imm: number): number => encodeI(0x13, 0, rd, rs1, imm);
export const ld = (rd: number, rs1: number, imm: number): number => encodeI(0x03, 3, rd, rs1, imm);
export const jalr = (rd: number, rs1: number, imm: number): number => encodeI(0x67, 0, rd, rs1, imm);
export const csrr = (rd: number, csr: number): number => encodeI(0x73, 2, rd, 0, csr);

export interface ResetVectorParams {
  /** Where the harts jump: the firmware (0x80000000) or, with `-bios none`, the kernel. */
  readonly startAddr: number;
  readonly fdtAddr: number;
  /** fw_dynamic_info.next_addr: where the firmware continues (the kernel). */
  readonly nextAddr: number;
  readonly bootHart?: number;
}

/** Byte offsets inside the reset vector blob. */
export const RESET_VEC_START_OFFSET = 24;
export const RESET_VEC_FDT_OFFSET = 32;
export const RESET_VEC_FW_DYN_OFFSET = 40;

/**
 * The reset vector QEMU's riscv_setup_rom_reset_vec writes at 0x1000 (RV64 form): every hart
 * loads a0 = mhartid, a1 = the DTB address, a2 = &fw_dynamic_info, and jumps to the start address.
 * The data words and fw_dynamic_info follow the code.
 */
export function buildResetVector(p: ResetVectorParams): Uint8Array {
  for (const a of [p.startAddr, p.fdtAddr, p.nextAddr]) assert(Number.isSafeInteger(a) && a >= 0, `bad boot address ${a}`);
  const code = [
    auipc(REG_T0, 0), // 1: auipc t0, 0          t0 = address of this instruction
    addi(REG_A2, REG_T0, RESET_VEC_FW_DYN_OFFSET), // addi a2, t0, fw_dyn - 1b
    csrr(REG_A0, CSR_MHARTID), //                     csrr a0, mhartid
    ld(REG_A1, REG_T0, RESET_VEC_FDT_OFFSET), //      ld a1, fdt_laddr - 1b(t0)
    ld(REG_T0, REG_T0, RESET_VEC_START_OFFSET), //    ld t0, start_addr - 1b(t0)
    jalr(0, REG_T0, 0), //                            jr t0
  ];
  const out = new Uint8Array(RESET_VEC_FW_DYN_OFFSET + 6 * 8);
  const v = new DataView(out.buffer);
  code.forEach((insn, i) => v.setUint32(4 * i, insn, true));
  v.setBigUint64(RESET_VEC_START_OFFSET, BigInt(p.startAddr), true);
  v.setBigUint64(RESET_VEC_FDT_OFFSET, BigInt(p.fdtAddr), true);
  const info = [FW_DYNAMIC_INFO_MAGIC, FW_DYNAMIC_INFO_VERSION, p.nextAddr, FW_DYNAMIC_INFO_NEXT_MODE_S, 0, p.bootHart ?? 0];
  info.forEach((word, i) => v.setBigUint64(RESET_VEC_FW_DYN_OFFSET + 8 * i, BigInt(word), true));
  return out;
}
