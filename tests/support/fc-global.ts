import fc from 'fast-check';

// Property tests run with a fixed seed so CI is as deterministic as tsqemu itself; every failure
// still prints its seed and path. FC_SEED=<n> picks another seed, FC_SEED=random explores.
const requested = process.env.FC_SEED;
if (requested !== 'random') {
  fc.configureGlobal({ seed: requested !== undefined && requested !== '' ? Number(requested) : 20261125 });
}
