/**
 * The JSON values QMP carries. Integers outside the safe range stay exact as `bigint` (QEMU keeps
 * int64/uint64 exactly, and echoes an `id` like 12345678901234567890 unchanged).
 */
export type JsonValue = null | boolean | number | bigint | string | JsonValue[] | JsonObject;

export interface JsonObject {
  [key: string]: JsonValue;
}

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
