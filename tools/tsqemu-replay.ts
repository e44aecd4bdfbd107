#!/usr/bin/env node
// tsqemu-replay: record a virt session's external inputs, play it back, verify it, inspect logs.
//   record [-o F] [--events] [--checkpoint N] -- TSQEMU-ARGS
//   play F [--until ICOUNT] [--serial stdio|null] [--snapshots FILE] [--qmp SPEC] [--gdb tcp::PORT]
//   verify F            (headless; exit 0 only if no divergence)
//   seek F ICOUNT [--snapshots FILE]
//   info F | dump F [--events] [--html F.html]
//   demo                (records the bundled guest, plays it back, verifies it, prints a summary)
import { createHash } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { writeAllSync } from '../src/engine/host/chardev-core.js';
import { openChardev } from '../src/engine/host/chardev-open.js';
import { HostLoop } from '../src/engine/host/host-loop.js';
import { ReplayFileSink, readReplayFile } from '../src/engine/host/replay-file.js';
import { ConsoleCapture } from '../src/engine/hw/virt/console-script.js';
import { VIRT_HOST_SLICE_TASKS } from '../src/engine/hw/virt/virt-cli.js';
import { parseIcountShift, parseSmp, resolveBios } from '../src/engine/hw/virt/virt-options.js';
import { formatDump, formatHtmlTimeline, formatInfo } from '../src/replay/dump.js';
import { type ParsedLog, ReplayLogError, checkCompatible, parseLog } from '../src/replay/log-format.js';
import { Player, type PlayResult, SeekError, formatDivergence, formatPoint } from '../src/replay/player.js';
import { SnapshotFileError, SnapshotFileWriter, type StoredSnapshot, readNearestSnapshot } from '../src/replay/snapshot-store.js';
import { ReplayDriver } from '../src/system/replay-control.js';
import { parseCharDevice } from '../src/system/options.js';
import { MonitorEndpointError, connectQmpMonitors } from '../src/system/monitor-endpoints.js';
import { listenGdb } from '../src/engine/host/gdb-transport.js';
import { GdbSession } from '../src/gdbstub/session.js';
import { ReplayGdbTarget } from '../src/replay/gdb-target.js';
import { riscvHarts } from '../src/replay/virt-probes.js';
import type { RiscvHart } from '../src/engine/targets/riscv/hart.js';
import { MemorySink, Recorder } from '../src/replay/recorder.js';
import { type VirtDriveSpec, type VirtRun, type VirtRunSpec, buildVirtRun, virtSpecDigest } from '../src/replay/virt-run.js';
import { captureState } from '../src/replay/state.js';
import { UsageError } from '../src/system/keyval.js';
import { parseCommandLine } from '../src/system/options.js';

const PROG = 'tsqemu-replay';

class CliError extends Error {}

/** The virt run a tsqemu command line describes (`-M virt` only). */
export function specFromArgs(args: readonly string[]): VirtRunSpec {
  let config;
  try {
    config = parseCommandLine(args);
  } catch (error) {
    if (error instanceof UsageError) throw new CliError(error.message);
    throw error;
  }
  if (config.machine.type !== 'virt') throw new CliError(`record/replay supports -M virt (got -M ${config.machine.type})`);
  const byId = new Map<string, VirtDriveSpec>();
  const drives: VirtDriveSpec[] = [];
  config.drives.forEach((d, index) => {
    const id = String(d['id'] ?? `drive${index}`);
    const file = d['file'];
    if (typeof file !== 'string') throw new CliError(`-drive ${id}: a file is required`);
    const format = String(d['format'] ?? 'raw');
    if (format !== 'raw' && format !== 'qcow2') throw new CliError(`-drive ${id}: format ${format} is not supported`);
    const spec: VirtDriveSpec = { id, file, format };
    byId.set(id, spec);
    if (d['if'] === 'virtio') drives.push(spec);
  });
  for (const device of config.devices) {
    if (device['driver'] !== 'virtio-blk-device') throw new CliError(`-device ${String(device['driver'])} is not supported under record/replay`);
    const drive = byId.get(String(device['drive']));
    if (drive === undefined) throw new CliError(`-device virtio-blk-device: no drive '${String(device['drive'])}'`);
    drives.push(drive);
  }
  let smp: number;
  try {
    smp = parseSmp(config.smp);
  } catch (error) {
    throw new CliError((error as Error).message);
  }
  return {
    memoryBytes: config.memoryBytes,
    ...(smp > 1 ? { smp } : {}),
    bios: resolveBios(config.bios),
    kernel: config.kernel,
    append: config.append,
    drives,
    icountShift: parseIcountShift(config.icount),
    seed: config.seed,
    policy: config.policy,
  };
}

/** UART output straight to a file descriptor. */
function fdOutput(fd: number): { write(bytes: Uint8Array): void } {
  return { write: (bytes) => writeAllSync(fd, bytes) };
}

async function record(out: string, args: readonly string[], events: boolean, checkpoint: number | undefined): Promise<number> {
  const spec = specFromArgs(args);
  const run = buildVirtRun(spec, null);
  let quit = false;
  const host = new HostLoop(run.loop, VIRT_HOST_SLICE_TASKS);
  const serial = openChardev('mon:stdio', run.loop.gate, {
    id: 'serial0',
    channel: 'serial0',
    onQuit: () => {
      quit = true;
      host.stop();
    },
  });
  run.machine.uart.output = serial;
  const recorder = new Recorder(run, new ReplayFileSink(out), { machine: 'virt', machineDigest: virtSpecDigest(spec), commandLine: args, seed: spec.seed, disks: run.disks, checkpointInterval: checkpoint, events });
  const onSignal = (): void => {
    quit = true;
    host.stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  await host.run(() => run.machine.shutdown !== null || quit);
  serial.close();
  const stats = recorder.finish(run.machine.shutdown !== null ? `guest ${run.machine.shutdown.kind}` : 'quit');
  run.close();
  process.stderr.write(`${PROG}: recorded ${out}: ${run.loop.cpu?.icount ?? 0} instructions, ${stats.inputs} inputs, ${stats.checkpoints} checkpoints${events ? `, ${stats.events} events` : ''}, ${stats.bytes} bytes, digest ${run.loop.trace.digestHex()}\n`);
  const shutdown = run.machine.shutdown;
  return shutdown?.kind === 'poweroff' ? shutdown.exitCode : 0;
}

/** A log and the digest of its bytes (snapshot files name the log they were taken from). */
function loadLog(path: string): ParsedLog & { readonly digest: string } {
  let bytes: Uint8Array;
  try {
    bytes = readReplayFile(path);
  } catch (error) {
    throw new CliError(`cannot read ${path}: ${(error as Error).message}`);
  }
  return Object.assign(parseLog(bytes), { digest: createHash('sha256').update(bytes).digest('hex').slice(0, 32) });
}

export interface PlayOutcome {
  readonly result: PlayResult;
  readonly output: string;
  readonly warnings: readonly string[];
  readonly until?: number;
}

/** Plays a log on a freshly built board; `echo` receives the guest's UART output as it happens. */
export interface PlayLogOptions {
  until?: number;
  echo?: (bytes: Uint8Array) => void;
  inspect?: (run: VirtRun, player: Player) => void;
  checkEvents?: boolean;
  /** Append play's snapshots to this file. */
  snapshotFile?: SnapshotFileWriter;
  /** Restore this snapshot before playing (seek with a snapshot file). */
  startFrom?: StoredSnapshot;
  /** QMP control monitors (`--qmp SPEC`): play starts paused and is steered from them. */
  qmp?: readonly string[];
  /** `--gdb tcp::PORT`: play stands at the start and a gdb client drives it (forwards and back). */
  gdb?: string;
  logPath?: string;
}

export async function playLog(log: ParsedLog, options: PlayLogOptions): Promise<PlayOutcome> {
  if (log.header.machine !== 'virt') {
    throw new CliError(`this log was recorded by 'tsqemu ... -icount rr=record' (machine ${log.header.machine}); play it with the same command line and rr=replay,rrfile=FILE`);
  }
  const spec = specFromArgs(log.header.commandLine);
  const capture = new ConsoleCapture();
  if (options.echo !== undefined) capture.tee = options.echo;
  const run = buildVirtRun(spec, capture);
  const harts = riscvHarts(run.loop);
  const warnings = checkCompatible(log.header, { machineDigest: virtSpecDigest(spec), disks: run.disks }).map((e) => e.message);
  try {
    const player = new Player(run, log, { until: options.until, checkEvents: options.checkEvents, ...(options.snapshotFile !== undefined ? { snapshotFile: options.snapshotFile } : {}) });
    if (options.startFrom !== undefined) player.restore(options.startFrom);
    if (options.gdb !== undefined) {
      const result = await playUnderGdb(player, harts, options.gdb);
      options.inspect?.(run, player);
      return { result, output: capture.text, warnings, until: options.until };
    }
    if (options.qmp !== undefined && options.qmp.length > 0) {
      const result = await playUnderQmp(player, options.qmp, options.logPath ?? '');
      options.inspect?.(run, player);
      return { result, output: capture.text, warnings, until: options.until };
    }
    for (;;) {
      const result = player.advance(5000);
      if (result !== null) {
        options.inspect?.(run, player);
        return { result, output: capture.text, warnings, until: options.until };
      }
      // Let signals and output through between slices.
      await new Promise((resolve) => setImmediate(resolve));
    }
  } finally {
    run.close();
  }
}

/** `play --qmp SPEC`: the replay control monitor steers play (tsqemu's -replay-qmp). */
async function playUnderQmp(player: Player, specs: readonly string[], logPath: string): Promise<PlayResult> {
  const driver = new ReplayDriver(player, logPath, specs.map((_, i) => `replay${i}`), true);
  const host = new HostLoop(driver, 64);
  let servers: Server[];
  try {
    const monitors = specs.map((spec, i) => ({ name: `replay${i}`, chardev: parseCharDevice(spec) }));
    servers = await connectQmpMonitors(driver.gate, driver.servers, monitors, () => host.kick());
  } catch (error) {
    if (error instanceof MonitorEndpointError || error instanceof UsageError) throw new CliError(`--qmp: ${error.message}`);
    throw error;
  }
  const stop = (): void => host.stop();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    await host.run(() => driver.done);
  } finally {
    for (const server of servers) server.close();
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGTERM', stop);
  }
  return driver.result ?? player.result(false);
}

/** `play --gdb tcp::PORT`: serves gdb until it detaches or kills the session. */
async function playUnderGdb(player: Player, harts: readonly RiscvHart[], spec: string): Promise<PlayResult> {
  const match = /^tcp:([^:]*):(\d+)$/.exec(spec);
  if (match === null) throw new CliError(`--gdb ${spec}: expected tcp::PORT or tcp:HOST:PORT`);
  if (harts.length === 0) throw new CliError('--gdb: this machine has no harts');
  const target = new ReplayGdbTarget(player, harts);
  let finish: () => void = () => undefined;
  const over = new Promise<void>((resolve) => (finish = resolve));
  let server: Server;
  try {
    server = await listenGdb(match[1] === '' ? '127.0.0.1' : match[1]!, Number(match[2]), () => new GdbSession(target, () => finish()));
  } catch (error) {
    throw new CliError(`--gdb ${spec}: ${(error as Error).message}`);
  }
  const address = server.address();
  process.stderr.write(`${PROG}: waiting for gdb on port ${typeof address === 'object' && address !== null ? address.port : match[2]!} (target remote :PORT; reverse-stepi and reverse-continue work)\n`);
  process.once('SIGINT', finish);
  process.once('SIGTERM', finish);
  await over;
  server.close();
  process.removeListener('SIGINT', finish);
  process.removeListener('SIGTERM', finish);
  return player.result(player.icount >= player.endIcount);
}

function summary(outcome: PlayOutcome, log: ParsedLog): string {
  const r = outcome.result;
  const match = outcome.until !== undefined ? `stopped at --until ${outcome.until}, digest ${r.finalTrace}` : r.recordedTrace === null ? 'no end record (log cut short)' : r.finalTrace === r.recordedTrace ? `final digest ${r.finalTrace} matches` : `final digest ${r.finalTrace} differs from ${r.recordedTrace}`;
  return `${r.point.icount} instructions, ${r.inputs} inputs, ${r.checkpoints} checkpoints, ${r.events} events checked, ${log.sizeBytes} log bytes; ${match}`;
}

interface PlayCliOptions {
  readonly until?: number;
  readonly serial: 'stdio' | 'null';
  readonly verify: boolean;
  readonly checkEvents?: boolean;
  readonly snapshots?: string;
  readonly qmp?: readonly string[];
  readonly gdb?: string;
}

async function play(path: string, o: PlayCliOptions): Promise<number> {
  const log = loadLog(path);
  if (log.tail !== null) process.stderr.write(`${PROG}: warning: ${path} is cut short at offset ${log.tail.offset} (${log.tail.reason}); playing up to its last complete record\n`);
  const echo = o.serial === 'stdio' ? fdOutput(1).write : undefined;
  const writer = o.snapshots !== undefined ? new SnapshotFileWriter(o.snapshots, log.digest) : undefined;
  let snapshotCount = 0;
  let outcome: PlayOutcome;
  try {
    outcome = await playLog(log, { until: o.until, echo, checkEvents: o.checkEvents ?? true, snapshotFile: writer, qmp: o.qmp, gdb: o.gdb, logPath: path, inspect: (_run, player) => (snapshotCount = player.snapshots.snapshots.length) });
  } finally {
    writer?.close();
  }
  for (const warning of outcome.warnings) process.stderr.write(`${PROG}: warning: ${warning}\n`);
  const d = outcome.result.divergence;
  if (d !== null) {
    process.stderr.write(formatDivergence(d) + '\n');
    return 1;
  }
  const snaps = writer !== undefined ? `; snapshots in ${o.snapshots!} (${snapshotCount} kept in memory)` : '';
  if ((o.gdb !== undefined || o.qmp !== undefined) && !outcome.result.reachedEnd) {
    process.stderr.write(`${PROG}: ${o.gdb !== undefined ? 'gdb' : 'the control monitor'} left play at icount ${outcome.result.point.icount} (${formatPoint(outcome.result.point)}), ${log.sizeBytes} log bytes${snaps}\n`);
  } else {
    process.stderr.write(`${PROG}: ${o.verify ? 'verified' : 'played'} ${path}: ${summary(outcome, log)}${snaps}\n`);
  }
  return outcome.result.reachedEnd || o.qmp !== undefined || o.gdb !== undefined ? 0 : 1;
}

/** fixtures/demo, found from this file in tools/ or dist/tools/. */
function demoDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const candidate = join(dir, 'fixtures', 'demo');
    if (existsSync(join(candidate, 'demo.elf'))) return candidate;
    dir = dirname(dir);
  }
  throw new CliError('the bundled demo guest (fixtures/demo/demo.elf) is missing');
}

const DEMO_LINES = ['hello replay', 'timers and virtio work', 'quit'];

/** `demo`: record the bundled guest with scripted typing at random host moments, play it back, verify it. */
async function runDemo(options: { output?: string }): Promise<number> {
  const dir = demoDir();
  const args = ['-M', 'virt', '-m', '64M', '-bios', 'none', '-kernel', join(dir, 'demo.elf'), '-drive', `file=${join(dir, 'demo-disk.img')},if=virtio,format=raw`, '-icount', 'shift=0', '-display', 'none'];
  const spec = specFromArgs(args);
  const capture = new ConsoleCapture();
  const run = buildVirtRun(spec, capture);
  const sink = new MemorySink();
  const recorder = new Recorder(run, sink, { machine: 'virt', machineDigest: virtSpecDigest(spec), commandLine: args, seed: spec.seed, disks: run.disks, checkpointInterval: 1 << 11, events: true });
  process.stdout.write(`== record: ${PROG} record -- ${args.join(' ')}\n`);
  capture.tee = fdOutput(1).write;
  const startRecord = performance.now();
  let line = 0;
  let typing: number[] = [];
  let promptsSeen = 0;
  for (let guard = 0; guard < 1_000_000 && run.machine.shutdown === null; guard++) {
    // The host's timing is the only randomness: a random number of loop turns between keys (turns,
    // as the host loop runs them; a virtual-time limit would split time jumps into extra events).
    run.loop.runUntil(() => run.machine.shutdown !== null, { maxTasks: 1 + Math.floor(Math.random() * 6) });
    if (typing.length > 0) run.loop.gate.offer({ channel: 'serial0', kind: 'chardev', data: new Uint8Array([typing.shift()!]) });
    else if (line < DEMO_LINES.length && capture.text.split('demo> ').length - 1 > promptsSeen) {
      promptsSeen++;
      typing = Array.from(new TextEncoder().encode(DEMO_LINES[line++] + '\r'));
    }
    if (guard % 64 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  const stats = recorder.finish(run.machine.shutdown !== null ? 'guest poweroff' : 'limit');
  const recordMs = performance.now() - startRecord;
  run.close();
  const recordedOutput = capture.text;
  const bytes = sink.bytes();
  if (options.output !== undefined) writeFileSync(options.output, bytes);
  const log = parseLog(bytes);

  process.stdout.write(`\n== play (stdin closed, inputs from the log)\n`);
  const startPlay = performance.now();
  const played = await playLog(log, { echo: fdOutput(1).write });
  const playMs = performance.now() - startPlay;
  process.stdout.write(`\n== verify\n`);
  const verified = await playLog(log, {});
  const sameOutput = played.output === recordedOutput && verified.output === recordedOutput;
  const ok = played.result.divergence === null && verified.result.divergence === null && sameOutput && verified.result.finalTrace === run.loop.trace.digestHex();
  const d = verified.result.divergence ?? played.result.divergence;
  if (d !== null) process.stdout.write(formatDivergence(d) + '\n');
  const icount = run.loop.cpu?.icount ?? 0;
  process.stdout.write(
    [
      `instructions:    ${icount}`,
      `inputs:          ${stats.inputs} (typed bytes), ${stats.checkpoints} checkpoints, ${stats.events} events`,
      `log size:        ${bytes.length} bytes (${(bytes.length / Math.max(1, stats.inputs)).toFixed(1)} bytes per input incl. checkpoints and events)`,
      `output:          ${sameOutput ? 'identical' : 'DIFFERENT'} (${recordedOutput.length} bytes)`,
      `digest:          recorded ${run.loop.trace.digestHex()}, replayed ${verified.result.finalTrace} ${verified.result.finalTrace === run.loop.trace.digestHex() ? '(match)' : '(MISMATCH)'}`,
      `wall time:       record ${recordMs.toFixed(0)} ms, play ${playMs.toFixed(0)} ms`,
      `result:          ${ok ? 'OK: replay verified' : 'FAILED'}`,
    ].join('\n') + '\n',
  );
  return ok ? 0 : 1;
}

async function main(): Promise<number> {
  const argv = hideBin(process.argv);
  const dash = argv.indexOf('--');
  const own = dash >= 0 ? argv.slice(0, dash) : argv;
  const passthrough = dash >= 0 ? argv.slice(dash + 1) : [];
  let code = 0;
  await yargs(own)
    .scriptName(PROG)
    .command(
      'record',
      'run tsqemu (-M virt) with stdio as the console and record its inputs: record [-o F] -- TSQEMU-ARGS',
      (y) => y.option('o', { alias: 'output', type: 'string', default: 'replay.tsqr' }).option('events', { type: 'boolean', default: false }).option('checkpoint', { type: 'number', describe: 'instructions between checkpoints' }),
      async (a) => {
        if (passthrough.length === 0) throw new CliError('record needs the tsqemu command line after --');
        code = await record(a.o, passthrough, a.events, a.checkpoint);
      },
    )
    .command(
      'play <log>',
      'play a recording back (stdin is not read)',
      (y) =>
        y
          .positional('log', { type: 'string', demandOption: true })
          .option('until', { type: 'number', describe: 'stop at this instruction count' })
          .option('serial', { choices: ['stdio', 'null'] as const, default: 'stdio' as const })
          .option('events', { type: 'boolean', default: true, describe: 'check logged events as extra checkpoints (--no-events skips them)' })
          .option('snapshots', { type: 'string', describe: 'write the snapshots play takes to this file (for seek --snapshots)' })
          .option('gdb', { type: 'string', describe: 'serve gdb on tcp::PORT: step, continue, breakpoints, reverse-stepi, reverse-continue over the recording' })
          .option('qmp', { type: 'string', array: true, describe: 'QMP control monitor (unix:PATH,server=on,wait=off | tcp:... | stdio): play starts paused; replay-break, replay-seek, cont, quit' }),
      async (a) => {
        code = await play(a.log, { until: a.until, serial: a.serial, verify: false, checkEvents: a.events, snapshots: a.snapshots, qmp: a.qmp, gdb: a.gdb });
      },
    )
    .command(
      'verify <log>',
      'replay headless; exit 0 only if every checkpoint and the final digest match',
      (y) => y.positional('log', { type: 'string', demandOption: true }),
      async (a) => {
        code = await play(a.log, { serial: 'null', verify: true });
      },
    )
    .command(
      'seek <log> <icount>',
      'replay to an exact instruction count and print the harts and devices there; with --snapshots, start from the nearest snapshot in that file',
      (y) => y.positional('log', { type: 'string', demandOption: true }).positional('icount', { type: 'number', demandOption: true }).option('snapshots', { type: 'string', describe: 'a snapshot file written by play --snapshots for this log' }),
      async (a) => {
        const log = loadLog(a.log);
        let start: StoredSnapshot | undefined;
        if (a.snapshots !== undefined) {
          start = readNearestSnapshot(a.snapshots, log.digest, a.icount);
          process.stderr.write(`${PROG}: ${start === undefined ? `no snapshot at or before ${a.icount} in ${a.snapshots}; playing from the start` : `restoring the snapshot at icount ${start.point.icount}`}\n`);
        }
        let state = '';
        const outcome = await playLog(log, {
          until: a.icount,
          ...(start !== undefined ? { startFrom: start } : {}),
          inspect: (run) => {
            const map = captureState(run.probes.filter((p) => p.name !== 'ram' && p.name !== 'disk'));
            state = Object.entries(map)
              .map(([probe, entries]) => `${probe}:\n` + Object.entries(entries).map(([k, v]) => `  ${k.padEnd(12)} ${String(v)}`).join('\n'))
              .join('\n');
          },
        });
        if (outcome.result.divergence !== null) {
          process.stderr.write(formatDivergence(outcome.result.divergence) + '\n');
          code = 1;
          return;
        }
        process.stdout.write(`at icount ${outcome.result.point.icount}, ${outcome.result.point.ns} ns, step ${outcome.result.point.step}\n${state}\n`);
      },
    )
    .command(
      'info <log>',
      'header, duration, input counts',
      (y) => y.positional('log', { type: 'string', demandOption: true }),
      (a) => {
        process.stdout.write(formatInfo(loadLog(a.log), a.log) + '\n');
      },
    )
    .command(
      'dump <log>',
      'every record, human readable',
      (y) => y.positional('log', { type: 'string', demandOption: true }).option('events', { type: 'boolean', default: false }).option('html', { type: 'string', describe: 'write a scrollable timeline to this HTML file' }),
      (a) => {
        const log = loadLog(a.log);
        if (a.html !== undefined) {
          writeFileSync(a.html, formatHtmlTimeline(log, a.log));
          process.stderr.write(`${PROG}: timeline written to ${a.html}\n`);
        } else {
          process.stdout.write(formatDump(log, a.events) + '\n');
        }
      },
    )
    .command(
      'demo',
      'record the bundled demo guest, play it back, verify it and print a summary',
      (y) => y.option('o', { alias: 'output', type: 'string', describe: 'keep the log here' }),
      async (a) => {
        code = await runDemo({ output: a.o });
      },
    )
    .demandCommand(1)
    .strict()
    .fail((message, error) => {
      throw error ?? new CliError(message);
    })
    .parseAsync();
  return code;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof CliError || error instanceof ReplayLogError || error instanceof SnapshotFileError || error instanceof SeekError) {
      process.stderr.write(`${PROG}: ${error.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`${PROG}: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(3);
  },
);
