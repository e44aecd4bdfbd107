/**
 * One gdb connection: the remote serial protocol's commands (gdb's "Remote Protocol" chapter)
 * mapped onto a GdbTarget. The transport (src/engine/host/gdb-transport.ts) frames packets and
 * slices runs; this class only decides what each packet means.
 */
import { AssertionError, assert } from '../engine/assert.js';
import type { GdbConnectionHandler } from '../engine/host/gdb-transport.js';
import { GDB_MAX_PACKET_BYTES, gdbUnescape } from '../engine/host/gdb-transport.js';
import type { GdbStop, GdbTarget } from './target.js';

/** Instructions per run slice between looks at the socket (Ctrl-C). */
export const GDB_SLICE_INSNS = 100_000;
/** Bound on breakpoints (gdb sets a handful). */
const MAX_BREAKPOINTS = 4096;
/** Bound on one memory read (gdb asks in packet-sized pieces). */
const MAX_MEMORY_READ = GDB_MAX_PACKET_BYTES / 2;

function hexLe(value: bigint, bytes: number): string {
  let out = '';
  let v = BigInt.asUintN(bytes * 8, value);
  for (let i = 0; i < bytes; i++) {
    out += Number(v & 0xffn).toString(16).padStart(2, '0');
    v >>= 8n;
  }
  return out;
}

function parseHexLe(hex: string): bigint | undefined {
  if (!/^([0-9a-fA-F]{2})+$/.test(hex)) return undefined;
  let v = 0n;
  for (let i = hex.length - 2; i >= 0; i -= 2) v = (v << 8n) | BigInt(Number.parseInt(hex.slice(i, i + 2), 16));
  return v;
}

function bytesToHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

/** A non-negative hex number as gdb writes addresses and lengths, or undefined. */
function hexNumber(text: string | undefined): number | undefined {
  if (text === undefined || !/^[0-9a-fA-F]{1,16}$/.test(text)) return undefined;
  const value = Number.parseInt(text, 16);
  return Number.isSafeInteger(value) ? value : undefined;
}

function targetXml(xlen: 32 | 64): string {
  const regs = ['zero', 'ra', 'sp', 'gp', 'tp', 't0', 't1', 't2', 'fp', 's1', 'a0', 'a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7', 's2', 's3', 's4', 's5', 's6', 's7', 's8', 's9', 's10', 's11', 't3', 't4', 't5', 't6'];
  const lines = regs.map((name, i) => `<reg name="${name}" bitsize="${xlen}" type="${i === 1 ? 'code_ptr' : i === 2 || i === 8 ? 'data_ptr' : 'int'}" regnum="${i}"/>`);
  lines.push(`<reg name="pc" bitsize="${xlen}" type="code_ptr" regnum="32"/>`);
  return `<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target version="1.0"><architecture>riscv:rv${xlen}</architecture><feature name="org.gnu.gdb.riscv.cpu">${lines.join('')}</feature></target>`;
}

export class GdbSession implements GdbConnectionHandler {
  private readonly breakpoints = new Set<number>();
  private thread = 1;
  private interrupted = false;
  /** The pending run: forward continue, or null. */
  private running = false;
  /** Set once the first slice of a continue stepped off the instruction it started on. */
  private steppedOff = false;

  constructor(
    private readonly target: GdbTarget,
    private readonly onDetach: () => void = () => undefined,
  ) {
    assert(target.threadCount >= 1, 'a gdb target needs a hart');
  }

  packet(data: string): string | null {
    try {
      return this.dispatch(data);
    } catch (error) {
      // A target refusal (a seek play cannot make) is an error reply; a broken invariant is not.
      if (error instanceof AssertionError || !(error instanceof Error)) throw error;
      return 'E01';
    }
  }

  private dispatch(data: string): string | null {
    const head = data[0] ?? '';
    switch (head) {
      case '?':
        return this.stopReply({ kind: 'trap' });
      case 'g':
        return this.readAll();
      case 'p': {
        const n = hexNumber(data.slice(1));
        const value = n === undefined ? undefined : this.target.readRegister(this.thread, n);
        return value === undefined ? 'E45' : hexLe(value, this.target.xlen / 8);
      }
      case 'P':
        return this.writeRegister(data.slice(1));
      case 'G':
        return this.writeAll(data.slice(1));
      case 'm':
        return this.readMemory(data.slice(1));
      case 'M':
        return this.writeMemory(data.slice(1), false);
      case 'X':
        return this.writeMemory(data.slice(1), true);
      case 's':
        if (data.length > 1) return 'E01'; // resuming at another address is not supported
        return this.stopReply(this.target.step());
      case 'c':
        if (data.length > 1) return 'E01';
        this.interrupted = false;
        this.running = true;
        this.steppedOff = false;
        return null;
      case 'b':
        return this.reverse(data);
      case 'Z':
      case 'z':
        return this.breakpoint(head === 'Z', data.slice(1));
      case 'H': {
        // Hg picks the thread whose registers g/p/P/G see; 0 and -1 mean "any": keep the current.
        const t = data[1] === 'g' ? hexNumber(data.slice(2)) : undefined;
        if (t !== undefined && t >= 1 && t <= this.target.threadCount) this.thread = t;
        return 'OK';
      }
      case 'T':
        return (hexNumber(data.slice(1)) ?? 0) >= 1 && (hexNumber(data.slice(1)) ?? 0) <= this.target.threadCount ? 'OK' : 'E22';
      case 'D':
        this.onDetach();
        return 'OK';
      case 'k':
        this.onDetach();
        return 'OK';
      case 'q':
        return this.query(data);
      case 'v':
        return data === 'vMustReplyEmpty' ? '' : data.startsWith('vKill') ? 'OK' : '';
      default:
        return '';
    }
  }

  runSlice(): string | null {
    if (!this.running) return this.stopReply({ kind: 'trap' });
    if (this.interrupted) {
      this.running = false;
      return this.stopReply({ kind: 'interrupt' });
    }
    // A continue from a breakpoint first leaves it (gdb removes it around the step, but may not).
    let stop: GdbStop | null;
    if (!this.steppedOff) {
      this.steppedOff = true;
      stop = this.target.step();
      if (stop.kind === 'trap' && !this.atBreakpoint()) stop = null;
    } else {
      stop = this.target.runSlice(this.breakpoints, GDB_SLICE_INSNS);
    }
    if (stop === null) return null;
    this.running = false;
    return this.stopReply(stop);
  }

  interrupt(): void {
    this.interrupted = true;
  }

  disconnected(): void {
    this.running = false;
  }

  private atBreakpoint(): boolean {
    for (let t = 1; t <= this.target.threadCount; t++) if (this.breakpoints.has(this.target.pc(t))) return true;
    return false;
  }

  private stopReply(stop: GdbStop): string {
    switch (stop.kind) {
      case 'exited':
        return `W${(stop.code & 0xff).toString(16).padStart(2, '0')}`;
      case 'interrupt':
        return `T02thread:${this.thread.toString(16)};`;
      case 'history':
        return `T05replaylog:${stop.end};`;
      case 'trap':
        return `T05thread:${this.thread.toString(16)};`;
    }
  }

  private readAll(): string {
    let out = '';
    for (let n = 0; n <= 32; n++) out += hexLe(this.target.readRegister(this.thread, n) ?? 0n, this.target.xlen / 8);
    return out;
  }

  private writeAll(hex: string): string {
    if (!this.target.writable) return 'E01';
    const width = this.target.xlen / 4;
    if (hex.length < width * 33) return 'E22';
    for (let n = 0; n <= 32; n++) {
      const v = parseHexLe(hex.slice(n * width, (n + 1) * width));
      if (v === undefined || !this.target.writeRegister(this.thread, n, v)) return 'E22';
    }
    return 'OK';
  }

  private writeRegister(body: string): string {
    if (!this.target.writable) return 'E01';
    const [regText, valueText] = body.split('=');
    const n = hexNumber(regText);
    const v = valueText === undefined ? undefined : parseHexLe(valueText);
    if (n === undefined || v === undefined) return 'E22';
    return this.target.writeRegister(this.thread, n, v) ? 'OK' : 'E45';
  }

  private readMemory(body: string): string {
    const [addrText, lenText] = body.split(',');
    const addr = hexNumber(addrText);
    const len = hexNumber(lenText);
    if (addr === undefined || len === undefined) return 'E22';
    const bytes = this.target.readMemory(addr, Math.min(len, MAX_MEMORY_READ));
    return bytes === null ? 'E14' : bytesToHex(bytes);
  }

  private writeMemory(body: string, binary: boolean): string {
    if (!this.target.writable) return 'E01';
    const colon = body.indexOf(':');
    if (colon < 0) return 'E22';
    const [addrText, lenText] = body.slice(0, colon).split(',');
    const addr = hexNumber(addrText);
    const len = hexNumber(lenText);
    if (addr === undefined || len === undefined) return 'E22';
    const payload = body.slice(colon + 1);
    const bytes = binary ? Uint8Array.from(gdbUnescape(payload), (c) => c.charCodeAt(0)) : /^([0-9a-fA-F]{2})*$/.test(payload) ? Uint8Array.from(Buffer.from(payload, 'hex')) : null;
    if (bytes === null || bytes.length !== len) return 'E22';
    return this.target.writeMemory(addr, bytes) ? 'OK' : 'E14';
  }

  private breakpoint(insert: boolean, body: string): string {
    const [type, addrText] = body.split(',');
    // Software and hardware execution breakpoints behave the same here (the pc is compared).
    if (type !== '0' && type !== '1') return '';
    const addr = hexNumber(addrText);
    if (addr === undefined) return 'E22';
    if (insert) {
      if (this.breakpoints.size >= MAX_BREAKPOINTS) return 'E28';
      this.breakpoints.add(addr);
    } else {
      this.breakpoints.delete(addr);
    }
    return 'OK';
  }

  private reverse(data: string): string {
    if (data !== 'bs' && data !== 'bc') return '';
    if (!this.target.reversible) return 'E22';
    if (data === 'bs') return this.stopReply(this.target.reverseStep!());
    return this.stopReply(this.target.reverseContinue!(this.breakpoints));
  }

  private query(data: string): string {
    if (data.startsWith('qSupported')) {
      return `PacketSize=${GDB_MAX_PACKET_BYTES.toString(16)};qXfer:features:read+;QStartNoAckMode+${this.target.reversible ? ';ReverseStep+;ReverseContinue+' : ''}`;
    }
    if (data === 'qAttached') return '1';
    if (data === 'qC') return `QC${this.thread.toString(16)}`;
    if (data === 'qfThreadInfo') return 'm' + Array.from({ length: this.target.threadCount }, (_, i) => (i + 1).toString(16)).join(',');
    if (data === 'qsThreadInfo') return 'l';
    if (data === 'qOffsets') return 'Text=0;Data=0;Bss=0';
    if (data.startsWith('qXfer:features:read:target.xml:')) {
      const [offText, lenText] = data.slice('qXfer:features:read:target.xml:'.length).split(',');
      const off = hexNumber(offText);
      const len = hexNumber(lenText);
      if (off === undefined || len === undefined) return 'E22';
      const xml = targetXml(this.target.xlen);
      const part = xml.slice(off, off + len);
      return (off + len >= xml.length ? 'l' : 'm') + part;
    }
    return '';
  }
}
