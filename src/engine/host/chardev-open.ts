import { existsSync } from 'node:fs';
import { type Chardev, ChardevError, NullChardev, type QuitHandler } from './chardev-core.js';
import { FileChardev, PipeChardev } from './chardev-file.js';
import { SocketChardev } from './chardev-socket.js';
import { StdioChardev } from './chardev-stdio.js';
import type { InputGate } from './input-gate.js';

export interface OpenChardevOptions {
  readonly id: string;
  /** Gate channel for input (default: the id). */
  readonly channel?: string;
  readonly onQuit?: QuitHandler;
}

/** Parses `key=value,flag,...` options after the first comma. */
function splitOptions(spec: string): { head: string; opts: Map<string, string> } {
  const parts = spec.split(',');
  const opts = new Map<string, string>();
  for (const p of parts.slice(1)) {
    const eq = p.indexOf('=');
    if (eq < 0) opts.set(p, 'on');
    else opts.set(p.slice(0, eq), p.slice(eq + 1));
  }
  return { head: parts[0] ?? '', opts };
}

/**
 * Opens a backend from a QEMU `-serial` spelling: `stdio`, `mon:stdio`, `null`, `none`,
 * `file:PATH`, `pipe:PATH`, `unix:PATH[,server=on,wait=off]`, `tcp:[HOST]:PORT[,server=on,wait=off]`.
 * Socket backends always listen (client mode is not supported) and never wait for a client.
 */
export function openChardev(spec: string, gate: InputGate, options: OpenChardevOptions): Chardev {
  const id = options.id;
  const channel = options.channel ?? id;
  const { head, opts } = splitOptions(spec);
  if (head === 'stdio' || head === 'mon:stdio') return new StdioChardev(id, channel, gate, { mux: true, onQuit: options.onQuit });
  if (head === 'null' || head === 'none') return new NullChardev(id, channel);
  const colon = head.indexOf(':');
  const kind = colon < 0 ? head : head.slice(0, colon);
  const rest = colon < 0 ? '' : head.slice(colon + 1);
  switch (kind) {
    case 'file':
      if (rest === '') throw new ChardevError(`chardev '${spec}': file needs a path`);
      return new FileChardev(id, channel, gate, rest, { append: opts.get('append') === 'on' });
    case 'pipe':
      if (rest === '') throw new ChardevError(`chardev '${spec}': pipe needs a path`);
      return new PipeChardev(id, channel, gate, rest, existsSync);
    case 'unix':
      if (rest === '') throw new ChardevError(`chardev '${spec}': unix needs a path`);
      if (opts.has('server') && opts.get('server') === 'off') throw new ChardevError(`chardev '${spec}': only server sockets are supported`);
      return new SocketChardev(id, channel, gate, { kind: 'unix', path: rest });
    case 'tcp': {
      const last = rest.lastIndexOf(':');
      const host = last < 0 ? '' : rest.slice(0, last);
      const port = Number(last < 0 ? rest : rest.slice(last + 1));
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ChardevError(`chardev '${spec}': bad port`);
      if (opts.has('server') && opts.get('server') === 'off') throw new ChardevError(`chardev '${spec}': only server sockets are supported`);
      return new SocketChardev(id, channel, gate, { kind: 'tcp', host, port });
    }
    default:
      throw new ChardevError(`chardev '${spec}': unknown backend '${kind}'`);
  }
}
