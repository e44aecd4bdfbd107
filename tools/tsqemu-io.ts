/**
 * tsqemu-io: qemu-io's command set and output over tsqemu's qcow2/raw code. Requests run as
 * coroutines on a MainLoop; `aio_*` commands are spawned and complete at `aio_flush` (or exit),
 * as in-flight AIO does in qemu-io. The timing line uses the host clock, in qemu-io's format
 * (iotests filter it the same way).
 */
import { readFileSync } from 'node:fs';
import type { Co } from '../src/engine/coroutine.js';
import { MainLoop } from '../src/engine/main-loop.js';
import { ImageError } from '../src/block/qcow2/errors.js';
import { getopt, GetoptError, has, last, splitWords, type Parsed } from '../src/block/image/getopt.js';
import { closeImage, openImage, parseFormat, type ImageHandle } from '../src/block/image/handle.js';
import { imageInfo, imageInfoText } from '../src/block/image/info.js';
import { cvtstr, parseSize } from '../src/block/image/size.js';

const PROG = 'tsqemu-io';
const loop = new MainLoop();
let image: ImageHandle | null = null;
const inflight: { done: boolean }[] = [];

function out(s: string): void {
  process.stdout.write(s + '\n');
}

class CmdError extends Error {}

/** Wrong operands after option parsing: qemu-io prints the command's usage line. */
class UsageError extends Error {}

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

function usageLine(name: string): string {
  const c = COMMANDS[name]!;
  return `${name} ${c.args} -- ${c.oneline}`;
}

/** qemu-io's cvtnum: sizes with suffixes, or hex/decimal byte counts. */
function cvtnum(text: string): number {
  let v: number | null = null;
  if (/^0x[0-9a-f]+$/i.test(text)) v = parseInt(text, 16);
  else v = parseSize(text);
  if (v === null || !Number.isSafeInteger(v)) throw new CmdError(`Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- ${text}`);
  return v;
}

function parsePattern(text: string): number {
  const v = /^0x[0-9a-f]+$/i.test(text) ? parseInt(text, 16) : /^0[0-7]*$/.test(text) ? parseInt(text, 8) : /^\d+$/.test(text) ? parseInt(text, 10) : NaN;
  if (!(v >= 0 && v <= 255)) throw new CmdError(`${text} is not a valid pattern byte`);
  return v;
}

function timestr(secs: number): string {
  const cs = Math.floor((secs % 1) * 100);
  const whole = Math.floor(secs);
  const p2 = (n: number): string => String(n).padStart(2, '0');
  if (whole >= 3600) return `${Math.floor(whole / 3600)}:${p2(Math.floor(whole / 60) % 60)}:${p2(whole % 60)}.${p2(cs)}`;
  if (whole >= 60) return `${Math.floor(whole / 60)}:${p2(whole % 60)}.${p2(cs)}`;
  return `${p2(whole)}.${p2(cs)} sec`;
}

function report(op: string, offset: number, count: number, total: number, ops: number, ms: number): void {
  const secs = ms / 1000;
  out(`${op} ${count}/${total} bytes at offset ${offset}`);
  const rate = secs > 0 ? total / secs : Infinity;
  const opsRate = secs > 0 ? ops / secs : Infinity;
  const rateText = Number.isFinite(rate) ? cvtstr(rate) : 'inf EiB';
  out(`${cvtstr(total)}, ${ops} ops; ${timestr(secs)} (${rateText}/sec and ${Number.isFinite(opsRate) ? opsRate.toFixed(4) : 'inf'} ops/sec)`);
}

function dumpBuffer(buf: Uint8Array, offset: number): void {
  for (let i = 0; i < buf.length; i += 16) {
    let line = `${(offset + i).toString(16).padStart(8, '0')}:  `;
    let chars = '';
    for (let j = 0; j < 16; j++) {
      if (i + j < buf.length) {
        const c = buf[i + j]!;
        line += `${c.toString(16).padStart(2, '0')} `;
        chars += /[0-9A-Za-z]/.test(String.fromCharCode(c)) ? String.fromCharCode(c) : '.'; // isalnum, as qemu-io
      }
    }
    out(`${line} ${chars}`);
  }
}

function img(): ImageHandle {
  if (image === null) throw new CmdError('no file open, try \'help open\'');
  return image;
}

function run<T>(co: Co<T>): T {
  return loop.runCoroutine('qemu-io', co);
}

function errText(e: unknown): string {
  if (e instanceof ImageError) return e.errnoText;
  throw e;
}

function offsetAndCount(p: Parsed, name: string): [number, number] {
  if (p.positional.length !== 2) throw new UsageError(name);
  return [cvtnum(p.positional[0]!), cvtnum(p.positional[1]!)];
}

/** Returns false when the command failed (qemu-io then exits 1). */
function verify(buf: Uint8Array, pattern: number | null, offset: number, patOff: number, patLen: number): boolean {
  if (pattern === null) return true;
  const region = buf.subarray(patOff, patOff + patLen);
  if (region.every((b) => b === pattern)) return true;
  out(`Pattern verification failed at offset ${offset + patOff}, ${patLen} bytes`);
  return false;
}

function cmdRead(args: string[]): boolean {
  const p = getopt(args, 'bCcqpP:s:l:v');
  const [offset, count] = offsetAndCount(p, 'read');
  const pattern = has(p, 'P') ? parsePattern(last(p, 'P')!) : null;
  const patOff = has(p, 's') ? cvtnum(last(p, 's')!) : 0;
  const patLen = has(p, 'l') ? cvtnum(last(p, 'l')!) : count - patOff;
  if (patOff + patLen > count) throw new CmdError('pattern verification range exceeds end of read data');
  const buf = new Uint8Array(count);
  const t0 = performance.now();
  try {
    run(img().read(offset, buf));
  } catch (e) {
    out(`read failed: ${errText(e)}`);
    return false;
  }
  const ms = performance.now() - t0;
  const ok = verify(buf, pattern, offset, patOff, patLen);
  if (has(p, 'q')) return ok;
  if (has(p, 'v')) dumpBuffer(buf, offset);
  report('read', offset, count, count, 1, ms);
  return ok;
}

function cmdWrite(args: string[]): boolean {
  const p = getopt(args, 'bcCfnpP:quz');
  const [offset, count] = offsetAndCount(p, 'write');
  if (has(p, 'z') && has(p, 'P')) throw new CmdError('Only one of -z, -P, and -s can be specified at the same time');
  if (has(p, 'u') && !has(p, 'z')) throw new CmdError('-u requires -z to be specified');
  const pattern = has(p, 'P') ? parsePattern(last(p, 'P')!) : 0xcd;
  if (has(p, 'c') || has(p, 'b')) {
    // qemu-io checks sector alignment itself for compressed (and vmstate) writes.
    if (offset % 512 !== 0) throw new CmdError(`${offset} is not a sector-aligned value for 'offset'`);
    if (count % 512 !== 0) throw new CmdError(`${count} is not a sector-aligned value for 'count'`);
  }
  const t0 = performance.now();
  try {
    if (has(p, 'z')) run(img().writeZeroes(offset, count, has(p, 'u')));
    else if (has(p, 'c')) run(img().writeCompressed(offset, new Uint8Array(count).fill(pattern)));
    else run(img().write(offset, new Uint8Array(count).fill(pattern)));
  } catch (e) {
    out(`write failed: ${errText(e)}`);
    return false;
  }
  if (!has(p, 'q')) report('wrote', offset, count, count, 1, performance.now() - t0);
  return true;
}

/** readv/writev: one offset, several lengths (an iovec); output as read/write. */
function cmdVector(args: string[], write: boolean): boolean {
  const p = getopt(args, write ? 'CfqP:' : 'CqP:s:l:v');
  const name = write ? 'writev' : 'readv';
  if (p.positional.length < 2) throw new UsageError(name);
  const offset = cvtnum(p.positional[0]!);
  const count = p.positional.slice(1).reduce((sum, t) => sum + cvtnum(t), 0);
  const pattern = has(p, 'P') ? parsePattern(last(p, 'P')!) : write ? 0xcd : null;
  const t0 = performance.now();
  const buf = new Uint8Array(count);
  try {
    if (write) run(img().write(offset, buf.fill(pattern!)));
    else run(img().read(offset, buf));
  } catch (e) {
    out(`${name} failed: ${errText(e)}`);
    return false;
  }
  const ms = performance.now() - t0;
  const ok = write || verify(buf, pattern, offset, 0, count);
  if (has(p, 'q')) return ok;
  if (!write && has(p, 'v')) dumpBuffer(buf, offset);
  report(write ? 'wrote' : 'read', offset, count, count, 1, ms);
  return ok;
}

function cmdTruncate(args: string[]): boolean {
  const p = getopt(args, 'm:');
  if (p.positional.length !== 1) throw new UsageError('truncate');
  const mode = last(p, 'm') ?? 'off';
  if (mode !== 'off') throw new CmdError(`Invalid preallocation mode '${mode}'`);
  try {
    run(img().truncate(cvtnum(p.positional[0]!), true));
  } catch (e) {
    if (e instanceof ImageError) {
      out(`truncate: ${e.message}`);
      return false;
    }
    throw e;
  }
  return true;
}

let aioFailed = false;

function cmdAio(args: string[], write: boolean): boolean {
  const p = getopt(args, write ? 'CfiP:quz' : 'CiP:qv');
  const name = write ? 'aio_write' : 'aio_read';
  if (p.positional.length < 2) throw new UsageError(name);
  const offset = cvtnum(p.positional[0]!);
  const count = p.positional.slice(1).reduce((s, t) => s + cvtnum(t), 0);
  if (write && has(p, 'z') && has(p, 'P')) throw new CmdError('Only one of -z, -P, and -s can be specified at the same time');
  const pattern = has(p, 'P') ? parsePattern(last(p, 'P')!) : write ? 0xcd : null;
  const h = img();
  const t0 = performance.now();
  const req = { done: false };
  inflight.push(req);
  loop.spawn(name, (function* (): Co<void> {
    try {
      if (write) {
        if (has(p, 'z')) yield* h.writeZeroes(offset, count, has(p, 'u'));
        else yield* h.write(offset, new Uint8Array(count).fill(pattern!));
        if (!has(p, 'q')) report('wrote', offset, count, count, 1, performance.now() - t0);
      } else {
        const buf = new Uint8Array(count);
        yield* h.read(offset, buf);
        if (!verify(buf, pattern, offset, 0, count)) aioFailed = true;
        else if (!has(p, 'q')) {
          if (has(p, 'v')) dumpBuffer(buf, offset);
          report('read', offset, count, count, 1, performance.now() - t0);
        }
      }
    } catch (e) {
      out(`${name} failed: ${errText(e)}`);
      aioFailed = true;
    } finally {
      req.done = true;
    }
  })());
  return true;
}

function drainAio(): void {
  loop.runUntil(() => inflight.every((r) => r.done));
  inflight.length = 0;
}

function cmdDiscard(args: string[]): boolean {
  const p = getopt(args, 'Cq');
  const [offset, count] = offsetAndCount(p, 'discard');
  const t0 = performance.now();
  try {
    run(img().discard(offset, count));
  } catch (e) {
    out(`discard failed: ${errText(e)}`);
    return false;
  }
  if (!has(p, 'q')) report('discard', offset, count, count, 1, performance.now() - t0);
  return true;
}

function cmdMap(): boolean {
  const h = img();
  const size = h.sizeBytes();
  let offset = 0;
  // Top layer only, as qemu-io's map (bdrv_is_allocated): runs of equal allocation state.
  while (offset < size) {
    let num = 0;
    let allocated: boolean | null = null;
    while (offset + num < size) {
      const st = run(h.layerStatus(offset + num, size - offset - num));
      if (allocated !== null && st.allocated !== allocated) break;
      allocated = st.allocated;
      num += st.bytes;
    }
    out(`${cvtstr(num)} (0x${num.toString(16)}) bytes ${allocated === true ? '    allocated' : 'not allocated'} at offset ${cvtstr(offset)} (0x${offset.toString(16)})`);
    offset += num;
  }
  return true;
}

function cmdAlloc(args: string[]): boolean {
  const p = getopt(args, '');
  if (p.positional.length < 1 || p.positional.length > 2) throw new UsageError('alloc');
  const offset = cvtnum(p.positional[0]!);
  const count = p.positional.length === 2 ? cvtnum(p.positional[1]!) : 512;
  const h = img();
  let sum = 0;
  let pos = offset;
  const end = Math.min(offset + count, h.sizeBytes());
  try {
    while (pos < end) {
      const st = run(h.layerStatus(pos, end - pos));
      if (st.allocated) sum += st.bytes;
      pos += st.bytes;
    }
  } catch (e) {
    out(`alloc failed: ${errText(e)}`);
    return false;
  }
  out(`${sum}/${count} bytes allocated at offset ${cvtstr(offset)}`);
  return true;
}

function cmdInfo(): boolean {
  const h = img();
  out(`format name: ${h.format}`);
  const q = h.qcow2;
  if (q === null) {
    out(`cluster size: ${cvtstr(0)}`);
    out(`vm state offset: ${cvtstr(0)}`);
    return true;
  }
  out(`cluster size: ${cvtstr(q.cs)}`);
  const l1Span = q.cs * q.l2Entries;
  out(`vm state offset: ${cvtstr(Math.ceil(q.sizeBytes / l1Span) * l1Span)}`);
  const info = run(imageInfo(h, 0));
  const text = imageInfoText(info).split('\n');
  const at = text.indexOf('Format specific information:');
  if (at >= 0) out(text.slice(at).join('\n'));
  return true;
}

const HELP = `aio_flush -- completes all outstanding aio requests
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

/** Runs one command line; returns false when it failed. */
function command(line: string): boolean | 'quit' {
  const words = splitWords(line);
  const [name, ...args] = words;
  if (name === undefined) return true;
  const canonicalName = ALIASES[name] ?? name;
  const spec = COMMANDS[canonicalName];
  if (spec !== undefined && (args.length < spec.min || (spec.max !== -1 && args.length > spec.max))) {
    // qemuio_command's badcount(): on stderr, before the command runs.
    const expected = spec.max === -1 ? `at least ${spec.min}` : spec.min === spec.max ? `${spec.min}` : `between ${spec.min} and ${spec.max}`;
    process.stderr.write(`bad argument count ${args.length} to ${canonicalName}, expected ${expected} arguments\n`);
    return false;
  }
  try {
    switch (name) {
      case 'read':
      case 'r':
        return cmdRead(args);
      case 'write':
      case 'w':
        return cmdWrite(args);
      case 'readv':
        return cmdVector(args, false);
      case 'writev':
        return cmdVector(args, true);
      case 'truncate':
      case 't':
        return cmdTruncate(args);
      case 'sleep':
        // Nothing runs in the background here: a sleep only lets in-flight AIO finish.
        drainAio();
        return true;
      case 'aio_read':
        return cmdAio(args, false);
      case 'aio_write':
        return cmdAio(args, true);
      case 'aio_flush':
        drainAio();
        return true;
      case 'flush':
      case 'f':
        drainAio();
        try {
          run(img().flush());
        } catch (e) {
          out(`flush failed: ${errText(e)}`);
          return false;
        }
        return true;
      case 'discard':
      case 'd':
        return cmdDiscard(args);
      case 'map':
        return cmdMap();
      case 'alloc':
        return cmdAlloc(args);
      case 'length':
      case 'l':
        out(cvtstr(img().sizeBytes()));
        return true;
      case 'info':
      case 'i':
        return cmdInfo();
      case 'help':
      case '?':
        out(HELP);
        return true;
      case 'quit':
      case 'q':
        return 'quit';
      default:
        process.stderr.write(`command "${name}" not found\n`);
        return false;
    }
  } catch (e) {
    if (e instanceof CmdError) {
      out(e.message);
      return false;
    }
    if (e instanceof GetoptError) {
      // getopt complains on stderr, then qemu-io shows the usage line.
      process.stderr.write(`${canonicalName}: ${e.message}\n`);
      if (COMMANDS[canonicalName] !== undefined) out(usageLine(canonicalName));
      return false;
    }
    if (e instanceof UsageError) {
      out(usageLine(e.message));
      return false;
    }
    throw e;
  }
}

function main(argv: string[]): number {
  let p: Parsed;
  try {
    p = getopt(argv, 'hc:d:f:rsnCmkt:T:UV', [
      { name: 'help', hasArg: false, key: 'h' },
      { name: 'cmd', hasArg: true, key: 'c' },
      { name: 'format', hasArg: true, key: 'f' },
      { name: 'read-only', hasArg: false, key: 'r' },
      { name: 'force-share', hasArg: false, key: 'U' },
      { name: 'version', hasArg: false, key: 'V' },
    ]);
  } catch (e) {
    if (e instanceof GetoptError) {
      process.stderr.write(`${PROG}: ${e.message}\nTry '${PROG} --help' for more information.\n`);
      return 1;
    }
    throw e;
  }
  if (has(p, 'h')) {
    out(`Usage: ${PROG} [OPTIONS]... [-c STRING]... [file]\n\n${HELP}`);
    return 0;
  }
  if (has(p, 'V')) {
    out(`${PROG} version 7.2.0 (tsqemu 0.1.0)`);
    return 0;
  }
  if (p.positional.length > 1) {
    process.stderr.write(`${PROG}: too many arguments\n`);
    return 1;
  }
  const filename = p.positional[0];
  if (filename !== undefined) {
    try {
      const fmt = last(p, 'f');
      image = run(openImage(filename, { format: fmt === undefined ? null : parseFormat(fmt), readOnly: has(p, 'r'), onMessage: (l) => process.stderr.write(l + '\n') }));
    } catch (e) {
      if (e instanceof ImageError) {
        process.stderr.write(`${PROG}: can't open device ${filename}: ${e.message}\n`);
        return 1;
      }
      throw e;
    }
  }
  const commands = p.opts.get('c') ?? readFileSync(0, 'utf8').split('\n');
  let failed = false;
  for (const c of commands) {
    const r = command(c);
    if (r === 'quit') break;
    if (!r) failed = true;
  }
  drainAio();
  if (aioFailed) failed = true;
  if (image !== null) {
    try {
      run(closeImage(image));
    } catch (e) {
      if (!(e instanceof ImageError)) throw e;
      process.stderr.write(`${PROG}: close failed: ${e.message}\n`);
      failed = true;
    }
  }
  return failed ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
