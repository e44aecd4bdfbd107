import seedrandom from 'seedrandom';
import { assert } from './assert.js';

/** One named, independent pseudo-random stream. */
export interface RngStream {
  readonly name: string;
  /** Uniform float in [0, 1). */
  next(): number;
  /** Uniform integer in [0, bound). */
  int(bound: number): number;
  /** Unsigned 32-bit integer. */
  uint32(): number;
  /** Fills `bytes` with pseudo-random bytes. */
  fill(bytes: Uint8Array): void;
}

/**
 * Seeded RNG streams: one root seed, one independent stream per name, so a new consumer never
 * shifts the numbers another consumer sees.
 */
export class RngStreams {
  private readonly streams = new Map<string, RngStream>();

  constructor(readonly rootSeed: number) {
    assert(Number.isSafeInteger(rootSeed), `seed must be an integer, got ${rootSeed}`);
  }

  stream(name: string): RngStream {
    let stream = this.streams.get(name);
    if (stream === undefined) {
      stream = makeStream(name, `${this.rootSeed}/${name}`);
      this.streams.set(name, stream);
    }
    return stream;
  }
}

function makeStream(name: string, seed: string): RngStream {
  const prng = seedrandom.alea(seed);
  return {
    name,
    next: () => prng(),
    int(bound: number): number {
      assert(Number.isSafeInteger(bound) && bound > 0 && bound <= 0x1_0000_0000, `bad bound ${bound}`);
      return Math.floor(prng() * bound);
    },
    uint32: () => prng.int32() >>> 0,
    fill(bytes: Uint8Array): void {
      for (let i = 0; i < bytes.length; i += 4) {
        let word = prng.int32() >>> 0;
        for (let j = 0; j < 4 && i + j < bytes.length; j++) {
          bytes[i + j] = word & 0xff;
          word >>>= 8;
        }
      }
    },
  };
}
