/**
 * `human-monitor-command`: the HMP commands tsqemu offers through QMP. Only `qemu-io` exists,
 * because that is what QEMU's iotests use it for: acting as the guest on a node
 * (`qemu-io [-d] <device|node> "<qemu-io command>"`, hmp_qemu_io in QEMU 7.2).
 *
 * What comes back is the HMP monitor's output, lines ending in "\r\n": HMP parse errors,
 * `error_report()`s (a refused permission) and `Error: <message>` for the command's own error.
 * qemu-io's printf output goes to the process's stdout in QEMU (its complaints to stderr), not to
 * the monitor: here to the VM's `stdout`/`stderr` services when there are some (the tsqemu
 * binary), else nowhere.
 */
import type { Co } from '../../engine/coroutine.js';
import { BlockBackend } from '../../block/block-backend.js';
import { BdrvReq, BlkPerm, BlockStatus } from '../../block/driver.js';
import { strerror } from '../../block/errno.js';
import { BlockError } from '../../block/error.js';
import type { BlockGraph } from '../../block/graph.js';
import { QemuIoPermError, QemuIoSession, type QemuIoTarget } from '../../block/image/qemu-io-cmds.js';
import { type CommandDef, type MonitorVm, defineCommand } from '../command.js';
import { QmpError } from '../errors.js';
import { int, str, struct } from '../schema.js';
import { blockEnv } from './block.js';

/** A request that returned a negative errno. */
class IoErrno extends Error {
  override readonly name = 'IoErrno';
  constructor(readonly errno: number) {
    super(strerror(errno));
  }
}

function check(ret: number): void {
  if (ret < 0) throw new IoErrno(ret);
}

/** qemu-io's view of a BlockBackend (qemu-io-cmds.c works on a BlockBackend too). */
export function backendIoTarget(blk: BlockBackend): QemuIoTarget {
  return {
    sizeBytes: () => Math.max(0, blk.getLength()),
    *read(offset, buf) {
      check(yield* blk.coPreadv(offset, buf.length, buf));
    },
    *write(offset, data, fua) {
      check(yield* blk.coPwritev(offset, data.length, data, fua ? BdrvReq.FUA : 0));
    },
    *writeZeroes(offset, bytes, mayUnmap) {
      check(yield* blk.coPwriteZeroes(offset, bytes, mayUnmap ? BdrvReq.MAY_UNMAP : 0));
    },
    *writeCompressed(offset, data) {
      check(yield* blk.coPwritev(offset, data.length, data, BdrvReq.WRITE_COMPRESSED));
    },
    *discard(offset, bytes) {
      check(yield* blk.coPdiscard(offset, bytes));
    },
    *flush() {
      check(yield* blk.coFlush());
    },
    *truncate(sizeBytes) {
      const errp: { error?: BlockError } = {};
      const ret = yield* blk.coTruncate(sizeBytes, false, 'off', 0, errp);
      if (ret < 0) throw errp.error ?? new IoErrno(ret);
    },
    *isAllocated(offset, bytes) {
      const status = yield* blk.coBlockStatus(false, offset, bytes);
      check(status.ret);
      return { allocated: (status.ret & BlockStatus.ALLOCATED) !== 0, bytes: status.pnum };
    },
    requirePerm(perm) {
      const wanted = perm === 'write' ? BlkPerm.WRITE : BlkPerm.RESIZE;
      if ((blk.perm & wanted) === wanted) return;
      try {
        // The extension stays, as in QEMU (see the comment in hmp_qemu_io).
        blk.setPerm(blk.perm | wanted, blk.shared);
      } catch (error) {
        if (error instanceof BlockError) throw new QemuIoPermError(error.message);
        throw error;
      }
    },
    errorText(error) {
      if (error instanceof IoErrno || error instanceof BlockError) return error.message;
      throw error;
    },
  };
}

/** HMP's get_str: a word, or a double-quoted string with \n \r \\ \' \" escapes. */
function getStr(line: string, pos: number): { value: string; pos: number } | { error: string | null } {
  let p = pos;
  while (p < line.length && /\s/.test(line[p]!)) p++;
  if (p >= line.length) return { error: null };
  let value = '';
  if (line[p] === '"') {
    p++;
    while (p < line.length && line[p] !== '"') {
      if (line[p] === '\\') {
        const c = line[p + 1];
        p += 2;
        if (c === 'n') value += '\n';
        else if (c === 'r') value += '\r';
        else if (c === '\\' || c === "'" || c === '"') value += c;
        else return { error: `unsupported escape code: '\\${c ?? ''}'` };
      } else {
        value += line[p++];
      }
    }
    if (p >= line.length) return { error: 'unterminated string' };
    p++;
  } else {
    while (p < line.length && !/\s/.test(line[p]!)) value += line[p++];
  }
  return { value, pos: p };
}

/** The monitor output of one HMP command line: lines, joined with "\r\n" as monitor_puts does. */
class HmpOutput {
  private text = '';
  printf(line: string): void {
    this.text += `${line}\r\n`;
  }
  get value(): string {
    return this.text;
  }
}

interface QemuIoArgs {
  readonly qdev: boolean;
  readonly device: string;
  readonly command: string;
}

/**
 * monitor_parse_arguments for qemu-io's "qdev:-d,device:B,command:s". A failure prints its
 * message and the help hint on the monitor; get_str's own complaints (an unterminated string, a
 * bad escape) are a printf to the process's stdout in QEMU.
 */
function parseQemuIoArgs(line: string, pos: number, mon: HmpOutput, stdout: ((line: string) => void) | undefined): QemuIoArgs | null {
  const fail = (message: string): null => {
    mon.printf(message);
    mon.printf('Try "help qemu-io" for more information');
    return null;
  };
  let p = pos;
  while (p < line.length && /\s/.test(line[p]!)) p++;
  let qdev = false;
  if (line[p] === '-') {
    if (line[p + 1] !== 'd') return fail(`qemu-io: unsupported option -${line[p + 1] ?? ''}`);
    qdev = true;
    p += 2;
  }
  const device = getStr(line, p);
  if ('error' in device) {
    if (device.error !== null) stdout?.(device.error);
    return fail('qemu-io: block device name expected');
  }
  const command = getStr(line, device.pos);
  if ('error' in command) {
    if (command.error !== null) stdout?.(command.error);
    return fail('qemu-io: string expected');
  }
  if (line.slice(command.pos).trim() !== '') return fail('qemu-io: extraneous characters at the end of line');
  return { qdev, device: device.value, command: command.value };
}

/** The BlockBackend a device name stands for: a named one, or one attached to a device. */
function findBackend(graph: BlockGraph, name: string, qdev: boolean): BlockBackend | undefined {
  for (const backend of graph.backends.values()) {
    if (!(backend instanceof BlockBackend)) continue;
    if (qdev ? backend.devId === name : backend.name === name) return backend;
  }
  return undefined;
}

/** hmp_qemu_io: runs one qemu-io command on a device's backend or on a node. */
function* hmpQemuIo(vm: MonitorVm, args: QemuIoArgs, mon: HmpOutput): Co<void> {
  const graph = blockEnv(vm).graph;
  let blk = findBackend(graph, args.device, args.qdev);
  let local: BlockBackend | null = null;
  if (blk === undefined) {
    if (args.qdev) {
      mon.printf(`Error: Device '${args.device}' not found`);
      return;
    }
    const bs = graph.findNode(args.device);
    if (bs === undefined) {
      mon.printf(`Error: Cannot find device='' nor node-name='${args.device}'`);
      return;
    }
    // blk_new(ctx, 0, BLK_PERM_ALL): no permission until a command needs one, everything shared.
    try {
      local = BlockBackend.withNode(graph, bs, { perm: 0, shared: BlkPerm.ALL });
    } catch (error) {
      if (!(error instanceof BlockError)) throw error;
      mon.printf(`Error: ${error.message}`);
      return;
    }
    blk = local;
  }
  const stdout = vm.services.get('stdout') as ((line: string) => void) | undefined;
  const stderr = vm.services.get('stderr') as ((line: string) => void) | undefined;
  const loop = vm.loop;
  const target = backendIoTarget(blk);
  const session = new QemuIoSession(() => target, {
    out: (line) => stdout?.(line),
    err: (line) => stderr?.(line),
    report: (message) => mon.printf(message),
    nowMs: () => loop.clocks.realtimeNs / 1e6,
    spawn: (name, body) => loop.spawn(`qemu-io:${name}`, body),
  });
  try {
    const result = yield* session.command(args.command);
    // qemu-io's `open`, `info`, `help`... are not offered on a node: qemu-io says so on stderr.
    if (typeof result === 'object') stderr?.(`command "${result.name}" not found`);
  } finally {
    if (local !== null) {
      // blk_unref of the temporary backend drains it: its aio requests end before the reply.
      yield* session.drainAio();
      yield* local.coDrain();
      local.dispose();
    }
  }
}

/** handle_hmp_command: the output of one command line. */
function* hmpCommand(vm: MonitorVm, line: string): Co<string> {
  const mon = new HmpOutput();
  let p = 0;
  while (p < line.length && /\s/.test(line[p]!)) p++;
  const start = p;
  while (p < line.length && !/\s/.test(line[p]!)) p++;
  const name = line.slice(start, p);
  if (name === '') return mon.value;
  if (name !== 'qemu-io') {
    // `info` is a table of its own: QEMU names the subcommand it did not find with it.
    const sub = name === 'info' ? /^\s*(\S+)/.exec(line.slice(p))?.[1] : undefined;
    mon.printf(`unknown command: '${sub !== undefined ? `${name} ${sub}` : name}'`);
    return mon.value;
  }
  const args = parseQemuIoArgs(line, p, mon, vm.services.get('stdout') as ((line: string) => void) | undefined);
  if (args !== null) yield* hmpQemuIo(vm, args, mon);
  return mon.value;
}

export function hmpCommands(): CommandDef[] {
  return [
    defineCommand<{ 'command-line': string; 'cpu-index'?: number }>({
      name: 'human-monitor-command',
      args: struct({ 'command-line': str, 'cpu-index?': int }),
      co: true,
      *run({ vm }, args) {
        // tsqemu's machines have one hart: CPU 0 is the only valid index.
        if (args['cpu-index'] !== undefined && args['cpu-index'] !== 0) throw new QmpError("Parameter 'cpu-index' expects a CPU number");
        return yield* hmpCommand(vm, args['command-line']);
      },
    }),
  ];
}

