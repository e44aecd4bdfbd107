/** Privilege levels. */
export const Priv = { U: 0, S: 1, M: 3 } as const;

/** Synchronous exception causes. */
export const Exc = {
  InsnMisaligned: 0, InsnAccessFault: 1, IllegalInsn: 2, Breakpoint: 3, LoadMisaligned: 4,
  LoadAccessFault: 5, StoreMisaligned: 6, StoreAccessFault: 7, EcallU: 8, EcallS: 9, EcallM: 11,
  InsnPageFault: 12, LoadPageFault: 13, StorePageFault: 15,
} as const;

/** Interrupt bits of mip/mie. */
export const Irq = { SSI: 1, MSI: 3, STI: 5, MTI: 7, SEI: 9, MEI: 11 } as const;

/** mstatus bits (the low 32 bits; UXL/SXL are fixed on RV64). */
export const MS = {
  SIE: 1 << 1, MIE: 1 << 3, SPIE: 1 << 5, UBE: 1 << 6, MPIE: 1 << 7, SPP: 1 << 8, MPP: 3 << 11,
  FS: 3 << 13, MPRV: 1 << 17, SUM: 1 << 18, MXR: 1 << 19, TVM: 1 << 20, TW: 1 << 21, TSR: 1 << 22,
} as const;

/** Access types for translation and PMP. */
export const Access = { Fetch: 0, Load: 1, Store: 2 } as const;
export type Access = (typeof Access)[keyof typeof Access];

/** CSR numbers used by the hart. */
export const Csr = {
  fflags: 0x001, frm: 0x002, fcsr: 0x003,
  cycle: 0xc00, time: 0xc01, instret: 0xc02, cycleh: 0xc80, timeh: 0xc81, instreth: 0xc82,
  sstatus: 0x100, sie: 0x104, stvec: 0x105, scounteren: 0x106, senvcfg: 0x10a,
  sscratch: 0x140, sepc: 0x141, scause: 0x142, stval: 0x143, sip: 0x144, satp: 0x180,
  mstatus: 0x300, misa: 0x301, medeleg: 0x302, mideleg: 0x303, mie: 0x304, mtvec: 0x305,
  mcounteren: 0x306, menvcfg: 0x30a, mstatush: 0x310, menvcfgh: 0x31a, mcountinhibit: 0x320,
  mscratch: 0x340, mepc: 0x341, mcause: 0x342, mtval: 0x343, mip: 0x344,
  pmpcfg0: 0x3a0, pmpaddr0: 0x3b0,
  mcycle: 0xb00, minstret: 0xb02, mcycleh: 0xb80, minstreth: 0xb82,
  mvendorid: 0xf11, marchid: 0xf12, mimpid: 0xf13, mhartid: 0xf14, mconfigptr: 0xf15,
} as const;

/** QEMU 7.2's marchid/mimpid for its generic CPUs. */
export const QEMU_MARCHID = 0x70200;
export const QEMU_MIMPID = 0x70200;
