/**
 * Host side of the qtest *client*: spawn an emulator (tsqemu or real QEMU) that connects back to a
 * unix socket we listen on (as libqtest does: `-qtest unix:PATH`, client mode), or connect to a
 * listening server. Also a small QMP client for the side channel. Only host code lives here.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The QMP side channel of a qtest session. */
export interface QmpChannel {
  /** Runs a command; resolves with its `return` value, rejects with the `error` as a QmpError. */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown>;
  /** Events received so far (`{event, data, timestamp}`), oldest first. */
  readonly events: readonly Record<string, unknown>[];
}

/** One qtest connection as the client sees it: lines out, text in. */
export interface QtestLineTransport {
  onData: ((text: string) => void) | null;
  onClose: ((reason: string) => void) | null;
  readonly qmp?: QmpChannel | undefined;
  send(line: string): void;
  /** The client waits for a reply (true) or not (false): a transport may watch for a silent peer. */
  waiting?(waiting: boolean): void;
  close(): Promise<void>;
}

/** How long a spawned or connected emulator may stay silent while a reply is awaited. */
export const DEFAULT_REPLY_TIMEOUT_MS = 60_000;

export interface QtestProcessOptions {
  /** Program to run; default `node <repo>/dist/tools/tsqemu.js` (env TSQEMU_BIN overrides). */
  readonly binary?: string;
  /** Arguments placed before `args` (e.g. the script for `node`). */
  readonly binaryArgs?: readonly string[];
  /** Open a QMP side channel (`-qmp unix:PATH,server=on,wait=off`; we connect once it listens). */
  readonly qmp?: boolean;
  /** `-qtest-log FILE` for the child. */
  readonly qtestLog?: string;
  /** Keep the client's transcript of lines. */
  readonly transcript?: boolean;
  /** How long to wait for the child to connect (default 20 s). */
  readonly connectTimeoutMs?: number;
  /** Where the child's stderr goes (default: kept, its tail is reported on failure). */
  readonly stderr?: 'inherit' | 'pipe';
}

export class QtestSpawnError extends Error {
  override readonly name = 'QtestSpawnError';
}

export class QmpError extends Error {
  override readonly name = 'QmpError';
  constructor(
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`${errorClass}: ${desc}`);
  }
}

/** The repository root (the directory holding package.json above this file). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  return resolve('.');
}

/** How to start tsqemu: `[program, ...args]`. */
export function tsqemuCommand(): [string, ...string[]] {
  const bin = process.env.TSQEMU_BIN;
  if (bin !== undefined && bin !== '') return [bin];
  return [process.execPath, join(repoRoot(), 'dist', 'tools', 'tsqemu.js')];
}

const STDERR_TAIL_BYTES = 4096;

/** Waits for one connection on `server` (or the child's death, or the timeout). */
function acceptOne(server: Server, child: ChildProcess, timeoutMs: number, what: string, stderrTail: () => string): Promise<Socket> {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new QtestSpawnError(`${what}: the emulator did not connect within ${timeoutMs} ms${stderrTail()}`));
    }, timeoutMs);
    const onConn = (socket: Socket): void => {
      cleanup();
      resolvePromise(socket);
    };
    const onExit = (code: number | null, signal: string | null): void => {
      cleanup();
      reject(new QtestSpawnError(`${what}: the emulator exited (${signal ?? `code ${code}`}) before connecting${stderrTail()}`));
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      server.off('connection', onConn);
      child.off('exit', onExit);
    };
    server.on('connection', onConn);
    child.on('exit', onExit);
  });
}

/** Connects to a unix socket the child creates (retrying until it exists), or fails on its exit/timeout. */
async function connectWhenListening(path: string, child: ChildProcess, timeoutMs: number, stderrTail: () => string): Promise<Socket> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; attempt < 100_000; attempt++) {
    if (child.exitCode !== null || child.signalCode !== null) throw new QtestSpawnError(`qmp: the emulator exited before its QMP socket was ready${stderrTail()}`);
    try {
      return await new Promise<Socket>((resolvePromise, reject) => {
        const s = createConnection({ path });
        s.once('connect', () => resolvePromise(s));
        s.once('error', reject);
      });
    } catch {
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  throw new QtestSpawnError(`qmp: ${path} did not accept connections within ${timeoutMs} ms${stderrTail()}`);
}

function listen(path: string): Promise<Server> {
  return new Promise((resolvePromise, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(path, () => resolvePromise(server));
  });
}

/** Spawns the emulator with `-qtest unix:PATH` (and `-qmp unix:PATH`) and waits for it to connect. */
export async function spawnQtestProcess(args: readonly string[], options: QtestProcessOptions = {}): Promise<QtestLineTransport> {
  const dir = mkdtempSync(join(tmpdir(), 'tsqemu-qtest-'));
  const qtestPath = join(dir, 'qtest.sock');
  const qmpPath = join(dir, 'qmp.sock');
  const qtestServer = await listen(qtestPath);
  const [program, ...programArgs] = options.binary !== undefined ? [options.binary, ...(options.binaryArgs ?? [])] : tsqemuCommand();
  const childArgs = [...programArgs, ...args, '-qtest', `unix:${qtestPath}`];
  if (options.qmp === true) childArgs.push('-qmp', `unix:${qmpPath},server=on,wait=off`);
  if (options.qtestLog !== undefined) childArgs.push('-qtest-log', options.qtestLog);
  const child = spawn(program, childArgs, { stdio: ['ignore', 'ignore', options.stderr === 'inherit' ? 'inherit' : 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-STDERR_TAIL_BYTES);
  });
  const stderrTail = (): string => (stderr === '' ? '' : `\n--- emulator stderr ---\n${stderr}`);
  const cleanupDir = (): void => {
    qtestServer.close();
    rmSync(dir, { recursive: true, force: true });
  };
  const timeoutMs = options.connectTimeoutMs ?? 20_000;
  try {
    const qtestSocket = await acceptOne(qtestServer, child, timeoutMs, 'qtest', stderrTail);
    const qmpSocket = options.qmp === true ? await connectWhenListening(qmpPath, child, timeoutMs, stderrTail) : null;
    const qmp = qmpSocket === null ? undefined : await QmpSocketClient.start(qmpSocket);
    return new SocketTransport(qtestSocket, qmp, child, cleanupDir, stderrTail);
  } catch (e) {
    child.kill('SIGKILL');
    cleanupDir();
    throw e;
  }
}

/** Connects to a qtest server: `unix:PATH`, a bare path, or `tcp:HOST:PORT`. */
export async function connectQtestSocket(address: string, options: { replyTimeoutMs?: number } = {}): Promise<QtestLineTransport> {
  const socket = await new Promise<Socket>((resolvePromise, reject) => {
    const tcp = /^tcp:([^:]*):(\d+)$/.exec(address);
    const s = tcp !== null ? createConnection({ host: tcp[1] === '' ? 'localhost' : tcp[1], port: Number(tcp[2]) }) : createConnection({ path: address.replace(/^unix:/, '') });
    s.once('connect', () => resolvePromise(s));
    s.once('error', reject);
  });
  const transport = new SocketTransport(socket, undefined, null, () => {}, () => '');
  if (options.replyTimeoutMs !== undefined) transport.replyTimeoutMs = options.replyTimeoutMs;
  return transport;
}

/** A transport over an already connected socket (e.g. one an emulator connected to). */
export function socketTransport(socket: Socket): QtestLineTransport {
  return new SocketTransport(socket, undefined, null, () => {}, () => '');
}

class SocketTransport implements QtestLineTransport {
  onData: ((text: string) => void) | null = null;
  onClose: ((reason: string) => void) | null = null;
  private ended = false;
  private watchdog: NodeJS.Timeout | null = null;
  private awaiting = false;
  replyTimeoutMs = DEFAULT_REPLY_TIMEOUT_MS;

  constructor(
    private readonly socket: Socket,
    readonly qmp: QmpSocketClient | undefined,
    private readonly child: ChildProcess | null,
    private readonly cleanup: () => void,
    private readonly stderrTail: () => string,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      if (this.awaiting) this.arm();
      this.onData?.(chunk.toString('latin1'));
    });
    socket.on('close', () => this.finish('the emulator closed the qtest socket'));
    socket.on('error', (e) => this.finish(`socket error: ${e.message}`));
    child?.on('exit', (code, signal) => this.finish(`the emulator exited (${signal ?? `code ${code}`})`));
  }

  /** (Re)starts the silence watchdog: a hung emulator fails the command instead of hanging the test. */
  private arm(): void {
    if (this.watchdog !== null) clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => this.finish(`no reply from the emulator within ${this.replyTimeoutMs} ms`), this.replyTimeoutMs);
  }

  waiting(waiting: boolean): void {
    this.awaiting = waiting;
    if (waiting) {
      if (this.watchdog === null) this.arm();
    } else if (this.watchdog !== null) {
      clearTimeout(this.watchdog);
      this.watchdog = null;
    }
  }

  private finish(reason: string): void {
    if (this.watchdog !== null) clearTimeout(this.watchdog);
    this.watchdog = null;
    if (this.ended) return;
    this.ended = true;
    this.onClose?.(`${reason}${this.stderrTail()}`);
  }

  send(line: string): void {
    this.socket.write(`${line}\n`, 'latin1');
  }

  async close(): Promise<void> {
    const child = this.child;
    if (this.qmp !== undefined && child !== null && child.exitCode === null) {
      await this.qmp.execute('quit').catch(() => undefined);
    }
    this.ended = true;
    this.waiting(false);
    this.socket.end();
    this.qmp?.close();
    if (child !== null && child.exitCode === null && child.signalCode === null) {
      // As libqtest's qtest_quit: QEMU keeps running when the qtest socket closes, so SIGTERM it
      // (after a QMP quit, give it a moment to leave on its own first).
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      const timer = setTimeout(() => child.kill('SIGTERM'), this.qmp !== undefined ? 1_000 : 0);
      const hard = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
      clearTimeout(hard);
    }
    this.cleanup();
  }
}

/** A minimal QMP client over a connected socket: greeting, qmp_capabilities, execute, events. */
export class QmpSocketClient implements QmpChannel {
  readonly events: Record<string, unknown>[] = [];
  private buffer = '';
  private readonly waiting: { resolve: (v: unknown) => void; reject: (e: Error) => void }[] = [];
  private greeted: ((v: Record<string, unknown>) => void) | null = null;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.receive(chunk.toString('utf8')));
    socket.on('close', () => {
      for (const w of this.waiting.splice(0)) w.reject(new Error('QMP connection closed'));
    });
  }

  static async start(socket: Socket): Promise<QmpSocketClient> {
    const client = new QmpSocketClient(socket);
    await new Promise<Record<string, unknown>>((r) => (client.greeted = r));
    await client.execute('qmp_capabilities');
    return client;
  }

  private receive(text: string): void {
    this.buffer += text;
    for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line === '') continue;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if ('QMP' in msg) {
        this.greeted?.(msg);
        this.greeted = null;
      } else if ('event' in msg) {
        this.events.push(msg);
      } else if ('return' in msg || 'error' in msg) {
        const w = this.waiting.shift();
        if (w === undefined) continue;
        if ('error' in msg) {
          const err = msg.error as { class?: string; desc?: string };
          w.reject(new QmpError(err.class ?? 'GenericError', err.desc ?? ''));
        } else {
          w.resolve(msg.return);
        }
      }
    }
  }

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    return new Promise((resolvePromise, reject) => {
      this.waiting.push({ resolve: resolvePromise, reject });
      this.socket.write(`${JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args })}\n`);
    });
  }

  close(): void {
    this.socket.end();
  }
}
