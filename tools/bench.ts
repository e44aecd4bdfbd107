#!/usr/bin/env node
// `npm run bench [-- --json] [-- --only GROUP]`: every figure tsqemu promises, measured in one run.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import chalk from 'chalk';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import type { BenchCase, BenchResult } from './bench/types.js';

/** Every module in tools/bench/ that exports `benchCases` contributes figures (one file per area). */
async function discoverCases(): Promise<BenchCase[]> {
  const dir = join(dirname(fileURLToPath(import.meta.url)), 'bench');
  const cases: BenchCase[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.js')).sort()) {
    const mod = (await import(join(dir, file))) as { benchCases?: BenchCase[] };
    if (mod.benchCases) cases.push(...mod.benchCases);
  }
  return cases;
}

function format(value: number): string {
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)} M`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(1)} k`;
  return value.toFixed(value < 10 ? 2 : 1) + ' ';
}

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .scriptName('tsqemu-bench')
    .option('json', { type: 'boolean', default: false, describe: 'print a JSON array of {name, value, unit, qemu?, ratio?}' })
    .option('only', { type: 'string', array: true, describe: 'run only these groups' })
    .strict()
    .parse();
  const results: BenchResult[] = [];
  const failed: string[] = [];
  for (const bench of await discoverCases()) {
    if (argv.only && !argv.only.includes(bench.group)) continue;
    if (!argv.json) process.stderr.write(chalk.dim(`running ${bench.name}...\n`));
    let figures: BenchResult[];
    try {
      figures = await bench.run();
    } catch (error) {
      // One broken area must not hide every other figure: report it, go on, fail at the end.
      failed.push(bench.name);
      console.error(chalk.red(`${bench.name}: ${error instanceof Error ? error.message : String(error)}`));
      continue;
    }
    for (const figure of figures) {
      results.push(figure);
      if (!argv.json) {
        const vsQemu = figure.qemu !== undefined ? chalk.cyan(`  (QEMU ${format(figure.qemu)}${figure.unit}, ratio ${figure.ratio?.toFixed(2)})`) : '';
        const note = figure.note ? chalk.dim(`  ${figure.note}`) : '';
        console.log(`${figure.name.padEnd(48)} ${chalk.bold(format(figure.value) + figure.unit)}${vsQemu}${note}`);
      }
    }
  }
  if (argv.json) console.log(JSON.stringify(results, null, 2));
  if (failed.length > 0) {
    console.error(chalk.red(`failed: ${failed.join(', ')}`));
    process.exitCode = 1;
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
