import { describe, expect, it } from 'vitest';
import { RngStreams } from '../../../src/engine/rng.js';
import { Digest, digestOf } from '../../../src/engine/digest.js';

describe('RngStreams', () => {
  it('gives each name its own stream, unaffected by other consumers', () => {
    const a = new RngStreams(7);
    const alone = Array.from({ length: 5 }, () => a.stream('latency').uint32());
    const b = new RngStreams(7);
    b.stream('other').uint32();
    b.stream('other').uint32();
    const withNeighbour = Array.from({ length: 5 }, () => b.stream('latency').uint32());
    expect(withNeighbour).toEqual(alone);
    expect(new RngStreams(8).stream('latency').uint32()).not.toBe(alone[0]);
  });

  it('int stays in range', () => {
    const s = new RngStreams(1).stream('x');
    for (let i = 0; i < 1000; i++) {
      const v = s.int(3);
      expect(v === 0 || v === 1 || v === 2).toBe(true);
    }
    expect(() => s.int(0)).toThrow();
  });
});

describe('Digest', () => {
  it('is order sensitive and canonical for object keys', () => {
    expect(new Digest().int(1).int(2).hex()).not.toBe(new Digest().int(2).int(1).hex());
    expect(digestOf({ a: 1, b: [2, 'x'] })).toBe(digestOf({ b: [2, 'x'], a: 1 }));
    expect(digestOf({ a: 1 })).not.toBe(digestOf({ a: 2 }));
    expect(new Digest().number(2 ** 40 + 3).hex()).not.toBe(new Digest().number(3).hex());
    expect(new Digest().hex()).toMatch(/^[0-9a-f]{16}$/);
  });
});
