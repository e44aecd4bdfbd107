#!/usr/bin/env node
// tsqemu-fuzz: race fuzzing of QMP transactions and block jobs. Failures are saved as small
// msgpack files and replay bit for bit with `tsqemu-fuzz replay FILE`.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import chalk from 'chalk';
import { pack, unpack } from 'msgpackr';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { type BatchResult, type Failure } from './fuzz/campaign.js';
import { describeCommand } from './fuzz/commands.js';
import { InvariantError, runCase } from './fuzz/harness.js';

const here = dirname(fileURLToPath(import.meta.url));

function parseShard(text: string): [number, number] {
  const m = /^(\d+)\/(\d+)$/.exec(text);
  if (!m || Number(m[2]) < 1 || Number(m[1]) >= Number(m[2])) throw new Error(`--shard expects I/N with 0 <= I < N, got '${text}'`);
  return [Number(m[1]), Number(m[2])];
}

function loadFailure(file: string): Failure {
  let value: unknown;
  try {
    value = unpack(readFileSync(file));
  } catch (error) {
    throw new Error(`${file}: not a tsqemu-fuzz failure file (${error instanceof Error ? error.message : String(error)})`);
  }
  const failure = value as Partial<Failure>;
  if (failure?.format !== 'tsqemu-fuzz-failure' || failure.version !== 1 || !Array.isArray(failure.fuzzCase?.commands)) {
    throw new Error(`${file}: not a tsqemu-fuzz failure file (version 1)`);
  }
  return failure as Failure;
}

function replay(file: string): number {
  const failure = loadFailure(file);
  const dir = mkdtempSync(join(tmpdir(), 'tsqemu-fuzz-replay-'));
  console.log(chalk.bold(`replaying ${file}`) + chalk.dim(` (seed ${failure.seed}, path ${failure.path}${failure.legacyStartInPrepare ? ', legacy start-in-prepare' : ''})`));
  console.log('commands:');
  failure.fuzzCase.commands.forEach((c, i) => console.log(`  ${i}: ${describeCommand(c)}`));
  console.log(`scheduler choices: [${failure.fuzzCase.choices.join(', ')}]`);
  let error: unknown = null;
  let transcript: string[] = [];
  let timeline = new Map<string, string[]>();
  try {
    const report = runCase(failure.fuzzCase, { dir, legacyStartInPrepare: failure.legacyStartInPrepare, record: true });
    transcript = report.transcript;
    timeline = report.timeline;
  } catch (caught) {
    error = caught;
    if (caught instanceof InvariantError && caught.report !== null) ({ transcript, timeline } = caught.report);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(chalk.bold('\nQMP transcript:'));
  for (const line of transcript) console.log(`  ${line}`);
  console.log(chalk.bold('\njob timeline:'));
  for (const [job, states] of timeline) console.log(`  ${job.padEnd(6)} ${states.join(' → ')}`);
  if (error !== null) {
    console.log(chalk.red(`\nreproduced: ${error instanceof Error ? error.message : String(error)}`));
    return 1;
  }
  console.log(chalk.green('\nno longer fails: the recorded invariant holds on this build'));
  return 0;
}

async function campaign(argv: { seconds?: number; runs?: number; seed: number; shard: string; legacyStartInPrepare: boolean; corpus: string; jobs: number }): Promise<number> {
  const [shard, shards] = parseShard(argv.shard);
  const jobs = Math.max(1, Math.min(argv.jobs, 64));
  const corpus = resolve(argv.corpus);
  const runsLimit = argv.runs ?? (argv.seconds === undefined ? 1000 : Infinity);
  const deadline = argv.seconds === undefined ? Infinity : Date.now() + argv.seconds * 1000;
  // Known failures first: a corpus is also a regression suite.
  let regressions = 0;
  if (existsSync(corpus)) {
    const dir = mkdtempSync(join(tmpdir(), 'tsqemu-fuzz-corpus-'));
    for (const file of readdirSync(corpus).filter((f) => f.endsWith('.msgpack')).sort()) {
      const failure = loadFailure(join(corpus, file));
      if (failure.legacyStartInPrepare !== argv.legacyStartInPrepare) continue;
      try {
        runCase(failure.fuzzCase, { dir, legacyStartInPrepare: failure.legacyStartInPrepare });
      } catch (error) {
        regressions++;
        console.error(chalk.red(`corpus ${file} still fails: ${error instanceof InvariantError ? error.message : String(error)}`));
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
  const started = Date.now();
  let cases = 0;
  const coverage = new Set<string>();
  const failures: string[] = [];
  const workers: Worker[] = [];
  const tty = process.stderr.isTTY === true;
  let lastLine = 0;
  const progress = (force = false) => {
    const now = Date.now();
    if (!force && now - lastLine < (tty ? 200 : 5000)) return;
    lastLine = now;
    const rate = cases / Math.max(0.001, (now - started) / 1000);
    const line = `cases ${cases}  ${rate.toFixed(0)}/s  transitions covered ${coverage.size}  failures ${failures.length}`;
    process.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
  };
  await new Promise<void>((resolveAll) => {
    let running = jobs;
    const stopAll = () => workers.forEach((w) => w.postMessage('stop'));
    for (let j = 0; j < jobs; j++) {
      const worker = new Worker(join(here, 'fuzz', 'worker.js'), {
        workerData: { seed: argv.seed, shard: shard * jobs + j, shards: shards * jobs, legacy: argv.legacyStartInPrepare },
      });
      workers.push(worker);
      worker.on('message', (message: BatchResult | 'done') => {
        if (message === 'done') {
          void worker.terminate();
          if (--running === 0) resolveAll();
          return;
        }
        cases += message.cases;
        for (const key of message.coverage) coverage.add(key);
        if (message.failure !== null) {
          mkdirSync(corpus, { recursive: true });
          const file = join(corpus, `failure-${message.failure.invariant}-${message.failure.seed}.msgpack`);
          writeFileSync(file, pack(message.failure));
          failures.push(file);
          process.stderr.write(tty ? '\n' : '');
          console.error(chalk.red(`invariant '${message.failure.invariant}' broken (seed ${message.failure.seed}, ${message.failure.fuzzCase.commands.length} commands after shrinking)`));
          console.error(`  reproduce: tsqemu-fuzz replay ${file}`);
        }
        progress();
        if (cases >= runsLimit || Date.now() >= deadline) stopAll();
      });
      worker.on('error', (error) => {
        console.error(chalk.red(`worker ${j} crashed: ${error.message}`));
        failures.push(`worker ${j}`);
        if (--running === 0) resolveAll();
      });
    }
  });
  progress(true);
  process.stderr.write('\n');
  const seconds = (Date.now() - started) / 1000;
  console.log(`${cases} cases in ${seconds.toFixed(1)} s (${(cases / seconds).toFixed(0)}/s), ${coverage.size} (status, verb, event) transitions covered, ${failures.length} failure(s)${regressions ? `, ${regressions} corpus regression(s)` : ''}`);
  return failures.length + regressions === 0 ? 0 : 1;
}

async function main(): Promise<number> {
  let code = 0;
  await yargs(hideBin(process.argv))
    .scriptName('tsqemu-fuzz')
    .command(
      'replay <file>',
      'replay a saved failure: QMP transcript, per-job timeline, and whether it still fails',
      (y) => y.positional('file', { type: 'string', demandOption: true }),
      (args) => {
        code = replay(args.file);
      },
    )
    .command(
      '$0',
      'run a fuzzing campaign',
      (y) =>
        y
          .option('seconds', { type: 'number', describe: 'stop after this many seconds' })
          .option('runs', { type: 'number', describe: 'stop after this many cases (default 1000 without --seconds)' })
          .option('seed', { type: 'number', default: 1, describe: 'root seed of the campaign' })
          .option('shard', { type: 'string', default: '0/1', describe: 'run shard I of N (seed space split, no coordinator)' })
          .option('legacy-start-in-prepare', { type: 'boolean', default: false, describe: 'TEST-ONLY: start backups in prepare (QEMU before 2016) to see the race found' })
          .option('corpus', { type: 'string', default: 'fuzz-failures', describe: 'directory for saved failures (re-run first as regressions)' })
          .option('jobs', { type: 'number', default: 1, describe: 'worker threads' })
          .conflicts('seconds', 'runs'),
      async (args) => {
        code = await campaign(args as Parameters<typeof campaign>[0]);
      },
    )
    .strict()
    .parseAsync();
  return code;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`tsqemu-fuzz: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(2);
  },
);
