/**
 * JSON exactly as QEMU's qobject pretty printer writes it (4-space indent, empty arrays open and
 * closed on separate lines), so `--output=json` is byte-identical for equal values.
 */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json | undefined };

export function qemuJson(value: Json, level = 0): string {
  const pad = '    '.repeat(level + 1);
  const end = '    '.repeat(level);
  if (Array.isArray(value)) {
    if (value.length === 0) return `[\n${end}]`;
    return `[\n${value.map((v) => pad + qemuJson(v, level + 1)).join(',\n')}\n${end}]`;
  }
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined) as [string, Json][];
    if (entries.length === 0) return `{\n${end}}`;
    return `{\n${entries.map(([k, v]) => `${pad}${JSON.stringify(k)}: ${qemuJson(v, level + 1)}`).join(',\n')}\n${end}}`;
  }
  return JSON.stringify(value);
}
