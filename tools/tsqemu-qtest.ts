#!/usr/bin/env node
// tsqemu-qtest: run plain qtest scripts (QEMU fuzzer reproducer format) against tsqemu in-process,
// a tsqemu child process, or real QEMU; print the replies; fail on FAIL or a mismatched `# expect:`.
import { readFileSync, writeFileSync } from 'node:fs';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { MemoryLogSink } from '../src/qtest/log.js';
import { QtestScriptError, parseScript, runScript } from '../src/qtest/script.js';
import { QEMU_VIRT_ARGS, type QtestTarget, openQtestTarget, qemuDriveArgs } from '../src/qtest/targets.js';
import { FUZZ_AREAS, type FuzzArea, randomScript } from '../src/qtest/random-script.js';
import { firstDifference, stepOutput } from '../src/qtest/differential.js';

interface RunArgs {
  script: string;
  qemu?: string;
  tsqemu: boolean;
  drive: string[];
  log?: string;
  quiet: boolean;
  '--'?: (string | number)[];
}

async function run(argv: RunArgs): Promise<number> {
  let text: string;
  try {
    // yargs hands a lone '-' over as ''
    text = argv.script === '-' || argv.script === '' ? readFileSync(0, 'latin1') : readFileSync(argv.script, 'latin1');
  } catch (e) {
    process.stderr.write(`tsqemu-qtest: cannot read ${argv.script}: ${(e as Error).message}\n`);
    return 2;
  }
  let steps;
  try {
    steps = parseScript(text);
  } catch (e) {
    if (!(e instanceof QtestScriptError)) throw e;
    process.stderr.write(`tsqemu-qtest: ${argv.script}: ${e.message}\n`);
    return 2;
  }
  const extra = (argv['--'] ?? []).map(String);
  const memLog = argv.log !== undefined ? new MemoryLogSink() : undefined;
  let target: QtestTarget;
  if (argv.qemu !== undefined) {
    target = { kind: 'qemu', binary: argv.qemu === '' ? undefined : argv.qemu, args: extra.length > 0 ? extra : [...QEMU_VIRT_ARGS, ...qemuDriveArgs(argv.drive)], qtestLog: argv.log };
  } else if (argv.tsqemu || extra.length > 0) {
    target = { kind: 'tsqemu', args: extra.length > 0 ? extra : ['-M', 'virt', '-accel', 'qtest', '-display', 'none', '-nodefaults', ...qemuDriveArgs(argv.drive)], qtestLog: argv.log };
  } else {
    target = { kind: 'in-process', drives: argv.drive, log: memLog };
  }
  const client = await openQtestTarget(target);
  let problems = 0;
  try {
    await runScript(client, steps, (r) => {
      if (!argv.quiet) {
        for (const irq of r.irqs) process.stdout.write(`${irq}\n`);
        process.stdout.write(`${r.reply}\n`);
      }
      if (r.problem !== null) {
        problems++;
        process.stderr.write(`${argv.script === '' || argv.script === '-' ? '<stdin>' : argv.script}:${r.step.line}: ${r.step.command.slice(0, 120)}: got '${r.reply}', ${r.problem}\n`);
      }
    });
  } finally {
    await client.quit();
    if (memLog !== undefined && argv.log !== undefined) {
      writeFileSync(argv.log, memLog.text, 'latin1');
    }
  }
  return problems === 0 ? 0 : 1;
}

interface DiffArgs {
  script: string;
  qemu: string;
  drive: string[];
}

/** Runs the script on in-process tsqemu and on real QEMU; prints every command whose output differs. */
async function diff(argv: DiffArgs): Promise<number> {
  const steps = parseScript(readFileSync(argv.script, 'latin1'));
  const ours = await openQtestTarget({ kind: 'in-process', drives: argv.drive });
  const mine = await runScript(ours, steps);
  await ours.quit();
  const qemu = await openQtestTarget({ kind: 'qemu', binary: argv.qemu, args: [...QEMU_VIRT_ARGS, ...qemuDriveArgs(argv.drive)] });
  const theirs = await runScript(qemu, steps);
  await qemu.quit();
  let differences = 0;
  const output = (r: { irqs: readonly string[]; reply: string }): string => [...r.irqs, r.reply].join(' | ');
  mine.forEach((m, i) => {
    const q = theirs[i]!;
    if (output(m) === output(q)) return;
    differences++;
    process.stdout.write(`${argv.script}:${m.step.line}: ${m.step.command.slice(0, 120)}\n  qemu:   ${output(q)}\n  tsqemu: ${output(m)}\n`);
  });
  process.stdout.write(`${steps.length} commands, ${differences} differ\n`);
  return differences === 0 ? 0 : 1;
}

interface FuzzDiffArgs {
  seed: number;
  count: number;
  area: string[];
  qemu: string;
  save?: string;
}

/** Random time-independent commands on tsqemu and QEMU; stops at the first difference and saves the script. */
async function fuzzDiff(argv: FuzzDiffArgs): Promise<number> {
  const areas = (argv.area.length > 0 ? argv.area : FUZZ_AREAS) as FuzzArea[];
  const bad = areas.find((a) => !FUZZ_AREAS.includes(a));
  if (bad !== undefined) {
    process.stderr.write(`tsqemu-qtest: unknown area '${bad}' (${FUZZ_AREAS.join(', ')})\n`);
    return 2;
  }
  const lines = randomScript(argv.seed, argv.count, areas);
  const steps = parseScript(lines.join('\n'));
  const ours = await openQtestTarget({ kind: 'in-process' });
  const qemu = await openQtestTarget({ kind: 'qemu', binary: argv.qemu, args: [...QEMU_VIRT_ARGS] });
  let status = 0;
  try {
    const d = await firstDifference(steps, qemu, ours);
    if (d !== null) {
      process.stdout.write(`seed ${argv.seed}: command ${d.index + 1} differs: ${d.step.command}\n  qemu:   ${stepOutput(d.reference)}\n  tsqemu: ${stepOutput(d.candidate)}\n`);
      if (argv.save !== undefined) {
        const script = lines.slice(0, d.index + 1).map((l, j) => (j === d.index ? `${l}\n# expect: ${d.reference.reply}` : l));
        writeFileSync(argv.save, `# tsqemu-qtest fuzz-diff --seed ${argv.seed}: first difference from QEMU\n${script.join('\n')}\n`);
        process.stdout.write(`reproducer written to ${argv.save}\n`);
      }
      status = 1;
    } else {
      process.stdout.write(`seed ${argv.seed}: ${steps.length} commands, no difference\n`);
    }
  } finally {
    await ours.quit();
    await qemu.quit();
  }
  return status;
}

await yargs(hideBin(process.argv))
  .scriptName('tsqemu-qtest')
  .parserConfiguration({ 'populate--': true })
  .command<RunArgs>(
    'run <script>',
    'Run a qtest script (one command per line, # comments, "# expect: REPLY" checks); "-" reads stdin',
    (y) =>
      y
        .positional('script', { type: 'string', demandOption: true })
        .option('qemu', { type: 'string', describe: 'run against real QEMU (default binary qemu-system-riscv64)' })
        .option('tsqemu', { type: 'boolean', default: false, describe: 'run tsqemu as a child process over a unix socket' })
        .option('drive', { type: 'string', array: true, default: [], describe: 'raw image attached as virtio-blk (repeatable)' })
        .option('log', { type: 'string', describe: 'write the qtest log (QEMU -qtest-log format) here' })
        .option('quiet', { type: 'boolean', default: false, describe: 'print only problems' })
        .epilog('After "--", arguments for the emulator replace the defaults (virt, -accel qtest for tsqemu).') as never,
    async (argv) => {
      process.exitCode = await run(argv);
    },
  )
  .command<DiffArgs>(
    'diff <script>',
    'Run a script on in-process tsqemu and on real QEMU (-M virt -bios none); print the commands whose replies or IRQ lines differ',
    (y) =>
      y
        .positional('script', { type: 'string', demandOption: true })
        .option('qemu', { type: 'string', default: 'qemu-system-riscv64', describe: 'QEMU binary' })
        .option('drive', { type: 'string', array: true, default: [], describe: 'raw image attached as virtio-blk on both (repeatable)' }) as never,
    async (argv) => {
      process.exitCode = await diff(argv);
    },
  )
  .command<FuzzDiffArgs>(
    'fuzz-diff',
    'Random time-independent commands (RAM, PLIC, empty virtio-mmio, UART registers) on tsqemu and real QEMU; report the first difference',
    (y) =>
      y
        .option('seed', { type: 'number', default: 1 })
        .option('count', { type: 'number', default: 500 })
        .option('area', { type: 'string', array: true, default: [], describe: `limit to areas (${FUZZ_AREAS.join(', ')})` })
        .option('qemu', { type: 'string', default: 'qemu-system-riscv64', describe: 'QEMU binary' })
        .option('save', { type: 'string', describe: 'write the script up to the first difference here (an # expect: line marks it)' }) as never,
    async (argv) => {
      process.exitCode = await fuzzDiff(argv);
    },
  )
  .demandCommand(1)
  .fail((message, error) => {
    process.stderr.write(`tsqemu-qtest: ${error?.message ?? message}\n`);
    process.exit(2);
  })
  .strict()
  .help()
  .parseAsync();
