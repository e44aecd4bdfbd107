/**
 * Output formatting shared by every iotest: JSON printed the way QEMU's iotests print it
 * (Python's json.dumps with sort_keys: `{"a": 1, "b": [2, 3]}`), so one golden file holds for
 * tsqemu and for real QEMU.
 */
export function qemuJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(qemuJson).join(', ')}]`;
  if (typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record).filter((k) => record[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}: ${qemuJson(record[k])}`).join(', ')}}`;
  }
  return JSON.stringify(String(value));
}

/** A filter rewrites a value before it is logged (deep, pure). */
export type Filter = (value: unknown) => unknown;

function mapDeep(value: unknown, fn: (key: string | null, v: unknown) => unknown, depth = 0): unknown {
  if (depth > 64) return value;
  if (Array.isArray(value)) return value.map((v) => mapDeep(fn(null, v), fn, depth + 1));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) out[k] = mapDeep(fn(k, v), fn, depth + 1);
    return out;
  }
  return value;
}

/** QMP event timestamps vary between runs and between emulators. */
export const filterTimestamps: Filter = (value) =>
  mapDeep(value, (key, v) => (key === 'timestamp' && v !== null && typeof v === 'object' ? { microseconds: 'USECS', seconds: 'SECS' } : v));

/** Scratch paths differ between runs. */
export function filterPath(dir: string, name = 'TEST_DIR'): Filter {
  return (value) => mapDeep(value, (_key, v) => (typeof v === 'string' ? v.split(dir).join(name) : v));
}

/** Auto-generated node names (`#block123`) differ between emulators and runs. */
export const filterNodeIds: Filter = (value) => mapDeep(value, (_key, v) => (typeof v === 'string' ? v.replace(/#block\d+/g, '#block') : v));

/** Job offsets and lengths depend on timing; tests that don't check them filter them. */
export const filterJobOffsets: Filter = (value) =>
  mapDeep(value, (key, v) => (key === 'offset' || key === 'current-progress' || key === 'len' || key === 'total-progress') && typeof v === 'number' ? 'OFFSET' : v);

export function applyFilters(value: unknown, filters: readonly Filter[]): unknown {
  let out = value;
  for (const filter of filters) out = filter(out);
  return out;
}
