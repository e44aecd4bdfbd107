import { createConnection, type Socket } from 'node:net';

/** A minimal QMP client over a socket for tests: raw writes, and every message received in order. */
export class TestQmpClient {
  readonly messages: Record<string, unknown>[] = [];
  private buffer = '';
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
        const line = this.buffer.slice(0, nl).trim();
        this.buffer = this.buffer.slice(nl + 1);
        if (line !== '') this.messages.push(JSON.parse(line) as Record<string, unknown>);
      }
      for (const wake of this.waiters.splice(0)) wake();
    });
    socket.on('close', () => {
      this.closed = true;
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  static connect(path: string): Promise<TestQmpClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(path, () => resolve(new TestQmpClient(socket)));
      socket.once('error', reject);
    });
  }

  static connectTcp(port: number): Promise<TestQmpClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ host: '127.0.0.1', port }, () => resolve(new TestQmpClient(socket)));
      socket.once('error', reject);
    });
  }

  write(text: string): void {
    this.socket.write(text);
  }

  /** Waits until `count` messages arrived (bounded by `timeoutMs`). */
  async waitFor(count: number, timeoutMs = 5000): Promise<Record<string, unknown>[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages.length < count) {
      if (this.closed || Date.now() > deadline) throw new Error(`expected ${count} messages, got ${JSON.stringify(this.messages)}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
    return this.messages.slice(0, count);
  }

  /** Sends one command and returns its reply (events before it are kept in `messages`). */
  async command(execute: string, args?: Record<string, unknown>, id?: unknown): Promise<Record<string, unknown>> {
    const before = this.replies().length;
    const msg: Record<string, unknown> = { execute };
    if (args !== undefined) msg['arguments'] = args;
    if (id !== undefined) msg['id'] = id;
    this.write(JSON.stringify(msg) + '\n');
    const deadline = Date.now() + 5000;
    while (this.replies().length <= before) {
      if (this.closed || Date.now() > deadline) throw new Error(`no reply to ${execute}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
    return this.replies()[before]!;
  }

  replies(): Record<string, unknown>[] {
    return this.messages.filter((m) => 'return' in m || 'error' in m);
  }

  events(): Record<string, unknown>[] {
    return this.messages.filter((m) => 'event' in m);
  }

  close(): void {
    this.socket.destroy();
  }
}
