import { AssertionError, assert } from '../engine/assert.js';
import type { GateInput, InputSink, StampedInput } from '../engine/host/input-gate.js';
import type { MainLoop } from '../engine/main-loop.js';
import type { GuestMemory } from '../engine/memory.js';
import type { IrqPin } from '../engine/irq.js';
import { QtestBus } from './bus.js';
import type { QtestDevice, QtestIrqRegistry } from './irq-registry.js';
import { type QtestLogSink, formatSeconds } from './log.js';
import { type ParseResult, parseI32, parseI64, parseU64, parseUlong } from './strtox.js';

declare module '../engine/trace.js' {
  interface TraceEventMap {
    /** One qtest command line was answered (`ok` false for FAIL/ERR replies). */
    'qtest.cmd': { command: string; ok: boolean };
    /** An intercepted IRQ line changed level. */
    'qtest.irq': { n: number; level: boolean };
  }
}

/** Where replies go: the connection's write side (a socket, stdout, an in-process buffer). */
export interface QtestOutput {
  write(text: string): void;
}

/** The gate channel qtest traffic uses unless told otherwise. */
export const QTEST_CHANNEL = 'qtest';

/** Largest `read`/`b64read`/`write`/`b64write` transfer (the reply or line is twice this as hex). */
export const MAX_TRANSFER_BYTES = 32 * 1024 * 1024;
/** Largest `memset` (it fills RAM in place, so it may be larger than a transfer). */
export const MAX_MEMSET_BYTES = 256 * 1024 * 1024;
/** Most IRQ lines one intercept installs (QEMU's MAX_IRQ). */
export const MAX_INTERCEPTED_IRQS = 256;
/** Largest virtual time `clock_step`/`clock_set` may reach: the engine keeps ns exact below 2^53. */
const MAX_TIME_NS = Number.MAX_SAFE_INTEGER;

/** A command that extends the protocol (QEMU's `process_command_cb`). Returns false to decline. */
export type QtestExtension = (words: readonly string[], reply: (line: string) => void) => boolean;

export interface QtestServerOptions {
  readonly loop: MainLoop;
  /** The CPU's address space (`first_cpu->as` in QEMU). */
  readonly memory: GuestMemory;
  /** I/O port space for in/out; RISC-V has none, so by default reads are all ones and writes vanish. */
  readonly io?: GuestMemory | null;
  /** Devices whose IRQ lines may be intercepted and driven. */
  readonly irqs?: QtestIrqRegistry | null;
  /** `-accel qtest`: enables `clock_step`/`clock_set` (QEMU answers "Unknown command" without it). */
  readonly accelQtest: boolean;
  /** `-qtest-log FILE`; null/undefined for `none`. */
  readonly log?: QtestLogSink | null;
  /**
   * Naturally unaligned `readw/l/q`/`writew/l/q` that touch a device: `fail` (default) answers
   * `FAIL`, `split` does what QEMU does (smaller accesses, as `memory_access_size` picks).
   * Unaligned accesses to RAM are always fine.
   */
  readonly unaligned?: 'fail' | 'split';
  readonly channel?: string;
  readonly extensions?: readonly QtestExtension[];
}

/** Inputs that may come due (in replay) while one command runs the loop. */
const MAX_DEFERRED_INPUTS = 1 << 16;

/** A malformed line: answered `FAIL <message>`, the server carries on. */
class QtestCommandError extends Error {
  override readonly name = 'QtestCommandError';
}

function need(r: ParseResult, what: string): bigint {
  if (!r.ok) throw new QtestCommandError(`${what}: ${r.reason}`);
  return r.value;
}

function hex16(v: bigint): string {
  return `0x${v.toString(16).padStart(16, '0')}`;
}

const ACCESS_SIZES: Readonly<Record<string, 1 | 2 | 4 | 8>> = { b: 1, w: 2, l: 4, q: 8 };

/**
 * QEMU's qtest server (softmmu/qtest.c) over the deterministic engine. Lines arrive through the
 * input gate (kinds `qtest-open`, `qtest`, `qtest-close`), so a session is recorded and replayed
 * like any other input; replies and `IRQ raise/lower N` lines go to the attached output. Replies
 * match QEMU byte for byte; where QEMU would assert and die on a malformed line, this answers
 * `FAIL <reason>` and keeps serving.
 */
export class QtestServer implements InputSink {
  readonly channel: string;
  private readonly loop: MainLoop;
  private readonly bus: QtestBus;
  private readonly io: QtestBus | null;
  private readonly irqs: QtestIrqRegistry | null;
  private readonly accelQtest: boolean;
  private readonly unaligned: 'fail' | 'split';
  private readonly extensions: readonly QtestExtension[];
  private log: QtestLogSink | null;
  private output: QtestOutput | null = null;
  private opened = false;
  private openNs = 0;
  private busy = false;
  /** First word of the line being answered (for the trace), at most 32 characters. */
  private currentCommand = '';
  private readonly deferred: StampedInput[] = [];
  private interceptDevice: QtestDevice | null = null;
  private readonly irqLevels = new Map<number, boolean>();
  private commandsAnswered = 0;

  constructor(options: QtestServerOptions) {
    this.loop = options.loop;
    this.bus = new QtestBus(options.memory);
    this.io = options.io ? new QtestBus(options.io) : null;
    this.irqs = options.irqs ?? null;
    this.accelQtest = options.accelQtest;
    this.log = options.log ?? null;
    this.unaligned = options.unaligned ?? 'fail';
    this.channel = options.channel ?? QTEST_CHANNEL;
    this.extensions = options.extensions ?? [];
  }

  /** Connects the server to the loop's input gate. */
  attach(): this {
    this.loop.gate.attach(this.channel, this);
    return this;
  }

  /** Sets where replies go (the host transport does this when a client connects). */
  setOutput(output: QtestOutput | null): void {
    this.output = output;
  }

  setLog(log: QtestLogSink | null): void {
    this.log = log;
  }

  /** Commands answered since creation. */
  get answered(): number {
    return this.commandsAnswered;
  }

  get isOpen(): boolean {
    return this.opened;
  }

  // ---- InputSink ------------------------------------------------------------------------------

  /** One line at a time: while a command runs (clock_step runs the loop) the next one waits. */
  room(_input: GateInput): number {
    return this.busy ? 0 : 1;
  }

  deliver(input: StampedInput): void {
    // Replay delivers inputs at their recorded points without asking room(): a line recorded right
    // after a clock_step can come due while that clock_step still runs the loop. It waits here and
    // runs when the current command is done, which is where it ran when recorded.
    if (this.busy) {
      assert(this.deferred.length < MAX_DEFERRED_INPUTS, 'too many qtest inputs came due during one command');
      this.deferred.push(input);
      return;
    }
    this.handle(input);
    for (let guard = 0; guard < MAX_DEFERRED_INPUTS && this.deferred.length > 0; guard++) this.handle(this.deferred.shift()!);
  }

  private handle(input: StampedInput): void {
    switch (input.kind) {
      case 'qtest-open':
        this.open();
        return;
      case 'qtest-close':
        this.close();
        return;
      case 'qtest':
        if (input.data === null) {
          this.logReceived(['<overlong line>']);
          this.currentCommand = '';
          this.reply('FAIL line too long');
          return;
        }
        this.processLine(typeof input.data === 'string' ? input.data : latin1(input.data));
        return;
      default:
        this.reply(`FAIL unexpected input kind '${input.kind}'`);
    }
  }

  private open(): void {
    this.irqLevels.clear();
    this.openNs = this.loop.nowNs;
    this.opened = true;
    this.log?.write(`[I ${formatSeconds(0)}] OPENED\n`);
  }

  private close(): void {
    if (!this.opened) return;
    this.opened = false;
    this.log?.write(`[I +${formatSeconds(this.loop.nowNs - this.openNs)}] CLOSED\n`);
  }

  // ---- lines ----------------------------------------------------------------------------------

  /** Handles one line (without its newline). Replies go to the output. */
  processLine(line: string): void {
    // g_strsplit(line, " ", 0): single spaces, empty words kept; an empty line has no words.
    const words = line.length === 0 ? [] : line.split(' ');
    this.logReceived(words);
    this.currentCommand = (words[0] ?? '').slice(0, 32);
    this.busy = true;
    try {
      if (words.length === 0) throw new QtestCommandError('empty line');
      this.dispatch(words);
    } catch (e) {
      if (e instanceof QtestCommandError) this.reply(`FAIL ${e.message}`);
      else if (e instanceof AssertionError) throw e;
      else this.reply(`FAIL ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    } finally {
      this.busy = false;
    }
  }

  private logReceived(words: readonly string[]): void {
    if (this.log === null || !this.opened) return;
    let text = `[R +${this.stamp()}]`;
    for (const w of words) text += ` ${w}`;
    this.log.write(`${text}\n`);
  }

  private stamp(): string {
    return formatSeconds(this.loop.nowNs - this.openNs);
  }

  private send(text: string, prefixed: boolean): void {
    if (prefixed && this.log !== null && this.opened) this.log.write(`[S +${this.stamp()}] `);
    if (this.log !== null && this.opened) this.log.write(text);
    this.output?.write(text);
  }

  private reply(line: string): void {
    this.commandsAnswered++;
    this.loop.trace.emit('qtest.cmd', { command: this.currentCommand, ok: line.startsWith('OK') });
    this.send(`${line}\n`, true);
  }

  private dispatch(words: string[]): void {
    const cmd = words[0]!;
    switch (cmd) {
      case 'irq_intercept_in':
      case 'irq_intercept_out':
        return this.irqIntercept(words, cmd === 'irq_intercept_out');
      case 'set_irq_in':
        return this.setIrqIn(words);
      case 'outb':
      case 'outw':
      case 'outl':
        return this.out(words, ACCESS_SIZES[cmd[3]!]! as 1 | 2 | 4);
      case 'inb':
      case 'inw':
      case 'inl':
        return this.in(words, ACCESS_SIZES[cmd[2]!]! as 1 | 2 | 4);
      case 'writeb':
      case 'writew':
      case 'writel':
      case 'writeq':
        return this.writeN(words, ACCESS_SIZES[cmd[5]!]!);
      case 'readb':
      case 'readw':
      case 'readl':
      case 'readq':
        return this.readN(words, ACCESS_SIZES[cmd[4]!]!);
      case 'read':
        return this.read(words, false);
      case 'b64read':
        return this.read(words, true);
      case 'write':
        return this.write(words);
      case 'b64write':
        return this.b64write(words);
      case 'memset':
        return this.memset(words);
      case 'endianness':
        return this.reply('OK little');
      case 'clock_step':
        if (!this.accelQtest) break;
        return this.clockStep(words);
      case 'clock_set':
        if (!this.accelQtest) break;
        return this.clockSet(words);
      default:
        break;
    }
    for (const ext of this.extensions) {
      if (ext(words, (line) => this.reply(line))) return;
    }
    this.reply(`FAIL Unknown command '${cmd}'`);
  }

  // ---- memory ---------------------------------------------------------------------------------

  private address(words: readonly string[], index: number): bigint {
    return need(parseU64(words[index]), 'address');
  }

  private checkRange(addr: bigint, len: number): void {
    if (QtestBus.crossesTop(addr, len)) {
      throw new QtestCommandError(`access of ${len} bytes at 0x${addr.toString(16)} runs past the end of the 64-bit address space`);
    }
  }

  private checkAligned(addr: bigint, size: number): void {
    if (size === 1 || this.unaligned === 'split' || addr % BigInt(size) === 0n) return;
    if (this.bus.isAllRam(addr, size)) return;
    throw new QtestCommandError(`unaligned ${size}-byte device access at 0x${addr.toString(16)}`);
  }

  private length(words: readonly string[], index: number, max: number): number {
    const len = need(parseU64(words[index]), 'size');
    if (len > BigInt(max)) throw new QtestCommandError(`size ${len} too large (at most ${max})`);
    return Number(len);
  }

  private writeN(words: readonly string[], size: 1 | 2 | 4 | 8): void {
    const addr = this.address(words, 1);
    const value = need(parseU64(words[2]), 'value');
    this.checkRange(addr, size);
    this.checkAligned(addr, size);
    // QEMU truncates the value to the access size (uint8_t data = value; …).
    this.bus.writeValue(addr, size, BigInt.asUintN(size * 8, value));
    this.reply('OK');
  }

  private readN(words: readonly string[], size: 1 | 2 | 4 | 8): void {
    const addr = this.address(words, 1);
    this.checkRange(addr, size);
    this.checkAligned(addr, size);
    this.reply(`OK ${hex16(this.bus.readValue(addr, size))}`);
  }

  private out(words: readonly string[], size: 1 | 2 | 4): void {
    const addr = need(parseUlong(words[1]), 'port');
    const value = need(parseUlong(words[2]), 'value');
    if (addr > 0xffffn) throw new QtestCommandError(`port 0x${addr.toString(16)} out of range (at most 0xffff)`);
    this.io?.writeValue(addr, size, BigInt.asUintN(size * 8, value));
    this.reply('OK');
  }

  private in(words: readonly string[], size: 1 | 2 | 4): void {
    const addr = need(parseUlong(words[1]), 'port');
    if (addr > 0xffffn) throw new QtestCommandError(`port 0x${addr.toString(16)} out of range (at most 0xffff)`);
    // Without an I/O space every port is unassigned and reads as all ones (QEMU's riscv virt).
    const value = this.io === null ? (1n << BigInt(size * 8)) - 1n : this.io.readValue(addr, size);
    this.reply(`OK 0x${value.toString(16).padStart(4, '0')}`);
  }

  private read(words: readonly string[], base64: boolean): void {
    const addr = this.address(words, 1);
    const len = this.length(words, 2, MAX_TRANSFER_BYTES);
    // QEMU asserts on `read ADDR 0` (it would send garbage); b64read of 0 bytes is "OK ".
    if (len === 0 && !base64) throw new QtestCommandError('size must not be zero');
    this.checkRange(addr, len);
    const data = new Uint8Array(len);
    this.bus.read(addr, data);
    this.reply(base64 ? `OK ${Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64')}` : `OK 0x${Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('hex')}`);
  }

  private write(words: readonly string[]): void {
    const addr = this.address(words, 1);
    const len = this.length(words, 2, MAX_TRANSFER_BYTES);
    const hex = words[3];
    if (hex === undefined) throw new QtestCommandError('missing data');
    if (hex.length < 3) {
      // QEMU sends this without the "[S +t]" log prefix and it is the only "ERR" reply.
      this.commandsAnswered++;
      this.send('ERR invalid argument size\n', false);
      return;
    }
    this.checkRange(addr, len);
    // As QEMU: skip the first two characters ("0x"), two hex digits per byte, zero-fill the rest;
    // a character that is not a hex digit counts as -1 in QEMU's hex2nib, which we reproduce.
    const data = new Uint8Array(len);
    for (let i = 0; i < len && i * 2 + 4 <= hex.length; i++) {
      data[i] = ((hexNibble(hex.charCodeAt(i * 2 + 2)) << 4) | hexNibble(hex.charCodeAt(i * 2 + 3))) & 0xff;
    }
    this.bus.write(addr, data);
    this.reply('OK');
  }

  private b64write(words: readonly string[]): void {
    const addr = this.address(words, 1);
    const len = this.length(words, 2, MAX_TRANSFER_BYTES);
    const text = words[3];
    if (text === undefined) throw new QtestCommandError('missing data');
    if (text.length < 3) {
      this.commandsAnswered++;
      this.send('ERR invalid argument size\n', false);
      return;
    }
    this.checkRange(addr, len);
    const decoded = Buffer.from(text, 'base64');
    if (decoded.length !== len) {
      if (this.log !== null && this.opened) {
        this.log.write(`[S +${this.stamp()}] b64write: data length mismatch (told ${len}, found ${decoded.length})\n`);
      }
    }
    // QEMU writes `len` bytes from its decode buffer (past the data when it is short: garbage);
    // we write the decoded bytes and zero-fill, as `write` does.
    const data = new Uint8Array(len);
    data.set(decoded.subarray(0, Math.min(len, decoded.length)));
    this.bus.write(addr, data);
    this.reply('OK');
  }

  private memset(words: readonly string[]): void {
    const addr = this.address(words, 1);
    const len = this.length(words, 2, MAX_MEMSET_BYTES);
    const pattern = need(parseUlong(words[3]), 'pattern');
    this.checkRange(addr, len);
    if (len > 0) this.bus.fill(addr, len, Number(pattern & 0xffn));
    this.reply('OK');
  }

  // ---- time -----------------------------------------------------------------------------------

  private get virtualNs(): number {
    return this.loop.clocks.virtualNs;
  }

  /** qtest_clock_warp: runs timers on the way; a target in the past changes nothing. */
  private warpTo(target: bigint): void {
    if (target > BigInt(MAX_TIME_NS)) throw new QtestCommandError(`time ${target} ns out of range (at most 2^53-1)`);
    const now = this.virtualNs;
    if (target <= BigInt(now)) return;
    const delta = Number(target) - now;
    // The master clock moves by the same amount and may be ahead of virtual time (a stopped VM).
    if (this.loop.nowNs + delta > MAX_TIME_NS) throw new QtestCommandError(`time ${target} ns out of range (at most 2^53-1)`);
    this.loop.step(delta);
  }

  private clockStep(words: readonly string[]): void {
    if (words[1] !== undefined) {
      const ns = need(parseI64(words[1]), 'ns');
      this.warpTo(BigInt(this.virtualNs) + ns);
    } else {
      // No argument: to the next deadline (QEMU: of the virtual clock; here every clock's timers are
      // on the deterministic axis, and modelled I/O latency sleeps on realtime, so all count).
      // None armed: time stays (QEMU's deadline -1).
      const deadline = this.loop.nextDeadlineNs();
      if (deadline !== Infinity && deadline > this.loop.nowNs) this.warpTo(BigInt(this.virtualNs + (deadline - this.loop.nowNs)));
      else if (deadline !== Infinity) this.loop.step(0);
    }
    this.reply(`OK ${this.virtualNs}`);
  }

  private clockSet(words: readonly string[]): void {
    const ns = need(parseI64(words[1]), 'ns');
    this.warpTo(ns);
    this.reply(`OK ${this.virtualNs}`);
  }

  // ---- IRQs -----------------------------------------------------------------------------------

  private resolve(path: string | undefined): QtestDevice | undefined {
    if (path === undefined) throw new QtestCommandError('missing device path');
    return this.irqs?.resolve(path);
  }

  private irqIntercept(words: readonly string[], outbound: boolean): void {
    const dev = this.resolve(words[1]);
    if (dev === undefined) return this.reply('FAIL Unknown device');
    const name = words[2] ?? null;
    if (name !== null && !outbound) return this.reply('FAIL Interception of named in-GPIOs not yet supported');
    if (this.interceptDevice !== null) {
      return this.reply(this.interceptDevice === dev ? 'OK' : 'FAIL IRQ intercept already enabled');
    }
    const pins: IrqPin[][] = [];
    for (const list of dev.gpios) {
      if (outbound) {
        if (list.name === name) pins.push([...list.outputs]);
      } else if (list.name === null) {
        pins.push([...list.inputs]);
      }
    }
    if (pins.length === 0 || pins.every((p) => p.length === 0)) return this.reply('FAIL No intercepts installed');
    for (const group of pins) {
      if (group.length > MAX_INTERCEPTED_IRQS) throw new QtestCommandError(`too many IRQ lines (${group.length}, at most ${MAX_INTERCEPTED_IRQS})`);
      group.forEach((pin, n) => pin.listen((level) => this.irqChanged(n, level)));
    }
    this.interceptDevice = dev;
    this.reply('OK');
  }

  private irqChanged(n: number, level: boolean): void {
    if ((this.irqLevels.get(n) ?? false) === level) return;
    this.irqLevels.set(n, level);
    this.loop.trace.emit('qtest.irq', { n, level });
    this.send(`IRQ ${level ? 'raise' : 'lower'} ${n}\n`, true);
  }

  private setIrqIn(words: readonly string[]): void {
    if (words.length < 5) throw new QtestCommandError('usage: set_irq_in QOM-PATH NAME NUM LEVEL');
    const dev = this.resolve(words[1]);
    if (dev === undefined) return this.reply('FAIL Unknown device');
    const name = words[2] === 'unnamed-gpio-in' ? null : words[2]!;
    const num = Number(need(parseI32(words[3]), 'num'));
    const level = need(parseI32(words[4]), 'level');
    const list = dev.gpios.find((g) => g.name === name);
    const pin = num >= 0 ? list?.inputs[num] : undefined;
    if (pin === undefined) throw new QtestCommandError(`no input GPIO ${words[2]}[${num}] on ${words[1]}`);
    pin.set(level !== 0n);
    this.reply('OK');
  }
}

/** QEMU's hex2nib: -1 for a non-hex character (so garbage in gives 0xf… bytes, as there). */
function hexNibble(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x61 && code <= 0x66) return code - 0x61 + 10;
  if (code >= 0x41 && code <= 0x46) return code - 0x41 + 10;
  return -1;
}

function latin1(data: Uint8Array | number): string {
  if (typeof data === 'number') return String(data);
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('latin1');
}
