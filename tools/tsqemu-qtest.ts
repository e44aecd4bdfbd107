#!/usr/bin/env node
// tsqemu-qtest: run plain qtest scripts (QEMU fuzzer reproducer format) against tsqemu in-process,
// a tsqemu child process, or real QEMU; print the replies; fail on FAIL or a mismatched `# expect:`.
import { readFileSync } from 'node:fs';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { MemoryLogSink } from '../src/qtest/log.js';
import { QtestScriptError, parseScript, runScript } from '../src/qtest/script.js';
import { QEMU_VIRT_ARGS, type QtestTarget, openQtestTarget, qemuDriveArgs } from '../src/qtest/targets.js';

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
      const { writeFileSync } = await import('node:fs');
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
  .demandCommand(1)
  .strict()
  .help()
  .parseAsync();
