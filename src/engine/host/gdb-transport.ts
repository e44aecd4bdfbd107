import { createServer, type Server, type Socket } from 'node:net';

/**
 * Host side of the gdb remote serial protocol: a TCP listener, packet framing (`$data#cs`,
 * acknowledgements, no-ack mode, Ctrl-C) and the slicing of long runs so the event loop stays
 * responsive (a Ctrl-C can arrive while the target runs). What a packet means is the handler's
 * business (src/gdbstub); it never sees the socket.
 */
export interface GdbConnectionHandler {
  /** A packet's payload, checksum verified. The reply payload, or null when the target now runs. */
  packet(data: string): string | null;
  /** While the target runs: one bounded slice; the stop reply once it stopped, else null. */
  runSlice(): string | null;
  /** Ctrl-C: the next `runSlice` stops the target. */
  interrupt(): void;
  /** The client went away (the target is left stopped). */
  disconnected(): void;
}

/** Bound on one packet's payload (what qSupported advertises): larger input is refused. */
export const GDB_MAX_PACKET_BYTES = 0x4000;

export function gdbChecksum(data: string): string {
  let sum = 0;
  for (let i = 0; i < data.length; i++) sum = (sum + data.charCodeAt(i)) & 0xff;
  return sum.toString(16).padStart(2, '0');
}

/** Escapes `$`, `#`, `}` and `*` as the protocol requires (`}` then the byte xor 0x20). */
export function gdbEscape(data: string): string {
  return data.replace(/[$#}*]/g, (c) => '}' + String.fromCharCode(c.charCodeAt(0) ^ 0x20));
}

/** Undoes gdbEscape (binary payloads of X packets). */
export function gdbUnescape(data: string): string {
  return data.replace(/}([\s\S])/g, (_, c: string) => String.fromCharCode(c.charCodeAt(0) ^ 0x20));
}

/**
 * Splits a byte stream into packets. Feeds return what to do: packets with a good checksum,
 * ack/nack needs, interrupts. Bad checksums are nacked (gdb resends), junk between packets is
 * skipped, an oversized packet is dropped with a nack.
 */
export class GdbFramer {
  private buffer = '';

  feed(text: string): ({ kind: 'packet'; data: string } | { kind: 'interrupt' } | { kind: 'bad' })[] {
    this.buffer += text;
    const out: ({ kind: 'packet'; data: string } | { kind: 'interrupt' } | { kind: 'bad' })[] = [];
    for (let guard = 0; guard < 1 << 16; guard++) {
      const start = this.buffer.search(/[$\x03]/);
      if (start < 0) {
        this.buffer = '';
        break;
      }
      if (this.buffer[start] === '\x03') {
        out.push({ kind: 'interrupt' });
        this.buffer = this.buffer.slice(start + 1);
        continue;
      }
      const hash = this.buffer.indexOf('#', start);
      if (hash < 0) {
        if (this.buffer.length - start > GDB_MAX_PACKET_BYTES + 4) {
          out.push({ kind: 'bad' });
          this.buffer = '';
        } else {
          this.buffer = this.buffer.slice(start);
        }
        break;
      }
      if (this.buffer.length < hash + 3) {
        this.buffer = this.buffer.slice(start);
        break;
      }
      const data = this.buffer.slice(start + 1, hash);
      const sum = this.buffer.slice(hash + 1, hash + 3).toLowerCase();
      this.buffer = this.buffer.slice(hash + 3);
      out.push(sum === gdbChecksum(data) && data.length <= GDB_MAX_PACKET_BYTES ? { kind: 'packet', data } : { kind: 'bad' });
    }
    return out;
  }
}

/** Serves one gdb client at a time on `port` (`-gdb tcp::PORT`); later clients wait their turn. */
export function listenGdb(host: string, port: number, makeHandler: () => GdbConnectionHandler): Promise<Server> {
  let busy = false;
  const server = createServer((socket: Socket) => {
    if (busy) {
      socket.end();
      return;
    }
    busy = true;
    serveGdb(socket, makeHandler(), () => (busy = false));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

function serveGdb(socket: Socket, handler: GdbConnectionHandler, done: () => void): void {
  socket.setNoDelay(true);
  const framer = new GdbFramer();
  let noAck = false;
  let running = false;
  let closed = false;
  const send = (payload: string): void => {
    if (closed) return;
    const data = gdbEscape(payload);
    socket.write(`$${data}#${gdbChecksum(data)}`);
  };
  const runOn = (): void => {
    if (closed || !running) return;
    const stop = handler.runSlice();
    if (stop !== null) {
      running = false;
      send(stop);
      return;
    }
    setImmediate(runOn);
  };
  socket.on('data', (chunk: Buffer) => {
    for (const item of framer.feed(chunk.toString('latin1'))) {
      if (item.kind === 'interrupt') {
        handler.interrupt();
        continue;
      }
      if (item.kind === 'bad') {
        if (!noAck) socket.write('-');
        continue;
      }
      if (!noAck) socket.write('+');
      if (running) continue; // gdb sends nothing but Ctrl-C while the target runs
      if (item.data === 'QStartNoAckMode') {
        send('OK');
        noAck = true;
        continue;
      }
      const reply = handler.packet(item.data);
      if (reply === null) {
        running = true;
        setImmediate(runOn);
      } else {
        send(reply);
      }
    }
  });
  const close = (): void => {
    if (closed) return;
    closed = true;
    running = false;
    handler.disconnected();
    done();
  };
  socket.on('close', close);
  socket.on('error', close);
}
