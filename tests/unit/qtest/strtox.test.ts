import { describe, expect, it } from 'vitest';
import { parseI32, parseI64, parseU64 } from '../../../src/qtest/strtox.js';

const ok = (v: bigint) => ({ ok: true, value: v });

describe('qtest number parsing (strtoull/strtoll base 0, whole word)', () => {
  it('accepts decimal, hex, octal, signs and leading blanks as C does', () => {
    expect(parseU64('0')).toEqual(ok(0n));
    expect(parseU64('1234')).toEqual(ok(1234n));
    expect(parseU64('0x10')).toEqual(ok(16n));
    expect(parseU64('0XfF')).toEqual(ok(255n));
    expect(parseU64('010')).toEqual(ok(8n));
    expect(parseU64('+7')).toEqual(ok(7n));
    expect(parseU64('\t5')).toEqual(ok(5n));
    expect(parseU64('0xffffffffffffffff')).toEqual(ok(2n ** 64n - 1n));
    // strtoull negates in unsigned arithmetic
    expect(parseU64('-1')).toEqual(ok(2n ** 64n - 1n));
    expect(parseU64('-0')).toEqual(ok(0n));
  });

  it('rejects what qemu_strtou64 rejects', () => {
    for (const bad of [undefined, '', ' ', '0x', '0xg', '08', '12a', '1 ', '-', 'x10', '0x10000000000000000', '18446744073709551616']) {
      expect(parseU64(bad).ok, String(bad)).toBe(false);
    }
  });

  it('signed 64 and 32-bit ranges', () => {
    expect(parseI64('-5')).toEqual(ok(-5n));
    expect(parseI64('0x7fffffffffffffff')).toEqual(ok(2n ** 63n - 1n));
    expect(parseI64('0x8000000000000000').ok).toBe(false);
    expect(parseI64('-9223372036854775808')).toEqual(ok(-(2n ** 63n)));
    expect(parseI32('2147483647')).toEqual(ok(2147483647n));
    expect(parseI32('2147483648').ok).toBe(false);
    expect(parseI32('-2147483648')).toEqual(ok(-2147483648n));
  });
});
