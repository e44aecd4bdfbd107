import type { BlockGraph } from '../block/graph.js';
import { BlockError } from '../block/error.js';
import { parseThrottleLimits, throttleGroupAdd, throttleGroupDel } from '../block/throttle-groups.js';
import { QmpError } from './errors.js';
import { type Schema, type UnionSchema, int, struct, union } from './schema.js';

/**
 * User-creatable objects (QEMU's `-object` / `object-add` / `object-del`, qom/object_interfaces.c):
 * `throttle-group` (the leaky buckets throttle nodes share) and `iothread` (recorded only: every
 * iothread runs on the one deterministic main loop). Objects live in the block graph's object
 * registry (`/objects` in QEMU), which the throttle driver looks groups up in.
 */

/** The qom-types tsqemu can create, in QEMU's ObjectType enum order. */
export const OBJECT_TYPES = ['iothread', 'throttle-group'] as const;
export type ObjectType = (typeof OBJECT_TYPES)[number];

const UINT_MAX = 0xffffffff;
const INT64_MAX_TEXT = '9223372036854775807';

/** ThrottleLimits members in QAPI order (`limits` of a throttle-group). */
const LIMIT_KEYS = [
  'iops-total',
  'iops-total-max',
  'iops-total-max-length',
  'iops-read',
  'iops-read-max',
  'iops-read-max-length',
  'iops-write',
  'iops-write-max',
  'iops-write-max-length',
  'bps-total',
  'bps-total-max',
  'bps-total-max-length',
  'bps-read',
  'bps-read-max',
  'bps-read-max-length',
  'bps-write',
  'bps-write-max',
  'bps-write-max-length',
  'iops-size',
] as const;

/** The flat `x-` properties of a throttle-group (ThrottleGroupProperties), QAPI order. */
const THROTTLE_X_KEYS = LIMIT_KEYS.map((k) => `x-${k}`);
const IOTHREAD_KEYS = ['poll-max-ns', 'poll-grow', 'poll-shrink', 'aio-max-batch', 'thread-pool-min', 'thread-pool-max'] as const;

const optionalInts = (keys: readonly string[]): Record<string, Schema> => Object.fromEntries(keys.map((k) => [`${k}?`, int]));

/** object-add's arguments: ObjectOptions, a flat union on `qom-type`. */
export const OBJECT_OPTIONS_SCHEMA: UnionSchema = union({ 'qom-type': { k: 'enum', values: OBJECT_TYPES }, id: { k: 'str' } }, 'qom-type', {
  'throttle-group': { 'limits?': struct(optionalInts(LIMIT_KEYS)), ...optionalInts(THROTTLE_X_KEYS) },
  iothread: optionalInts(IOTHREAD_KEYS),
});

/** Scalar (int) property names a qom-type takes: the command line's flat form sets only these. */
export function objectPropertyNames(type: ObjectType): readonly string[] {
  return type === 'throttle-group' ? THROTTLE_X_KEYS : IOTHREAD_KEYS;
}

/** `-object TYPE,help`: every property as `name=<type>`, sorted as QEMU prints them. */
export function objectPropertyHelp(type: ObjectType): string[] {
  const lines = objectPropertyNames(type).map((k) => `${k}=<int>`);
  if (type === 'throttle-group') lines.push('limits=<ThrottleLimits>');
  return lines.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The recorded state of an `iothread` object (IOThreadInfo minus the thread id). */
export interface IoThreadObject {
  readonly pollMaxNs: number;
  readonly pollGrow: number;
  readonly pollShrink: number;
  readonly aioMaxBatch: number;
  readonly threadPoolMin: number;
  readonly threadPoolMax: number;
}

/** QEMU's default poll-max-ns (IOTHREAD_POLL_MAX_NS_DEFAULT on Linux hosts). */
const IOTHREAD_POLL_MAX_NS_DEFAULT = 32768;
/** QEMU's thread-pool-max default (THREAD_POOL_MAX_THREADS_DEFAULT). */
const THREAD_POOL_MAX_DEFAULT = 64;

/** id_wellformed: a letter, then letters, digits, '-', '.', '_'. */
export function idWellFormed(id: string): boolean {
  return /^[A-Za-z][A-Za-z0-9_.-]*$/.test(id);
}

/** The hint QEMU appends on the command line after "expects an identifier". */
export const ID_HINT = "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.";

function toNumber(value: unknown): number {
  return typeof value === 'bigint' ? Number(value) : (value as number);
}

/** throttle_group_set / throttle_limits_to_config: the merged limits, in argument order. */
function throttleLimits(props: Readonly<Record<string, unknown>>): Record<string, number> {
  const limits: Record<string, number> = {};
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined) continue;
    if (key === 'limits') {
      for (const [name, v] of Object.entries(value as Record<string, unknown>)) {
        const n = toNumber(v);
        if (name.endsWith('-max-length') && (n < 0 || n > UINT_MAX)) throw new QmpError(`${name} value must be in the range [0, ${UINT_MAX}]`);
        limits[name] = n;
      }
      // throttle_group_set_limits validates the whole configuration when `limits` is set.
      parseThrottleLimits(limits);
      continue;
    }
    const n = toNumber(value);
    if (n < 0) throw new QmpError('Property values cannot be negative');
    // QEMU's own spelling ("therange") for the x- properties.
    if (key.endsWith('-max-length') && n > UINT_MAX) throw new QmpError(`${key} value must be in therange [0, ${UINT_MAX}]`);
    limits[key.slice(2)] = n;
  }
  return limits;
}

function iothreadProps(props: Readonly<Record<string, unknown>>): IoThreadObject {
  const read = (key: (typeof IOTHREAD_KEYS)[number], dflt: number): number => {
    const value = props[key];
    if (value === undefined) return dflt;
    const n = toNumber(value);
    if (n < 0) throw new QmpError(`${key} value must be in range [0, ${INT64_MAX_TEXT}]`);
    return n;
  };
  return {
    pollMaxNs: read('poll-max-ns', IOTHREAD_POLL_MAX_NS_DEFAULT),
    pollGrow: read('poll-grow', 0),
    pollShrink: read('poll-shrink', 0),
    aioMaxBatch: read('aio-max-batch', 0),
    threadPoolMin: read('thread-pool-min', 0),
    threadPoolMax: read('thread-pool-max', THREAD_POOL_MAX_DEFAULT),
  };
}

/**
 * user_creatable_add_qapi for arguments that passed OBJECT_OPTIONS_SCHEMA: the id must be an
 * identifier, properties are set (value errors), the object joins /objects (duplicate ids), then
 * it is completed (a throttle group's limits are validated as a whole).
 */
export function objectAdd(graph: BlockGraph, args: Readonly<Record<string, unknown>>): void {
  const { 'qom-type': qomType, id, ...props } = args as { 'qom-type': ObjectType; id: string };
  if (!idWellFormed(id)) throw new QmpError("Parameter 'id' expects an identifier");
  try {
    if (qomType === 'throttle-group') {
      const limits = throttleLimits(props);
      throttleGroupAdd(graph, id, { limits });
      return;
    }
    const value = iothreadProps(props);
    if (graph.objects.has(id)) throw new QmpError(`attempt to add duplicate property '${id}' to object (type 'container')`);
    // aio_context_set_thread_pool_params, when the iothread completes.
    const INT_MAX = 0x7fffffff;
    if (value.threadPoolMin > value.threadPoolMax || value.threadPoolMax === 0 || value.threadPoolMin > INT_MAX || value.threadPoolMax > INT_MAX) {
      throw new QmpError('bad thread-pool-min/thread-pool-max values');
    }
    graph.objects.set(id, { qomType: 'iothread', value });
  } catch (error) {
    if (error instanceof BlockError) throw new QmpError(error.message);
    throw error;
  }
}

/** user_creatable_del: unknown ids and objects in use are refused. */
export function objectDel(graph: BlockGraph, id: string): void {
  const object = graph.objects.get(id);
  if (object === undefined) throw new QmpError(`object '${id}' not found`);
  try {
    if (object.qomType === 'throttle-group') throttleGroupDel(graph, id);
    else graph.objects.delete(id);
  } catch (error) {
    if (error instanceof BlockError) throw new QmpError(error.message);
    throw error;
  }
}

/**
 * query-iothreads: IOThreadInfo per iothread object, newest first. Every iothread runs on the
 * main loop here, so `thread-id` is the main thread's id (`mainThreadId`).
 */
export function queryIothreads(graph: BlockGraph, mainThreadId: number): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const [id, object] of graph.objects) {
    if (object.qomType !== 'iothread') continue;
    const t = object.value as IoThreadObject;
    out.push({ 'poll-shrink': t.pollShrink, 'thread-id': mainThreadId, 'aio-max-batch': t.aioMaxBatch, 'poll-grow': t.pollGrow, 'poll-max-ns': t.pollMaxNs, id });
  }
  return out.reverse();
}

/** The iothread object `id`, or undefined (a device's `iothread=` property looks it up). */
export function findIothread(graph: BlockGraph, id: string): IoThreadObject | undefined {
  const object = graph.objects.get(id);
  return object?.qomType === 'iothread' ? (object.value as IoThreadObject) : undefined;
}
