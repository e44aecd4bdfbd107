import { BlockError } from './error.js';

/**
 * blockdev-add options, as QMP delivers them (`{driver, node-name, file: {...} | "name", ...}`).
 * Values may also be strings, as `-blockdev driver=file,filename=x,size=1G` produces (keyval).
 */
export type BlockdevOptions = Readonly<Record<string, unknown>>;

/** A child reference: the node-name of an existing node, or options of a node to create. */
export type BlockdevRef = string | BlockdevOptions;

const SIZE_SUFFIXES: Readonly<Record<string, number>> = { b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50, e: 2 ** 60 };

/**
 * Parses a size the way QEMU's qemu_strtosz does: a number with an optional unit suffix
 * (B, K, M, G, T, P, E; powers of 1024; case-insensitive). Returns undefined when malformed or
 * not exactly representable as a safe integer.
 */
export function parseSize(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([bkmgtpeBKMGTPE]?)\s*$/.exec(text);
  if (match === null) return undefined;
  const unit = SIZE_SUFFIXES[(match[2] ?? '').toLowerCase() || 'b'] ?? 1;
  const value = Number(match[1]) * unit;
  if (!Number.isSafeInteger(value)) return undefined;
  if (match[1]!.includes('.') && unit === 1) return undefined;
  return value;
}

/**
 * Reads one level of blockdev options with QAPI's messages ("Parameter 'filename' is missing",
 * "Invalid parameter type for 'size', expected: integer", "Parameter 'x' is unexpected"). Each key
 * read is remembered, so `finish()` can refuse keys nobody asked for.
 */
export class OptionReader {
  private readonly used = new Set<string>();

  constructor(
    readonly options: BlockdevOptions,
    /** Dotted path of this level for messages ("file." for a nested child). */
    readonly prefix = '',
  ) {}

  /** Marks `key` as understood without reading it. */
  accept(...keys: string[]): void {
    for (const key of keys) this.used.add(key);
  }

  has(key: string): boolean {
    return this.options[key] !== undefined;
  }

  raw(key: string): unknown {
    this.used.add(key);
    return this.options[key];
  }

  private name(key: string): string {
    return this.prefix + key;
  }

  missing(key: string): BlockError {
    return new BlockError(`Parameter '${this.name(key)}' is missing`);
  }

  invalidType(key: string, expected: string): BlockError {
    return new BlockError(`Invalid parameter type for '${this.name(key)}', expected: ${expected}`);
  }

  str(key: string): string | undefined;
  str(key: string, required: true): string;
  str(key: string, required = false): string | undefined {
    const value = this.raw(key);
    if (value === undefined) {
      if (required) throw this.missing(key);
      return undefined;
    }
    if (typeof value !== 'string') throw this.invalidType(key, 'string');
    return value;
  }

  bool(key: string, defaultValue: boolean): boolean {
    const value = this.raw(key);
    if (value === undefined) return defaultValue;
    if (typeof value === 'boolean') return value;
    if (value === 'on' || value === 'true' || value === 'yes') return true;
    if (value === 'off' || value === 'false' || value === 'no') return false;
    throw this.invalidType(key, 'boolean');
  }

  /** A signed integer option in [min, max]. */
  int(key: string, defaultValue: number, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number {
    const value = this.raw(key);
    if (value === undefined) return defaultValue;
    let n: number;
    if (typeof value === 'number') n = value;
    else if (typeof value === 'string' && /^-?\d+$/.test(value.trim())) n = Number(value.trim());
    else throw this.invalidType(key, 'integer');
    if (!Number.isSafeInteger(n)) throw this.invalidType(key, 'integer');
    if (n < min || n > max) throw new BlockError(`Parameter '${this.name(key)}' expects a value between ${min} and ${max}`);
    return n;
  }

  /** A size in bytes (a number, or a string with a K/M/G/T suffix as on the command line). */
  size(key: string, defaultValue: number): number;
  size(key: string, defaultValue: undefined): number | undefined;
  size(key: string, defaultValue: number | undefined): number | undefined {
    const value = this.raw(key);
    if (value === undefined) return defaultValue;
    if (typeof value === 'number') {
      if (!Number.isInteger(value) || value < 0) throw this.invalidType(key, 'size');
      // QEMU takes sizes up to 2^64; byte offsets here are exact JS integers (below 2^53).
      if (!Number.isSafeInteger(value)) throw new BlockError(`Parameter '${this.name(key)}' is too large: tsqemu supports sizes below 2^53 bytes`);
      return value;
    }
    if (typeof value === 'string') {
      // Command-line keyval gives strings ("1G"); anything else is QMP's type error.
      const parsed = parseSize(value);
      if (parsed === undefined) throw this.invalidType(key, 'integer');
      return parsed;
    }
    throw this.invalidType(key, 'size');
  }

  /** One of `values` (QAPI enum). */
  enumOf<T extends string>(key: string, values: readonly T[], defaultValue: T): T {
    const value = this.raw(key);
    if (value === undefined) return defaultValue;
    if (typeof value !== 'string') throw this.invalidType(key, 'string');
    if (!(values as readonly string[]).includes(value)) throw new BlockError(`Parameter '${this.name(key)}' does not accept value '${value}'`);
    return value as T;
  }

  /** A child reference; `null` is kept (backing: null means "no backing file"). */
  ref(key: string): BlockdevRef | null | undefined {
    const value = this.raw(key);
    if (value === undefined || value === null) return value as null | undefined;
    if (typeof value === 'string') return value;
    if (typeof value === 'object' && !Array.isArray(value)) return value as BlockdevOptions;
    throw this.invalidType(key, 'BlockdevRef');
  }

  /** A list option (blkdebug's inject-error), each element a plain object. */
  list(key: string): BlockdevOptions[] {
    const value = this.raw(key);
    if (value === undefined) return [];
    if (!Array.isArray(value)) throw this.invalidType(key, 'array');
    return value.map((item, index) => {
      if (typeof item !== 'object' || item === null || Array.isArray(item)) throw this.invalidType(`${key}[${index}]`, 'object');
      return item as BlockdevOptions;
    });
  }

  /** Refuses every key that was not read: QAPI's "Parameter 'x' is unexpected". */
  finish(): void {
    for (const key of Object.keys(this.options)) {
      if (this.options[key] === undefined) continue;
      if (!this.used.has(key)) throw new BlockError(`Parameter '${this.name(key)}' is unexpected`);
    }
  }
}
