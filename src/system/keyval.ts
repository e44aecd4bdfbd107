import { assert } from '../engine/assert.js';

/** A command-line usage error, printed as `tsqemu: <option> <arg>: <message>` with exit status 1. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** `key=value,key2=value2` pairs in order; `,,` is a literal comma (QEMU's option syntax). */
export function splitOptions(text: string, implied?: string): [string, string][] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== ',') {
      current += c;
    } else if (text[i + 1] === ',') {
      current += ',';
      i++;
    } else {
      parts.push(current);
      current = '';
    }
  }
  parts.push(current);
  const out: [string, string][] = [];
  parts.forEach((part, index) => {
    if (part === '') return; // QEMU tolerates empty elements (a trailing comma)
    const eq = part.indexOf('=');
    if (eq >= 0) out.push([part.slice(0, eq), part.slice(eq + 1)]);
    else if (index === 0 && implied !== undefined) out.push([implied, part]);
    else out.push([part, 'on']); // a bare flag means "on"
  });
  return out;
}

type KeyvalNode = { [key: string]: KeyvalNode | string } | KeyvalNode[];

/**
 * QEMU's keyval syntax (`-blockdev driver=qcow2,file.driver=file,file.filename=x`): dotted keys
 * build nested objects, all-digit key segments build lists. Values stay strings; the consumer
 * converts them (QEMU's keyval input visitor does the same).
 */
export function parseKeyval(text: string, implied?: string): Record<string, unknown> {
  const root: Record<string, KeyvalNode | string> = {};
  for (const [key, value] of splitOptions(text, implied)) {
    if (key === '') throw new UsageError(`Invalid parameter ''`);
    const segments = key.split('.');
    let node: Record<string, KeyvalNode | string> = root;
    for (let s = 0; s < segments.length - 1; s++) {
      const seg = segments[s]!;
      if (seg === '') throw new UsageError(`Invalid parameter '${key}'`);
      const existing = node[seg];
      if (typeof existing === 'string') throw new UsageError(`Parameters '${segments.slice(0, s + 1).join('.')}.*' used inconsistently`);
      if (existing === undefined) {
        const fresh: Record<string, KeyvalNode | string> = {};
        node[seg] = fresh;
        node = fresh;
      } else {
        node = existing as Record<string, KeyvalNode | string>;
      }
    }
    const last = segments[segments.length - 1]!;
    if (last === '') throw new UsageError(`Invalid parameter '${key}'`);
    if (typeof node[last] === 'object') throw new UsageError(`Parameters '${key}.*' used inconsistently`);
    if (node[last] !== undefined) throw new UsageError(`Parameter '${key}' appears more than once`);
    node[last] = value;
  }
  return listify(root) as Record<string, unknown>;
}

/** Objects whose keys are exactly 0..n-1 become lists (keyval's list convention). */
function listify(node: KeyvalNode | string, depth = 0): unknown {
  assert(depth < 64, 'keyval nesting too deep');
  if (typeof node === 'string') return node;
  const keys = Object.keys(node);
  const entries = keys.map((k) => [k, listify((node as Record<string, KeyvalNode | string>)[k]!, depth + 1)] as const);
  if (keys.length > 0 && keys.every((k) => /^\d+$/.test(k))) {
    const sorted = [...entries].sort((a, b) => Number(a[0]) - Number(b[0]));
    if (sorted.every(([k], i) => Number(k) === i)) return sorted.map(([, v]) => v);
  }
  return Object.fromEntries(entries);
}
