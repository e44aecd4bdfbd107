/**
 * IEEE-754 binary32/binary64 arithmetic with all five RISC-V rounding modes and the accrued flags,
 * computed exactly on BigInt significands and rounded once (tininess detected after rounding, as
 * RISC-V requires). Slow but exact; guests use F/D rarely enough that exactness wins.
 */

/** fflags bits. */
export const FFlag = { NX: 1, UF: 2, OF: 4, DZ: 8, NV: 16 } as const;
/** Rounding modes (frm / rm field). */
export const Rm = { RNE: 0, RTZ: 1, RDN: 2, RUP: 3, RMM: 4 } as const;

export interface FloatFormat {
  readonly expBits: number;
  readonly fracBits: number;
  readonly bias: number;
  readonly totalBits: number;
  readonly canonicalNaN: bigint;
}
export const F32: FloatFormat = { expBits: 8, fracBits: 23, bias: 127, totalBits: 32, canonicalNaN: 0x7fc00000n };
export const F64: FloatFormat = { expBits: 11, fracBits: 52, bias: 1023, totalBits: 64, canonicalNaN: 0x7ff8000000000000n };

/** Accumulates exception flags of the current operation (read and cleared by the CPU). */
export const fpState = { flags: 0 };

const enum Cls { Zero, Normal, Inf, QNaN, SNaN }

interface Unpacked {
  cls: Cls;
  sign: number;
  /** value = mant * 2^exp for finite values. */
  mant: bigint;
  exp: number;
}

function bitLength(v: bigint): number {
  if (v === 0n) return 0;
  if (v < 0x20000000000000n) {
    const n = Number(v);
    return n < 0x100000000 ? 32 - Math.clz32(n) : 64 - Math.clz32(Math.floor(n / 0x100000000));
  }
  const hex = v.toString(16);
  return (hex.length - 1) * 4 + (32 - Math.clz32(parseInt(hex[0]!, 16)));
}

export function unpack(bits: bigint, fmt: FloatFormat): Unpacked {
  const fracMask = (1n << BigInt(fmt.fracBits)) - 1n;
  const expMax = (1 << fmt.expBits) - 1;
  const sign = Number((bits >> BigInt(fmt.totalBits - 1)) & 1n);
  const bexp = Number((bits >> BigInt(fmt.fracBits)) & BigInt(expMax));
  const frac = bits & fracMask;
  if (bexp === expMax) {
    if (frac === 0n) return { cls: Cls.Inf, sign, mant: 0n, exp: 0 };
    const quiet = (frac >> BigInt(fmt.fracBits - 1)) & 1n;
    return { cls: quiet === 1n ? Cls.QNaN : Cls.SNaN, sign, mant: frac, exp: 0 };
  }
  if (bexp === 0) {
    if (frac === 0n) return { cls: Cls.Zero, sign, mant: 0n, exp: 0 };
    return { cls: Cls.Normal, sign, mant: frac, exp: 1 - fmt.bias - fmt.fracBits };
  }
  return { cls: Cls.Normal, sign, mant: frac | (1n << BigInt(fmt.fracBits)), exp: bexp - fmt.bias - fmt.fracBits };
}

function packInf(sign: number, fmt: FloatFormat): bigint {
  return (BigInt(sign) << BigInt(fmt.totalBits - 1)) | (BigInt((1 << fmt.expBits) - 1) << BigInt(fmt.fracBits));
}
function packZero(sign: number, fmt: FloatFormat): bigint {
  return BigInt(sign) << BigInt(fmt.totalBits - 1);
}
function packMax(sign: number, fmt: FloatFormat): bigint {
  return packInf(sign, fmt) - 1n;
}

/** Decides whether to round up the magnitude given the discarded remainder. */
function roundUp(rm: number, sign: number, q: bigint, rem: bigint, half: bigint): boolean {
  if (rem === 0n) return false;
  switch (rm) {
    case Rm.RNE:
      return rem > half || (rem === half && (q & 1n) === 1n);
    case Rm.RTZ:
      return false;
    case Rm.RDN:
      return sign === 1;
    case Rm.RUP:
      return sign === 0;
    default:
      return rem >= half;
  }
}

/**
 * Rounds sign * mant * 2^exp to `fmt`. The caller guarantees that either the value is exact, or the
 * significand carries at least two bits below the final rounding position with a sticky bit ORed in.
 */
export function roundPack(sign: number, mant: bigint, exp: number, fmt: FloatFormat, rm: number): bigint {
  if (mant === 0n) return packZero(sign, fmt);
  const p = fmt.fracBits + 1;
  const emin = 1 - fmt.bias;
  const emax = fmt.bias;
  const n = bitLength(mant);
  const e = exp + n - 1;
  // Tininess after rounding: round to p bits with an unbounded exponent.
  let tiny = false;
  if (e < emin) {
    tiny = true;
    const shiftU = e - (p - 1) - exp;
    if (shiftU > 0) {
      const q = mant >> BigInt(shiftU);
      const rem = mant & ((1n << BigInt(shiftU)) - 1n);
      const up = roundUp(rm, sign, q, rem, 1n << BigInt(shiftU - 1));
      if (up && bitLength(q + 1n) > p && e + 1 >= emin) tiny = false;
    }
  }
  const lsbExp = Math.max(e, emin) - (p - 1);
  const shift = lsbExp - exp;
  let q: bigint;
  let inexact = false;
  let outLsb = lsbExp;
  if (shift <= 0) {
    q = mant << BigInt(-shift);
  } else {
    q = mant >> BigInt(shift);
    const rem = mant & ((1n << BigInt(shift)) - 1n);
    inexact = rem !== 0n;
    if (roundUp(rm, sign, q, rem, 1n << BigInt(shift - 1))) q += 1n;
  }
  if (bitLength(q) > p) {
    q >>= 1n;
    outLsb += 1;
  }
  if (inexact) {
    fpState.flags |= FFlag.NX;
    if (tiny) fpState.flags |= FFlag.UF;
  }
  if (q === 0n) return packZero(sign, fmt);
  const topExp = outLsb + bitLength(q) - 1;
  if (topExp > emax) {
    fpState.flags |= FFlag.OF | FFlag.NX;
    const toInf = rm === Rm.RNE || rm === Rm.RMM || (rm === Rm.RDN && sign === 1) || (rm === Rm.RUP && sign === 0);
    return toInf ? packInf(sign, fmt) : packMax(sign, fmt);
  }
  const signBits = BigInt(sign) << BigInt(fmt.totalBits - 1);
  if (bitLength(q) < p) return signBits | q; // subnormal (outLsb === emin - p + 1)
  const biased = BigInt(topExp + fmt.bias);
  return signBits | (biased << BigInt(fmt.fracBits)) | (q - (1n << BigInt(fmt.fracBits)));
}

function isNaN_(u: Unpacked): boolean {
  return u.cls === Cls.QNaN || u.cls === Cls.SNaN;
}

/** NaN propagation: any NaN operand gives the canonical NaN; a signalling one raises NV. */
function nanResult(fmt: FloatFormat, ...ops: Unpacked[]): bigint | undefined {
  let any = false;
  for (const u of ops) {
    if (u.cls === Cls.SNaN) fpState.flags |= FFlag.NV;
    if (isNaN_(u)) any = true;
  }
  return any ? fmt.canonicalNaN : undefined;
}

function addUnpacked(a: Unpacked, b: Unpacked, fmt: FloatFormat, rm: number): bigint {
  if (a.cls === Cls.Inf || b.cls === Cls.Inf) {
    if (a.cls === Cls.Inf && b.cls === Cls.Inf && a.sign !== b.sign) {
      fpState.flags |= FFlag.NV;
      return fmt.canonicalNaN;
    }
    return packInf(a.cls === Cls.Inf ? a.sign : b.sign, fmt);
  }
  if (a.cls === Cls.Zero && b.cls === Cls.Zero) {
    if (a.sign === b.sign) return packZero(a.sign, fmt);
    return packZero(rm === Rm.RDN ? 1 : 0, fmt);
  }
  if (a.cls === Cls.Zero) return roundPack(b.sign, b.mant, b.exp, fmt, rm);
  if (b.cls === Cls.Zero) return roundPack(a.sign, a.mant, a.exp, fmt, rm);
  const e = Math.min(a.exp, b.exp);
  const va = (a.mant << BigInt(a.exp - e)) * (a.sign ? -1n : 1n);
  const vb = (b.mant << BigInt(b.exp - e)) * (b.sign ? -1n : 1n);
  const sum = va + vb;
  if (sum === 0n) return packZero(rm === Rm.RDN ? 1 : 0, fmt);
  return sum < 0n ? roundPack(1, -sum, e, fmt, rm) : roundPack(0, sum, e, fmt, rm);
}

export function fadd(x: bigint, y: bigint, fmt: FloatFormat, rm: number): bigint {
  const a = unpack(x, fmt);
  const b = unpack(y, fmt);
  return nanResult(fmt, a, b) ?? addUnpacked(a, b, fmt, rm);
}

export function fsub(x: bigint, y: bigint, fmt: FloatFormat, rm: number): bigint {
  const a = unpack(x, fmt);
  const b = unpack(y, fmt);
  const nan = nanResult(fmt, a, b);
  if (nan !== undefined) return nan;
  b.sign ^= 1;
  return addUnpacked(a, b, fmt, rm);
}

export function fmul(x: bigint, y: bigint, fmt: FloatFormat, rm: number): bigint {
  const a = unpack(x, fmt);
  const b = unpack(y, fmt);
  const nan = nanResult(fmt, a, b);
  if (nan !== undefined) return nan;
  const sign = a.sign ^ b.sign;
  if ((a.cls === Cls.Inf && b.cls === Cls.Zero) || (a.cls === Cls.Zero && b.cls === Cls.Inf)) {
    fpState.flags |= FFlag.NV;
    return fmt.canonicalNaN;
  }
  if (a.cls === Cls.Inf || b.cls === Cls.Inf) return packInf(sign, fmt);
  if (a.cls === Cls.Zero || b.cls === Cls.Zero) return packZero(sign, fmt);
  return roundPack(sign, a.mant * b.mant, a.exp + b.exp, fmt, rm);
}

export function fdiv(x: bigint, y: bigint, fmt: FloatFormat, rm: number): bigint {
  const a = unpack(x, fmt);
  const b = unpack(y, fmt);
  const nan = nanResult(fmt, a, b);
  if (nan !== undefined) return nan;
  const sign = a.sign ^ b.sign;
  if ((a.cls === Cls.Inf && b.cls === Cls.Inf) || (a.cls === Cls.Zero && b.cls === Cls.Zero)) {
    fpState.flags |= FFlag.NV;
    return fmt.canonicalNaN;
  }
  if (a.cls === Cls.Inf) return packInf(sign, fmt);
  if (b.cls === Cls.Inf) return packZero(sign, fmt);
  if (b.cls === Cls.Zero) {
    fpState.flags |= FFlag.DZ;
    return packInf(sign, fmt);
  }
  if (a.cls === Cls.Zero) return packZero(sign, fmt);
  const k = Math.max(0, fmt.fracBits + 5 + bitLength(b.mant) - bitLength(a.mant));
  const num = a.mant << BigInt(k);
  let q = num / b.mant;
  if (num % b.mant !== 0n) q = (q << 1n) | 1n;
  else q <<= 1n;
  return roundPack(sign, q, a.exp - b.exp - k - 1, fmt, rm);
}

function isqrt(n: bigint): bigint {
  if (n < 2n) return n;
  let x = 1n << BigInt(Math.ceil(bitLength(n) / 2));
  for (let i = 0; i < 4096; i++) {
    const y = (x + n / x) >> 1n;
    if (y >= x) return x;
    x = y;
  }
  return x;
}

export function fsqrt(x: bigint, fmt: FloatFormat, rm: number): bigint {
  const a = unpack(x, fmt);
  const nan = nanResult(fmt, a);
  if (nan !== undefined) return nan;
  if (a.cls === Cls.Zero) return packZero(a.sign, fmt);
  if (a.sign === 1) {
    fpState.flags |= FFlag.NV;
    return fmt.canonicalNaN;
  }
  if (a.cls === Cls.Inf) return packInf(0, fmt);
  let m = a.mant;
  let e = a.exp;
  if (e % 2 !== 0) {
    m <<= 1n;
    e -= 1;
  }
  const k = fmt.fracBits + 6;
  const big = m << BigInt(2 * k);
  let s = isqrt(big);
  s = s * s === big ? s << 1n : (s << 1n) | 1n;
  return roundPack(0, s, (e - 2 * k) / 2 - 1, fmt, rm);
}

/** Fused multiply-add: (x*y)*(negProd?-1:1) + z*(negAdd?-1:1), rounded once. */
export function ffma(x: bigint, y: bigint, z: bigint, negProd: boolean, negAdd: boolean, fmt: FloatFormat, rm: number): bigint {
  const a = unpack(x, fmt);
  const b = unpack(y, fmt);
  const c = unpack(z, fmt);
  const infTimesZero = (a.cls === Cls.Inf && b.cls === Cls.Zero) || (a.cls === Cls.Zero && b.cls === Cls.Inf);
  if (infTimesZero) {
    fpState.flags |= FFlag.NV;
    if (a.cls === Cls.SNaN || b.cls === Cls.SNaN || c.cls === Cls.SNaN) fpState.flags |= FFlag.NV;
    return fmt.canonicalNaN;
  }
  const nan = nanResult(fmt, a, b, c);
  if (nan !== undefined) return nan;
  const psign = a.sign ^ b.sign ^ (negProd ? 1 : 0);
  const csign = c.sign ^ (negAdd ? 1 : 0);
  let prod: Unpacked;
  if (a.cls === Cls.Inf || b.cls === Cls.Inf) prod = { cls: Cls.Inf, sign: psign, mant: 0n, exp: 0 };
  else if (a.cls === Cls.Zero || b.cls === Cls.Zero) prod = { cls: Cls.Zero, sign: psign, mant: 0n, exp: 0 };
  else prod = { cls: Cls.Normal, sign: psign, mant: a.mant * b.mant, exp: a.exp + b.exp };
  return addUnpacked(prod, { ...c, sign: csign }, fmt, rm);
}

/** fmin/fmax (IEEE 754-2019 minimumNumber/maximumNumber as RISC-V F 2.2 defines). */
export function fminmax(x: bigint, y: bigint, fmt: FloatFormat, max: boolean): bigint {
  const a = unpack(x, fmt);
  const b = unpack(y, fmt);
  if (a.cls === Cls.SNaN || b.cls === Cls.SNaN) fpState.flags |= FFlag.NV;
  if (isNaN_(a) && isNaN_(b)) return fmt.canonicalNaN;
  if (isNaN_(a)) return y;
  if (isNaN_(b)) return x;
  const lt = flessRaw(a, b) || (a.cls === Cls.Zero && b.cls === Cls.Zero && a.sign === 1 && b.sign === 0);
  if (max) return lt ? y : x;
  return lt ? x : y;
}

function toRational(u: Unpacked): { num: bigint; exp: number } {
  return { num: u.sign ? -u.mant : u.mant, exp: u.exp };
}

/** a < b for non-NaN values. */
function flessRaw(a: Unpacked, b: Unpacked): boolean {
  const ka = a.cls === Cls.Inf ? (a.sign ? -2 : 2) : 0;
  const kb = b.cls === Cls.Inf ? (b.sign ? -2 : 2) : 0;
  if (ka !== 0 || kb !== 0) return ka < kb;
  const ra = toRational(a);
  const rb = toRational(b);
  if (ra.num === 0n && rb.num === 0n) return false;
  const e = Math.min(ra.exp, rb.exp);
  return ra.num << BigInt(ra.exp - e) < rb.num << BigInt(rb.exp - e);
}

function fequalRaw(a: Unpacked, b: Unpacked): boolean {
  return !flessRaw(a, b) && !flessRaw(b, a);
}

/** feq/flt/fle: 0 = eq, 1 = lt, 2 = le. Returns 0 or 1. */
export function fcompare(x: bigint, y: bigint, fmt: FloatFormat, kind: 0 | 1 | 2): number {
  const a = unpack(x, fmt);
  const b = unpack(y, fmt);
  if (isNaN_(a) || isNaN_(b)) {
    if (kind !== 0 || a.cls === Cls.SNaN || b.cls === Cls.SNaN) fpState.flags |= FFlag.NV;
    return 0;
  }
  if (kind === 0) return fequalRaw(a, b) ? 1 : 0;
  if (kind === 1) return flessRaw(a, b) ? 1 : 0;
  return flessRaw(a, b) || fequalRaw(a, b) ? 1 : 0;
}

export function fclass(x: bigint, fmt: FloatFormat): number {
  const a = unpack(x, fmt);
  const bexp = Number((x >> BigInt(fmt.fracBits)) & BigInt((1 << fmt.expBits) - 1));
  switch (a.cls) {
    case Cls.Inf:
      return a.sign ? 1 << 0 : 1 << 7;
    case Cls.Zero:
      return a.sign ? 1 << 3 : 1 << 4;
    case Cls.SNaN:
      return 1 << 8;
    case Cls.QNaN:
      return 1 << 9;
    default:
      if (bexp === 0) return a.sign ? 1 << 2 : 1 << 5;
      return a.sign ? 1 << 1 : 1 << 6;
  }
}

/** Float to integer conversion with saturation; `bits` 32 or 64, `signed`. Returns the integer. */
export function fcvtToInt(x: bigint, fmt: FloatFormat, rm: number, bits: 32 | 64, signed: boolean): bigint {
  const a = unpack(x, fmt);
  const max = signed ? (1n << BigInt(bits - 1)) - 1n : (1n << BigInt(bits)) - 1n;
  const min = signed ? -(1n << BigInt(bits - 1)) : 0n;
  if (isNaN_(a)) {
    fpState.flags |= FFlag.NV;
    return max;
  }
  if (a.cls === Cls.Inf) {
    fpState.flags |= FFlag.NV;
    return a.sign ? min : max;
  }
  if (a.cls === Cls.Zero) return 0n;
  let mag: bigint;
  let inexact = false;
  if (a.exp >= 0) {
    mag = a.mant << BigInt(Math.min(a.exp, 200));
  } else {
    const shift = -a.exp;
    if (shift > 400) {
      mag = 0n;
      inexact = true;
      if (roundUp(rm, a.sign, 0n, 1n, 2n)) mag = 1n;
    } else {
      const q = a.mant >> BigInt(shift);
      const rem = a.mant & ((1n << BigInt(shift)) - 1n);
      inexact = rem !== 0n;
      mag = roundUp(rm, a.sign, q, rem, 1n << BigInt(shift - 1)) ? q + 1n : q;
    }
  }
  const v = a.sign ? -mag : mag;
  if (v > max) {
    fpState.flags |= FFlag.NV;
    return max;
  }
  if (v < min) {
    fpState.flags |= FFlag.NV;
    return min;
  }
  if (inexact) fpState.flags |= FFlag.NX;
  return v;
}

/** Integer (exact BigInt value) to float. */
export function fcvtFromInt(v: bigint, fmt: FloatFormat, rm: number): bigint {
  if (v === 0n) return 0n;
  return v < 0n ? roundPack(1, -v, 0, fmt, rm) : roundPack(0, v, 0, fmt, rm);
}

/** Format conversion (fcvt.s.d / fcvt.d.s). */
export function fcvtFloat(x: bigint, from: FloatFormat, to: FloatFormat, rm: number): bigint {
  const a = unpack(x, from);
  const nan = nanResult(to, a);
  if (nan !== undefined) return nan;
  if (a.cls === Cls.Inf) return packInf(a.sign, to);
  if (a.cls === Cls.Zero) return packZero(a.sign, to);
  return roundPack(a.sign, a.mant, a.exp, to, rm);
}

// ---- fast paths (round-to-nearest-even only) --------------------------------------------------
// Native doubles give RNE results; exactness (the NX flag) comes from error-free transformations.
// Anything near overflow, underflow, NaN or infinity returns undefined: the exact slow path above
// decides those. Zero operands and exact zero results are decided here (no flags in RNE).

const SPLIT = 134217729; // 2^27 + 1 (Veltkamp)
const BIG = 2 ** 995;
const TINY64 = 2 ** -960;
const MIN_NORMAL32 = 2 ** -126;
const MAX32 = 3.4028234663852886e38;

/** Error of a*b (exact when the inputs are within bounds). */
function productError(a: number, b: number, p: number): number {
  let t = SPLIT * a;
  const ahi = t - (t - a);
  const alo = a - ahi;
  t = SPLIT * b;
  const bhi = t - (t - b);
  const blo = b - bhi;
  return ((ahi * bhi - p) + ahi * blo + alo * bhi) + alo * blo;
}

function okRange64(r: number): boolean {
  const m = Math.abs(r);
  return m >= TINY64 && m < BIG;
}

/** In range, or a zero of either sign (zeros are exact operands: no flags, IEEE signs in JS too). */
function okOrZero64(r: number): boolean {
  return r === 0 || okRange64(r);
}

/** Binary64 op in RNE: result as a number, or undefined to take the exact path. Sets NX. */
export function fastOp64(op: 0 | 1 | 2 | 3 | 4, a: number, b: number): number | undefined {
  if (!okOrZero64(a) || (op !== 4 && !okOrZero64(b))) return undefined;
  let r: number;
  let exact: boolean;
  switch (op) {
    case 0:
    case 1: {
      const bb = op === 0 ? b : -b;
      r = a + bb;
      // A zero sum of in-range operands is an exact cancellation (or zeros): JS's RNE sign rules are IEEE's.
      if (r === 0) return r;
      if (!okRange64(r)) return undefined;
      const bv = r - a;
      exact = a - (r - bv) + (bb - bv) === 0;
      break;
    }
    case 2:
      r = a * b;
      if (a === 0 || b === 0) return r; // exact signed zero
      if (!okRange64(r)) return undefined;
      exact = productError(a, b, r) === 0;
      break;
    case 3: {
      if (b === 0) return undefined; // division by zero: the exact path raises DZ
      r = a / b;
      if (a === 0) return r;
      if (!okRange64(r)) return undefined;
      const p = r * b;
      exact = p === a && productError(r, b, p) === 0;
      break;
    }
    default: {
      if (a === 0) return a; // sqrt(±0) = ±0, exact
      if (a < 0) return undefined;
      r = Math.sqrt(a);
      if (!okRange64(r)) return undefined;
      const p = r * r;
      exact = p === a && productError(r, r, p) === 0;
      break;
    }
  }
  if (!exact) fpState.flags |= FFlag.NX;
  return r;
}

/** Binary64 fused a*b+c in RNE when a*b is exact in binary64 (then one rounding of the sum). */
export function fastFma64(a: number, b: number, c: number): number | undefined {
  if (!okOrZero64(a) || !okOrZero64(b) || !okOrZero64(c)) return undefined;
  const p = a * b;
  // With a zero factor the product is an exact signed zero; otherwise it must be exact in binary64.
  if (a !== 0 && b !== 0 && (!okRange64(p) || productError(a, b, p) !== 0)) return undefined;
  const r = p + c;
  if (r === 0) return r; // exact cancellation or zeros: IEEE's sign of an exact zero sum in RNE
  if (!okRange64(r)) return undefined;
  const bv = r - p;
  if (p - (r - bv) + (c - bv) !== 0) fpState.flags |= FFlag.NX;
  return r;
}

function okRange32(r: number): boolean {
  const m = Math.abs(r);
  return m >= MIN_NORMAL32 && m <= MAX32;
}

/**
 * Binary32 op in RNE through binary64 (double rounding is innocuous for + - * / sqrt since
 * 53 >= 2*24 + 2); exactness is checked in binary64, where these products are exact.
 */
export function fastOp32(op: 0 | 1 | 2 | 3 | 4, a: number, b: number): number | undefined {
  if (!okRange32(a) || (op !== 4 && !okRange32(b))) return undefined;
  let r: number;
  let exact: boolean;
  switch (op) {
    case 0:
    case 1: {
      const bb = op === 0 ? b : -b;
      const s = a + bb;
      const bv = s - a;
      const err = a - (s - bv) + (bb - bv);
      r = Math.fround(s);
      exact = err === 0 && r === s;
      break;
    }
    case 2: {
      const p = a * b;
      r = Math.fround(p);
      exact = r === p;
      break;
    }
    case 3:
      r = Math.fround(a / b);
      exact = r * b === a;
      break;
    default:
      if (a < 0) return undefined;
      r = Math.fround(Math.sqrt(a));
      exact = r * r === a;
      break;
  }
  if (!okRange32(r)) return undefined;
  if (!exact) fpState.flags |= FFlag.NX;
  return r;
}
