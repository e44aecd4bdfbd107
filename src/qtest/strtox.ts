/**
 * Number parsing exactly as QEMU's qtest server does it: `qemu_strtou64`/`qemu_strtoi64`/
 * `qemu_strtoi` over C's `strtoull`/`strtoll` with base 0. The whole word must be consumed.
 *
 * Facts (glibc + qemu/util/cutils.c): leading white space is skipped; an optional sign; `0x`/`0X`
 * followed by a hex digit selects base 16, a leading `0` selects base 8, else base 10; a `0x` not
 * followed by a hex digit parses as `0` and leaves `x…` unconsumed (so the word is rejected);
 * unsigned parsing accepts `-N` and yields 2^64 - N; values out of range are errors (ERANGE).
 */

const TWO_64 = 1n << 64n;
const U64_MAX = TWO_64 - 1n;
const I64_MAX = (1n << 63n) - 1n;
const I64_MIN = -(1n << 63n);
const I32_MAX = 2n ** 31n - 1n;
const I32_MIN = -(2n ** 31n);

/** Longest word we look at: a 64-bit octal number with sign and leading zeros is far below this. */
const MAX_NUMBER_CHARS = 256;

export type ParseResult = { readonly ok: true; readonly value: bigint } | { readonly ok: false; readonly reason: string };

function isSpace(code: number): boolean {
  return code === 0x20 || (code >= 0x09 && code <= 0x0d);
}

function digitValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x61 && code <= 0x7a) return code - 0x61 + 10;
  if (code >= 0x41 && code <= 0x5a) return code - 0x41 + 10;
  return 99;
}

/** Parses sign and magnitude; `magnitude` is exact (no wrap), `end` is how far it got. */
function scan(word: string): { negative: boolean; magnitude: bigint; end: number; start: number } {
  let i = 0;
  while (i < word.length && isSpace(word.charCodeAt(i))) i++;
  let negative = false;
  const c = word[i];
  if (c === '+' || c === '-') {
    negative = c === '-';
    i++;
  }
  let base = 10;
  if (word[i] === '0') {
    const x = word[i + 1];
    if ((x === 'x' || x === 'X') && digitValue(word.charCodeAt(i + 2)) < 16) {
      base = 16;
      i += 2;
    } else {
      base = 8;
    }
  }
  const start = i;
  let magnitude = 0n;
  const bigBase = BigInt(base);
  while (i < word.length) {
    const d = digitValue(word.charCodeAt(i));
    if (d >= base) break;
    magnitude = magnitude * bigBase + BigInt(d);
    i++;
  }
  return { negative, magnitude, end: i, start };
}

function common(word: string | undefined): { error: string } | { negative: boolean; magnitude: bigint } {
  if (word === undefined) return { error: 'missing argument' };
  if (word.length > MAX_NUMBER_CHARS) return { error: `number too long: '${word.slice(0, 32)}…'` };
  const r = scan(word);
  if (r.end === r.start) return { error: `invalid number '${word}'` };
  if (r.end !== word.length) return { error: `invalid number '${word}'` };
  return { negative: r.negative, magnitude: r.magnitude };
}

/** `qemu_strtou64(word, NULL, 0, &v)`: unsigned 64-bit, `-N` wraps as in C. */
export function parseU64(word: string | undefined): ParseResult {
  const r = common(word);
  if ('error' in r) return { ok: false, reason: r.error };
  if (r.magnitude > U64_MAX) return { ok: false, reason: `number out of range '${word}'` };
  const value = r.negative && r.magnitude !== 0n ? TWO_64 - r.magnitude : r.magnitude;
  return { ok: true, value };
}

/** `qemu_strtoi64(word, NULL, 0, &v)`: signed 64-bit. */
export function parseI64(word: string | undefined): ParseResult {
  const r = common(word);
  if ('error' in r) return { ok: false, reason: r.error };
  const value = r.negative ? -r.magnitude : r.magnitude;
  if (value > I64_MAX || value < I64_MIN) return { ok: false, reason: `number out of range '${word}'` };
  return { ok: true, value };
}

/** `qemu_strtoi(word, NULL, 0, &v)`: signed 32-bit (C int). */
export function parseI32(word: string | undefined): ParseResult {
  const r = parseI64(word);
  if (!r.ok) return r;
  if (r.value > I32_MAX || r.value < I32_MIN) return { ok: false, reason: `number out of range '${word}'` };
  return r;
}

/**
 * `qemu_strtoul` on an LP64 host (unsigned long is 64-bit): same as `parseU64`. Kept separate
 * because QEMU uses it for `outb`/`memset` and a 32-bit host would differ.
 */
export const parseUlong = parseU64;
