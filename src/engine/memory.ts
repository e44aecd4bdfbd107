/**
 * The guest's physical address space as the CPU sees it. The CPU (src/engine/targets) sits below
 * the devices (src/engine/hw) in the layer diagram, so the contract lives here in the kernel and
 * src/engine/hw implements it (RAM, ROM, MMIO regions, unassigned space).
 */

/** Access sizes in bytes for MMIO. */
export type AccessSize = 1 | 2 | 4 | 8;

/** Result of a bus transaction, as QEMU's MemTxResult. */
export const MemTx = { Ok: 0, DecodeError: 1, DeviceError: 2 } as const;
export type MemTx = (typeof MemTx)[keyof typeof MemTx];

/** A region of RAM or ROM the CPU may access directly through its typed array (the fast path). */
export interface RamBlock {
  readonly name: string;
  /** Guest physical base address. */
  readonly base: number;
  readonly sizeBytes: number;
  readonly bytes: Uint8Array;
  readonly readonly: boolean;
  /** Called by the CPU/bus after a write into [offset, offset+len) so translated code can be invalidated. */
  onWrite?: (offset: number, len: number) => void;
}

/**
 * A device's register block. Sizes 1, 2 and 4 carry `number` values (unsigned); 8-byte accesses use
 * `read64`/`write64` when present, else the bus splits them into two 4-byte accesses (low first).
 */
export interface MmioOps {
  read(offset: number, size: 1 | 2 | 4): number;
  write(offset: number, size: 1 | 2 | 4, value: number): void;
  read64?(offset: number): bigint;
  write64?(offset: number, value: bigint): void;
}

/**
 * Physical memory. Addresses are JS numbers; an address at or above 2^53 can never be mapped and
 * is answered as unassigned. Unassigned reads return 0 and report `DecodeError` (the CPU decides
 * whether that is an access fault, as QEMU's RISC-V does), never a host exception.
 */
export interface GuestMemory {
  /** The RAM/ROM block containing `addr`, or undefined (MMIO or unassigned). */
  ramAt(addr: number): RamBlock | undefined;
  /** Reads `size` bytes little-endian; `value` is 0 on error. */
  load(addr: number, size: 1 | 2 | 4): { value: number; status: MemTx };
  store(addr: number, size: 1 | 2 | 4, value: number): MemTx;
  load64(addr: number): { value: bigint; status: MemTx };
  store64(addr: number, value: bigint): MemTx;
}
