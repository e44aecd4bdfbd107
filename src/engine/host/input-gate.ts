/**
 * The input gate: the single door through which the outside world enters the engine.
 *
 * Host-side code (sockets, stdin, the wall clock) calls `offer()` at any time; the engine calls
 * `poll()` at well-defined points of its main loop and CPU loop, and only then are inputs handed
 * to their sinks, each stamped with the exact point it entered: main-loop step, instruction count
 * and virtual ns. A recorder observes every delivered input; a player replaces the host and
 * delivers recorded inputs at their recorded points. Nothing else of the host reaches the engine.
 */

/** What kind of input crossed the gate. */
export type InputKind =
  | 'chardev' // bytes typed into a chardev (serial console, socket)
  | 'qmp' // one QMP command line
  | 'qmp-open' // a QMP client connected
  | 'qmp-close' // a QMP client went away
  | 'qtest' // one qtest line
  | 'qtest-open'
  | 'qtest-close'
  | 'host-clock' // a read of the host's wall clock (ns)
  | 'host-random'; // bytes taken from the host's randomness

export type InputData = Uint8Array | string | number | null;

/** The point in the run where an input entered. */
export interface InputStamp {
  /** Main-loop step (tasks dispatched so far): orders inputs between tasks at one instant. */
  readonly step: number;
  /** Instructions retired so far (0 without a CPU). */
  readonly icount: number;
  /** Master clock (realtime) ns. */
  readonly ns: number;
}

export interface GateInput {
  readonly channel: string;
  readonly kind: InputKind;
  readonly data: InputData;
}

export interface StampedInput extends GateInput, InputStamp {
  /** Sequence number among delivered inputs, from 0. */
  readonly seq: number;
}

/**
 * Receives the inputs of one channel. `accept` returns how much it took: for byte data the number
 * of bytes (the rest waits in the gate: flow control, nothing is dropped), otherwise 1 or 0.
 */
export interface InputSink {
  /** How many bytes (or items) it can take now; 0 keeps the input waiting in the gate. */
  room(input: GateInput): number;
  deliver(input: StampedInput): void;
}

export type GateMode = 'live' | 'record' | 'replay';

/** Where replayed inputs come from (the replay layer implements it). */
export interface InputSource {
  /** The next recorded input, or undefined at the end of the log. */
  peek(): StampedInput | undefined;
  take(): StampedInput;
}

/** What a machine snapshot keeps of the gate. */
export interface InputGateState {
  readonly delivered: number;
}

/** Longest a channel's pending queue may grow before offers are refused (bounded, as TIGER_STYLE asks). */
export const MAX_PENDING_PER_CHANNEL = 1 << 16;

export class GateOverflowError extends Error {
  override readonly name = 'GateOverflowError';
}

interface Channel {
  readonly name: string;
  sink: InputSink | null;
  readonly pending: GateInput[];
}

export class InputGate {
  private readonly channels = new Map<string, Channel>();
  /** Channels with pending input, in the order their first pending input arrived. */
  private readonly order: Channel[] = [];
  private delivered = 0;
  private readonly observers: ((input: StampedInput) => void)[] = [];
  private readonly wakers: (() => void)[] = [];
  private source: InputSource | null = null;
  mode: GateMode = 'live';
  /** Set by the engine: where the run is now. */
  stampNow: () => InputStamp = () => ({ step: 0, icount: 0, ns: 0 });

  /** Connects a sink to a channel; inputs offered before are kept until then. */
  attach(channel: string, sink: InputSink): void {
    this.channel(channel).sink = sink;
  }

  detach(channel: string): void {
    const ch = this.channels.get(channel);
    if (ch !== undefined) ch.sink = null;
  }

  /** Host side: an input arrived. In replay mode live input is ignored (the log speaks). */
  offer(input: GateInput): void {
    if (this.mode === 'replay') return;
    const ch = this.channel(input.channel);
    if (ch.pending.length >= MAX_PENDING_PER_CHANNEL) {
      throw new GateOverflowError(`input channel '${input.channel}' has ${ch.pending.length} inputs waiting`);
    }
    if (ch.pending.length === 0) this.order.push(ch);
    ch.pending.push(input);
    for (const wake of this.wakers) wake();
  }

  /** Host side: called whenever input is offered (the host loop uses it to leave its idle wait). */
  onOffer(wake: () => void): void {
    this.wakers.push(wake);
  }

  /** Observers (the recorder) see every input delivered, in order. */
  observe(observer: (input: StampedInput) => void): void {
    this.observers.push(observer);
  }

  /** Replay mode: inputs come from `source` at their recorded points. */
  replayFrom(source: InputSource): void {
    this.mode = 'replay';
    this.source = source;
    for (const ch of this.channels.values()) ch.pending.length = 0;
    this.order.length = 0;
  }

  get deliveredCount(): number {
    return this.delivered;
  }

  /** Live inputs offered but not yet taken by their sinks (flow control keeps them here). */
  get pendingCount(): number {
    let n = 0;
    for (const ch of this.order) n += ch.pending.length;
    return n;
  }

  /**
   * Snapshot state: the delivery counter, which numbers every input (`seq`) and host read. The
   * replay source's position is the player's to keep; sinks and observers are wiring.
   */
  saveState(): InputGateState {
    return { delivered: this.delivered };
  }

  /**
   * Restores the counter and drops live inputs still waiting: they were offered in the timeline
   * the restore abandons (a snapshot is only taken with none waiting).
   */
  restoreState(state: InputGateState): void {
    if (!(Number.isSafeInteger(state.delivered) && state.delivered >= 0)) throw new TypeError(`bad input gate state: delivered ${String(state.delivered)}`);
    this.delivered = state.delivered;
    for (const ch of this.order) ch.pending.length = 0;
    this.order.length = 0;
  }

  /** True when a poll now could deliver something (the CPU uses it to leave its loop). */
  get hasPending(): boolean {
    if (this.mode === 'replay') {
      const next = this.source?.peek();
      if (next === undefined) return false;
      const now = this.stampNow();
      return next.step <= now.step && next.icount <= now.icount && next.ns <= now.ns;
    }
    return this.order.length > 0;
  }

  /** Replay: the instruction count at which the CPU must stop for the next input (or Infinity). */
  get nextDueIcount(): number {
    if (this.mode !== 'replay') return Infinity;
    return this.source?.peek()?.icount ?? Infinity;
  }

  /** Replay: the main-loop step at which the next input is due (or Infinity). */
  get nextDueStep(): number {
    if (this.mode !== 'replay') return Infinity;
    return this.source?.peek()?.step ?? Infinity;
  }

  /** Replay: the master ns of the next input (or Infinity). Idle time must not jump past it. */
  get nextDueNs(): number {
    if (this.mode !== 'replay') return Infinity;
    return this.source?.peek()?.ns ?? Infinity;
  }

  /** True when replay has inputs left to deliver. */
  get replayPending(): boolean {
    return this.mode === 'replay' && this.source?.peek() !== undefined;
  }

  /**
   * Engine side: delivers what is due now. Returns the number of inputs delivered. Bounded by the
   * inputs present at entry, so a sink that offers more input cannot keep this loop going.
   */
  poll(): number {
    return this.mode === 'replay' ? this.pollReplay() : this.pollLive();
  }

  private pollLive(): number {
    if (this.order.length === 0) return 0;
    let count = 0;
    const now = this.stampNow();
    const rounds = this.order.length;
    for (let i = 0; i < rounds; i++) {
      const ch = this.order[0];
      if (ch === undefined) break;
      const input = ch.pending[0];
      if (input === undefined || ch.sink === null) {
        this.order.push(this.order.shift()!);
        continue;
      }
      const room = ch.sink.room(input);
      if (room <= 0) {
        this.order.push(this.order.shift()!);
        continue;
      }
      let part = input;
      if (input.data instanceof Uint8Array && room < input.data.length) {
        part = { ...input, data: input.data.subarray(0, room) };
        ch.pending[0] = { ...input, data: input.data.subarray(room) };
        this.order.push(this.order.shift()!);
      } else {
        ch.pending.shift();
        this.order.shift();
        if (ch.pending.length > 0) this.order.push(ch);
      }
      this.deliver(ch, { ...part, ...now, seq: this.delivered });
      count++;
    }
    return count;
  }

  private pollReplay(): number {
    const source = this.source;
    if (source === null) return 0;
    let count = 0;
    const now = this.stampNow();
    for (let guard = 0; guard < MAX_PENDING_PER_CHANNEL; guard++) {
      const next = source.peek();
      // All three coordinates: at one step and icount, time may still jump (to a timer deadline)
      // before the recorded delivery; `nextDueNs` stops that jump at the input's ns.
      if (next === undefined || next.step > now.step || next.icount > now.icount || next.ns > now.ns) break;
      source.take();
      const ch = this.channel(next.channel);
      if (ch.sink === null) throw new ReplayMismatchError(`replayed input #${next.seq} for channel '${next.channel}', which has no receiver in this run`);
      this.deliver(ch, { ...next, ...now, seq: this.delivered });
      count++;
    }
    return count;
  }

  /**
   * A synchronous read of host state (wall clock, host randomness). Live and record modes call
   * `read` and log the answer; replay mode returns the logged answer instead of asking the host.
   */
  readHost(channel: string, kind: InputKind, read: () => InputData): InputData {
    const now = this.stampNow();
    if (this.mode === 'replay') {
      const next = this.source?.peek();
      if (next === undefined || next.channel !== channel || next.kind !== kind) {
        throw new ReplayMismatchError(`the run read '${kind}' on '${channel}' at step ${now.step}, icount ${now.icount}; the log has ${next === undefined ? 'nothing more' : `'${next.kind}' on '${next.channel}'`} there`);
      }
      this.source!.take();
      const input: StampedInput = { ...next, ...now, seq: this.delivered++ };
      for (const observer of this.observers) observer(input);
      return next.data;
    }
    const input: StampedInput = { channel, kind, data: read(), ...now, seq: this.delivered++ };
    for (const observer of this.observers) observer(input);
    return input.data;
  }

  private deliver(ch: Channel, input: StampedInput): void {
    this.delivered++;
    for (const observer of this.observers) observer(input);
    ch.sink!.deliver(input);
  }

  private channel(name: string): Channel {
    let ch = this.channels.get(name);
    if (ch === undefined) {
      ch = { name, sink: null, pending: [] };
      this.channels.set(name, ch);
    }
    return ch;
  }
}

/** A replayed input could not be delivered the way it was recorded. */
export class ReplayMismatchError extends Error {
  override readonly name = 'ReplayMismatchError';
}
