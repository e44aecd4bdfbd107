import { parseSize } from '../block/options.js';
import { UsageError, parseKeyval, splitOptions } from './keyval.js';
import { parseObjectOption } from './objects-cli.js';
import { type ChardevSpec, type MonitorSpec, type VmConfig, defaultVmConfig } from './vm-config.js';

/**
 * The QEMU command line (vl.c's option loop), as far as tsqemu needs it. Options take `-opt` or
 * `--opt`; an option's argument is the next word. Errors read like QEMU's: `-foo: invalid
 * option`, `-m: requires an argument`, `-m 1X: Parameter 'size' expects ...`.
 */

type Mutable<T> = { -readonly [K in keyof T]: T[K] extends readonly (infer E)[] ? E[] : T[K] };

interface OptionDef {
  readonly arg: boolean;
  apply(config: Mutable<VmConfig>, value: string, state: ParseState): void;
}

interface ParseState {
  qmpCount: number;
  monCount: number;
  pendingMons: { chardev: string; mode: string }[];
}

const SIZE_HINT = "Parameter 'size' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.";

function onOff(value: string | undefined, dflt: boolean, what: string): boolean {
  if (value === undefined) return dflt;
  if (value === 'on' || value === 'yes' || value === 'true') return true;
  if (value === 'off' || value === 'no' || value === 'false') return false;
  throw new UsageError(`Parameter '${what}' expects 'on' or 'off'`);
}

/** `-qmp`/`-serial` style device strings: `unix:PATH[,opts]`, `tcp:HOST:PORT[,opts]`, `stdio`, `null`. */
export function parseCharDevice(text: string): ChardevSpec {
  if (text === 'stdio') return { backend: 'stdio' };
  if (text === 'null' || text === 'none') return { backend: 'null' };
  const colon = text.indexOf(':');
  if (colon < 0) throw new UsageError(`'${text}' is not a valid char driver`);
  const kind = text.slice(0, colon);
  const rest = splitOptions(text.slice(colon + 1), 'target');
  const target = rest[0]?.[1] ?? '';
  const opts = Object.fromEntries(rest.slice(1));
  const server = 'server' in opts ? onOff(opts['server'], true, 'server') : false;
  const wait = 'nowait' in opts ? false : onOff(opts['wait'], true, 'wait');
  if (kind === 'unix') {
    if (target === '') throw new UsageError(`parse error: ${text}`);
    return { backend: 'socket-unix', path: target, server, wait };
  }
  if (kind === 'tcp') {
    const sep = target.lastIndexOf(':');
    const port = Number(target.slice(sep + 1));
    if (sep < 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`parse error: ${text}`);
    return { backend: 'socket-tcp', host: target.slice(0, sep) || '127.0.0.1', port, server, wait };
  }
  if (kind === 'file') return { backend: 'file', path: target };
  throw new UsageError(`'${text}' is not a valid char driver`);
}

/** `-chardev socket,id=x,path=...|host=..,port=..,server=on,wait=off` / `-chardev stdio,id=x`. */
function parseChardev(text: string): [string, ChardevSpec] {
  const opts = Object.fromEntries(splitOptions(text, 'backend'));
  const id = opts['id'];
  if (id === undefined || id === '') throw new UsageError(`Parameter 'id' is missing`);
  const backend = opts['backend'];
  const server = 'server' in opts ? onOff(opts['server'], true, 'server') : false;
  const wait = 'nowait' in opts ? false : onOff(opts['wait'], true, 'wait');
  switch (backend) {
    case 'socket':
      if (opts['path'] !== undefined) return [id, { backend: 'socket-unix', path: opts['path'], server, wait }];
      if (opts['port'] !== undefined) {
        const port = Number(opts['port']);
        if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`Parameter 'port' expects a number`);
        return [id, { backend: 'socket-tcp', host: opts['host'] || '127.0.0.1', port, server, wait }];
      }
      throw new UsageError(`chardev: socket: no host given`);
    case 'stdio':
      return [id, { backend: 'stdio' }];
    case 'null':
      return [id, { backend: 'null' }];
    case 'file':
      if (opts['path'] === undefined) throw new UsageError(`chardev: file: no filename given`);
      return [id, { backend: 'file', path: opts['path'] }];
    default:
      throw new UsageError(`'${backend ?? ''}' is not a valid char driver name`);
  }
}

/** `-blockdev`/`-device`: JSON when it starts with `{`, else keyval. */
function jsonOrKeyval(text: string, implied?: string): Record<string, unknown> {
  if (text.trimStart().startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new UsageError(`JSON parse error, ${(error as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UsageError('JSON object expected');
    return parsed as Record<string, unknown>;
  }
  return parseKeyval(text, implied);
}

function memorySize(text: string): number {
  const opts = splitOptions(text, 'size');
  const size = opts.find(([k]) => k === 'size')?.[1] ?? '';
  // -m without a suffix means MiB.
  const bytes = /^\d+$/.test(size) ? parseSize(size + 'M') : parseSize(size);
  if (bytes === undefined || bytes === 0) throw new UsageError(SIZE_HINT);
  return bytes;
}

const FLAG = false;
const ARG = true;

const OPTIONS: Readonly<Record<string, OptionDef>> = {
  M: { arg: ARG, apply: (c, v) => setMachine(c, v) },
  machine: { arg: ARG, apply: (c, v) => setMachine(c, v) },
  m: { arg: ARG, apply: (c, v) => (c.memoryBytes = memorySize(v)) },
  S: { arg: FLAG, apply: (c) => (c.startStopped = true) },
  display: { arg: ARG, apply: (c, v) => (c.display = v) },
  nographic: { arg: FLAG, apply: (c) => (c.nographic = true) },
  nodefaults: { arg: FLAG, apply: (c) => (c.nodefaults = true) },
  qmp: {
    arg: ARG,
    apply: (c, v, s) => {
      c.monitors.push({ name: `qmp${s.qmpCount++}`, chardev: parseCharDevice(v) });
    },
  },
  'replay-qmp': {
    arg: ARG,
    apply: (c, v) => {
      c.replayMonitors.push({ name: `replay${c.replayMonitors.length}`, chardev: parseCharDevice(v) });
    },
  },
  chardev: {
    arg: ARG,
    apply: (c, v) => {
      const [id, spec] = parseChardev(v);
      if (c.chardevs[id] !== undefined) throw new UsageError(`attempt to add duplicate property '${id}' to object (type 'container')`);
      c.chardevs = { ...c.chardevs, [id]: spec };
    },
  },
  mon: {
    arg: ARG,
    apply: (_c, v, s) => {
      const opts = Object.fromEntries(splitOptions(v, 'chardev'));
      s.pendingMons.push({ chardev: opts['chardev'] ?? '', mode: opts['mode'] ?? 'readline' });
    },
  },
  blockdev: { arg: ARG, apply: (c, v) => c.blockdevs.push(jsonOrKeyval(v)) },
  drive: { arg: ARG, apply: (c, v) => c.drives.push(parseKeyval(v, 'file')) },
  object: { arg: ARG, apply: (c, v) => c.objects.push(parseObjectOption(v)) },
  device: { arg: ARG, apply: (c, v) => c.devices.push(jsonOrKeyval(v, 'driver')) },
  accel: {
    arg: ARG,
    apply: (c, v) => {
      const opts = parseKeyval(v, 'accel');
      const name = String(opts['accel'] ?? v);
      c.accel.push(name);
      // `-accel tcg,jit=off`: tsqemu's switch between translated code and the interpreter.
      if (opts['jit'] !== undefined) {
        if (name !== 'tcg') throw new UsageError(`Property '${name}-accel.jit' not found`);
        c.jit = onOff(String(opts['jit']), true, 'jit');
      }
    },
  },
  seed: {
    arg: ARG,
    apply: (c, v) => {
      const seed = Number(v);
      if (!/^\d+$/.test(v) || !Number.isSafeInteger(seed)) throw new UsageError('seed must be a non-negative integer');
      c.seed = seed;
    },
  },
  policy: {
    arg: ARG,
    apply: (c, v) => {
      if (v !== 'fifo' && v !== 'explore') throw new UsageError(`policy must be 'fifo' or 'explore'`);
      c.policy = v;
    },
  },
  trace: {
    arg: ARG,
    apply: (c, v) => {
      const opts = Object.fromEntries(splitOptions(v, 'file'));
      c.traceFile = opts['file'] ?? v;
    },
  },
  bios: { arg: ARG, apply: (c, v) => (c.bios = v) },
  kernel: { arg: ARG, apply: (c, v) => (c.kernel = v) },
  append: { arg: ARG, apply: (c, v) => (c.append = v) },
  initrd: { arg: ARG, apply: (c, v) => (c.initrd = v) },
  serial: { arg: ARG, apply: (c, v) => c.serial.push(v) },
  smp: { arg: ARG, apply: (c, v) => (c.smp = v) },
  rtc: { arg: ARG, apply: (c, v) => (c.rtc = v) },
  icount: { arg: ARG, apply: (c, v) => (c.icount = v) },
  qtest: { arg: ARG, apply: (c, v) => (c.qtest = v) },
  'qtest-log': { arg: ARG, apply: (c, v) => (c.qtestLog = v) },
  // No live gdb stub (tsqemu-replay play --gdb debugs recordings): refusing beats accepting an option that would silently do nothing.
  s: { arg: FLAG, apply: () => noGdbStub('-s') },
  gdb: { arg: ARG, apply: () => noGdbStub('-gdb') },
  snapshot: { arg: FLAG, apply: (c) => (c.snapshot = true) },
  'allow-path': { arg: ARG, apply: (c, v) => c.allowPaths.push(v) },
  name: { arg: ARG, apply: () => undefined },
  'no-reboot': { arg: FLAG, apply: () => undefined },
  'no-shutdown': { arg: FLAG, apply: () => undefined },
};

function noGdbStub(option: string): never {
  throw new UsageError(`${option}: tsqemu has no live gdb stub yet; record the run and debug the recording with tsqemu-replay play LOG --gdb tcp::PORT (reverse execution included)`);
}

function setMachine(c: Mutable<VmConfig>, value: string): void {
  const opts = Object.fromEntries(splitOptions(value, 'type'));
  const { type, ...props } = opts;
  c.machine = { type: type ?? c.machine.type, props: { ...c.machine.props, ...props } };
}

/** Parses argv (without the program name) into a VmConfig; throws UsageError with QEMU's text. */
export function parseCommandLine(argv: readonly string[]): VmConfig {
  const config = defaultVmConfig() as Mutable<VmConfig>;
  config.monitors = [];
  config.replayMonitors = [];
  config.blockdevs = [];
  config.drives = [];
  config.objects = [];
  config.devices = [];
  config.accel = [];
  config.serial = [];
  config.allowPaths = [];
  const state: ParseState = { qmpCount: 0, monCount: 0, pendingMons: [] };
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (!word.startsWith('-') || word === '-') throw new UsageError(`${word}: invalid option`);
    const name = word.replace(/^--?/, '');
    const def = Object.prototype.hasOwnProperty.call(OPTIONS, name) ? OPTIONS[name] : undefined;
    if (def === undefined) throw new UsageError(`${word}: invalid option`);
    let value = '';
    if (def.arg) {
      if (i + 1 >= argv.length) throw new UsageError(`${word}: requires an argument`);
      value = argv[++i]!;
    }
    try {
      def.apply(config, value, state);
    } catch (error) {
      if (error instanceof UsageError) throw new UsageError(`${word}${def.arg ? ' ' + value : ''}: ${error.message}`);
      throw error;
    }
  }
  for (const mon of state.pendingMons) {
    const chardev = config.chardevs[mon.chardev];
    if (chardev === undefined) throw new UsageError(`-mon chardev=${mon.chardev}: chardev "${mon.chardev}" not found`);
    if (mon.mode !== 'control') throw new UsageError(`-mon chardev=${mon.chardev},mode=${mon.mode}: only mode=control (QMP) monitors are supported`);
    const spec: MonitorSpec = { name: `mon${state.monCount++}`, chardev };
    config.monitors.push(spec);
  }
  return config;
}
