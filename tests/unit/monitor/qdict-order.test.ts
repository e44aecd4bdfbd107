import { describe, expect, it } from 'vitest';
import { BLOCK_INFO_ORDER, IMAGE_INFO_ORDER, qdictOrder, tdbHash } from '../../../src/monitor/qdict-order.js';

const keysOf = (order: readonly string[], present: readonly string[]): string[] => Object.keys(qdictOrder(Object.fromEntries(present.map((k) => [k, 0])), order));

describe('QDict key order', () => {
  it('tdb_hash is 32-bit unsigned', () => {
    for (const key of ['', 'device', 'io-status', 'x'.repeat(100), 'é']) {
      const h = tdbHash(key);
      expect(Number.isInteger(h) && h >= 0 && h <= 0xffffffff).toBe(true);
    }
  });

  it("orders members as qemu-system-riscv64 7.2 prints them, whichever optional members are present", () => {
    // Key orders copied from QEMU 7.2 query-block replies.
    expect(keysOf(BLOCK_INFO_ORDER, ['device', 'qdev', 'type', 'removable', 'locked', 'inserted', 'io-status'])).toEqual(['io-status', 'device', 'locked', 'removable', 'inserted', 'qdev', 'type']);
    expect(keysOf(BLOCK_INFO_ORDER, ['device', 'type', 'removable', 'locked', 'inserted'])).toEqual(['device', 'locked', 'removable', 'inserted', 'type']);
    expect(keysOf(IMAGE_INFO_ORDER, ['filename', 'format', 'dirty-flag', 'actual-size', 'virtual-size', 'cluster-size', 'format-specific'])).toEqual(['virtual-size', 'filename', 'cluster-size', 'format', 'actual-size', 'format-specific', 'dirty-flag']);
    // Keys outside the given order keep their relative insertion order within a bucket and still hash.
    const out = qdictOrder({ b: 1, a: 2 }, []);
    expect(Object.keys(out).sort()).toEqual(['a', 'b']);
  });
});
