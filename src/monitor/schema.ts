import { QmpError } from './errors.js';
import { type JsonObject, type JsonValue, isJsonObject } from './json-value.js';

/**
 * QAPI argument schemas and the strict input visitor that checks a command's arguments before the
 * command runs (qobject-input-visitor.c's rules and wording): members are visited in schema order
 * (missing or mistyped ones fail first), then any member nobody asked for is refused. Paths in
 * messages are QEMU's full names (`actions[0].data.sync`), except enum values, which QEMU reports
 * with the bare member name.
 */
export type Schema =
  | { readonly k: 'str' }
  | { readonly k: 'int' }
  | { readonly k: 'uint' }
  | { readonly k: 'uint32' }
  | { readonly k: 'num' }
  | { readonly k: 'bool' }
  | { readonly k: 'any' }
  | { readonly k: 'null' }
  | { readonly k: 'enum'; readonly values: readonly string[] }
  | { readonly k: 'list'; readonly of: Schema }
  | StructSchema
  | UnionSchema
  | { readonly k: 'alternate'; readonly name: string; readonly choices: readonly Schema[] }
  | { readonly k: 'lazy'; readonly get: () => Schema };

export interface Member {
  readonly name: string;
  readonly type: Schema;
  readonly optional: boolean;
}

export interface StructSchema {
  readonly k: 'struct';
  readonly members: readonly Member[];
  /** Extra members are passed through unchecked (blockdev options handed to the block layer). */
  readonly open?: boolean;
}

/** A flat union: base members (one of them the enum discriminator) plus the variant's members. */
export interface UnionSchema {
  readonly k: 'union';
  readonly base: readonly Member[];
  readonly discriminator: string;
  readonly variants: Readonly<Record<string, readonly Member[]>>;
}

export const str: Schema = { k: 'str' };
export const int: Schema = { k: 'int' };
export const uint: Schema = { k: 'uint' };
export const uint32: Schema = { k: 'uint32' };
export const num: Schema = { k: 'num' };
export const bool: Schema = { k: 'bool' };
export const any: Schema = { k: 'any' };
export const enumOf = (...values: string[]): Schema => ({ k: 'enum', values });
export const listOf = (of: Schema): Schema => ({ k: 'list', of });
export const lazy = (get: () => Schema): Schema => ({ k: 'lazy', get });

/**
 * A struct from a compact spec: `{ device: str, 'speed?': int }` (a trailing `?` marks an
 * optional member, as in QAPI's schema files).
 */
export function struct(spec: Readonly<Record<string, Schema>>, open = false): StructSchema {
  return { k: 'struct', members: members(spec), open };
}

export function members(spec: Readonly<Record<string, Schema>>): Member[] {
  return Object.entries(spec).map(([key, type]) => ({ name: key.endsWith('?') ? key.slice(0, -1) : key, type, optional: key.endsWith('?') }));
}

export function union(base: Readonly<Record<string, Schema>>, discriminator: string, variants: Readonly<Record<string, Readonly<Record<string, Schema>>>>): UnionSchema {
  const out: Record<string, readonly Member[]> = {};
  for (const [name, spec] of Object.entries(variants)) out[name] = members(spec);
  return { k: 'union', base: members(base), discriminator, variants: out };
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

function typeError(path: string, expected: string): QmpError {
  return new QmpError(`Invalid parameter type for '${path}', expected: ${expected}`);
}

function child(path: string, name: string): string {
  return path === '' ? name : `${path}.${name}`;
}

function isInteger(value: JsonValue): value is number | bigint {
  return typeof value === 'bigint' || (typeof value === 'number' && Number.isInteger(value));
}

/** Checks `value` against `schema`; throws a QmpError worded as QEMU's on the first problem. */
export function check(schema: Schema, value: JsonValue, path: string, name: string): void {
  switch (schema.k) {
    case 'str':
      if (typeof value !== 'string') throw typeError(path, 'string');
      return;
    case 'int':
      if (!isInteger(value) || BigInt(value) < INT64_MIN || BigInt(value) > INT64_MAX) throw typeError(path, 'integer');
      return;
    case 'uint':
      // QEMU accepts negative int64 values for uint64 members (they wrap), but not other types.
      if (!isInteger(value) || BigInt(value) < INT64_MIN || BigInt(value) > UINT64_MAX) throw typeError(path, 'integer');
      return;
    case 'uint32': {
      if (!isInteger(value) || BigInt(value) < INT64_MIN || BigInt(value) > UINT64_MAX) throw typeError(path, 'integer');
      // Negative values wrap to huge uint64 values first, as in QEMU.
      const big = BigInt(value);
      if (big < 0n || big > 0xffffffffn) throw new QmpError(`Parameter '${name}' expects uint32_t`);
      return;
    }
    case 'num':
      if (typeof value !== 'number' && typeof value !== 'bigint') throw typeError(path, 'number');
      return;
    case 'bool':
      if (typeof value !== 'boolean') throw typeError(path, 'boolean');
      return;
    case 'null':
      if (value !== null) throw typeError(path, 'null');
      return;
    case 'any':
      return;
    case 'enum':
      if (typeof value !== 'string') throw typeError(path, 'string');
      if (!schema.values.includes(value)) throw new QmpError(`Parameter '${name}' does not accept value '${value}'`);
      return;
    case 'list':
      if (!Array.isArray(value)) throw typeError(path, 'array');
      // QEMU names list elements NULL in enum and alternate messages: "Parameter 'null' ...".
      for (let i = 0; i < value.length; i++) check(schema.of, value[i]!, `${path}[${i}]`, 'null');
      return;
    case 'struct':
      if (!isJsonObject(value)) throw typeError(path, 'object');
      checkMembers(schema.members, value, path);
      if (!schema.open) checkUnexpected(value, path, [schema.members]);
      return;
    case 'union': {
      if (!isJsonObject(value)) throw typeError(path, 'object');
      checkMembers(schema.base, value, path);
      const tag = value[schema.discriminator];
      const variant = typeof tag === 'string' ? schema.variants[tag] : undefined;
      if (variant !== undefined) checkMembers(variant, value, path);
      checkUnexpected(value, path, variant === undefined ? [schema.base] : [schema.base, variant]);
      return;
    }
    case 'alternate': {
      for (const choice of schema.choices) {
        if (matchesKind(resolve(choice), value)) {
          check(choice, value, path, name);
          return;
        }
      }
      throw new QmpError(`Invalid parameter type for '${name}', expected: ${schema.name}`);
    }
    case 'lazy':
      check(schema.get(), value, path, name);
      return;
  }
}

function resolve(schema: Schema): Schema {
  return schema.k === 'lazy' ? resolve(schema.get()) : schema;
}

/** The coarse QType test QEMU uses to pick an alternate's branch. */
function matchesKind(schema: Schema, value: JsonValue): boolean {
  switch (schema.k) {
    case 'str':
    case 'enum':
      return typeof value === 'string';
    case 'int':
    case 'uint':
    case 'uint32':
    case 'num':
      return typeof value === 'number' || typeof value === 'bigint';
    case 'bool':
      return typeof value === 'boolean';
    case 'null':
      return value === null;
    case 'list':
      return Array.isArray(value);
    case 'struct':
    case 'union':
      return isJsonObject(value);
    default:
      return true;
  }
}

function checkMembers(list: readonly Member[], value: JsonObject, path: string): void {
  for (const member of list) {
    const memberValue = Object.prototype.hasOwnProperty.call(value, member.name) ? value[member.name] : undefined;
    const memberPath = child(path, member.name);
    if (memberValue === undefined) {
      if (!member.optional) throw new QmpError(`Parameter '${memberPath}' is missing`);
      continue;
    }
    check(member.type, memberValue, memberPath, member.name);
  }
}

function checkUnexpected(value: JsonObject, path: string, lists: readonly (readonly Member[])[]): void {
  for (const key of Object.keys(value)) {
    if (!lists.some((list) => list.some((m) => m.name === key))) throw new QmpError(`Parameter '${child(path, key)}' is unexpected`);
  }
}

/** Validates a command's `arguments` (absent arguments are an empty object, as in QEMU). */
export function checkArguments(schema: StructSchema | UnionSchema | null, args: JsonObject): void {
  if (schema === null) {
    const first = Object.keys(args)[0];
    if (first !== undefined) throw new QmpError(`Parameter '${first}' is unexpected`);
    return;
  }
  check(schema, args, '', '');
}
