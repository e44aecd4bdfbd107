import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection, type Socket } from 'node:net';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { QmpEvent, QmpReply, Vm } from './test-api.js';
import { VmBase } from './vm-base.js';

/** Bounds for a real process: a test that waits longer than this is broken, not slow. */
const CONNECT_TIMEOUT_MS = 10_000;
const EVENT_TIMEOUT_MS = 10_000;
let socketCounter = 0;

/**
 * A QEMU-compatible binary (real qemu-system-riscv64, or tsqemu itself) driven over a real QMP
 * unix socket.
 */
export class QmpSocketVm extends VmBase implements Vm {
  private socket: Socket | null = null;
  private buffer = '';
  private readonly events: QmpEvent[] = [];
  private readonly waiters: (() => void)[] = [];
  private pending: ((reply: QmpReply) => void)[] = [];
  private process: ChildProcess | null = null;
  private stderr = '';

  constructor(
    private readonly binary: string,
    private readonly dir: string,
    private readonly extraArgs: readonly string[],
    log: (value: unknown) => void,
  ) {
    super(log);
  }

  async start(): Promise<void> {
    const sock = join(this.dir, `qmp-${process.pid}-${++socketCounter}.sock`);
    const args = ['-M', 'virt', '-S', '-display', 'none', '-nodefaults', '-qmp', `unix:${sock},server=on,wait=off`, ...this.extraArgs];
    this.process = spawn(this.binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.process.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()));
    const start = Date.now();
    while (!existsSync(sock)) {
      if (Date.now() - start > CONNECT_TIMEOUT_MS || this.process.exitCode !== null) {
        throw new Error(`${this.binary} did not open its QMP socket: ${this.stderr.trim()}`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    // The socket file appears before the server listens: retry refused connections briefly.
    for (let attempt = 0; ; attempt++) {
      try {
        this.socket = await new Promise<Socket>((resolve, reject) => {
          const s = createConnection(sock, () => resolve(s));
          s.once('error', reject);
        });
        break;
      } catch (error) {
        if (Date.now() - start > CONNECT_TIMEOUT_MS || attempt > 500) throw error;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    const socket = this.socket!;
    socket.setEncoding('utf8');
    const greeting = new Promise<void>((resolve) => this.pending.push(() => resolve()));
    socket.on('data', (chunk: string) => this.onData(chunk));
    await greeting;
    const caps = await this.qmp('qmp_capabilities');
    if (!('return' in caps)) throw new Error(`qmp_capabilities failed: ${JSON.stringify(caps)}`);
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line === '') continue;
      const message = JSON.parse(line) as Record<string, unknown>;
      if ('event' in message) {
        this.events.push(message as unknown as QmpEvent);
        for (const wake of this.waiters.splice(0)) wake();
      } else {
        const resolve = this.pending.shift();
        resolve?.(message as QmpReply);
      }
    }
  }

  qmp(command: string, args?: Record<string, unknown>): Promise<QmpReply> {
    const socket = this.socket;
    if (socket === null) throw new Error('VM not started');
    return new Promise((resolve) => {
      this.pending.push(resolve);
      socket.write(JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args }) + '\n');
    });
  }

  protected async nextEvent(): Promise<QmpEvent> {
    const deadline = Date.now() + EVENT_TIMEOUT_MS;
    while (this.events.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a QMP event');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.events.shift()!;
  }

  protected drainEvents(): QmpEvent[] {
    return this.events.splice(0);
  }

  async shutdown(): Promise<void> {
    if (this.socket !== null) {
      await Promise.race([this.qmp('quit'), new Promise((r) => setTimeout(r, 2000))]);
      this.socket.destroy();
      this.socket = null;
    }
    const proc = this.process;
    if (proc !== null && proc.exitCode === null) {
      await Promise.race([new Promise((r) => proc.once('exit', r)), new Promise((r) => setTimeout(r, 2000))]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
    }
  }
}
