import { assert } from '../engine/assert.js';
import type { Co } from '../engine/coroutine.js';
import type { BottomHalf } from '../engine/main-loop.js';
import type { GateInput, InputGate, InputSink, StampedInput } from '../engine/host/input-gate.js';
import type { AnyBusEvent } from '../blockjob/events.js';
import { type CommandContext, type CommandTable, type MonitorVm, QMP_VERSION } from './command.js';
import { QmpError, type QmpErrorBody, errorBody } from './errors.js';
import { JsonStream, type JsonStreamLimits } from './json-stream.js';
import { type JsonObject, type JsonValue, isJsonObject } from './json-value.js';
import { writeJson } from './json-writer.js';
import { checkArguments } from './schema.js';

declare module '../engine/trace.js' {
  interface TraceEventMap {
    'qmp.open': { monitor: string; client: number };
    'qmp.close': { monitor: string; client: number };
    'qmp.command': { monitor: string; client: number; command: string };
    'qmp.reply': { monitor: string; client: number; command: string; error: string | null };
  }
}

/** Where a client's output goes (the host transport implements it; absent in replay). */
export interface QmpOutput {
  /** One complete JSON message, without the line ending. */
  send(line: string): void;
  /** The server wants the connection closed (after `quit`). */
  close(): void;
}

/** QEMU's QMP_REQ_QUEUE_LEN_MAX: requests a client may have queued before input is held back. */
export const QMP_REQUEST_QUEUE_MAX = 8;

export interface QmpServerOptions {
  /** Monitor name: also the input-gate channel of its connections ('qmp:<name>'). */
  readonly name: string;
  readonly limits?: JsonStreamLimits;
}

/** A reply or an event as the in-process API sees it. */
export type QmpReply = { readonly return: unknown } | { readonly error: QmpErrorBody };

interface Request {
  readonly session: QmpSession;
  readonly command: string;
  readonly args: JsonObject;
  readonly id: JsonValue | undefined;
  /** Set when the message itself was bad: the reply is this error, in its turn (QEMU queues it too). */
  readonly error?: QmpErrorBody;
  /** The client went away: handled in turn, so what it sent before still runs (as in QEMU). */
  readonly close?: boolean;
}

/** One connected client: its parser, negotiation state and output. */
export class QmpSession {
  negotiated = false;
  closed = false;
  queued = 0;
  output: QmpOutput | null = null;
  readonly stream: JsonStream;

  constructor(
    readonly server: QmpServer,
    readonly clientId: number,
    limits: JsonStreamLimits | undefined,
  ) {
    this.stream = new JsonStream((value, error) => this.server.onMessage(this, value, error), limits);
  }

  send(message: unknown): void {
    if (this.closed) return;
    this.output?.send(writeJson(message));
  }
}

/**
 * A QMP monitor (monitor/qmp.c + qapi/qmp-dispatch.c): connections come and go through the input
 * gate, so a recording replays a whole session; requests from every client are executed one at a
 * time, in arrival order, from a bottom half of the main loop (QEMU runs QMP commands in the main
 * loop too); a command that polls the loop (a drain) never interleaves with another command. Events go to every
 * negotiated client, stamped with the deterministic host clock.
 */
export class QmpServer {
  readonly sessions = new Map<number, QmpSession>();
  readonly channel: string;
  private readonly requests: Request[] = [];
  private readonly oobEnabled = new WeakSet<QmpSession>();
  private readonly dispatchBh: BottomHalf;
  private readonly outputs = new Map<number, QmpOutput>();
  private gate: InputGate | null = null;
  private busy = false;

  constructor(
    readonly vm: MonitorVm,
    readonly table: CommandTable,
    readonly options: QmpServerOptions,
  ) {
    this.channel = `qmp:${options.name}`;
    vm.events.subscribe((event) => this.broadcast(event));
    this.dispatchBh = vm.loop.newBh(`qmp-dispatch:${options.name}`, () => this.dispatchOne());
  }

  /** Listens on the gate: 'qmp-open' on `channel`, then 'qmp'/'qmp-close' on `channel#N`. */
  attach(gate: InputGate): void {
    this.gate = gate;
    gate.attach(this.channel, {
      room: () => 1,
      deliver: (input) => {
        if (input.kind === 'qmp-open') this.open(Number(input.data));
      },
    });
  }

  /** Host side: where client N's output goes (set before offering its 'qmp-open'). */
  setOutput(clientId: number, output: QmpOutput): void {
    this.outputs.set(clientId, output);
    const session = this.sessions.get(clientId);
    if (session !== undefined) session.output = output;
  }

  /** True while a command is executing or waiting to. */
  get pending(): boolean {
    return this.busy || this.requests.length > 0;
  }

  private open(clientId: number): void {
    assert(Number.isSafeInteger(clientId) && clientId >= 0, `bad QMP client id ${clientId}`);
    if (this.sessions.has(clientId)) return;
    const session = new QmpSession(this, clientId, this.options.limits);
    session.output = this.outputs.get(clientId) ?? null;
    this.sessions.set(clientId, session);
    this.vm.loop.trace.emit('qmp.open', { monitor: this.options.name, client: clientId });
    const sink: InputSink = {
      room: (input: GateInput) => (input.kind === 'qmp' && session.queued >= QMP_REQUEST_QUEUE_MAX ? 0 : typeof input.data === 'string' ? input.data.length : 1),
      deliver: (input: StampedInput) => this.onInput(session, input),
    };
    this.gate?.attach(`${this.channel}#${clientId}`, sink);
    session.send({ QMP: { version: QMP_VERSION, capabilities: ['oob'] } });
  }

  private onInput(session: QmpSession, input: StampedInput): void {
    if (input.kind === 'qmp-close') {
      session.queued++;
      this.requests.push({ session, command: '', args: {}, id: undefined, close: true });
      this.dispatchBh.schedule();
      return;
    }
    if (input.kind !== 'qmp' || session.closed) return;
    const data = input.data;
    session.stream.feed(typeof data === 'string' ? data : data instanceof Uint8Array ? new TextDecoder().decode(data) : String(data));
  }

  private close(session: QmpSession): void {
    if (session.closed) return;
    session.output?.close();
    session.closed = true;
    this.sessions.delete(session.clientId);
    this.outputs.delete(session.clientId);
    this.gate?.detach(`${this.channel}#${session.clientId}`);
    this.vm.loop.trace.emit('qmp.close', { monitor: this.options.name, client: session.clientId });
  }

  /** A complete message from a client's stream (handle_qmp_command). */
  onMessage(session: QmpSession, value: JsonValue | undefined, parseError: string | undefined): void {
    let request: Request;
    if (value === undefined) {
      request = { session, command: '', args: {}, id: undefined, error: { class: 'GenericError', desc: parseError ?? 'JSON parse error' } };
    } else {
      const id = isJsonObject(value) && Object.prototype.hasOwnProperty.call(value, 'id') ? value['id'] : undefined;
      try {
        request = this.envelope(session, value, id);
      } catch (error) {
        const body = errorBody(error);
        if (body === undefined) throw error;
        request = { session, command: '', args: {}, id, error: body };
      }
    }
    session.queued++;
    this.requests.push(request);
    this.dispatchBh.schedule();
  }

  /** qmp_dispatch's checks of the message itself, before the command table is consulted. */
  private envelope(session: QmpSession, value: JsonValue, id: JsonValue | undefined): Request {
    if (!isJsonObject(value)) throw new QmpError('QMP input must be a JSON object');
    let command: string | undefined;
    let args: JsonObject = {};
    for (const key of Object.keys(value)) {
      const member = value[key]!;
      if (key === 'execute' || key === 'exec-oob') {
        if (typeof member !== 'string') throw new QmpError(`QMP input member '${key}' must be a string`);
        if (key === 'exec-oob') {
          if (!session.negotiated || !this.oobEnabled.has(session)) throw new QmpError(`QMP input member 'exec-oob' is unexpected`);
          throw new QmpError(`The command ${member} does not support OOB`);
        }
        command = member;
      } else if (key === 'arguments') {
        if (!isJsonObject(member)) throw new QmpError(`QMP input member 'arguments' must be an object`);
        args = member;
      } else if (key !== 'id') {
        throw new QmpError(`QMP input member '${key}' is unexpected`);
      }
    }
    if (command === undefined) throw new QmpError(`QMP input lacks member 'execute'`);
    return { session, command, args, id };
  }

  /**
   * Runs the oldest request (one per bottom half, so other work interleaves between commands as
   * in QEMU). A command may poll the loop (a drain); requests arriving meanwhile wait for it.
   */
  private dispatchOne(): void {
    if (this.busy) return; // a nested loop inside a command: the command reschedules us when done
    const request = this.requests.shift();
    if (request === undefined) return;
    request.session.queued--;
    if (request.close === true) {
      this.close(request.session);
    } else if (!request.session.closed) {
      this.busy = true;
      let reply: QmpReply;
      try {
        reply = request.error !== undefined ? { error: request.error } : this.execute(request.session, request.command, request.args);
      } finally {
        this.busy = false;
      }
      const { session, id } = request;
      if ('error' in reply) session.send(id === undefined ? { error: reply.error } : { id, error: reply.error });
      else session.send(id === undefined ? { return: reply.return } : { return: reply.return, id });
      if (request.command === 'quit' && !('error' in reply)) {
        for (const s of this.sessions.values()) s.output?.close();
      }
    }
    if (this.requests.length > 0) this.dispatchBh.schedule();
  }

  /** Runs one command for a client (negotiation rules apply). */
  private execute(session: QmpSession, command: string, args: JsonObject): QmpReply {
    const name = this.options.name;
    this.vm.loop.trace.emit('qmp.command', { monitor: name, client: session.clientId, command });
    let reply: QmpReply;
    if (!session.negotiated) {
      if (command !== 'qmp_capabilities') {
        reply = { error: { class: 'CommandNotFound', desc: "Expecting capabilities negotiation with 'qmp_capabilities'" } };
      } else {
        reply = this.capabilities(session, args);
      }
    } else if (command === 'qmp_capabilities') {
      reply = { error: { class: 'CommandNotFound', desc: 'Capabilities negotiation is already complete, command ignored' } };
    } else {
      reply = this.run(command, args);
    }
    this.vm.loop.trace.emit('qmp.reply', { monitor: name, client: session.clientId, command, error: 'error' in reply ? reply.error.desc : null });
    return reply;
  }

  private capabilities(session: QmpSession, args: JsonObject): QmpReply {
    const def = this.table.get('qmp_capabilities');
    assert(def !== undefined, 'qmp_capabilities missing from the command table');
    try {
      checkArguments(def.args, args);
      const enable = args['enable'];
      if (Array.isArray(enable) && enable.includes('oob')) this.oobEnabled.add(session);
    } catch (error) {
      const body = errorBody(error);
      if (body === undefined) throw error;
      return { error: body };
    }
    session.negotiated = true;
    return { return: {} };
  }

  /** Looks up, validates and runs a command; every user error becomes an error reply. */
  run(command: string, args: JsonObject): QmpReply {
    const def = this.table.get(command);
    if (def === undefined) return { error: { class: 'CommandNotFound', desc: `The command ${command} has not been found` } };
    try {
      checkArguments(def.args, args);
      const ctx: CommandContext = { vm: this.vm };
      const result = def.co === true ? this.vm.loop.runCoroutine(`qmp:${command}`, (def.run as (c: CommandContext, a: JsonObject) => Co<unknown>)(ctx, args)) : (def.run as (c: CommandContext, a: JsonObject) => unknown)(ctx, args);
      return { return: result === undefined ? {} : result };
    } catch (error) {
      const body = errorBody(error);
      if (body === undefined) throw error;
      return { error: body };
    }
  }

  /**
   * The in-process API: runs a command at once, without JSON or sockets (iotests, the fuzzer).
   * Must be called from outside the engine (not from a coroutine or a callback of the loop).
   */
  executeDirect(command: string, args: JsonObject = {}): QmpReply {
    assert(!this.busy && this.vm.loop.current === null, 'in-process QMP command issued from inside the engine');
    return this.run(command, args);
  }

  private broadcast(event: AnyBusEvent): void {
    if (this.sessions.size === 0) return;
    const time = this.vm.loop.clocks.hostTime();
    const message = eventMessage(event, time.seconds, Math.floor(time.nanos / 1000));
    let line: string | undefined;
    for (const session of this.sessions.values()) {
      if (!session.negotiated || session.closed || session.output === null) continue;
      line ??= writeJson(message);
      session.output.send(line);
    }
  }
}

/** The wire form of an event; events without data (STOP, RESUME) have no `data` member. */
export function eventMessage(event: AnyBusEvent, seconds: number, microseconds: number): object {
  const data = event.data as object;
  const timestamp = { seconds, microseconds };
  return Object.keys(data).length === 0 ? { timestamp, event: event.event } : { timestamp, event: event.event, data };
}
