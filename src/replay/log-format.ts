/**
 * The replay log on disk.
 *
 * ```
 * offset 0   "TSQEMURR"                       8 bytes magic
 * offset 8   u32 LE format version            must equal LOG_FORMAT_VERSION
 * offset 12  frame: header (msgpack object)
 * then       frame, frame, ...                one per record, appended as they happen
 * frame      u32 LE payload length, u32 LE CRC-32 of the payload, payload (msgpack array)
 * ```
 *
 * Every record is self-delimiting and checksummed, so a recording cut off by a crash is readable
 * up to its last complete record (the reader reports where and why it stopped), and any damaged
 * byte is found and reported with its offset instead of being replayed.
 */
import { Packr } from 'msgpackr';
import { assert } from '../engine/assert.js';
import type { InputData, InputKind } from '../engine/host/input-gate.js';
import type { TraceValue } from '../engine/trace.js';
import { crc32 } from './crc32.js';

export const LOG_MAGIC = 'TSQEMURR';
export const LOG_MAGIC_BYTES = 8;
/** Bumped on any incompatible change to the header or record layout. */
export const LOG_FORMAT_VERSION = 1;
/** Bytes before the first frame: magic + version. */
export const LOG_PREAMBLE_BYTES = LOG_MAGIC_BYTES + 4;
/** Length + CRC in front of every payload. */
export const FRAME_HEADER_BYTES = 8;
/** Largest payload a frame may carry: a larger length field means a damaged log. */
export const MAX_RECORD_BYTES = 64 << 20;
/** Records a log may hold before the reader gives up (bounds memory on hostile input). */
export const MAX_RECORDS = 1 << 26;

/** The tsqemu version written into headers (informational: the format version decides). */
export const TSQEMU_VERSION = '0.1.0';

const INPUT_KINDS: readonly InputKind[] = ['chardev', 'qmp', 'qmp-open', 'qmp-close', 'qtest', 'qtest-open', 'qtest-close', 'host-clock', 'host-random'];

export interface DiskDigest {
  /** Drive id or node name. */
  readonly name: string;
  /** Image file as given on the command line. */
  readonly path: string;
  readonly sizeBytes: number;
  /** Digest of the image's bytes when the recording started. */
  readonly digest: string;
}

/** Which counter checkpoints are spaced on: instructions with a CPU, main-loop steps without. */
export type CheckpointUnit = 'icount' | 'step';

export interface LogHeader {
  readonly tsqemuVersion: string;
  /** Short machine name (`virt`, `spike`, `kernel`). */
  readonly machine: string;
  /** Digest of everything that shapes the run: machine config and command line. */
  readonly machineDigest: string;
  readonly commandLine: readonly string[];
  readonly seed: number;
  readonly disks: readonly DiskDigest[];
  readonly checkpointUnit: CheckpointUnit;
  readonly checkpointInterval: number;
  /** True when event records (interrupts, device accesses, block requests) were written too. */
  readonly events: boolean;
  readonly icountShift: number;
}

/** A point in a run: where an input entered, a checkpoint was taken, an event happened. */
export interface RunPoint {
  readonly step: number;
  readonly icount: number;
  readonly ns: number;
}

export interface InputRecord extends RunPoint {
  readonly type: 'input';
  readonly channel: string;
  readonly kind: InputKind;
  readonly data: InputData;
}

/** Named state entries per probe: small values verbatim, large regions as digests. */
export type StateEntries = Readonly<Record<string, string | number>>;
export type StateMap = Readonly<Record<string, StateEntries>>;

export interface CheckpointRecord extends RunPoint {
  readonly type: 'checkpoint';
  readonly index: number;
  /** The main loop's trace digest at this point. */
  readonly trace: string;
  readonly state: StateMap;
}

export interface EventRecord extends RunPoint {
  readonly type: 'event';
  readonly name: string;
  readonly fields: Readonly<Record<string, TraceValue>>;
}

/** Written at a clean end of recording. */
export interface EndRecord extends RunPoint {
  readonly type: 'end';
  readonly reason: string;
  readonly trace: string;
  readonly inputs: number;
}

export type LogRecord = InputRecord | CheckpointRecord | EventRecord | EndRecord;

/** A record as read back, with the file offset of its frame. */
export type LoggedRecord = LogRecord & { readonly offset: number };

export type LogErrorReason = 'bad-magic' | 'wrong-version' | 'truncated' | 'oversize' | 'checksum' | 'malformed' | 'wrong-machine' | 'disk-changed' | 'too-many-records';

/** A log that cannot be used: names the byte offset and the reason. */
export class ReplayLogError extends Error {
  override readonly name = 'ReplayLogError';
  constructor(
    readonly offset: number,
    readonly reason: LogErrorReason,
    detail: string,
  ) {
    super(`replay log, offset ${offset}: ${reason}: ${detail}`);
  }
}

const TAG_INPUT = 1;
const TAG_CHECKPOINT = 2;
const TAG_EVENT = 3;
const TAG_END = 4;

const packr = new Packr({ useRecords: false, moreTypes: false, encodeUndefinedAsNil: true });

function pack(value: unknown): Uint8Array {
  return packr.pack(value);
}

/** Wraps `payload` in a frame: length, CRC-32, payload. */
export function frame(payload: Uint8Array): Uint8Array {
  assert(payload.length <= MAX_RECORD_BYTES, () => `record of ${payload.length} bytes exceeds ${MAX_RECORD_BYTES}`);
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, payload.length, true);
  view.setUint32(4, crc32(payload), true);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/** Magic, version and the header frame: the first bytes of every log. */
export function encodeHeader(header: LogHeader): Uint8Array {
  const body = frame(pack({ ...header, commandLine: [...header.commandLine], disks: header.disks.map((d) => ({ ...d })) }));
  const out = new Uint8Array(LOG_PREAMBLE_BYTES + body.length);
  for (let i = 0; i < LOG_MAGIC_BYTES; i++) out[i] = LOG_MAGIC.charCodeAt(i);
  new DataView(out.buffer).setUint32(LOG_MAGIC_BYTES, LOG_FORMAT_VERSION, true);
  out.set(body, LOG_PREAMBLE_BYTES);
  return out;
}

/** One record as a frame, ready to append. */
export function encodeRecord(record: LogRecord): Uint8Array {
  switch (record.type) {
    case 'input':
      return frame(pack([TAG_INPUT, record.step, record.icount, record.ns, record.channel, record.kind, record.data]));
    case 'checkpoint':
      return frame(pack([TAG_CHECKPOINT, record.step, record.icount, record.ns, record.index, record.trace, record.state]));
    case 'event':
      return frame(pack([TAG_EVENT, record.step, record.icount, record.ns, record.name, record.fields]));
    case 'end':
      return frame(pack([TAG_END, record.step, record.icount, record.ns, record.reason, record.trace, record.inputs]));
  }
}

// ---- reading ------------------------------------------------------------------------------------

/** Where a readable log stops early (a recording cut off by a crash). */
export interface LogTail {
  readonly offset: number;
  readonly reason: string;
}

export interface ParsedLog {
  readonly header: LogHeader;
  readonly records: readonly LoggedRecord[];
  /** True when the log ends with an end record (the recording finished cleanly). */
  readonly complete: boolean;
  /** Set when the last frame is incomplete: everything before `offset` is usable. */
  readonly tail: LogTail | null;
  readonly sizeBytes: number;
}

function isU(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function isTraceValue(value: unknown): value is TraceValue {
  return value === null || typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean';
}

/** Reads one frame at `offset`; returns the payload and the next offset, or a tail if incomplete. */
function readFrame(bytes: Uint8Array, offset: number): { payload: Uint8Array; next: number } | LogTail {
  const left = bytes.length - offset;
  if (left < FRAME_HEADER_BYTES) return { offset, reason: `incomplete frame header (${left} of ${FRAME_HEADER_BYTES} bytes)` };
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, FRAME_HEADER_BYTES);
  const length = view.getUint32(0, true);
  const sum = view.getUint32(4, true);
  if (length > MAX_RECORD_BYTES) throw new ReplayLogError(offset, 'oversize', `frame length ${length} exceeds ${MAX_RECORD_BYTES}`);
  if (left - FRAME_HEADER_BYTES < length) return { offset, reason: `incomplete record (${left - FRAME_HEADER_BYTES} of ${length} bytes)` };
  const start = offset + FRAME_HEADER_BYTES;
  const actual = crc32(bytes, start, start + length);
  if (actual !== sum) throw new ReplayLogError(offset, 'checksum', `CRC-32 ${hex32(actual)} does not match the stored ${hex32(sum)}`);
  return { payload: bytes.subarray(start, start + length), next: start + length };
}

function hex32(value: number): string {
  return '0x' + (value >>> 0).toString(16).padStart(8, '0');
}

function unpackAt(payload: Uint8Array, offset: number): unknown {
  try {
    return packr.unpack(payload);
  } catch (error) {
    throw new ReplayLogError(offset, 'malformed', `payload does not decode: ${(error as Error).message}`);
  }
}

function decodeHeader(value: unknown, offset: number): LogHeader {
  const bad = (what: string): never => {
    throw new ReplayLogError(offset, 'malformed', `header: ${what}`);
  };
  if (!isPlainObject(value)) return bad('not a map');
  const h = value;
  if (typeof h.tsqemuVersion !== 'string') bad('tsqemuVersion');
  if (typeof h.machine !== 'string') bad('machine');
  if (typeof h.machineDigest !== 'string') bad('machineDigest');
  if (!Array.isArray(h.commandLine) || !h.commandLine.every((a) => typeof a === 'string')) bad('commandLine');
  if (typeof h.seed !== 'number' || !Number.isSafeInteger(h.seed)) bad('seed');
  if (h.checkpointUnit !== 'icount' && h.checkpointUnit !== 'step') bad('checkpointUnit');
  if (!isU(h.checkpointInterval) || h.checkpointInterval === 0) bad('checkpointInterval');
  if (typeof h.events !== 'boolean') bad('events');
  if (!isU(h.icountShift) || h.icountShift > 20) bad('icountShift');
  if (!Array.isArray(h.disks)) bad('disks');
  const disks = (h.disks as unknown[]).map((d, i): DiskDigest => {
    if (!isPlainObject(d) || typeof d.name !== 'string' || typeof d.path !== 'string' || !isU(d.sizeBytes) || typeof d.digest !== 'string') return bad(`disk ${i}`);
    return { name: d.name, path: d.path, sizeBytes: d.sizeBytes, digest: d.digest };
  });
  return {
    tsqemuVersion: h.tsqemuVersion as string,
    machine: h.machine as string,
    machineDigest: h.machineDigest as string,
    commandLine: [...(h.commandLine as string[])],
    seed: h.seed as number,
    disks,
    checkpointUnit: h.checkpointUnit as CheckpointUnit,
    checkpointInterval: h.checkpointInterval as number,
    events: h.events as boolean,
    icountShift: h.icountShift as number,
  };
}

function toData(value: unknown): InputData | undefined {
  if (value === null || typeof value === 'string' || typeof value === 'number') return value;
  if (value instanceof Uint8Array) return new Uint8Array(value);
  return undefined;
}

function decodeState(value: unknown): StateMap | undefined {
  if (!isPlainObject(value)) return undefined;
  const out: Record<string, StateEntries> = {};
  for (const [probe, entries] of Object.entries(value)) {
    if (!isPlainObject(entries)) return undefined;
    const copy: Record<string, string | number> = {};
    for (const [key, v] of Object.entries(entries)) {
      if (typeof v !== 'string' && typeof v !== 'number') return undefined;
      copy[key] = v;
    }
    out[probe] = copy;
  }
  return out;
}

function decodeRecord(value: unknown, offset: number): LogRecord {
  const bad = (what: string): never => {
    throw new ReplayLogError(offset, 'malformed', what);
  };
  if (!Array.isArray(value) || value.length < 4) return bad('record is not an array with a tag and a point');
  const [tag, step, icount, ns] = value as unknown[];
  if (!isU(step) || !isU(icount) || !isU(ns)) return bad('bad step/icount/ns');
  const point = { step, icount, ns };
  switch (tag) {
    case TAG_INPUT: {
      const [, , , , channel, kind, raw] = value as unknown[];
      const data = toData(raw);
      if (value.length !== 7 || typeof channel !== 'string' || !INPUT_KINDS.includes(kind as InputKind) || data === undefined) return bad('bad input record');
      return { type: 'input', ...point, channel, kind: kind as InputKind, data };
    }
    case TAG_CHECKPOINT: {
      const [, , , , index, trace, rawState] = value as unknown[];
      const state = decodeState(rawState);
      if (value.length !== 7 || !isU(index) || typeof trace !== 'string' || state === undefined) return bad('bad checkpoint record');
      return { type: 'checkpoint', ...point, index, trace, state };
    }
    case TAG_EVENT: {
      const [, , , , name, fields] = value as unknown[];
      if (value.length !== 6 || typeof name !== 'string' || !isPlainObject(fields) || !Object.values(fields).every(isTraceValue)) return bad('bad event record');
      return { type: 'event', ...point, name, fields: { ...(fields as Record<string, TraceValue>) } };
    }
    case TAG_END: {
      const [, , , , reason, trace, inputs] = value as unknown[];
      if (value.length !== 7 || typeof reason !== 'string' || typeof trace !== 'string' || !isU(inputs)) return bad('bad end record');
      return { type: 'end', ...point, reason, trace, inputs };
    }
    default:
      return bad(`unknown record tag ${String(tag)}`);
  }
}

/** Reads magic, version and header; returns the header and the offset of the first record. */
export function readHeader(bytes: Uint8Array): { header: LogHeader; next: number } {
  if (bytes.length < LOG_PREAMBLE_BYTES) {
    throw new ReplayLogError(bytes.length, 'truncated', `file has ${bytes.length} bytes, shorter than the ${LOG_PREAMBLE_BYTES}-byte preamble`);
  }
  for (let i = 0; i < LOG_MAGIC_BYTES; i++) {
    if (bytes[i] !== LOG_MAGIC.charCodeAt(i)) throw new ReplayLogError(i, 'bad-magic', `not a tsqemu replay log (expected "${LOG_MAGIC}")`);
  }
  const version = new DataView(bytes.buffer, bytes.byteOffset + LOG_MAGIC_BYTES, 4).getUint32(0, true);
  if (version !== LOG_FORMAT_VERSION) {
    throw new ReplayLogError(LOG_MAGIC_BYTES, 'wrong-version', `format version ${version}, this tsqemu reads version ${LOG_FORMAT_VERSION}`);
  }
  const result = readFrame(bytes, LOG_PREAMBLE_BYTES);
  if (!('payload' in result)) throw new ReplayLogError(result.offset, 'truncated', `header: ${result.reason}`);
  return { header: decodeHeader(unpackAt(result.payload, LOG_PREAMBLE_BYTES), LOG_PREAMBLE_BYTES), next: result.next };
}

function laterThan(a: RunPoint, b: RunPoint): boolean {
  return a.step < b.step || a.icount < b.icount || a.ns < b.ns;
}

/**
 * Parses a whole log. Header problems, damaged frames and impossible records throw
 * `ReplayLogError` (offset + reason); an incomplete last frame is not an error: it is reported in
 * `tail` and everything before it is returned.
 */
export function parseLog(bytes: Uint8Array): ParsedLog {
  const { header, next } = readHeader(bytes);
  const records: LoggedRecord[] = [];
  let offset = next;
  let tail: LogTail | null = null;
  let complete = false;
  let last: RunPoint = { step: 0, icount: 0, ns: 0 };
  let checkpoints = 0;
  while (offset < bytes.length) {
    if (records.length >= MAX_RECORDS) throw new ReplayLogError(offset, 'too-many-records', `more than ${MAX_RECORDS} records`);
    if (complete) throw new ReplayLogError(offset, 'malformed', 'data after the end record');
    const result = readFrame(bytes, offset);
    if (!('payload' in result)) {
      tail = result;
      break;
    }
    const record = decodeRecord(unpackAt(result.payload, offset), offset);
    if (laterThan(record, last)) {
      throw new ReplayLogError(offset, 'malformed', `record at step ${record.step}, icount ${record.icount}, ns ${record.ns} goes back before step ${last.step}, icount ${last.icount}, ns ${last.ns}`);
    }
    if (record.type === 'checkpoint') {
      if (record.index !== checkpoints) throw new ReplayLogError(offset, 'malformed', `checkpoint #${record.index} where #${checkpoints} was expected`);
      checkpoints++;
    }
    if (record.type === 'end') complete = true;
    last = record;
    records.push({ ...record, offset });
    offset = result.next;
  }
  return { header, records, complete, tail, sizeBytes: bytes.length };
}

/** What a run expects of a log before replaying it. */
export interface LogExpectations {
  readonly machineDigest?: string;
  readonly disks?: readonly DiskDigest[];
}

/**
 * Refuses a log recorded for another machine. A changed disk image is returned as a problem
 * rather than thrown: `verify` goes on to show where the guest first sees the change.
 */
export function checkCompatible(header: LogHeader, expected: LogExpectations): ReplayLogError[] {
  if (expected.machineDigest !== undefined && expected.machineDigest !== header.machineDigest) {
    throw new ReplayLogError(LOG_PREAMBLE_BYTES, 'wrong-machine', `log was recorded on machine ${header.machine} with config digest ${header.machineDigest}; this run has ${expected.machineDigest}`);
  }
  const problems: ReplayLogError[] = [];
  for (const disk of expected.disks ?? []) {
    const logged = header.disks.find((d) => d.name === disk.name);
    if (logged === undefined) throw new ReplayLogError(LOG_PREAMBLE_BYTES, 'wrong-machine', `disk '${disk.name}' is not in the log`);
    if (logged.digest !== disk.digest || logged.sizeBytes !== disk.sizeBytes) {
      problems.push(new ReplayLogError(LOG_PREAMBLE_BYTES, 'disk-changed', `disk '${disk.name}' (${disk.path}) has digest ${disk.digest} (${disk.sizeBytes} bytes); the recording started from ${logged.digest} (${logged.sizeBytes} bytes)`));
    }
  }
  return problems;
}
