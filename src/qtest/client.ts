import { spawnQtestProcess, connectQtestSocket, type QtestProcessOptions, type QtestLineTransport } from '../engine/host/qtest-process.js';
import type { MainLoop } from '../engine/main-loop.js';
import type { QtestServer } from './server.js';

export type { QtestLineTransport } from '../engine/host/qtest-process.js';

/** A reply that was not `OK…` (a FAIL, or ERR), as a typed error. */
export class QtestReplyError extends Error {
  override readonly name = 'QtestReplyError';
  constructor(
    readonly command: string,
    readonly reply: string,
  ) {
    super(`qtest '${command.length > 80 ? `${command.slice(0, 80)}…` : command}' answered '${reply}'`);
  }
}

/** The connection went away with commands outstanding. */
export class QtestClosedError extends Error {
  override readonly name = 'QtestClosedError';
}

/** Largest number of lines buffered from the server before the client consumes them. */
const MAX_BUFFERED_LINES = 1 << 20;

type Address = number | bigint;

function addr(a: Address): string {
  if (typeof a === 'number') {
    if (!Number.isSafeInteger(a) || a < 0) throw new RangeError(`bad guest address ${a}`);
    return `0x${a.toString(16)}`;
  }
  return `0x${BigInt.asUintN(64, a).toString(16)}`;
}

function parseHexReply(reply: string): bigint {
  const m = /^OK (0x[0-9a-f]+)$/.exec(reply);
  if (m === null) throw new Error(`unexpected reply '${reply}'`);
  return BigInt(m[1]!);
}

/**
 * A qtest client (QEMU's libqtest in TypeScript). Works over a socket to a spawned `tsqemu` (or
 * real QEMU), or in-process against a `QtestServer` on the same main loop. Every command waits for
 * its reply; `IRQ raise/lower N` lines are consumed on the way and remembered for `getIrq`.
 */
export class QtestClient {
  private buffered = '';
  private readonly lines: string[] = [];
  private readonly waiters: { resolve: (line: string) => void; reject: (e: Error) => void }[] = [];
  private closedReason: string | null = null;
  private readonly irqLevels = new Map<number, boolean>();
  /** `IRQ raise/lower N` lines received since the last `takeIrqEvents()`, oldest first. */
  private irqEvents: string[] = [];
  /** Every line sent and received, in order (`> cmd` / `< reply`), when `transcript` is on. */
  readonly transcript: string[] = [];

  constructor(
    private readonly transport: QtestLineTransport,
    private readonly keepTranscript = false,
  ) {
    transport.onData = (text) => this.receive(text);
    transport.onClose = (reason) => this.closed(reason);
  }

  /**
   * Spawns `tsqemu` (or `options.binary`, e.g. qemu-system-riscv64) with `-qtest unix:…`, waits
   * for it to connect, and returns a client. `options.qmp` also opens a QMP side channel.
   */
  static async spawn(args: readonly string[], options: QtestProcessOptions = {}): Promise<QtestClient> {
    return new QtestClient(await spawnQtestProcess(args, options), options.transcript ?? false);
  }

  /** Connects to a server listening on a unix socket or `tcp:HOST:PORT`. */
  static async connect(address: string, options: { replyTimeoutMs?: number } = {}): Promise<QtestClient> {
    return new QtestClient(await connectQtestSocket(address, options));
  }

  /** A client talking to `server` in this process through the loop's input gate (no sockets). */
  static inProcess(loop: MainLoop, server: QtestServer, keepTranscript = false): QtestClient {
    return new QtestClient(new InProcessTransport(loop, server), keepTranscript);
  }

  /** The underlying transport (its QMP side channel, process, …). */
  get link(): QtestLineTransport {
    return this.transport;
  }

  private receive(text: string): void {
    this.buffered += text;
    for (let guard = 0; guard < MAX_BUFFERED_LINES; guard++) {
      const nl = this.buffered.indexOf('\n');
      if (nl < 0) break;
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      this.line(line);
    }
  }

  private line(line: string): void {
    if (this.keepTranscript) this.transcript.push(`< ${line}`);
    const irq = /^IRQ (raise|lower) (\d+)$/.exec(line);
    if (irq !== null) {
      this.irqLevels.set(Number(irq[2]), irq[1] === 'raise');
      if (this.irqEvents.length < MAX_BUFFERED_LINES) this.irqEvents.push(line);
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter !== undefined) {
      if (this.waiters.length === 0) this.transport.waiting?.(false);
      waiter.resolve(line);
    } else if (this.lines.length < MAX_BUFFERED_LINES) this.lines.push(line);
  }

  private closed(reason: string): void {
    this.closedReason = reason;
    for (const w of this.waiters.splice(0)) w.reject(new QtestClosedError(`qtest connection closed: ${reason}`));
  }

  /** Sends one raw line and resolves with its reply (FAIL included: nothing is thrown for it). */
  raw(line: string): Promise<string> {
    if (this.keepTranscript) this.transcript.push(`> ${line}`);
    const promise = new Promise<string>((resolve, reject) => {
      const ready = this.lines.shift();
      if (ready !== undefined) resolve(ready);
      else if (this.closedReason !== null) reject(new QtestClosedError(`qtest connection closed: ${this.closedReason}`));
      else {
        this.waiters.push({ resolve, reject });
        this.transport.waiting?.(true);
      }
    });
    if (this.closedReason === null) this.transport.send(line);
    return promise;
  }

  /** Sends a command; throws `QtestReplyError` unless the reply starts with `OK`. */
  async command(line: string): Promise<string> {
    const reply = await this.raw(line);
    if (reply !== 'OK' && !reply.startsWith('OK ')) throw new QtestReplyError(line, reply);
    return reply;
  }

  async readb(a: Address): Promise<number> {
    return Number(parseHexReply(await this.command(`readb ${addr(a)}`)));
  }
  async readw(a: Address): Promise<number> {
    return Number(parseHexReply(await this.command(`readw ${addr(a)}`)));
  }
  async readl(a: Address): Promise<number> {
    return Number(parseHexReply(await this.command(`readl ${addr(a)}`)));
  }
  async readq(a: Address): Promise<bigint> {
    return parseHexReply(await this.command(`readq ${addr(a)}`));
  }
  async writeb(a: Address, v: number): Promise<void> {
    await this.command(`writeb ${addr(a)} 0x${(v & 0xff).toString(16)}`);
  }
  async writew(a: Address, v: number): Promise<void> {
    await this.command(`writew ${addr(a)} 0x${(v & 0xffff).toString(16)}`);
  }
  async writel(a: Address, v: number): Promise<void> {
    await this.command(`writel ${addr(a)} 0x${(v >>> 0).toString(16)}`);
  }
  async writeq(a: Address, v: bigint | number): Promise<void> {
    await this.command(`writeq ${addr(a)} 0x${BigInt.asUintN(64, BigInt(v)).toString(16)}`);
  }

  /** `read` (hex) of `len` bytes. */
  async memread(a: Address, len: number): Promise<Uint8Array> {
    const reply = await this.command(`read ${addr(a)} 0x${len.toString(16)}`);
    return new Uint8Array(Buffer.from(reply.slice(5), 'hex'));
  }

  /** `write` (hex). */
  async memwrite(a: Address, data: Uint8Array): Promise<void> {
    if (data.length === 0) return;
    await this.command(`write ${addr(a)} 0x${data.length.toString(16)} 0x${Buffer.from(data).toString('hex')}`);
  }

  /** `b64read`. */
  async bufread(a: Address, len: number): Promise<Uint8Array> {
    const reply = await this.command(`b64read ${addr(a)} 0x${len.toString(16)}`);
    return new Uint8Array(Buffer.from(reply.slice(3), 'base64'));
  }

  /** `b64write`. */
  async bufwrite(a: Address, data: Uint8Array): Promise<void> {
    if (data.length === 0) return;
    await this.command(`b64write ${addr(a)} 0x${data.length.toString(16)} ${Buffer.from(data).toString('base64')}`);
  }

  async memset(a: Address, len: number, byte: number): Promise<void> {
    await this.command(`memset ${addr(a)} 0x${len.toString(16)} 0x${(byte & 0xff).toString(16)}`);
  }

  /** `clock_step [NS]`: returns the virtual clock afterwards. */
  async clockStep(ns?: number): Promise<number> {
    const reply = await this.command(ns === undefined ? 'clock_step' : `clock_step ${ns}`);
    return Number(reply.slice(3));
  }

  async clockSet(ns: number): Promise<number> {
    return Number((await this.command(`clock_set ${ns}`)).slice(3));
  }

  async irqInterceptIn(path: string): Promise<void> {
    await this.command(`irq_intercept_in ${path}`);
  }

  async irqInterceptOut(path: string, name?: string): Promise<void> {
    await this.command(name === undefined ? `irq_intercept_out ${path}` : `irq_intercept_out ${path} ${name}`);
  }

  /** The `IRQ …` lines received since the last call (scripts print them after the reply). */
  takeIrqEvents(): string[] {
    const events = this.irqEvents;
    this.irqEvents = [];
    return events;
  }

  /** Level of intercepted line `n` as last announced (libqtest's get_irq). */
  getIrq(n: number): boolean {
    return this.irqLevels.get(n) ?? false;
  }

  /**
   * Steps virtual time deadline by deadline (`clock_step`) until intercepted line `n` has `level`;
   * returns the virtual time then. Throws after `maxSteps` steps (a bound, not a wall-clock wait).
   */
  async waitIrq(n: number, level = true, maxSteps = 1000): Promise<number> {
    let now = -1;
    for (let i = 0; i <= maxSteps; i++) {
      if (this.getIrq(n) === level) return now >= 0 ? now : this.clockStep(0);
      now = await this.clockStep();
    }
    throw new Error(`IRQ ${n} did not go ${level ? 'high' : 'low'} within ${maxSteps} clock steps`);
  }

  async setIrqIn(path: string, name: string | null, n: number, level: number): Promise<void> {
    await this.command(`set_irq_in ${path} ${name ?? 'unnamed-gpio-in'} ${n} ${level}`);
  }

  async endianness(): Promise<'little' | 'big'> {
    return (await this.command('endianness')).slice(3) as 'little' | 'big';
  }

  /** Executes a QMP command on the side channel; resolves with `return`, throws on `error`. */
  async qmp(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const qmp = this.transport.qmp;
    if (qmp === undefined) throw new Error('this qtest session has no QMP side channel (spawn with { qmp: true })');
    return qmp.execute(command, args);
  }

  /** Ends the session: QMP `quit` when there is a side channel, then closes (kills a child). */
  async quit(): Promise<void> {
    await this.transport.close();
  }
}

/**
 * In-process transport: each line is offered to the loop's input gate and the loop is run until
 * the reply is out, so the exchange is recorded exactly as over a socket, without any host I/O.
 */
class InProcessTransport implements QtestLineTransport {
  onData: ((text: string) => void) | null = null;
  onClose: ((reason: string) => void) | null = null;
  readonly qmp = undefined;
  private pendingReplies = 0;
  private readonly channel: string;

  constructor(
    private readonly loop: MainLoop,
    private readonly server: QtestServer,
  ) {
    this.channel = server.channel;
    server.setOutput({
      write: (text) => {
        if (!text.startsWith('IRQ ')) this.pendingReplies--;
        this.onData?.(text);
      },
    });
    loop.gate.offer({ channel: this.channel, kind: 'qtest-open', data: null });
    loop.runUntil(() => server.isOpen, { maxTasks: 1_000 });
  }

  send(line: string): void {
    this.pendingReplies++;
    this.loop.gate.offer({ channel: this.channel, kind: 'qtest', data: line });
    this.loop.runUntil(() => this.pendingReplies <= 0);
    if (this.pendingReplies > 0) {
      this.pendingReplies = 0;
      this.onClose?.(`no reply to '${line.slice(0, 60)}' (the loop went idle)`);
    }
  }

  close(): Promise<void> {
    this.loop.gate.offer({ channel: this.channel, kind: 'qtest-close', data: null });
    this.loop.runUntil(() => !this.server.isOpen, { maxTasks: 1_000 });
    this.server.setOutput(null);
    this.onClose?.('closed');
    return Promise.resolve();
  }
}
