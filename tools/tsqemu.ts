#!/usr/bin/env node
// tsqemu / tsqemu-system-riscv64: builds a VM from QEMU's command-line spelling and serves QMP on
// the monitors it asks for. Options follow QEMU (single dash), so this bin parses them itself
// instead of through yargs.
import { closeSync, openSync, writeSync } from 'node:fs';
import type { Server } from 'node:net';
import { HostLoop } from '../src/engine/host/host-loop.js';
import { formatTraceEvent } from '../src/engine/trace.js';
import { UsageError } from '../src/system/keyval.js';
import { type MachineSession, startMachine } from '../src/system/machine.js';
import { parseCommandLine } from '../src/system/options.js';
import { objectHelp } from '../src/system/objects-cli.js';
import { MAIN_THREAD_ID_SERVICE } from '../src/monitor/commands/objects.js';
import { MACHINE_TYPES, type Vm, createVm } from '../src/system/vm.js';
import type { VmConfig } from '../src/system/vm-config.js';
import { QtestChardevError } from '../src/engine/host/qtest-chardev.js';
import { type QtestSession, startVirtQtest } from '../src/qtest/setup.js';
import { ReplayLogError } from '../src/replay/log-format.js';
import { formatDivergence } from '../src/replay/player.js';
import { ReplayOptionError, type RrSession, parseRrOption, startRecordReplay } from '../src/replay/rr-option.js';
import { REPLAY_SERVICE, RECORDING_REPLAY_CONTROL } from '../src/monitor/commands/replay.js';
import { ReplayDriver } from '../src/system/replay-control.js';
import { MonitorEndpointError, connectQmpMonitors } from '../src/system/monitor-endpoints.js';
import { vmSnapshotParts } from '../src/system/vm-snapshot.js';
import { createVirtSnapshotter } from '../src/replay/virt-snapshot.js';

const PROG = 'tsqemu';
const VERSION = 'tsqemu version 0.1.0 (QEMU 7.2.0 compatible), Copyright (c) the tsqemu authors';

function usage(): string {
  return [
    `usage: ${PROG} [options]`,
    '  -M virt|spike|none       machine type (-M help lists them)',
    '  -m SIZE                  RAM size (default 128M)',
    '  -S                       start stopped (prelaunch) until QMP cont',
    '  -qmp unix:PATH,server=on,wait=off | tcp:HOST:PORT,server=on,wait=off | stdio',
    '  -chardev socket,id=ID,path=PATH,server=on,wait=off  + -mon chardev=ID,mode=control',
    '  -blockdev JSON|key=value  -drive ...  -accel ...',
    '  -object throttle-group,id=ID[,x-iops-total=N,...] | iothread,id=ID | JSON  (-object help)',
    '  -seed N                  root seed of every RNG stream and the explore policy',
    '  -policy fifo|explore     scheduling policy',
    '  -trace FILE              trace events and the final digest to FILE',
    '  --allow-path DIR         confine every file QMP or the command line opens (repeatable)',
    '  -snapshot                every drive as snapshot=on (writes go to a memory overlay)',
    '  -replay-qmp SPEC         with -icount rr=replay: a QMP monitor that steers play (replay-break,',
    '                           replay-seek, query-replay, stop, cont); same SPEC forms as -qmp',
    '  -display none, -nographic, -nodefaults, -bios, -kernel, -append, -initrd, -device,',
    '  -serial, -smp, -rtc, -icount, -qtest, -qtest-log are accepted (-s/-gdb: use tsqemu-replay play --gdb)',
  ].join('\n');
}

function fail(message: string): never {
  process.stderr.write(`${PROG}: ${message}\n`);
  process.exit(1);
}

/** `-trace FILE`: every trace event as a line, and the digest at the end. */
function startTrace(vm: Vm, file: string): () => void {
  let fd: number;
  try {
    fd = openSync(file, 'w');
  } catch (error) {
    fail(`-trace ${file}: ${(error as Error).message}`);
  }
  const off = vm.loop.trace.onEvent((event) => writeSync(fd, formatTraceEvent(event) + '\n'));
  return () => {
    off();
    writeSync(fd, `digest ${vm.loop.trace.digestHex()}\n`);
    closeSync(fd);
  };
}

/** The monitors' endpoints, or exit 1 with QEMU's message. */
async function startMonitors(...args: Parameters<typeof connectQmpMonitors>): Promise<Server[]> {
  try {
    return await connectQmpMonitors(...args);
  } catch (error) {
    if (error instanceof MonitorEndpointError) fail(error.message);
    throw error;
  }
}

/**
 * `-qtest DEV [-qtest-log FILE] [-accel qtest]`: QEMU's qtest protocol on a CPU-less virt board.
 * It attaches to the board startMachine built (with its -drive/-device virtio-blk drives; no hart
 * under -accel qtest). Under -accel qtest time moves
 * only with clock_step/clock_set; without it time jumps to the next deadline when idle, as with a
 * halted CPU. A guest poweroff through sifive_test ends the run with its exit code, as in QEMU.
 */
async function startQtestFromCli(board: MachineSession, config: VmConfig, onExit: (code: number) => void): Promise<QtestSession | null> {
  if (config.qtest === null) return null;
  const machine = board.virt?.machine;
  if (config.machine.type !== 'virt' || machine === undefined) fail(`-qtest: machine '${config.machine.type}' is not supported with qtest (use -M virt)`);
  const accelQtest = config.accel[0] === 'qtest';
  machine.onShutdown((req) => onExit(req.kind === 'poweroff' ? req.exitCode : 0));
  try {
    const session = startVirtQtest(machine, { chardev: config.qtest, log: config.qtestLog ?? undefined, accelQtest });
    await session.ready;
    return session;
  } catch (error) {
    if (error instanceof QtestChardevError) fail(error.message);
    throw error;
  }
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes('-h') || argv.includes('-help') || argv.includes('--help')) {
    process.stdout.write(usage() + '\n');
    return 0;
  }
  if (argv.includes('-version') || argv.includes('--version')) {
    process.stdout.write(VERSION + '\n');
    return 0;
  }
  let config: VmConfig;
  try {
    config = parseCommandLine(argv);
  } catch (error) {
    if (error instanceof UsageError) fail(error.message);
    throw error;
  }
  if (config.machine.type === 'help' || config.machine.type === '?') {
    process.stdout.write('Supported machines are:\n' + Object.entries(MACHINE_TYPES).map(([n, d]) => `${n.padEnd(20)} ${d}`).join('\n') + '\n');
    return 0;
  }
  for (const object of config.objects) {
    const help = objectHelp(object);
    if (help !== null) {
      process.stdout.write(help + '\n');
      return 0;
    }
  }
  let vm: Vm;
  try {
    vm = createVm(config);
  } catch (error) {
    if (error instanceof UsageError) fail(error.message);
    throw error;
  }
  // HMP qemu-io prints to the process's stdout, as in QEMU (human-monitor-command returns "").
  vm.services.set('stdout', (line: string) => process.stdout.write(line + '\n'));
  vm.services.set('stderr', (line: string) => process.stderr.write(line + '\n'));
  // query-iothreads: every iothread runs on the main loop, i.e. the main thread (tid = pid).
  vm.services.set(MAIN_THREAD_ID_SERVICE, process.pid);
  const endTrace = config.traceFile !== null ? startTrace(vm, config.traceFile) : () => undefined;
  let quitKey = false;
  let machine: MachineSession;
  try {
    machine = startMachine(vm, {
      onQuit: () => {
        quitKey = true;
        host.kick();
      },
      warn: (message) => process.stderr.write(`${PROG}: warning: ${message}\n`),
      stdout: (bytes) => process.stdout.write(bytes),
    });
  } catch (error) {
    if (error instanceof UsageError) fail(error.message);
    throw error;
  }
  const host = new HostLoop(vm.loop, machine.hostSliceTasks);
  // -icount ...,rr=record|replay,rrfile=F: installed before any input can cross the gate (src/replay).
  let rr: RrSession | null = null;
  try {
    const rrOption = parseRrOption(config.icount);
    const driveFiles = config.drives.filter((d) => typeof d['file'] === 'string').map((d, i) => ({ name: String(d['id'] ?? `drive${i}`), path: String(d['file']) }));
    if (rrOption !== null) {
      const board = machine.virt?.machine ?? null;
      const snapshotter = rrOption.mode === 'replay' && board !== null ? createVirtSnapshotter(vm.loop, board, vmSnapshotParts(vm)) : undefined;
      rr = startRecordReplay(rrOption, vm.loop, board, argv, config.seed, driveFiles, snapshotter);
      // The VM's own monitors answer query-replay as they did while recording (their traffic replays).
      const loop = vm.loop;
      vm.services.set(REPLAY_SERVICE, { ...RECORDING_REPLAY_CONTROL, filename: rrOption.file, get icount() { return loop.cpu?.icount ?? 0; } });
    } else if (config.replayMonitors.length > 0) {
      fail('-replay-qmp: needs -icount ...,rr=replay,rrfile=FILE');
    }
  } catch (error) {
    if (error instanceof ReplayOptionError || error instanceof ReplayLogError) fail(error.message);
    throw error;
  }
  for (const warning of rr?.warnings ?? []) process.stderr.write(`${PROG}: warning: ${warning}\n`);
  let replayDiverged = false;
  let stdioClosed = false;
  const servers = await startMonitors(vm.loop.gate, vm.monitors, config.monitors, () => {
    stdioClosed = true;
    host.kick();
  });
  let qtestClosed = false;
  let guestExit: number | null = null;
  const qtest = await startQtestFromCli(machine, config, (code) => {
    guestExit = code;
    host.stop();
  });
  if (qtest !== null) {
    qtest.chardev.onDisconnect = () => {
      qtestClosed = true;
      host.kick();
    };
  }
  const stdioOnly = config.monitors.length > 0 && config.monitors.every((m) => m.chardev.backend === 'stdio');
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`${PROG}: terminating on signal ${signal === 'SIGINT' ? 2 : 15}\n`);
    signalled = true;
    host.stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // -qtest stdio: nothing more can come once stdin ends (a fuzzer reproducer fed with <).
  if (rr?.player) {
    // Play runs under the replay control monitors (-replay-qmp), on a loop of their own.
    const driver = new ReplayDriver(rr.player, rr.option.file, config.replayMonitors.map((m) => m.name), config.replayMonitors.length > 0);
    const controlHost = new HostLoop(driver, 64);
    servers.push(...(await startMonitors(driver.gate, driver.servers, config.replayMonitors, () => controlHost.kick())));
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('SIGINT', onSignal);
    const onReplaySignal = (signal: NodeJS.Signals): void => {
      onSignal(signal);
      controlHost.stop();
    };
    process.on('SIGTERM', onReplaySignal);
    process.on('SIGINT', onReplaySignal);
    await controlHost.run(() => driver.done || signalled);
    const result = driver.result;
    if (result?.divergence) {
      process.stderr.write(formatDivergence(result.divergence) + '\n');
      replayDiverged = true;
    }
  } else {
    await host.run(() => vm.quitRequested || signalled || quitKey || machine.exitCode !== null || (stdioOnly && stdioClosed && vm.monitors.every((m) => m.sessions.size === 0 && !m.pending)) || (qtest?.stdio === true && qtestClosed && !vm.loop.gate.hasPending));
  }
  rr?.finish(machine.exitCode !== null ? 'guest poweroff' : 'quit');
  qtest?.close();
  // qemu_cleanup: jobs cancelled, every node closed (qcow2 metadata, persistent bitmaps stored).
  vm.shutdown();
  endTrace();
  machine.close();
  for (const server of servers) server.close();
  // Let the last replies (quit's) reach the clients before the process ends.
  await new Promise<void>((resolve) => setImmediate(resolve));
  if (replayDiverged) return 1;
  return guestExit ?? machine.exitCode ?? 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${PROG}: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(2);
  },
);
