/**
 * A rolling 64-bit digest built from two independent 32-bit lanes (FNV-1a and a murmur-style
 * mix). Not cryptographic: it exists so two runs can be compared in one line.
 */
export class Digest {
  private a = 0x811c9dc5;
  private b = 0x9747b28c;

  reset(): void {
    this.a = 0x811c9dc5;
    this.b = 0x9747b28c;
  }

  /** The two lanes, for machine snapshots (the digest continues exactly from a restored state). */
  saveState(): [number, number] {
    return [this.a, this.b];
  }

  restoreState(state: readonly [number, number]): void {
    const [a, b] = state;
    // A lane holds its unsigned seed until the first mix, an int32 after it.
    const lane = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= -0x8000_0000 && (v as number) <= 0xffff_ffff;
    if (!(state.length === 2 && lane(a) && lane(b))) throw new TypeError(`bad digest state ${String(a)}, ${String(b)}`);
    this.a = a;
    this.b = b;
  }

  /** Mixes one 32-bit integer. */
  int(value: number): this {
    const v = value | 0;
    this.a = Math.imul(this.a ^ v, 0x01000193);
    let k = Math.imul(v, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    let h = this.b ^ k;
    h = (h << 13) | (h >>> 19);
    this.b = (Math.imul(h, 5) + 0xe6546b64) | 0;
    return this;
  }

  /** Mixes a number exactly: integers below 2^53 as two words, anything else by its text. */
  number(value: number): this {
    if (Number.isSafeInteger(value)) {
      this.int(value >>> 0);
      return this.int(Math.floor(value / 0x1_0000_0000));
    }
    return this.string(String(value));
  }

  string(value: string): this {
    this.int(value.length);
    for (let i = 0; i < value.length; i++) this.int(value.charCodeAt(i));
    return this;
  }

  bytes(value: Uint8Array): this {
    this.int(value.length);
    for (let i = 0; i < value.length; i++) this.int(value[i]!);
    return this;
  }

  /** Mixes a JSON-like value in a canonical order (object keys sorted). Bounded depth. */
  value(value: unknown, depth = 0): this {
    if (depth > 32) return this.string('<deep>');
    if (value === null || value === undefined) return this.int(0x6e756c6c);
    switch (typeof value) {
      case 'number':
        return this.int(1).number(value);
      case 'string':
        return this.int(2).string(value);
      case 'boolean':
        return this.int(value ? 3 : 4);
      case 'bigint':
        return this.int(5).string(value.toString(16));
      case 'object': {
        if (value instanceof Uint8Array) return this.int(6).bytes(value);
        if (Array.isArray(value)) {
          this.int(7).int(value.length);
          for (const item of value) this.value(item, depth + 1);
          return this;
        }
        const record = value as Record<string, unknown>;
        const keys = Object.keys(record).sort();
        this.int(8).int(keys.length);
        for (const key of keys) this.string(key).value(record[key], depth + 1);
        return this;
      }
      default:
        return this.string(String(value));
    }
  }

  /** 16 hex digits. */
  hex(): string {
    return (this.b >>> 0).toString(16).padStart(8, '0') + (this.a >>> 0).toString(16).padStart(8, '0');
  }
}

/** One-shot digest of a JSON-like value. */
export function digestOf(value: unknown): string {
  return new Digest().value(value).hex();
}
