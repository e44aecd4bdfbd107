// `npm run jit-soak`: the issue's "at least 10^6 random blocks, JIT vs interpreter" in one go.
// Splits the blocks over one process per core, each with its own fast-check seed (so no two
// processes draw the same programs), runs tests/property/riscv-jit.test.ts in each, and fails if
// any fails. A failure prints FC_SEED/FC_PATH; rerun that one alone with the same RISCV_JIT_RUNS.
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';

const total = Number(process.env.JIT_SOAK_BLOCKS ?? 1_000_000);
const workers = Math.max(1, Math.min(Number(process.env.JIT_SOAK_WORKERS ?? availableParallelism()), 8));
const per = Math.ceil(total / workers);
const baseSeed = Number(process.env.JIT_SOAK_SEED ?? 20261125);
const started = Date.now();

function runOne(index) {
  // Each process runs its blocks in chunks with consecutive seeds: space the processes apart.
  const seed = baseSeed + index * 100_000;
  return new Promise((resolve) => {
    const child = spawn('npx', ['vitest', 'run', 'tests/property/riscv-jit.test.ts', '--reporter=dot'], {
      env: { ...process.env, RISCV_JIT_RUNS: String(per), FC_SEED: String(seed) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    child.on('exit', (code) => resolve({ index, seed, code, out }));
  });
}

console.log(`jit-soak: ${per * workers} random blocks over ${workers} processes (${per} each, first seeds ${Array.from({ length: workers }, (_, i) => baseSeed + i * 100_000).join(', ')})`);
const results = await Promise.all(Array.from({ length: workers }, (_, i) => runOne(i)));
const seconds = ((Date.now() - started) / 1000).toFixed(0);
let failed = false;
for (const r of results) {
  if (r.code !== 0) {
    failed = true;
    console.log(`\n--- seed ${r.seed} FAILED (reproduce: FC_SEED=${r.seed} RISCV_JIT_RUNS=${per} npx vitest run tests/property/riscv-jit.test.ts, then add the FC_PATH it prints)\n${r.out}`);
  }
}
console.log(`jit-soak: ${failed ? 'FAILED' : `${per * workers} blocks identical on the JIT and the interpreter`} in ${seconds} s`);
process.exit(failed ? 1 : 0);
