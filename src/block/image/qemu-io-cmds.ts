/**
 * qemu-io's command set (qemu-io-cmds.c) over any image: the tsqemu-io tool runs it on an image
 * it opened itself, the monitor's HMP `qemu-io` runs it on a node of the VM through a
 * BlockBackend. Parsing, checks, messages and the report lines are the same for both; what a
 * request does and where output goes is the caller's (a QemuIoTarget and a QemuIoEnv).
 */
import type { Co } from '../../engine/coroutine.js';
import { YIELD } from '../../engine/coroutine.js';
import { getopt, GetoptError, has, last, splitWords, type Parsed } from './getopt.js';
import { cvtstr, parseSize } from './size.js';

/** What one qemu-io command runs against. Requests throw; `errorText` says how a failure reads. */
export interface QemuIoTarget {
  sizeBytes(): number;
  read(offset: number, buf: Uint8Array): Co<void>;
  /** `fua`: write -f (force unit access). */
  write(offset: number, data: Uint8Array, fua: boolean): Co<void>;
  writeZeroes(offset: number, bytes: number, mayUnmap: boolean): Co<void>;
  writeCompressed(offset: number, data: Uint8Array): Co<void>;
  discard(offset: number, bytes: number): Co<void>;
  flush(): Co<void>;
  /** Resizes; throws a failure whose `errorText` is the whole message after `truncate: `. */
  truncate(sizeBytes: number): Co<void>;
  /** Allocation in the top layer only (bdrv_is_allocated): the first `bytes` that share it. */
  isAllocated(offset: number, bytes: number): Co<{ allocated: boolean; bytes: number }>;
  /**
   * qemu-io's command(): extends the target's permissions to what a command needs (WRITE for
   * the writing ones, RESIZE for truncate) before it runs; throws a QemuIoPermError whose
   * message is reported.
   */
  requirePerm?(perm: 'write' | 'resize'): void;
  /** The text of a failed request ("Input/output error"); rethrows what is not a request failure. */
  errorText(error: unknown): string;
}

/** A refused permission extension: qemu-io error_report()s it and the command does nothing. */
export class QemuIoPermError extends Error {
  override readonly name = 'QemuIoPermError';
}

/** Where qemu-io's output goes and how it runs background requests. */
export interface QemuIoEnv {
  /** One line of qemu-io's printf output (stdout). */
  out(line: string): void;
  /** qemu-io's fprintf(stderr) (argument counts, getopt, unknown commands): the process's stderr. */
  err(line: string): void;
  /** error_report(): stderr for the tool, the monitor for HMP. */
  report(message: string): void;
  /** A clock in milliseconds for the timing line (host time for the tool, virtual for HMP). */
  nowMs(): number;
  /** Runs an aio_* request in the background. */
  spawn(name: string, body: Co<void>): void;
}

/** A qemu-io usage error: printed as is, the command fails. */
export class QemuIoCmdError extends Error {
  override readonly name = 'QemuIoCmdError';
}

/** Wrong operands after option parsing: qemu-io prints the command's usage line. */
class QemuIoUsageError extends Error {
  override readonly name = 'QemuIoUsageError';
}

/** qemu-io's command table: operand counts (options included, as qemu-io counts) and usage. */
const COMMANDS: Readonly<Record<string, { min: number; max: number; args: string; oneline: string }>> = {
  read: { min: 2, max: -1, args: '[-abCqv] [-P pattern [-s off] [-l len]] off len', oneline: 'reads a number of bytes at a specified offset' },
  readv: { min: 2, max: -1, args: '[-Cqv] [-P pattern] off len [len..]', oneline: 'reads a number of bytes at a specified offset' },
  write: { min: 2, max: -1, args: '[-bcCfnquz] [-P pattern | -s source_file] off len', oneline: 'writes a number of bytes at a specified offset' },
  writev: { min: 2, max: -1, args: '[-Cfq] [-P pattern] off len [len..]', oneline: 'writes a number of bytes at a specified offset' },
  aio_read: { min: 2, max: -1, args: '[-Cqv] [-P pattern] off len [len..]', oneline: 'asynchronously reads a number of bytes' },
  aio_write: { min: 2, max: -1, args: '[-Cfiquz] [-P pattern] off len [len..]', oneline: 'asynchronously writes a number of bytes' },
  aio_flush: { min: 0, max: 0, args: '', oneline: 'completes all outstanding aio requests' },
  discard: { min: 2, max: -1, args: '[-Cq] off len', oneline: 'discards a number of bytes at a specified offset' },
  alloc: { min: 1, max: 2, args: 'offset [count]', oneline: 'checks if offset is allocated in the file' },
  truncate: { min: 1, max: 3, args: '[-m prealloc_mode] off', oneline: 'truncates the current file at the given offset' },
  flush: { min: 0, max: 0, args: '', oneline: 'flush all in-core file state to disk' },
  length: { min: 0, max: 0, args: '', oneline: 'gets the length of the current file' },
  info: { min: 0, max: 0, args: '', oneline: 'prints information about the current file' },
  map: { min: 0, max: 0, args: '', oneline: 'prints the allocated areas of a file' },
  sleep: { min: 1, max: 1, args: 'milliseconds', oneline: 'waits for the given value in milliseconds' },
};

const ALIASES: Readonly<Record<string, string>> = { r: 'read', w: 'write', f: 'flush', d: 'discard', l: 'length', i: 'info', t: 'truncate' };

/** A command's usage line, as qemu-io prints it after a getopt error or wrong operands. */
export function usageLine(name: string): string {
  const c = COMMANDS[name];
  return c === undefined ? name : `${name} ${c.args} -- ${c.oneline}`;
}

/** Most requests aio_* keeps in flight before waiting for the oldest (qemu-io has no bound). */
const MAX_INFLIGHT_AIO = 1 << 16;

/** qemu-io's cvtnum: sizes with suffixes, or hex/decimal byte counts. */
export function cvtnum(text: string): number {
  let v: number | null = null;
  if (/^0x[0-9a-f]+$/i.test(text)) v = parseInt(text, 16);
  else v = parseSize(text);
  if (v === null || !Number.isSafeInteger(v)) throw new QemuIoCmdError(`Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- ${text}`);
  return v;
}

/** qemu-io's parse_pattern: one byte in C's strtol base 0 spelling. */
export function parsePattern(text: string): number {
  const v = /^0x[0-9a-f]+$/i.test(text) ? parseInt(text, 16) : /^0[0-7]*$/.test(text) ? parseInt(text, 8) : /^\d+$/.test(text) ? parseInt(text, 10) : NaN;
  if (!(v >= 0 && v <= 255)) throw new QemuIoCmdError(`${text} is not a valid pattern byte`);
  return v;
}

/** qemu-io's timestr of an elapsed time in seconds. */
export function timestr(secs: number): string {
  const cs = Math.floor((secs % 1) * 100);
  const whole = Math.floor(secs);
  const p2 = (n: number): string => String(n).padStart(2, '0');
  if (whole >= 3600) return `${Math.floor(whole / 3600)}:${p2(Math.floor(whole / 60) % 60)}:${p2(whole % 60)}.${p2(cs)}`;
  if (whole >= 60) return `${Math.floor(whole / 60)}:${p2(whole % 60)}.${p2(cs)}`;
  return `${p2(whole)}.${p2(cs)} sec`;
}

/** qemu-io's print_report: the two lines after a request. */
export function reportLines(op: string, offset: number, count: number, total: number, ops: number, ms: number): [string, string] {
  const secs = ms / 1000;
  const rate = secs > 0 ? total / secs : Infinity;
  const opsRate = secs > 0 ? ops / secs : Infinity;
  const rateText = Number.isFinite(rate) ? cvtstr(rate) : 'inf EiB';
  return [`${op} ${count}/${total} bytes at offset ${offset}`, `${cvtstr(total)}, ${ops} ops; ${timestr(secs)} (${rateText}/sec and ${Number.isFinite(opsRate) ? opsRate.toFixed(4) : 'inf'} ops/sec)`];
}

/** qemu-io's dump_buffer: 16 bytes a line, hex then isalnum() characters. */
export function dumpLines(buf: Uint8Array, offset: number): string[] {
  const lines: string[] = [];
  for (let i = 0; i < buf.length; i += 16) {
    let line = `${(offset + i).toString(16).padStart(8, '0')}:  `;
    let chars = '';
    for (let j = 0; j < 16 && i + j < buf.length; j++) {
      const c = buf[i + j]!;
      line += `${c.toString(16).padStart(2, '0')} `;
      chars += /[0-9A-Za-z]/.test(String.fromCharCode(c)) ? String.fromCharCode(c) : '.';
    }
    lines.push(`${line} ${chars}`);
  }
  return lines;
}

/** The commands both the tool and HMP offer, in qemu-io's help order. */
export const QEMU_IO_HELP = `aio_flush -- completes all outstanding aio requests
aio_read [-Cqv] [-P pattern] off len [len..] -- asynchronously reads a number of bytes
aio_write [-Cfquz] [-P pattern] off len [len..] -- asynchronously writes a number of bytes
alloc offset [count] -- checks if offset is allocated in the file
discard [-Cq] off len -- discards a number of bytes at a specified offset
flush -- flush all in-core file state to disk
help [command] -- help for one or all commands
info -- prints information about the current file
length -- gets the length of the current file
map -- prints the allocated areas of a file
quit -- exit the program
read [-bCqv] [-P pattern [-s off] [-l len]] off len -- reads a number of bytes at a specified offset
readv [-Cqv] [-P pattern] off len [len..] -- reads a number of bytes at a specified offset
sleep milliseconds -- waits for the given value in milliseconds
truncate [-m prealloc_mode] off -- truncates the current file at the given offset
write [-bcCfnquz] [-P pattern] off len -- writes a number of bytes at a specified offset
writev [-Cfq] [-P pattern] off len [len..] -- writes a number of bytes at a specified offset`;

/** The permission each command needs (its `perm` in qemu-io-cmds.c). */
const COMMAND_PERMS: ReadonlyMap<string, 'write' | 'resize'> = new Map([
  ['write', 'write'],
  ['w', 'write'],
  ['writev', 'write'],
  ['aio_write', 'write'],
  ['discard', 'write'],
  ['d', 'write'],
  ['truncate', 'resize'],
  ['t', 'resize'],
]);

/** A command the interpreter does not know: the caller may handle it (`info`, `help`, `open`...). */
export const NOT_HANDLED = Symbol('qemu-io command not handled');

/**
 * One qemu-io session over a target: runs command lines, keeps aio_* requests in flight until
 * aio_flush/flush/drain, remembers whether any of them failed.
 */
export class QemuIoSession {
  private readonly inflight: { done: boolean }[] = [];
  /** True once an aio_* request failed (qemu-io's exit status). */
  aioFailed = false;

  constructor(
    private readonly target: () => QemuIoTarget,
    private readonly env: QemuIoEnv,
  ) {}

  /** True while aio_* requests run. */
  get busy(): boolean {
    return this.inflight.some((r) => !r.done);
  }

  /** Waits for every aio_* request (aio_flush). */
  *drainAio(): Co<void> {
    for (let guard = 0; this.busy; guard++) {
      if (guard > 1 << 30) break;
      yield YIELD;
    }
    this.inflight.length = 0;
  }

  /**
   * Runs one command line. Returns true/false for success/failure, 'quit' for quit, or
   * NOT_HANDLED for a command this module does not implement (with its words).
   */
  *command(line: string): Co<boolean | 'quit' | { readonly notHandled: typeof NOT_HANDLED; readonly name: string; readonly args: string[] }> {
    const [name, ...args] = splitWords(line);
    if (name === undefined) return true;
    const canonicalName = ALIASES[name] ?? name;
    const spec = COMMANDS[canonicalName];
    if (spec !== undefined && (args.length < spec.min || (spec.max !== -1 && args.length > spec.max))) {
      // qemuio_command's badcount(): on stderr, before the command runs.
      const expected = spec.max === -1 ? `at least ${spec.min}` : spec.min === spec.max ? `${spec.min}` : `between ${spec.min} and ${spec.max}`;
      this.env.err(`bad argument count ${args.length} to ${canonicalName}, expected ${expected} arguments`);
      return false;
    }
    try {
      const perm = COMMAND_PERMS.get(name);
      const target = perm !== undefined ? this.target() : null;
      if (perm !== undefined && target?.requirePerm !== undefined) {
        try {
          target.requirePerm(perm);
        } catch (error) {
          if (!(error instanceof QemuIoPermError)) throw error;
          this.env.report(error.message);
          return true; // qemu-io's command() returns 0 without running the command
        }
      }
      switch (name) {
        case 'read':
        case 'r':
          return yield* this.read(args);
        case 'write':
        case 'w':
          return yield* this.write(args);
        case 'readv':
          return yield* this.vector(args, false);
        case 'writev':
          return yield* this.vector(args, true);
        case 'truncate':
        case 't':
          return yield* this.truncate(args);
        case 'sleep':
        case 'aio_flush':
          // Nothing runs in the background but aio requests: a sleep only lets them finish.
          yield* this.drainAio();
          return true;
        case 'aio_read':
          return this.aio(args, false);
        case 'aio_write':
          return this.aio(args, true);
        case 'flush':
        case 'f':
          return yield* this.flush();
        case 'discard':
        case 'd':
          return yield* this.discard(args);
        case 'map':
          return yield* this.map();
        case 'alloc':
          return yield* this.alloc(args);
        case 'length':
        case 'l':
          this.env.out(cvtstr(this.target().sizeBytes()));
          return true;
        case 'quit':
        case 'q':
          return 'quit';
        default:
          return { notHandled: NOT_HANDLED, name, args };
      }
    } catch (e) {
      if (e instanceof QemuIoCmdError) {
        this.env.out(e.message);
        return false;
      }
      if (e instanceof GetoptError) {
        // getopt complains on stderr, then qemu-io shows the usage line.
        this.env.err(`${canonicalName}: ${e.message}`);
        if (COMMANDS[canonicalName] !== undefined) this.env.out(usageLine(canonicalName));
        return false;
      }
      if (e instanceof QemuIoUsageError) {
        this.env.out(usageLine(e.message));
        return false;
      }
      throw e;
    }
  }

  private report(op: string, offset: number, count: number, t0: number): void {
    for (const line of reportLines(op, offset, count, count, 1, this.env.nowMs() - t0)) this.env.out(line);
  }

  private verify(buf: Uint8Array, pattern: number | null, offset: number, patOff: number, patLen: number): boolean {
    if (pattern === null) return true;
    const region = buf.subarray(patOff, patOff + patLen);
    if (region.every((b) => b === pattern)) return true;
    this.env.out(`Pattern verification failed at offset ${offset + patOff}, ${patLen} bytes`);
    return false;
  }

  private *read(args: string[]): Co<boolean> {
    const p = getopt(args, 'bCcqpP:s:l:v');
    const [offset, count] = offsetAndCount(p, 'read');
    const pattern = has(p, 'P') ? parsePattern(last(p, 'P')!) : null;
    const patOff = has(p, 's') ? cvtnum(last(p, 's')!) : 0;
    const patLen = has(p, 'l') ? cvtnum(last(p, 'l')!) : count - patOff;
    if (patOff + patLen > count) throw new QemuIoCmdError('pattern verification range exceeds end of read data');
    const buf = new Uint8Array(count);
    const t0 = this.env.nowMs();
    try {
      yield* this.target().read(offset, buf);
    } catch (e) {
      this.env.out(`read failed: ${this.target().errorText(e)}`);
      return false;
    }
    const ms = this.env.nowMs();
    const ok = this.verify(buf, pattern, offset, patOff, patLen);
    if (has(p, 'q')) return ok;
    if (has(p, 'v')) for (const line of dumpLines(buf, offset)) this.env.out(line);
    for (const line of reportLines('read', offset, count, count, 1, ms - t0)) this.env.out(line);
    return ok;
  }

  private *write(args: string[]): Co<boolean> {
    const p = getopt(args, 'bcCfnpP:quz');
    const [offset, count] = offsetAndCount(p, 'write');
    if (has(p, 'z') && has(p, 'P')) throw new QemuIoCmdError('Only one of -z, -P, and -s can be specified at the same time');
    if (has(p, 'u') && !has(p, 'z')) throw new QemuIoCmdError('-u requires -z to be specified');
    const pattern = has(p, 'P') ? parsePattern(last(p, 'P')!) : 0xcd;
    if (has(p, 'c') || has(p, 'b')) {
      // qemu-io checks sector alignment itself for compressed (and vmstate) writes.
      if (offset % 512 !== 0) throw new QemuIoCmdError(`${offset} is not a sector-aligned value for 'offset'`);
      if (count % 512 !== 0) throw new QemuIoCmdError(`${count} is not a sector-aligned value for 'count'`);
    }
    const t0 = this.env.nowMs();
    const target = this.target();
    try {
      if (has(p, 'z')) yield* target.writeZeroes(offset, count, has(p, 'u'));
      else if (has(p, 'c')) yield* target.writeCompressed(offset, new Uint8Array(count).fill(pattern));
      else yield* target.write(offset, new Uint8Array(count).fill(pattern), has(p, 'f'));
    } catch (e) {
      this.env.out(`write failed: ${target.errorText(e)}`);
      return false;
    }
    if (!has(p, 'q')) this.report('wrote', offset, count, t0);
    return true;
  }

  /** readv/writev: one offset, several lengths (an iovec); output as read/write. */
  private *vector(args: string[], write: boolean): Co<boolean> {
    const p = getopt(args, write ? 'CfqP:' : 'CqP:s:l:v');
    const name = write ? 'writev' : 'readv';
    if (p.positional.length < 2) throw new QemuIoUsageError(name);
    const offset = cvtnum(p.positional[0]!);
    const count = p.positional.slice(1).reduce((sum, t) => sum + cvtnum(t), 0);
    const pattern = has(p, 'P') ? parsePattern(last(p, 'P')!) : write ? 0xcd : null;
    const t0 = this.env.nowMs();
    const buf = new Uint8Array(count);
    const target = this.target();
    try {
      if (write) yield* target.write(offset, buf.fill(pattern!), has(p, 'f'));
      else yield* target.read(offset, buf);
    } catch (e) {
      this.env.out(`${name} failed: ${target.errorText(e)}`);
      return false;
    }
    const ms = this.env.nowMs();
    const ok = write || this.verify(buf, pattern, offset, 0, count);
    if (has(p, 'q')) return ok;
    if (!write && has(p, 'v')) for (const line of dumpLines(buf, offset)) this.env.out(line);
    for (const line of reportLines(write ? 'wrote' : 'read', offset, count, count, 1, ms - t0)) this.env.out(line);
    return ok;
  }

  private *truncate(args: string[]): Co<boolean> {
    const p = getopt(args, 'm:');
    if (p.positional.length !== 1) throw new QemuIoUsageError('truncate');
    const mode = last(p, 'm') ?? 'off';
    if (mode !== 'off') throw new QemuIoCmdError(`Invalid preallocation mode '${mode}'`);
    const target = this.target();
    try {
      yield* target.truncate(cvtnum(p.positional[0]!));
    } catch (e) {
      this.env.out(`truncate: ${target.errorText(e)}`);
      return false;
    }
    return true;
  }

  private aio(args: string[], write: boolean): boolean {
    const p = getopt(args, write ? 'CfiP:quz' : 'CiP:qv');
    const name = write ? 'aio_write' : 'aio_read';
    if (p.positional.length < 2) throw new QemuIoUsageError(name);
    const offset = cvtnum(p.positional[0]!);
    const count = p.positional.slice(1).reduce((s, t) => s + cvtnum(t), 0);
    if (write && has(p, 'z') && has(p, 'P')) throw new QemuIoCmdError('Only one of -z, -P, and -s can be specified at the same time');
    if (this.inflight.length >= MAX_INFLIGHT_AIO) throw new QemuIoCmdError(`${name}: too many requests in flight`);
    const pattern = has(p, 'P') ? parsePattern(last(p, 'P')!) : write ? 0xcd : null;
    const target = this.target();
    const t0 = this.env.nowMs();
    const req = { done: false };
    this.inflight.push(req);
    this.env.spawn(name, this.aioBody(name, target, p, offset, count, pattern, t0, req));
    return true;
  }

  private *aioBody(name: string, target: QemuIoTarget, p: Parsed, offset: number, count: number, pattern: number | null, t0: number, req: { done: boolean }): Co<void> {
    try {
      if (name === 'aio_write') {
        if (has(p, 'z')) yield* target.writeZeroes(offset, count, has(p, 'u'));
        else yield* target.write(offset, new Uint8Array(count).fill(pattern!), has(p, 'f'));
        if (!has(p, 'q')) this.report('wrote', offset, count, t0);
      } else {
        const buf = new Uint8Array(count);
        yield* target.read(offset, buf);
        if (!this.verify(buf, pattern, offset, 0, count)) this.aioFailed = true;
        else if (!has(p, 'q')) {
          if (has(p, 'v')) for (const line of dumpLines(buf, offset)) this.env.out(line);
          this.report('read', offset, count, t0);
        }
      }
    } catch (e) {
      this.env.out(`${name} failed: ${target.errorText(e)}`);
      this.aioFailed = true;
    } finally {
      req.done = true;
    }
  }

  private *flush(): Co<boolean> {
    yield* this.drainAio();
    const target = this.target();
    try {
      yield* target.flush();
    } catch (e) {
      this.env.out(`flush failed: ${target.errorText(e)}`);
      return false;
    }
    return true;
  }

  private *discard(args: string[]): Co<boolean> {
    const p = getopt(args, 'Cq');
    const [offset, count] = offsetAndCount(p, 'discard');
    const t0 = this.env.nowMs();
    const target = this.target();
    try {
      yield* target.discard(offset, count);
    } catch (e) {
      this.env.out(`discard failed: ${target.errorText(e)}`);
      return false;
    }
    if (!has(p, 'q')) this.report('discard', offset, count, t0);
    return true;
  }

  /** Top layer only, as qemu-io's map (bdrv_is_allocated): runs of equal allocation state. */
  private *map(): Co<boolean> {
    const target = this.target();
    const size = target.sizeBytes();
    let offset = 0;
    while (offset < size) {
      let num = 0;
      let allocated: boolean | null = null;
      while (offset + num < size) {
        const st = yield* target.isAllocated(offset + num, size - offset - num);
        if (st.bytes <= 0) throw new QemuIoCmdError(`map: no progress at offset ${offset + num}`);
        if (allocated !== null && st.allocated !== allocated) break;
        allocated = st.allocated;
        num += st.bytes;
      }
      this.env.out(`${cvtstr(num)} (0x${num.toString(16)}) bytes ${allocated === true ? '    allocated' : 'not allocated'} at offset ${cvtstr(offset)} (0x${offset.toString(16)})`);
      offset += num;
    }
    return true;
  }

  private *alloc(args: string[]): Co<boolean> {
    const p = getopt(args, '');
    if (p.positional.length < 1 || p.positional.length > 2) throw new QemuIoUsageError('alloc');
    const offset = cvtnum(p.positional[0]!);
    const count = p.positional.length === 2 ? cvtnum(p.positional[1]!) : 512;
    const target = this.target();
    let sum = 0;
    let pos = offset;
    const end = Math.min(offset + count, target.sizeBytes());
    try {
      while (pos < end) {
        const st = yield* target.isAllocated(pos, end - pos);
        if (st.bytes <= 0) throw new QemuIoCmdError(`alloc: no progress at offset ${pos}`);
        if (st.allocated) sum += st.bytes;
        pos += st.bytes;
      }
    } catch (e) {
      this.env.out(`alloc failed: ${target.errorText(e)}`);
      return false;
    }
    this.env.out(`${sum}/${count} bytes allocated at offset ${cvtstr(offset)}`);
    return true;
  }
}

function offsetAndCount(p: Parsed, name: string): [number, number] {
  if (p.positional.length !== 2) throw new QemuIoUsageError(name);
  return [cvtnum(p.positional[0]!), cvtnum(p.positional[1]!)];
}
