import { existsSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { type Chardev, ChardevError, offerBytes } from './chardev-core.js';
import type { InputGate } from './input-gate.js';

export type SocketAddress = { readonly kind: 'unix'; readonly path: string } | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

/**
 * A listening socket chardev (`-serial unix:PATH,server=on,wait=off`, `tcp:HOST:PORT,server=on`).
 * One client at a time, as QEMU: a second connection waits until the first closes. Output while
 * nobody is connected is dropped, as QEMU's socket chardev does; input goes through the gate.
 */
export class SocketChardev implements Chardev {
  private readonly server: Server;
  private client: Socket | null = null;
  private readonly waiting: Socket[] = [];
  private readonly ready: Promise<void>;

  constructor(
    readonly id: string,
    readonly channel: string,
    private readonly gate: InputGate,
    readonly address: SocketAddress,
  ) {
    this.server = createServer((socket) => this.accept(socket));
    if (address.kind === 'unix' && existsSync(address.path)) {
      try {
        unlinkSync(address.path);
      } catch (e) {
        throw new ChardevError(`could not replace '${address.path}': ${(e as Error).message}`);
      }
    }
    this.ready = new Promise((resolve, reject) => {
      this.server.once('error', (e) => reject(new ChardevError(`chardev '${id}': ${e.message}`)));
      if (address.kind === 'unix') this.server.listen(address.path, resolve);
      else this.server.listen(address.port, address.host === '' ? undefined : address.host, resolve);
    });
  }

  /** Resolves once the socket listens (`wait=on` callers also await a client with `connected`). */
  listening(): Promise<void> {
    return this.ready;
  }

  /** The bound TCP port (useful with port 0). */
  get port(): number {
    const a = this.server.address();
    return typeof a === 'object' && a !== null ? a.port : 0;
  }

  get connected(): boolean {
    return this.client !== null;
  }

  private accept(socket: Socket): void {
    if (this.client !== null) {
      socket.pause();
      this.waiting.push(socket);
      return;
    }
    this.client = socket;
    socket.on('data', (chunk) => offerBytes(this.gate, this.channel, chunk));
    socket.on('close', () => {
      if (this.client !== socket) return;
      this.client = null;
      const next = this.waiting.shift();
      if (next !== undefined) {
        next.resume();
        this.accept(next);
      }
    });
    socket.on('error', () => {});
  }

  write(bytes: Uint8Array): void {
    this.client?.write(bytes);
  }

  close(): void {
    this.client?.destroy();
    for (const s of this.waiting) s.destroy();
    this.server.close();
    if (this.address.kind === 'unix' && existsSync(this.address.path)) unlinkSync(this.address.path);
  }
}
