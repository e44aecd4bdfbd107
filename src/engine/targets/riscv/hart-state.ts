/**
 * A RISC-V hart's architectural state as plain data, for machine snapshots (replay seek).
 *
 * Every own property of a `RiscvHart` is classified here: saved, configuration (wiring that a
 * restore must find identical or leaves alone), or derived/cache (rebuilt after a restore). A
 * property this file does not know makes save fail loudly, so a field added to the hart is never
 * silently left out of snapshots: classify it here when you add it.
 *
 * The values are msgpack-safe: register files as bytes, 64-bit CSRs as decimal strings (any
 * coder keeps strings; not every one keeps bigints), the rest numbers and booleans.
 */
import { assert } from '../../assert.js';
import type { RiscvHart } from './hart.js';

/** Saved as JS numbers. */
const NUMBER_FIELDS = [
  'pc', 'priv', 'icount', 'mstatus', 'mie', 'mipSw', 'mipHw', 'medeleg', 'mideleg', 'mcounteren', 'scounteren', 'mcountinhibit',
  'fflags', 'frm', 'resAddr', 'trapCause',
] as const;
/** Saved as booleans. `resValid` may be an accessor over a private flag: it is read and written through it. */
const BOOLEAN_FIELDS = ['wfi', 'halted', 'stopRequested', 'resValid'] as const;
/** Saved as decimal strings (signed or unsigned, as the hart holds them). */
const BIGINT_FIELDS = [
  'mtvec', 'stvec', 'mepc', 'sepc', 'mcause', 'scause', 'mtval', 'stval', 'mscratch', 'sscratch', 'satp', 'menvcfg', 'senvcfg',
  'instretOffset', 'cycleOffset', 'resValue', 'wildAddr', 'wildPc', 'trapTval',
] as const;
/** Numbers that only some versions of the hart have (the physical LR reservation); saved when present. */
const OPTIONAL_NUMBER_FIELDS = ['resPaddr', 'resBytes'] as const;
/** Saved as bytes or arrays by name. */
const ARRAY_FIELDS = ['x', 'f', 'pmpcfg', 'pmpaddr'] as const;

/** Wiring and identity: never saved; `xlen` and `hartId` must match on restore. */
const CONFIG_FIELDS = ['xlen', 'hartId', 'resetPc', 'memory', 'syncClock', 'onCodeWrite', 'onFlush', 'readTime', 'reservations'] as const;
/**
 * Views of saved state, caches and values recomputed after a restore: register-file aliases, the
 * TLB and its block tables, the decode cache, the translator, PMP bounds (recomputed from
 * pmpcfg/pmpaddr), the translation epoch, the instruction being executed (only meaningful inside
 * a step), the flag behind the `resValid` accessor.
 */
const DERIVED_FIELDS = [
  'xu', 'xi', 'ff', 'fi', 'scratchI32', 'scratchF32', 'pmpLo', 'pmpHi', 'pmpActive', 'tlbTag', 'tlbPage', 'tlbBlock', 'tlbOff',
  'blocks', 'views', 'blockIndex', 'decoder', 'jit', 'codeEpoch', 'cur', 'resValidFlag',
] as const;

const SAVED_FIELDS: ReadonlySet<string> = new Set<string>([...NUMBER_FIELDS, ...BOOLEAN_FIELDS, ...BIGINT_FIELDS, ...OPTIONAL_NUMBER_FIELDS, ...ARRAY_FIELDS]);
const KNOWN_FIELDS: ReadonlySet<string> = new Set<string>([...SAVED_FIELDS, ...CONFIG_FIELDS, ...DERIVED_FIELDS]);

/** How each own property of a hart is handled (tests use it to show the classification is complete). */
export function hartFieldClass(name: string): 'saved' | 'config' | 'derived' | 'unknown' {
  if (SAVED_FIELDS.has(name)) return 'saved';
  if ((CONFIG_FIELDS as readonly string[]).includes(name)) return 'config';
  if ((DERIVED_FIELDS as readonly string[]).includes(name)) return 'derived';
  return 'unknown';
}

/** Bound on the own properties of a hart (far above the ~80 it has): a loop over them stays bounded. */
const MAX_HART_FIELDS = 512;

/** One hart's saved state. */
export interface HartState {
  readonly xlen: 32 | 64;
  readonly hartId: number;
  /** x0..x31 as 256 little-endian bytes. */
  readonly x: Uint8Array;
  /** f0..f31 as 256 little-endian bytes (NaN boxes and payloads kept bit for bit). */
  readonly f: Uint8Array;
  readonly pmpcfg: Uint8Array;
  readonly pmpaddr: readonly string[];
  readonly numbers: Readonly<Record<string, number>>;
  readonly booleans: Readonly<Record<string, boolean>>;
  readonly bigints: Readonly<Record<string, string>>;
}

/** The hart seen as a bag of properties: private fields are read and written by name, checked by type. */
type Fields = Record<string, unknown>;

/** Fails unless every own property of `hart` is classified above. */
export function assertHartFieldsKnown(hart: RiscvHart): void {
  const names = Object.keys(hart);
  assert(names.length <= MAX_HART_FIELDS, () => `a hart with ${names.length} properties`);
  const unknown = names.filter((name) => !KNOWN_FIELDS.has(name));
  assert(unknown.length === 0, () => `hart-state.ts does not know RiscvHart field(s) ${unknown.join(', ')}: classify them (saved, config or derived) so snapshots stay complete`);
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  // A copy: a snapshot must never alias the live register file.
  return new Uint8Array(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
}

/** Saves a hart at an instruction boundary (between `run()` calls). */
export function saveHartState(hart: RiscvHart): HartState {
  assertHartFieldsKnown(hart);
  const h = hart as unknown as Fields;
  const numbers: Record<string, number> = {};
  const booleans: Record<string, boolean> = {};
  const bigints: Record<string, string> = {};
  for (const name of NUMBER_FIELDS) {
    const v = h[name];
    assert(typeof v === 'number', () => `hart field ${name} is ${typeof v}, expected number`);
    numbers[name] = v;
  }
  for (const name of OPTIONAL_NUMBER_FIELDS) {
    const v = h[name];
    if (v === undefined) continue;
    assert(typeof v === 'number', () => `hart field ${name} is ${typeof v}, expected number`);
    numbers[name] = v;
  }
  for (const name of BOOLEAN_FIELDS) {
    const v = h[name];
    assert(typeof v === 'boolean', () => `hart field ${name} is ${typeof v}, expected boolean`);
    booleans[name] = v;
  }
  for (const name of BIGINT_FIELDS) {
    const v = h[name];
    assert(typeof v === 'bigint', () => `hart field ${name} is ${typeof v}, expected bigint`);
    bigints[name] = v.toString();
  }
  assert(hart.x.length === 32 && hart.f.length === 32, 'register files of 32 entries');
  return {
    xlen: hart.xlen,
    hartId: hart.hartId,
    x: bytesOf(hart.x),
    f: bytesOf(hart.f),
    pmpcfg: bytesOf(hart.pmpcfg),
    pmpaddr: hart.pmpaddr.map((v) => v.toString()),
    numbers,
    booleans,
    bigints,
  };
}

function parseBigint(text: unknown, name: string): bigint {
  assert(typeof text === 'string' && /^-?[0-9]{1,20}$/.test(text), () => `bad saved hart field ${name}: ${String(text)}`);
  return BigInt(text);
}

/**
 * Restores a hart in place, then drops everything derived from the old state: PMP bounds are
 * recomputed, the TLB flushed and all translated code and jump caches thrown away (RAM changed
 * under them).
 */
export function restoreHartState(hart: RiscvHart, s: HartState): void {
  assert(s.xlen === hart.xlen && s.hartId === hart.hartId, () => `snapshot of hart ${s.hartId} (rv${s.xlen}) restored into hart ${hart.hartId} (rv${hart.xlen})`);
  assert(s.x.length === 256 && s.f.length === 256, 'saved register files of 256 bytes');
  assert(s.pmpcfg.length === hart.pmpcfg.length && s.pmpaddr.length === hart.pmpaddr.length, 'saved PMP of another size');
  assertHartFieldsKnown(hart);
  const h = hart as unknown as Fields;
  // Parse and check everything first, so a bad snapshot leaves the hart untouched.
  const bigints = BIGINT_FIELDS.map((name) => [name, parseBigint(s.bigints[name], name)] as const);
  const pmpaddr = s.pmpaddr.map((text, i) => parseBigint(text, `pmpaddr${i}`));
  for (const name of NUMBER_FIELDS) assert(typeof s.numbers[name] === 'number', () => `saved hart lacks ${name}`);
  for (const name of BOOLEAN_FIELDS) assert(typeof s.booleans[name] === 'boolean', () => `saved hart lacks ${name}`);
  for (const name of OPTIONAL_NUMBER_FIELDS) {
    const present = typeof h[name] === 'number';
    assert(present === (typeof s.numbers[name] === 'number'), () => `hart field ${name} is ${present ? 'missing from the snapshot' : 'not in this hart'}`);
  }
  assert(Number.isSafeInteger(s.numbers.icount) && s.numbers.icount! >= 0, 'bad saved icount');

  new Uint8Array(hart.x.buffer, hart.x.byteOffset, 256).set(s.x);
  new Uint8Array(hart.f.buffer, hart.f.byteOffset, 256).set(s.f);
  hart.x[0] = 0n;
  hart.pmpcfg.set(s.pmpcfg);
  pmpaddr.forEach((v, i) => (hart.pmpaddr[i] = v));
  for (const name of NUMBER_FIELDS) h[name] = s.numbers[name];
  for (const name of OPTIONAL_NUMBER_FIELDS) if (typeof h[name] === 'number') h[name] = s.numbers[name];
  for (const [name, value] of bigints) h[name] = value;
  // Through the accessor when there is one (it keeps the harts' shared reservation count exact).
  for (const name of BOOLEAN_FIELDS) h[name] = s.booleans[name];

  const recompute = h['recomputePmp'];
  assert(typeof recompute === 'function', 'RiscvHart.recomputePmp is gone: restore cannot rebuild the PMP bounds');
  (recompute as () => void).call(hart);
  hart.flushTlb();
  hart.onFlush?.();
}
