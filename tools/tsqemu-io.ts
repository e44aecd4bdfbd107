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
import { getopt, GetoptError, has, last, type Parsed } from '../src/block/image/getopt.js';
import { closeImage, openImage, parseFormat, type ImageHandle } from '../src/block/image/handle.js';
import { imageInfo, imageInfoText } from '../src/block/image/info.js';
import { QEMU_IO_HELP, QemuIoCmdError, QemuIoSession, type QemuIoTarget } from '../src/block/image/qemu-io-cmds.js';
import { cvtstr } from '../src/block/image/size.js';

const PROG = 'tsqemu-io';
const loop = new MainLoop();
let image: ImageHandle | null = null;
let target: QemuIoTarget | null = null;

function out(s: string): void {
  process.stdout.write(s + '\n');
}

function run<T>(co: Co<T>): T {
  return loop.runCoroutine('qemu-io', co);
}

/** A failed truncate reads as its whole message (`truncate: <message>`), not as an errno. */
class TruncateFailure extends Error {}

/** qemu-io's view of an image the tool opened itself (the HMP command runs on a BlockBackend). */
function imageTarget(h: ImageHandle): QemuIoTarget {
  return {
    sizeBytes: () => h.sizeBytes(),
    read: (offset, buf) => h.read(offset, buf),
    write: (offset, data) => h.write(offset, data),
    writeZeroes: (offset, bytes, mayUnmap) => h.writeZeroes(offset, bytes, mayUnmap),
    writeCompressed: (offset, data) => h.writeCompressed(offset, data),
    discard: (offset, bytes) => h.discard(offset, bytes),
    flush: () => h.flush(),
    *truncate(sizeBytes) {
      try {
        yield* h.truncate(sizeBytes, true);
      } catch (e) {
        if (e instanceof ImageError) throw new TruncateFailure(e.message);
        throw e;
      }
    },
    *isAllocated(offset, bytes) {
      const st = yield* h.layerStatus(offset, bytes);
      return { allocated: st.allocated, bytes: st.bytes };
    },
    errorText(e) {
      if (e instanceof TruncateFailure) return e.message;
      if (e instanceof ImageError) return e.errnoText;
      throw e;
    },
  };
}

/** The command set shared with HMP's qemu-io (src/block/image/qemu-io-cmds.ts). */
const session = new QemuIoSession(
  () => {
    if (target === null) throw new QemuIoCmdError("no file open, try 'help open'");
    return target;
  },
  {
    out,
    err: (line) => process.stderr.write(line + '\n'),
    report: (message) => process.stderr.write(`${PROG}: ${message}\n`),
    nowMs: () => performance.now(),
    spawn: (name, body) => loop.spawn(name, body),
  },
);

function cmdInfo(): boolean {
  if (image === null) throw new QemuIoCmdError("no file open, try 'help open'");
  const h = image;
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

/** Runs one command line; returns false when it failed. The tool adds info and help. */
function command(line: string): boolean | 'quit' {
  const result = run(session.command(line));
  if (typeof result !== 'object') return result;
  try {
    switch (result.name) {
      case 'info':
      case 'i':
        return cmdInfo();
      case 'help':
      case '?':
        out(QEMU_IO_HELP);
        return true;
      default:
        process.stderr.write(`command "${result.name}" not found\n`);
        return false;
    }
  } catch (e) {
    if (e instanceof QemuIoCmdError) {
      out(e.message);
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
    out(`Usage: ${PROG} [OPTIONS]... [-c STRING]... [file]\n\n${QEMU_IO_HELP}`);
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
      target = imageTarget(image);
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
  run(session.drainAio());
  if (session.aioFailed) failed = true;
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
