/**
 * QEMU's QMP replies are QDicts, and QDict iterates its entries by hash bucket (qobject/qdict.c:
 * 512 buckets, tdb_hash, each bucket a list with the newest entry first), so the JSON key order of
 * a reply is a function of the key set and of the order the QAPI output visitor inserted the keys
 * (the schema's member order). `qdictOrder` reproduces that order, so replies whose optional
 * members come and go still read exactly as QEMU's.
 */

const QDICT_BUCKET_MAX = 512;

/** tdb_hash as qdict.c has it (32-bit unsigned arithmetic over the key's UTF-8 bytes). */
export function tdbHash(name: string): number {
  const bytes = new TextEncoder().encode(name);
  let value = Math.imul(0x238f13af, bytes.length) >>> 0;
  for (let i = 0; i < bytes.length; i++) value = (value + ((bytes[i]! << ((i * 5) % 24)) >>> 0)) >>> 0;
  return (Math.imul(1103515243, value) + 12345) >>> 0;
}

/**
 * The entries of `record` in the order QEMU prints them, given the order they were inserted in:
 * `insertionOrder` first (the QAPI schema's member order; absent members are skipped), then any
 * other key in its current order.
 */
export function qdictOrder(record: Readonly<Record<string, unknown>>, insertionOrder: readonly string[]): Record<string, unknown> {
  const inserted = insertionOrder.filter((k) => Object.prototype.hasOwnProperty.call(record, k));
  for (const k of Object.keys(record)) if (!inserted.includes(k)) inserted.push(k);
  const buckets = new Map<number, string[]>();
  for (const key of inserted) {
    const bucket = tdbHash(key) % QDICT_BUCKET_MAX;
    const list = buckets.get(bucket) ?? [];
    list.unshift(key); // QLIST_INSERT_HEAD
    buckets.set(bucket, list);
  }
  const out: Record<string, unknown> = {};
  for (const bucket of [...buckets.keys()].sort((a, b) => a - b)) for (const key of buckets.get(bucket)!) out[key] = record[key];
  return out;
}

/** BlockInfo's members in QAPI order (qapi/block-core.json, QEMU 7.2). */
export const BLOCK_INFO_ORDER = ['device', 'qdev', 'type', 'removable', 'locked', 'inserted', 'tray_open', 'io-status'] as const;

/** BlockDeviceInfo's members in QAPI order (QEMU 7.2). */
export const BLOCK_DEVICE_INFO_ORDER = [
  'file',
  'node-name',
  'ro',
  'drv',
  'backing_file',
  'backing_file_depth',
  'encrypted',
  'detect_zeroes',
  'bps',
  'bps_rd',
  'bps_wr',
  'iops',
  'iops_rd',
  'iops_wr',
  'image',
  'bps_max',
  'bps_rd_max',
  'bps_wr_max',
  'iops_max',
  'iops_rd_max',
  'iops_wr_max',
  'bps_max_length',
  'bps_rd_max_length',
  'bps_wr_max_length',
  'iops_max_length',
  'iops_rd_max_length',
  'iops_wr_max_length',
  'iops_size',
  'group',
  'cache',
  'write_threshold',
  'dirty-bitmaps',
] as const;

/** ImageInfo's members in QAPI order (QEMU 7.2). */
export const IMAGE_INFO_ORDER = [
  'filename',
  'format',
  'dirty-flag',
  'actual-size',
  'virtual-size',
  'cluster-size',
  'encrypted',
  'compressed',
  'backing-filename',
  'full-backing-filename',
  'backing-filename-format',
  'snapshots',
  'backing-image',
  'format-specific',
] as const;

const CACHE_INFO_ORDER = ['writeback', 'direct', 'no-flush'] as const;
const DIRTY_INFO_ORDER = ['name', 'count', 'granularity', 'recording', 'busy', 'persistent', 'inconsistent'] as const;
/** Bound on nested backing-image levels reordered (the chain is bounded by the block layer too). */
const MAX_IMAGE_DEPTH = 1024;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** An ImageInfo and its backing-image chain in QEMU's print order (iterative: no recursion on image data). */
export function orderImageInfo(image: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const levels: Record<string, unknown>[] = [];
  for (let level: unknown = image; isRecord(level) && levels.length < MAX_IMAGE_DEPTH; level = level['backing-image']) levels.push(level);
  let below: Record<string, unknown> | undefined;
  for (let i = levels.length - 1; i >= 0; i--) {
    const copy = { ...levels[i]! };
    if (below !== undefined) copy['backing-image'] = below;
    below = qdictOrder(copy, IMAGE_INFO_ORDER);
  }
  return below ?? {};
}

/** A BlockDeviceInfo (query-block's `inserted`, query-named-block-nodes' entries) in QEMU's print order. */
export function orderBlockDeviceInfo(info: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...info };
  if (isRecord(copy['image'])) copy['image'] = orderImageInfo(copy['image']);
  if (isRecord(copy['cache'])) copy['cache'] = qdictOrder(copy['cache'], CACHE_INFO_ORDER);
  if (Array.isArray(copy['dirty-bitmaps'])) copy['dirty-bitmaps'] = copy['dirty-bitmaps'].map((b: unknown) => (isRecord(b) ? qdictOrder(b, DIRTY_INFO_ORDER) : b));
  return qdictOrder(copy, BLOCK_DEVICE_INFO_ORDER);
}
