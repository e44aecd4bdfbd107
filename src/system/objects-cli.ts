import { QmpError } from '../monitor/errors.js';
import type { JsonObject } from '../monitor/json-value.js';
import { ID_HINT, OBJECT_OPTIONS_SCHEMA, OBJECT_TYPES, type ObjectType, idWellFormed, objectAdd, objectPropertyHelp, objectPropertyNames } from '../monitor/objects.js';
import { checkArguments } from '../monitor/schema.js';
import type { BlockGraph } from '../block/graph.js';
import { UsageError, splitOptions } from './keyval.js';

/**
 * `-object` as QEMU 7.2's vl.c takes it: JSON (`{"qom-type": ...}`) goes through the QAPI
 * ObjectOptions visitor like QMP's object-add; anything else is a flat QemuOpts list
 * (`throttle-group,id=tg0,x-iops-total=100`, the last of a repeated key wins, only scalar
 * properties). Objects are created after every option is parsed and before any -blockdev,
 * whatever their order on the command line (qemu_create_early_backends).
 */
export interface ObjectSpec {
  /** The option's argument as given (error messages quote it). */
  readonly text: string;
  readonly json: boolean;
  /** JSON: the object as parsed. Flat: the key/value strings (qom-type implied first). */
  readonly props: Readonly<Record<string, unknown>>;
}

/** Parses one `-object` argument; throws UsageError for malformed JSON. */
export function parseObjectOption(text: string): ObjectSpec {
  if (text.trimStart().startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new UsageError(`JSON parse error, ${(error as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UsageError('JSON object expected');
    return { text, json: true, props: parsed as Record<string, unknown> };
  }
  return { text, json: false, props: Object.fromEntries(splitOptions(text, 'qom-type')) };
}

/** qemu_strtoi64 with base 0: decimal, 0x hex or 0 octal, optionally negative; else undefined. */
function parseInt64(text: string): number | undefined {
  const m = /^\s*(-?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(text);
  if (m === null) return undefined;
  const digits = m[2]!;
  const magnitude = digits.startsWith('0x') || digits.startsWith('0X') ? BigInt(digits) : digits.length > 1 && digits.startsWith('0') ? BigInt('0o' + digits.slice(1)) : BigInt(digits);
  const value = m[1] === '-' ? -magnitude : magnitude;
  if (value < -(2n ** 63n) || value > 2n ** 63n - 1n) return undefined;
  return Number(value);
}

/** `-object help` / `-object TYPE,help`: the text QEMU prints (exit 0), or null if not a help request. */
export function objectHelp(spec: ObjectSpec): string | null {
  if (spec.json) return null;
  const type = spec.props['qom-type'];
  if (type === 'help' || type === '?') return ['List of user creatable objects:', ...OBJECT_TYPES.map((t) => `  ${t}`)].join('\n');
  if (spec.props['help'] === undefined && spec.props['?'] === undefined) return null;
  if (!(OBJECT_TYPES as readonly unknown[]).includes(type)) return null;
  return [`${type as string} options:`, ...objectPropertyHelp(type as ObjectType).map((l) => `  ${l}`)].join('\n');
}

/**
 * Creates the command line's objects in order. Option errors (type, id, unknown or mistyped
 * properties, duplicate ids) read `-object TEXT: message`; errors from setting or completing the
 * object are printed bare, as QEMU prints them.
 */
export function createCliObjects(graph: BlockGraph, specs: readonly ObjectSpec[]): void {
  const seen = new Set<string>();
  for (const spec of specs) {
    const option = (message: string): UsageError => new UsageError(`-object ${spec.text}: ${message}`);
    let args: Record<string, unknown>;
    if (spec.json) {
      try {
        checkArguments(OBJECT_OPTIONS_SCHEMA, spec.props as JsonObject);
      } catch (error) {
        if (error instanceof QmpError) throw option(error.message);
        throw error;
      }
      args = { ...spec.props };
    } else {
      args = flatObjectArgs(spec, option);
      const id = args['id'] as string;
      if (seen.has(id)) throw option(`Duplicate ID '${id}' for object`);
      seen.add(id);
    }
    const id = args['id'] as string;
    if (!idWellFormed(id)) throw option(`Parameter 'id' expects an identifier\n${ID_HINT}`);
    try {
      objectAdd(graph, args);
    } catch (error) {
      if (error instanceof QmpError) throw new UsageError(error.message);
      throw error;
    }
  }
}

/** The flat QemuOpts form turned into object-add arguments, with QemuOpts' and the opts visitor's errors. */
function flatObjectArgs(spec: ObjectSpec, option: (message: string) => UsageError): Record<string, unknown> {
  const { 'qom-type': type, id, ...rest } = spec.props as Record<string, string>;
  if (type === undefined) throw option("Parameter 'qom-type' is missing");
  if (!(OBJECT_TYPES as readonly string[]).includes(type)) throw option(`Parameter 'qom-type' does not accept value '${type}'`);
  if (id === undefined) throw option("Parameter 'id' is missing");
  if (!idWellFormed(id)) throw option(`Parameter 'id' expects an identifier\n${ID_HINT}`);
  const names = objectPropertyNames(type as ObjectType);
  const args: Record<string, unknown> = { 'qom-type': type, id };
  for (const [key, value] of Object.entries(rest)) {
    if (!names.includes(key)) throw option(`Invalid parameter '${key}'`);
    const n = parseInt64(value);
    if (n === undefined) throw option(`Parameter '${key}' expects an int64 value`);
    args[key] = n;
  }
  return args;
}
