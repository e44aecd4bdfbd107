/**
 * Host side of the qtest *server*: the `-qtest` chardev (`stdio`, `unix:PATH[,server=on][,wait=off]`,
 * `tcp:HOST:PORT[,server=on]`). Bytes from the client are cut into lines and offered to the input
 * gate (kinds `qtest-open`, `qtest`, `qtest-close`), so the engine sees them only when it polls and
 * a recording replays them; replies are written back to the connection as they are produced.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { InputGate } from './input-gate.js';

/** Longest qtest line accepted; longer lines are offered as `null` (the server answers FAIL). */
export const MAX_QTEST_LINE_BYTES = 80 * 1024 * 1024;

/** The server's output, structurally the qtest layer's `QtestOutput`. */
export interface QtestWire {
  write(text: string): void;
}

export class QtestChardevError extends Error {
  override readonly name = 'QtestChardevError';
}

export type QtestChardevSpec =
  | { readonly kind: 'stdio' }
  | { readonly kind: 'unix'; readonly path: string; readonly server: boolean; readonly wait: boolean }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number; readonly server: boolean; readonly wait: boolean };

/** Parses QEMU's chardev shorthand as `-qtest` takes it. */
export function parseQtestChardev(spec: string): QtestChardevSpec {
  if (spec === 'stdio') return { kind: 'stdio' };
  const [head, ...opts] = spec.split(',');
  let server = false;
  let wait = true;
  for (const opt of opts) {
    const [key, value = 'on'] = opt.split('=');
    const on = value === 'on' || value === 'yes' || value === 'true';
    if (key === 'server') server = on;
    else if (key === 'wait') wait = on;
    else if (key === 'nowait') wait = false;
    else throw new QtestChardevError(`-qtest ${spec}: unknown option '${opt}'`);
  }
  if (head?.startsWith('unix:')) {
    const path = head.slice(5);
    if (path === '') throw new QtestChardevError(`-qtest ${spec}: missing socket path`);
    return { kind: 'unix', path, server, wait };
  }
  const tcp = head === undefined ? null : /^tcp:([^:]*):(\d+)$/.exec(head);
  if (tcp !== null) {
    const port = Number(tcp[2]);
    if (port > 65535) throw new QtestChardevError(`-qtest ${spec}: bad port`);
    return { kind: 'tcp', host: tcp[1] === '' ? 'localhost' : tcp[1]!, port, server, wait };
  }
  throw new QtestChardevError(`-qtest ${spec}: expected stdio, unix:PATH or tcp:HOST:PORT`);
}

/** Cuts a byte stream into lines and offers them to the gate. */
class LineOfferer {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private overlong = false;

  constructor(
    private readonly gate: InputGate,
    private readonly channel: string,
  ) {}

  open(): void {
    this.gate.offer({ channel: this.channel, kind: 'qtest-open', data: null });
  }

  close(): void {
    this.pending = [];
    this.pendingBytes = 0;
    this.overlong = false;
    this.gate.offer({ channel: this.channel, kind: 'qtest-close', data: null });
  }

  push(chunk: Buffer): void {
    let start = 0;
    for (let nl = chunk.indexOf(10, start); nl >= 0; nl = chunk.indexOf(10, start)) {
      this.append(chunk.subarray(start, nl));
      const line = this.overlong ? null : Buffer.concat(this.pending).toString('latin1');
      this.gate.offer({ channel: this.channel, kind: 'qtest', data: line });
      this.pending = [];
      this.pendingBytes = 0;
      this.overlong = false;
      start = nl + 1;
    }
    this.append(chunk.subarray(start));
  }

  private append(part: Buffer): void {
    if (this.overlong || part.length === 0) return;
    if (this.pendingBytes + part.length > MAX_QTEST_LINE_BYTES) {
      this.overlong = true;
      this.pending = [];
      this.pendingBytes = 0;
      return;
    }
    this.pending.push(part);
    this.pendingBytes += part.length;
  }
}

/** A running `-qtest` chardev. */
export interface QtestChardev {
  /** Where the server writes replies (to the connected client, if any). */
  readonly wire: QtestWire;
  /**
   * Resolves when a client is connected (immediately for stdio); rejects with a QtestChardevError
   * when the socket cannot be set up (the command line reports it and exits, as QEMU does).
   */
  readonly connected: Promise<void>;
  /** Called when the client goes away (stdin EOF, socket closed). */
  onDisconnect: (() => void) | null;
  close(): void;
}

/** Starts the chardev. Offers go to `gate` on `channel`. */
export function startQtestChardev(gate: InputGate, spec: QtestChardevSpec, channel = 'qtest'): QtestChardev {
  const lines = new LineOfferer(gate, channel);
  if (spec.kind === 'stdio') return stdioChardev(lines);
  return socketChardev(lines, spec);
}

function stdioChardev(lines: LineOfferer): QtestChardev {
  const chardev: QtestChardev = {
    wire: {
      write(text: string): void {
        writeAll(1, Buffer.from(text, 'latin1'));
      },
    },
    connected: Promise.resolve(),
    onDisconnect: null,
    close(): void {
      process.stdin.pause();
    },
  };
  lines.open();
  process.stdin.on('data', (chunk: Buffer) => lines.push(chunk));
  process.stdin.on('end', () => {
    lines.close();
    chardev.onDisconnect?.();
  });
  return chardev;
}

/** stdout may be a pipe: write synchronously so replies keep their order with the log. */
function writeAll(fd: number, data: Buffer): void {
  let off = 0;
  for (let guard = 0; off < data.length && guard < 1 << 20; guard++) {
    try {
      off += writeSync(fd, data, off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
    }
  }
}

function socketChardev(lines: LineOfferer, spec: Exclude<QtestChardevSpec, { kind: 'stdio' }>): QtestChardev {
  let current: Socket | null = null;
  let listener: Server | null = null;
  let resolveConnected: () => void = () => {};
  let rejectConnected: (e: Error) => void = () => {};
  const connected = new Promise<void>((resolve, reject) => {
    resolveConnected = resolve;
    rejectConnected = reject;
  });
  const where = spec.kind === 'unix' ? spec.path : `${spec.host}:${spec.port}`;
  const chardev: QtestChardev = {
    wire: {
      write(text: string): void {
        current?.write(text, 'latin1');
      },
    },
    connected,
    onDisconnect: null,
    close(): void {
      current?.destroy();
      listener?.close();
    },
  };
  const adopt = (socket: Socket): void => {
    if (current !== null) {
      socket.destroy(); // one client at a time, as QEMU's chardev
      return;
    }
    current = socket;
    socket.setNoDelay(true);
    lines.open();
    resolveConnected();
    socket.on('data', (chunk: Buffer) => lines.push(chunk));
    socket.on('close', () => {
      if (current !== socket) return;
      current = null;
      lines.close();
      chardev.onDisconnect?.();
    });
    socket.on('error', () => socket.destroy());
  };
  if (spec.server) {
    listener = createServer(adopt);
    listener.once('error', (e) => rejectConnected(new QtestChardevError(`-qtest: cannot listen on ${where}: ${e.message}`)));
    if (spec.kind === 'unix') listener.listen(spec.path);
    else listener.listen(spec.port, spec.host);
    // wait=off: the machine runs before a client comes; nobody needs to await `connected`.
    if (!spec.wait) connected.catch(() => undefined);
  } else {
    const socket = spec.kind === 'unix' ? createConnection({ path: spec.path }) : createConnection({ host: spec.host, port: spec.port });
    socket.once('connect', () => adopt(socket));
    socket.once('error', (e) => {
      if (current === null) rejectConnected(new QtestChardevError(`-qtest: cannot connect to ${where}: ${e.message}`));
    });
  }
  return chardev;
}

/** `-qtest-log FILE`: synchronous appends, so the log is complete even if the process dies. */
export function openQtestLogFile(path: string): { write(text: string): void; close(): void } {
  const fd = path === '/dev/stdout' ? 1 : path === '/dev/stderr' ? 2 : openSync(path, 'w');
  return {
    write(text: string): void {
      writeAll(fd, Buffer.from(text, 'latin1'));
    },
    close(): void {
      if (fd > 2) closeSync(fd);
    },
  };
}
