#!/usr/bin/env node
// tsqemu-iotests: numbered golden-output tests for block jobs and transactions, runnable against
// in-process tsqemu (default) or any QEMU-compatible binary over a real QMP socket.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import chalk from 'chalk';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { spawnSync } from 'node:child_process';
import type { IoTest } from '../tests/iotests/lib/test-api.js';
import { makeContext, type TargetTools } from '../tests/iotests/lib/context.js';
import { QmpSocketVm } from '../tests/iotests/lib/qmp-socket-vm.js';
import { inProcessTarget } from '../tests/iotests/lib/in-process-vm.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
/** Compiled tests live in dist/tests/iotests; their golden files stay in tests/iotests. */
const compiledDir = resolve(here, '..', 'tests', 'iotests');
const sourceDir = join(root, 'tests', 'iotests');
/** A test that runs longer than this is stuck; it fails instead of hanging the suite. */
const TEST_TIMEOUT_MS = 120_000;

interface Args {
  tests: string[];
  group?: string[];
  regen: boolean;
  seed: number;
  repeat: number;
  binary?: string;
  img?: string;
  io?: string;
  verbose: boolean;
  includeGaps: boolean;
}

function parseSelection(specs: readonly string[], all: readonly string[]): Set<string> {
  if (specs.length === 0) return new Set(all);
  const chosen = new Set<string>();
  for (const spec of specs) {
    const range = /^(\d+)-(\d+)$/.exec(spec);
    if (range) {
      const lo = Number(range[1]);
      const hi = Number(range[2]);
      for (const name of all) if (Number(name) >= lo && Number(name) <= hi) chosen.add(name);
    } else if (/^\d+$/.test(spec)) {
      const name = spec.padStart(3, '0');
      if (!all.includes(name)) throw new Error(`no such test: ${spec}`);
      chosen.add(name);
    } else {
      throw new Error(`bad test selection '${spec}' (use numbers like 042 or ranges like 001-020)`);
    }
  }
  return chosen;
}

function nodeBin(name: string): string[] {
  return [process.execPath, join(root, 'bin', `${name}.js`)];
}

function targetTools(args: Args, policy: 'fifo' | 'explore'): TargetTools {
  if (args.binary !== undefined) {
    const binary = args.binary;
    return {
      target: /qemu-system/.test(binary) ? 'qemu' : 'tsqemu',
      img: args.img !== undefined ? [args.img] : ['qemu-img'],
      io: args.io !== undefined ? [args.io] : ['qemu-io'],
      async launchVm(dir, extra, log) {
        const vm = new QmpSocketVm(binary, dir, extra, log);
        await vm.start();
        return vm;
      },
    };
  }
  return inProcessTarget(
    { img: args.img !== undefined ? [args.img] : nodeBin('tsqemu-img'), io: args.io !== undefined ? [args.io] : nodeBin('tsqemu-io') },
    policy,
  );
}

interface Outcome {
  readonly status: 'pass' | 'fail' | 'skip';
  readonly detail?: string;
  readonly output: string;
}

async function runOne(name: string, test: IoTest, tools: TargetTools, seed: number, includeGaps: boolean): Promise<Outcome> {
  if (test.tsqemuOnly !== undefined && tools.target !== 'tsqemu') {
    return { status: 'skip', detail: `tsqemu only: ${test.tsqemuOnly}`, output: '' };
  }
  if (test.tsqemuGap !== undefined && tools.target === 'tsqemu' && !includeGaps) {
    return { status: 'skip', detail: `known tsqemu gap: ${test.tsqemuGap}`, output: '' };
  }
  const dir = mkdtempSync(join(tmpdir(), `iotest-${name}-`));
  const out: string[] = [];
  const { context, vms } = makeContext(tools, dir, seed, out);
  let failure: string | undefined;
  try {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      test.run(context),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${TEST_TIMEOUT_MS} ms`)), TEST_TIMEOUT_MS);
      }),
    ]).finally(() => clearTimeout(timer));
  } catch (error) {
    failure = error instanceof Error ? (error.stack ?? error.message) : String(error);
    out.push(`*** test raised: ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    for (const vm of vms) await vm.shutdown().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
  return { status: failure === undefined ? 'pass' : 'fail', detail: failure, output: out.join('\n') + '\n' };
}

function firstDifference(expected: string, actual: string): string {
  const e = expected.split('\n');
  const a = actual.split('\n');
  const index = e.findIndex((line, i) => line !== a[i]);
  const at = index < 0 ? e.length : index;
  return `first difference at line ${at + 1}:\n- ${e[at] ?? ''}\n+ ${a[at] ?? ''}`;
}

function unifiedDiff(expected: string, actual: string, dir: string): string {
  const a = join(dir, 'expected');
  const b = join(dir, 'actual');
  writeFileSync(a, expected);
  writeFileSync(b, actual);
  const result = spawnSync('diff', ['-u', '--label', 'expected', '--label', 'actual', a, b], { encoding: 'utf8' });
  return result.error ? firstDifference(expected, actual) : result.stdout;
}

async function main(): Promise<number> {
  const argv = (await yargs(hideBin(process.argv))
    .scriptName('tsqemu-iotests')
    .usage('$0 [TESTS...] [-g GROUP] [--regen] [--seed N] [--repeat N] [--binary B --img I --io O]')
    .option('group', { alias: 'g', type: 'string', array: true, describe: 'run only tests in these groups' })
    .option('regen', { type: 'boolean', default: false, describe: 'rewrite golden .out files from this run (review the diff!)' })
    .option('seed', { type: 'number', default: 0, describe: 'scheduler seed (explore policy when non-zero)' })
    .option('repeat', { type: 'number', default: 0, describe: 'rerun each test with N explore-policy seeds; all must match the golden output' })
    .option('binary', { type: 'string', describe: 'a QEMU-compatible system binary to drive over a QMP socket' })
    .option('img', { type: 'string', describe: 'qemu-img compatible binary' })
    .option('io', { type: 'string', describe: 'qemu-io compatible binary' })
    .option('verbose', { alias: 'v', type: 'boolean', default: false })
    .option('include-gaps', { type: 'boolean', default: false, describe: 'also run tests marked as known tsqemu gaps' })
    .strictOptions()
    .parse()) as unknown as Args & { _: (string | number)[] };
  const specs = argv._.map(String);
  const names = readdirSync(compiledDir)
    .map((f) => /^(\d{3})\.js$/.exec(f)?.[1])
    .filter((n): n is string => n !== undefined)
    .sort();
  const selected = parseSelection(specs, names);
  const scratch = mkdtempSync(join(tmpdir(), 'iotests-diff-'));
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  const started = Date.now();
  try {
    for (const name of names) {
      if (!selected.has(name)) continue;
      const test = ((await import(pathToFileURL(join(compiledDir, `${name}.js`)).href)) as { default: IoTest }).default;
      if (argv.group && !argv.group.some((g) => test.groups.includes(g))) continue;
      const goldenPath = join(sourceDir, `${name}.out`);
      const badPath = join(sourceDir, `${name}.out.bad`);
      const seeds = argv.repeat > 0 ? Array.from({ length: argv.repeat }, (_, i) => i + 1) : [argv.seed];
      let outcome: Outcome | undefined;
      let failingSeed: number | undefined;
      const t0 = Date.now();
      for (const seed of seeds) {
        const tools = targetTools(argv, seed === 0 ? 'fifo' : 'explore');
        outcome = await runOne(name, test, tools, seed, argv.includeGaps);
        if (outcome.status === 'skip') break;
        if (argv.regen && seeds.length === 1) {
          writeFileSync(goldenPath, outcome.output);
        }
        const golden = existsSync(goldenPath) ? readFileSync(goldenPath, 'utf8') : '';
        if (outcome.status === 'pass' && outcome.output !== golden) {
          outcome = { status: 'fail', detail: unifiedDiff(golden, outcome.output, scratch), output: outcome.output };
        }
        if (outcome.status === 'fail') {
          failingSeed = seed;
          break;
        }
      }
      const ms = Date.now() - t0;
      if (outcome === undefined) continue;
      if (outcome.status === 'skip') {
        skipped++;
        console.log(`${name}  ${chalk.yellow('skip')}  ${outcome.detail}`);
      } else if (outcome.status === 'pass') {
        passed++;
        if (existsSync(badPath)) unlinkSync(badPath);
        console.log(`${name}  ${chalk.green('pass')}  ${ms} ms${argv.repeat > 0 ? ` (${argv.repeat} seeds)` : ''}`);
      } else {
        failed++;
        writeFileSync(badPath, outcome.output);
        console.log(`${name}  ${chalk.red('FAIL')}  ${ms} ms  (output kept in tests/iotests/${name}.out.bad)`);
        if (failingSeed !== undefined && failingSeed !== 0) {
          console.log(`  failing seed ${failingSeed}; reproduce: npm run iotests -- ${name} --seed ${failingSeed}`);
        }
        console.log((argv.verbose ? outcome.detail : outcome.detail?.split('\n').slice(0, 40).join('\n'))?.replace(/^/gm, '  '));
      }
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  console.log(chalk.dim(`suite time ${((Date.now() - started) / 1000).toFixed(1)} s`));
  console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`tsqemu-iotests: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(2);
  },
);
