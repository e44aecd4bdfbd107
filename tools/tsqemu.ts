#!/usr/bin/env node
// tsqemu / tsqemu-system-riscv64: builds a VM from QEMU's command-line spelling and serves QMP on
// the monitors it asks for. Options follow QEMU (single dash), so this bin parses them itself
// instead of through yargs.
import { closeSync, openSync, writeSync } from 'node:fs';
import type { Server } from 'node:net';
import { HostLoop } from '../src/engine/host/host-loop.js';
import { connectQmpStdio, listenQmp } from '../src/engine/host/qmp-transport.js';
import { formatTraceEvent } from '../src/engine/trace.js';
import { UsageError } from '../src/system/keyval.js';
import { parseCommandLine } from '../src/system/options.js';
import { MACHINE_TYPES, type Vm, createVm } from '../src/system/vm.js';
import type { VmConfig } from '../src/system/vm-config.js';

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
    '  -blockdev JSON|key=value  -drive ...  -object ...  -accel ...',
    '  -seed N                  root seed of every RNG stream and the explore policy',
    '  -policy fifo|explore     scheduling policy',
    '  -trace FILE              trace events and the final digest to FILE',
    '  --allow-path DIR         confine every file QMP or the command line opens (repeatable)',
    '  -display none, -nographic, -nodefaults, -bios, -kernel, -append, -initrd, -device,',
    '  -serial, -smp, -rtc, -icount, -qtest, -qtest-log, -s, -gdb are accepted',
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

async function startMonitors(vm: Vm, config: VmConfig, onStdioEnd: () => void): Promise<Server[]> {
  const servers: Server[] = [];
  for (let i = 0; i < config.monitors.length; i++) {
    const spec = config.monitors[i]!;
    const monitor = vm.monitors[i]!;
    const dev = spec.chardev;
    try {
      if (dev.backend === 'socket-unix') servers.push(await listenQmp(vm.loop.gate, monitor, { kind: 'unix', path: dev.path }));
      else if (dev.backend === 'socket-tcp') servers.push(await listenQmp(vm.loop.gate, monitor, { kind: 'tcp', host: dev.host, port: dev.port }));
      else if (dev.backend === 'stdio') connectQmpStdio(vm.loop.gate, monitor, onStdioEnd);
      else fail(`monitor ${spec.name}: chardev backend '${dev.backend}' cannot carry QMP`);
    } catch (error) {
      fail(`-qmp: Failed to open ${dev.backend === 'socket-unix' ? dev.path : dev.backend}: ${(error as Error).message}`);
    }
  }
  return servers;
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
  let vm: Vm;
  try {
    vm = createVm(config);
  } catch (error) {
    if (error instanceof UsageError) fail(error.message);
    throw error;
  }
  const endTrace = config.traceFile !== null ? startTrace(vm, config.traceFile) : () => undefined;
  const host = new HostLoop(vm.loop);
  let stdioClosed = false;
  const servers = await startMonitors(vm, config, () => {
    stdioClosed = true;
    host.kick();
  });
  const stdioOnly = config.monitors.length > 0 && config.monitors.every((m) => m.chardev.backend === 'stdio');
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`${PROG}: terminating on signal ${signal === 'SIGINT' ? 2 : 15}\n`);
    signalled = true;
    host.stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  await host.run(() => vm.quitRequested || signalled || (stdioOnly && stdioClosed));
  endTrace();
  for (const server of servers) server.close();
  // Let the last replies (quit's) reach the clients before the process ends.
  await new Promise<void>((resolve) => setImmediate(resolve));
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${PROG}: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(2);
  },
);
