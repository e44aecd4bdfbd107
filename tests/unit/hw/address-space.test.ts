import { describe, expect, it } from 'vitest';
import { AddressSpace, RegionOverlapError } from '../../../src/engine/hw/address-space.js';
import { MemTx } from '../../../src/engine/memory.js';
import { Trace } from '../../../src/engine/trace.js';

function regs() {
  const log: string[] = [];
  const store = new Uint32Array(4);
  return {
    log,
    ops: {
      read(offset: number, size: number) {
        log.push(`r${offset}/${size}`);
        return store[offset >> 2] ?? 0;
      },
      write(offset: number, size: number, value: number) {
        log.push(`w${offset}/${size}=${value.toString(16)}`);
        store[offset >> 2] = value;
      },
    },
  };
}

describe('AddressSpace', () => {
  it('reads and writes RAM little-endian at every size, and splits across regions', () => {
    const as = new AddressSpace();
    const ram = as.addRam('ram', 0x8000_0000, 0x1000);
    expect(as.store(0x8000_0000, 4, 0x11223344)).toBe(MemTx.Ok);
    expect(Array.from(ram.bytes.subarray(0, 4))).toEqual([0x44, 0x33, 0x22, 0x11]);
    expect(as.load(0x8000_0001, 2)).toEqual({ value: 0x2233, status: MemTx.Ok });
    expect(as.store64(0x8000_0008, 0xfedcba9876543210n)).toBe(MemTx.Ok);
    expect(as.load64(0x8000_0008).value).toBe(0xfedcba9876543210n);
    expect(as.load(0x8000_000c, 4).value).toBe(0xfedcba98);
    const writes: number[] = [];
    ram.onWrite = (offset) => writes.push(offset);
    as.store(0x8000_0010, 1, 0x1ff);
    expect(writes).toEqual([0x10]);
    expect(as.load(0x8000_0010, 1).value).toBe(0xff);
    // A load straddling the end of RAM: the part outside is unassigned.
    const edge = as.load(0x8000_0ffe, 4);
    expect(edge).toEqual({ value: 0, status: MemTx.DecodeError });
  });

  it('answers unassigned and wild addresses with 0 and DecodeError and a trace event', () => {
    const trace = new Trace(() => 0);
    const as = new AddressSpace(trace);
    as.addRam('ram', 0x1000, 0x1000);
    for (const addr of [0, 0x5000, 2 ** 53, 2 ** 64, -1, NaN, Infinity, 0xffff_ffff_ffff]) {
      expect(as.load(addr, 4)).toEqual({ value: 0, status: MemTx.DecodeError });
      expect(as.load64(addr)).toEqual({ value: 0n, status: MemTx.DecodeError });
      expect(as.store(addr, 2, 1)).toBe(MemTx.DecodeError);
      expect(as.store64(addr, 1n)).toBe(MemTx.DecodeError);
    }
    const events = trace.recent().filter((e) => e.name === 'mem.unassigned');
    expect(events.length).toBe(32);
    expect(events[0]!.fields).toEqual({ addr: 0, size: 4, write: false });
  });

  it('ignores ROM writes but lets loaders write ROM with force', () => {
    const as = new AddressSpace();
    as.addRom('rom', 0x1000, 0x100, new Uint8Array([1, 2, 3, 4]));
    expect(as.load(0x1000, 4).value).toBe(0x04030201);
    expect(as.store(0x1000, 4, 0)).toBe(MemTx.Ok);
    expect(as.load(0x1000, 4).value).toBe(0x04030201);
    as.writeBytes(0x1002, new Uint8Array([9]), true);
    expect(as.load(0x1000, 4).value).toBe(0x04090201);
    expect(() => as.addRom('big', 0x2000, 2, new Uint8Array(3))).toThrow();
  });

  it('enforces MMIO access rules and adjusts sizes to what the device implements', () => {
    const trace = new Trace(() => 0);
    const as = new AddressSpace(trace);
    const dev = regs();
    as.addMmio('dev', 0x10000, 0x10, dev.ops, { minAccess: 1, maxAccess: 8, implMin: 4, implMax: 4 });
    dev.ops.write(4, 4, 0xaabbccdd);
    dev.log.length = 0;
    expect(as.load(0x10005, 1).value).toBe(0xcc);
    expect(as.load(0x10006, 2).value).toBe(0xaabb);
    expect(as.load64(0x10000).value).toBe(0xaabbccdd_00000000n);
    expect(dev.log).toEqual(['r4/4', 'r4/4', 'r0/4', 'r4/4']);
    dev.log.length = 0;
    as.store64(0x10008, 0x1_00000002n);
    expect(dev.log).toEqual(['w8/4=2', 'w12/4=1']);
    // Unaligned is refused by default.
    expect(as.load(0x10001, 2).status).toBe(MemTx.DecodeError);
    const strict = regs();
    as.addMmio('strict', 0x20000, 0x10, strict.ops, { minAccess: 4, maxAccess: 4 });
    expect(as.load(0x20000, 1)).toEqual({ value: 0, status: MemTx.DecodeError });
    expect(as.store64(0x20000, 1n)).toBe(MemTx.DecodeError);
    expect(strict.log).toEqual([]);
    expect(trace.recent().filter((e) => e.name === 'mem.invalid-access').length).toBe(3);
  });

  it('splits narrow-implemented devices and refuses overlapping regions', () => {
    const as = new AddressSpace();
    const dev = regs();
    as.addMmio('bytes', 0x100, 0x10, dev.ops, { implMax: 1 });
    as.store(0x100, 4, 0x01020304);
    expect(dev.log).toEqual(['w0/1=4', 'w1/1=3', 'w2/1=2', 'w3/1=1']);
    expect(() => as.addRam('x', 0x108, 0x10)).toThrow(RegionOverlapError);
    expect(() => as.addRam('y', 2 ** 53 - 4, 0x10)).toThrow(RegionOverlapError);
    expect(as.region('bytes')?.kind).toBe('mmio');
  });

  it('copies bulk data across RAM and holes', () => {
    const as = new AddressSpace();
    as.addRam('a', 0x1000, 0x10);
    as.addRam('b', 0x1010, 0x10);
    as.writeBytes(0x100c, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
    expect(Array.from(as.readBytes(0x100c, 8))).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(Array.from(as.readBytes(0x101e, 4))).toEqual([0, 0, 0, 0]);
  });
});
