import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { JsonStream } from '../../../src/monitor/json-stream.js';
import { writeJson } from '../../../src/monitor/json-writer.js';
import type { JsonValue } from '../../../src/monitor/json-value.js';

function collect(chunks: string[], limits = {}): (JsonValue | string)[] {
  const out: (JsonValue | string)[] = [];
  const stream = new JsonStream((value, error) => out.push(value === undefined ? `ERR ${error}` : value), limits);
  for (const chunk of chunks) stream.feed(chunk);
  return out;
}

describe('JSON stream', () => {
  it('splits messages on balance, not newlines, across any chunking', () => {
    fc.assert(
      fc.property(fc.array(fc.jsonValue(), { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 8 }), (values, cuts) => {
        const objects = values.map((v) => ({ v }));
        const text = objects.map((o) => JSON.stringify(o)).join(' ');
        const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
        const chunks: string[] = [];
        let last = 0;
        for (const p of points) {
          chunks.push(text.slice(last, p));
          last = p;
        }
        chunks.push(text.slice(last));
        // Integers beyond 2^53 come back exact as bigint; compare them as numbers.
        const parsed = JSON.parse(JSON.stringify(collect(chunks), (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v)));
        expect(parsed).toEqual(JSON.parse(`[${objects.map((o) => JSON.stringify(o)).join(',')}]`));
      }),
      { numRuns: 200 },
    );
  });

  it('keeps big integers exact and accepts single quotes like QEMU', () => {
    expect(collect(['{"id":12345678901234567890,\'s\':\'a"b\\\'\'}'])).toEqual([{ id: 12345678901234567890n, s: 'a"b\'' }]);
    expect(writeJson({ id: 12345678901234567890n, s: 'é\n' })).toBe('{"id": 12345678901234567890, "s": "\\u00E9\\n"}');
  });

  it('bounds nesting and token count', () => {
    expect(collect(['['.repeat(2000)])).toEqual(['ERR JSON nesting depth limit exceeded']);
    expect(collect([`[${'1,'.repeat(100)}1]`], { maxTokenCount: 50 })[0]).toBe('ERR JSON token count limit exceeded');
  });
});
