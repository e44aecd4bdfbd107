import type { JsonValue } from './json-value.js';

/**
 * Serializes a value the way QEMU's json-writer does in compact mode: `", "` and `": "`
 * separators, every character outside printable ASCII as an upper-case `\uXXXX` escape. Values
 * that are `undefined` inside objects are skipped (optional members that are absent).
 */
export function writeJson(value: unknown): string {
  const out: string[] = [];
  write(value, out);
  return out.join('');
}

function write(value: unknown, out: string[]): void {
  switch (typeof value) {
    case 'string':
      out.push(quote(value));
      return;
    case 'number':
      out.push(formatNumber(value));
      return;
    case 'bigint':
      out.push(value.toString());
      return;
    case 'boolean':
      out.push(value ? 'true' : 'false');
      return;
    case 'object': {
      if (value === null) {
        out.push('null');
        return;
      }
      if (Array.isArray(value)) {
        out.push('[');
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out.push(', ');
          write(value[i] === undefined ? null : value[i], out);
        }
        out.push(']');
        return;
      }
      out.push('{');
      let first = true;
      for (const key of Object.keys(value)) {
        const member = (value as Record<string, unknown>)[key];
        if (member === undefined) continue;
        if (!first) out.push(', ');
        first = false;
        out.push(quote(key), ': ');
        write(member, out);
      }
      out.push('}');
      return;
    }
    default:
      out.push('null');
  }
}

function formatNumber(n: number): string {
  if (Number.isFinite(n)) return Object.is(n, -0) ? '-0' : String(n);
  if (Number.isNaN(n)) return 'nan';
  return n > 0 ? 'inf' : '-inf';
}

const NEEDS_ESCAPE = /[\u0000-\u001f"\\\u007f-\uffff]/;

function quote(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return `"${s}"`;
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    switch (c) {
      case 0x22:
        out += '\\"';
        break;
      case 0x5c:
        out += '\\\\';
        break;
      case 0x08:
        out += '\\b';
        break;
      case 0x0c:
        out += '\\f';
        break;
      case 0x0a:
        out += '\\n';
        break;
      case 0x0d:
        out += '\\r';
        break;
      case 0x09:
        out += '\\t';
        break;
      default:
        if (c >= 0x20 && c < 0x7f) out += s[i];
        else out += '\\u' + c.toString(16).toUpperCase().padStart(4, '0');
    }
  }
  return out + '"';
}

/** The same value as a plain JSON-compatible value (bigint kept): for in-process callers. */
export type { JsonValue };
