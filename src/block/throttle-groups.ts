import { assert } from '../engine/assert.js';
import { type Co, type Coroutine, sleep } from '../engine/coroutine.js';
import { ClockType } from '../engine/clock.js';
import { CoMutex } from '../engine/sync.js';
import { BlockError } from './error.js';
import type { BlockGraph } from './graph.js';
import { OptionReader } from './options.js';

declare module '../engine/trace.js' {
  interface TraceEventMap {
    'throttle.wait': { group: string; write: boolean; bytes: number; waitNs: number };
  }
}

/** THROTTLE_VALUE_MAX: the largest limit QEMU accepts. */
export const THROTTLE_VALUE_MAX = 1e15;
const NS_PER_SECOND = 1e9;

/** Bucket indices (BucketType order). */
export const Bucket = { BPS_TOTAL: 0, BPS_READ: 1, BPS_WRITE: 2, OPS_TOTAL: 3, OPS_READ: 4, OPS_WRITE: 5 } as const;
const BUCKET_KEYS = ['bps-total', 'bps-read', 'bps-write', 'iops-total', 'iops-read', 'iops-write'] as const;

/** ThrottleLimits (QAPI spelling): averages, bursts (-max) and burst lengths (-max-length, seconds). */
export type ThrottleLimits = Partial<Record<(typeof BUCKET_KEYS)[number] | `${(typeof BUCKET_KEYS)[number]}-max` | `${(typeof BUCKET_KEYS)[number]}-max-length` | 'iops-size', number>>;

/** A leaky bucket (LeakyBucket). Levels are doubles, as QEMU's. */
interface LeakyBucket {
  avg: number;
  max: number;
  level: number;
  burstLevel: number;
  burstLength: number;
}

/**
 * throttle_compute_wait: ns until the bucket lets a request pass (0 = now). Over the normal
 * bucket (avg/10, or max*burst_length with bursts) wait for the average to drain the excess;
 * over the burst bucket (max/10) wait for the burst rate.
 */
function computeWait(b: LeakyBucket): number {
  if (b.avg === 0) return 0;
  let bucketSize: number;
  let burstBucketSize: number;
  if (b.max === 0) {
    bucketSize = b.avg / 10;
    burstBucketSize = 0;
  } else {
    bucketSize = b.max * b.burstLength;
    burstBucketSize = b.max / 10;
  }
  let extra = b.level - bucketSize;
  if (extra > 0) return Math.ceil((extra / b.avg) * NS_PER_SECOND);
  if (b.burstLength > 1) {
    extra = b.burstLevel - burstBucketSize;
    if (extra > 0) return Math.ceil((extra / b.max) * NS_PER_SECOND);
  }
  return 0;
}

function leak(b: LeakyBucket, deltaNs: number): void {
  b.level = Math.max(b.level - (b.avg * deltaNs) / NS_PER_SECOND, 0);
  if (b.burstLength > 1) b.burstLevel = Math.max(b.burstLevel - (b.max * deltaNs) / NS_PER_SECOND, 0);
}

/** Parses and validates limits with QEMU's messages (throttle_is_valid). */
export function parseThrottleLimits(limits: Readonly<Record<string, unknown>>, prefix = ''): { buckets: LeakyBucket[]; iopsSize: number } {
  const r = new OptionReader(limits, prefix);
  const buckets: LeakyBucket[] = BUCKET_KEYS.map((key) => {
    const avg = r.int(key, 0);
    const max = r.int(`${key}-max`, 0);
    const burstLength = r.int(`${key}-max-length`, 1);
    return { avg, max, level: 0, burstLevel: 0, burstLength };
  });
  const iopsSize = r.int('iops-size', 0);
  r.finish();
  const both = (total: number, read: number, write: number): boolean => buckets[total]!.avg !== 0 && (buckets[read]!.avg !== 0 || buckets[write]!.avg !== 0);
  const bothMax = (total: number, read: number, write: number): boolean => buckets[total]!.max !== 0 && (buckets[read]!.max !== 0 || buckets[write]!.max !== 0);
  if (both(0, 1, 2) || both(3, 4, 5) || bothMax(0, 1, 2) || bothMax(3, 4, 5)) {
    throw new BlockError('bps/iops/max total values and read/write values cannot be used at the same time');
  }
  if (iopsSize !== 0 && buckets[Bucket.OPS_TOTAL]!.avg === 0 && buckets[Bucket.OPS_READ]!.avg === 0 && buckets[Bucket.OPS_WRITE]!.avg === 0) {
    throw new BlockError('iops size requires an iops value to be set');
  }
  if (iopsSize < 0 || iopsSize > THROTTLE_VALUE_MAX) throw new BlockError(`bps/iops/max values must be within [0, ${THROTTLE_VALUE_MAX}]`);
  for (const b of buckets) {
    if (b.avg < 0 || b.max < 0 || b.avg > THROTTLE_VALUE_MAX || b.max > THROTTLE_VALUE_MAX) throw new BlockError(`bps/iops/max values must be within [0, ${THROTTLE_VALUE_MAX}]`);
    if (b.burstLength === 0) throw new BlockError('the burst length cannot be 0');
    if (b.burstLength < 0) throw new BlockError(`bps/iops/max values must be within [0, ${THROTTLE_VALUE_MAX}]`);
    if (b.burstLength > 1 && b.max === 0) throw new BlockError('burst length set without burst rate');
    if (b.max !== 0 && b.burstLength > THROTTLE_VALUE_MAX / b.max) throw new BlockError('burst length too high for this burst rate');
    if (b.max !== 0 && b.avg === 0) throw new BlockError('bps_max/iops_max require corresponding bps/iops values');
    if (b.max !== 0 && b.max < b.avg) throw new BlockError('bps_max/iops_max cannot be lower than bps/iops');
  }
  return { buckets, iopsSize };
}

/**
 * A throttle group (the `throttle-group` object): one set of leaky buckets shared by every
 * throttle node that names it. Requests queue per direction (FIFO through a CoMutex) and sleep
 * in virtual time until the buckets let them pass; a drained member bypasses the limits so a
 * drain never waits for a rate limit.
 */
export class ThrottleGroup {
  private buckets: LeakyBucket[];
  private iopsSize: number;
  private lastLeakNs: number;
  private readonly queues = [new CoMutex(), new CoMutex()];
  /** Coroutines sleeping for a limit, so a drain can wake them. */
  private readonly sleepers = new Set<Coroutine<unknown>>();
  /** Members (throttle nodes) currently attached. */
  members = 0;
  /** Nesting of drained sections of members: limits are off while > 0. */
  limitsDisabled = 0;

  constructor(
    readonly graph: BlockGraph,
    readonly id: string,
    limits: Readonly<Record<string, unknown>>,
  ) {
    const parsed = parseThrottleLimits(limits);
    this.buckets = parsed.buckets;
    this.iopsSize = parsed.iopsSize;
    this.lastLeakNs = graph.loop.clocks.read(ClockType.Realtime);
  }

  /** Replaces the limits (qom-set limits); levels start empty again. */
  setLimits(limits: Readonly<Record<string, unknown>>): void {
    const parsed = parseThrottleLimits(limits);
    this.buckets = parsed.buckets;
    this.iopsSize = parsed.iopsSize;
  }

  /** The limits in QAPI spelling (qom-get limits). */
  getLimits(): ThrottleLimits {
    const out: Record<string, number> = {};
    BUCKET_KEYS.forEach((key, i) => {
      const b = this.buckets[i]!;
      out[key] = b.avg;
      out[`${key}-max`] = b.max;
      out[`${key}-max-length`] = b.burstLength;
    });
    out['iops-size'] = this.iopsSize;
    return out as ThrottleLimits;
  }

  private leakAll(): void {
    const now = this.graph.loop.clocks.read(ClockType.Realtime);
    const delta = now - this.lastLeakNs;
    if (delta <= 0) return;
    for (const b of this.buckets) leak(b, delta);
    this.lastLeakNs = now;
  }

  private waitNs(isWrite: boolean): number {
    const own = isWrite ? [Bucket.BPS_TOTAL, Bucket.BPS_WRITE, Bucket.OPS_TOTAL, Bucket.OPS_WRITE] : [Bucket.BPS_TOTAL, Bucket.BPS_READ, Bucket.OPS_TOTAL, Bucket.OPS_READ];
    let wait = 0;
    for (const i of own) wait = Math.max(wait, computeWait(this.buckets[i]!));
    return wait;
  }

  private account(isWrite: boolean, bytes: number): void {
    const units = this.iopsSize > 0 && bytes > this.iopsSize ? bytes / this.iopsSize : 1;
    const add = (i: number, value: number): void => {
      const b = this.buckets[i]!;
      b.level += value;
      if (b.burstLength > 1) b.burstLevel += value;
    };
    add(Bucket.BPS_TOTAL, bytes);
    add(isWrite ? Bucket.BPS_WRITE : Bucket.BPS_READ, bytes);
    add(Bucket.OPS_TOTAL, units);
    add(isWrite ? Bucket.OPS_WRITE : Bucket.OPS_READ, units);
  }

  /** throttle_group_co_io_limits_intercept: waits until the request may go, then accounts it. */
  *intercept(isWrite: boolean, bytes: number): Co<void> {
    const queue = this.queues[isWrite ? 1 : 0]!;
    yield* queue.lock();
    try {
      for (let guard = 0; this.limitsDisabled === 0; guard++) {
        assert(guard < 1 << 24, 'throttle wait does not terminate');
        this.leakAll();
        const wait = this.waitNs(isWrite);
        if (wait === 0) break;
        this.graph.loop.trace.emit('throttle.wait', { group: this.id, write: isWrite, bytes, waitNs: wait });
        const self = this.graph.loop.current;
        if (self !== null) this.sleepers.add(self);
        yield sleep(wait);
        if (self !== null) this.sleepers.delete(self);
      }
      this.leakAll();
      this.account(isWrite, bytes);
    } finally {
      queue.unlock();
    }
  }

  /** A member entered a drained section: stop limiting and wake queued requests. */
  drainBegin(): void {
    this.limitsDisabled++;
    for (const co of [...this.sleepers]) co.wake();
  }

  drainEnd(): void {
    assert(this.limitsDisabled > 0, 'throttle drain end without begin');
    this.limitsDisabled--;
  }
}

/**
 * object-add qom-type=throttle-group: `props` is `{limits: {...}}` and/or the flat `x-bps-total`
 * style properties. Throws on a duplicate id or invalid limits.
 */
export function throttleGroupAdd(graph: BlockGraph, id: string, props: Readonly<Record<string, unknown>> = {}): ThrottleGroup {
  if (graph.objects.has(id)) throw new BlockError(`attempt to add duplicate property '${id}' to object (type 'container')`);
  const limits: Record<string, unknown> = {};
  const nested = props['limits'];
  if (nested !== undefined) {
    if (typeof nested !== 'object' || nested === null || Array.isArray(nested)) throw new BlockError("Invalid parameter type for 'limits', expected: object");
    Object.assign(limits, nested);
  }
  for (const [key, value] of Object.entries(props)) {
    if (key === 'limits') continue;
    if (!key.startsWith('x-')) throw new BlockError(`Property 'throttle-group.${key}' not found`);
    limits[key.slice(2)] = value;
  }
  const group = new ThrottleGroup(graph, id, limits);
  graph.objects.set(id, { qomType: 'throttle-group', value: group });
  return group;
}

/** object-del of a throttle group: refused while a throttle node uses it. */
export function throttleGroupDel(graph: BlockGraph, id: string): void {
  const object = graph.objects.get(id);
  if (object === undefined || object.qomType !== 'throttle-group') throw new BlockError(`object '${id}' not found`);
  if ((object.value as ThrottleGroup).members > 0) throw new BlockError(`object '${id}' is in use, can not be deleted`);
  graph.objects.delete(id);
}

/** The throttle group `id`, or "Throttle group 'x' does not exist". */
export function findThrottleGroup(graph: BlockGraph, id: string): ThrottleGroup {
  const object = graph.objects.get(id);
  if (object === undefined || object.qomType !== 'throttle-group') throw new BlockError(`Throttle group '${id}' does not exist`);
  return object.value as ThrottleGroup;
}
