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

/** The generator state of one alea stream (seedrandom's `state()`): three doubles and a carry. */
export interface AleaState {
  readonly c: number;
  readonly s0: number;
  readonly s1: number;
  readonly s2: number;
}

/** A stream together with the handles a snapshot needs (kept out of the consumers' interface). */
interface StreamSlot {
  readonly stream: RngStream;
  save(): AleaState;
  restore(state: AleaState | null): void;
}

/**
 * Seeded RNG streams: one root seed, one independent stream per name, so a new consumer never
 * shifts the numbers another consumer sees.
 */
export class RngStreams {
  private readonly streams = new Map<string, StreamSlot>();

  constructor(readonly rootSeed: number) {
    assert(Number.isSafeInteger(rootSeed), `seed must be an integer, got ${rootSeed}`);
  }

  stream(name: string): RngStream {
    let slot = this.streams.get(name);
    if (slot === undefined) {
      slot = makeStream(name, `${this.rootSeed}/${name}`);
      this.streams.set(name, slot);
    }
    return slot.stream;
  }

  /** Snapshot state: every stream created so far, by name. */
  saveState(): Record<string, AleaState> {
    const out: Record<string, AleaState> = {};
    for (const [name, slot] of this.streams) out[name] = slot.save();
    return out;
  }

  /**
   * Restores every stream in place (consumers hold the stream objects). A stream the snapshot does
   * not know was created after it was taken: it goes back to its fresh seeded state, as it was then.
   */
  restoreState(state: Readonly<Record<string, AleaState>>): void {
    for (const [name, saved] of Object.entries(state)) {
      assert(typeof saved === 'object' && saved !== null, () => `bad RNG state for stream '${name}'`);
      this.stream(name);
      this.streams.get(name)!.restore(saved);
    }
    for (const [name, slot] of this.streams) if (!Object.hasOwn(state, name)) slot.restore(null);
  }
}

function makeStream(name: string, seed: string): StreamSlot {
  // `state: true` only adds `state()`; the numbers are those of a plain alea(seed).
  let prng = seedrandom.alea(seed, { state: true });
  const stream: RngStream = {
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
  return {
    stream,
    save: () => prng.state() as unknown as AleaState,
    restore(state: AleaState | null): void {
      if (state === null) {
        prng = seedrandom.alea(seed, { state: true });
        return;
      }
      for (const key of ['c', 's0', 's1', 's2'] as const) assert(typeof state[key] === 'number' && Number.isFinite(state[key]), () => `bad RNG state for stream '${name}': ${key}`);
      prng = seedrandom.alea('', { state: { c: state.c, s0: state.s0, s1: state.s1, s2: state.s2 } });
    },
  };
}
