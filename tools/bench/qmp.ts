// QMP figures: round trips and empty-backup transactions per second over a real unix socket, for
// tsqemu and (when installed) qemu-system-riscv64 in the same run; plus the in-process API rate the
// fuzzer builds on, and the time from spawn to the QMP greeting.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createVm } from '../../src/system/vm.js';
import type { BenchCase, BenchResult } from './types.js';

const TSQEMU = join(dirname(fileURLToPath(import.meta.url)), '..', 'tsqemu.js');
const QEMU = '/usr/bin/qemu-system-riscv64';
const MEASURE_MS = 1000;

/** A line-oriented QMP client that counts replies and remembers the last event. */
class Client {
  private buffer = '';
  private waiter: ((line: Record<string, unknown>) => void) | null = null;
  private readonly lines: Record<string, unknown>[] = [];

  constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
        const text = this.buffer.slice(0, nl).trim();
        this.buffer = this.buffer.slice(nl + 1);
        if (text === '') continue;
        const msg = JSON.parse(text) as Record<string, unknown>;
        const wake = this.waiter;
        if (wake !== null) {
          this.waiter = null;
          wake(msg);
        } else {
          this.lines.push(msg);
        }
      }
    });
  }

  next(): Promise<Record<string, unknown>> {
    const queued = this.lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve) => (this.waiter = resolve));
  }

  /** Sends a command and resolves with its reply; events are skipped unless `until` asks for one. */
  async command(execute: string, args?: unknown, until?: (msg: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
    this.socket.write(JSON.stringify(args === undefined ? { execute } : { execute, arguments: args }) + '\n');
    let reply: Record<string, unknown> | null = null;
    let seen = until === undefined;
    while (reply === null || !seen) {
      const msg = await this.next();
      if ('return' in msg || 'error' in msg) reply = msg;
      else if (until !== undefined && until(msg)) seen = true;
    }
    return reply;
  }

  close(): void {
    this.socket.destroy();
  }
}

interface Proc {
  readonly child: ChildProcess;
  readonly client: Client;
  readonly startMs: number;
  readonly dir: string;
}

async function launch(binary: 'tsqemu' | 'qemu'): Promise<Proc> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-qmp-'));
  const sock = join(dir, 'qmp.sock');
  const args = ['-M', 'virt', '-S', '-display', 'none', '-nodefaults', '-qmp', `unix:${sock},server=on,wait=off`];
  const t0 = performance.now();
  const child = binary === 'qemu' ? spawn(QEMU, args, { stdio: 'ignore' }) : spawn(process.execPath, [TSQEMU, ...args], { stdio: 'ignore' });
  for (let attempt = 0; ; attempt++) {
    try {
      const socket = await new Promise<Socket>((resolve, reject) => {
        const s = createConnection(sock, () => resolve(s));
        s.once('error', reject);
      });
      const client = new Client(socket);
      await client.next(); // greeting
      const startMs = performance.now() - t0;
      await client.command('qmp_capabilities');
      return { child, client, startMs, dir };
    } catch (error) {
      if (attempt > 5000 || child.exitCode !== null) throw error;
      await new Promise((r) => setTimeout(r, 1));
    }
  }
}

function stop(p: Proc): void {
  p.client.close();
  p.child.kill('SIGKILL');
  rmSync(p.dir, { recursive: true, force: true });
}

async function rate(fn: () => Promise<void>): Promise<number> {
  for (let i = 0; i < 20; i++) await fn(); // warm up
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < MEASURE_MS) {
    await fn();
    n++;
  }
  return (n / (performance.now() - start)) * 1000;
}

const EMPTY_BACKUP = { actions: [{ type: 'blockdev-backup', data: { 'job-id': 'j', device: 's', target: 't', sync: 'full' } }] };
const jobGone = (msg: Record<string, unknown>) => msg['event'] === 'JOB_STATUS_CHANGE' && (msg['data'] as { status?: string })['status'] === 'null';

interface SocketFigures {
  startMs: number;
  roundTrips: number;
  transactions: number;
}

async function socketFigures(binary: 'tsqemu' | 'qemu'): Promise<SocketFigures> {
  const p = await launch(binary);
  try {
    const roundTrips = await rate(async () => {
      await p.client.command('query-status');
    });
    await p.client.command('blockdev-add', { driver: 'null-co', 'node-name': 's', size: 0 });
    await p.client.command('blockdev-add', { driver: 'null-co', 'node-name': 't', size: 0 });
    const transactions = await rate(async () => {
      const reply = await p.client.command('transaction', EMPTY_BACKUP, jobGone);
      if (!('return' in reply)) throw new Error(`transaction failed: ${JSON.stringify(reply)}`);
    });
    return { startMs: p.startMs, roundTrips, transactions };
  } finally {
    stop(p);
  }
}

function inProcessTransactions(): number {
  const vm = createVm({ startStopped: true });
  vm.execute('blockdev-add', { driver: 'null-co', 'node-name': 's', size: 0 });
  vm.execute('blockdev-add', { driver: 'null-co', 'node-name': 't', size: 0 });
  const one = () => {
    const reply = vm.qmp('transaction', EMPTY_BACKUP);
    if (!('return' in reply)) throw new Error(`transaction failed: ${JSON.stringify(reply)}`);
    vm.run();
  };
  for (let i = 0; i < 1000; i++) one();
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < MEASURE_MS) {
    for (let i = 0; i < 100; i++) one();
    n += 100;
  }
  return (n / (performance.now() - start)) * 1000;
}

function withQemu(name: string, value: number, unit: string, qemu: number | undefined, lowerIsBetter = false, note?: string): BenchResult {
  if (qemu === undefined) return { name, value, unit, ...(note !== undefined ? { note } : {}) };
  return { name, value, unit, qemu, ratio: lowerIsBetter ? qemu / value : value / qemu, ...(note !== undefined ? { note } : {}) };
}

export const benchCases: BenchCase[] = [
  {
    name: 'QMP over a unix socket',
    group: 'qmp',
    async run(): Promise<BenchResult[]> {
      const ours = await socketFigures('tsqemu');
      const theirs = existsSync(QEMU) ? await socketFigures('qemu') : undefined;
      return [
        withQemu('tsqemu start to QMP greeting', ours.startMs, 'ms', theirs?.startMs, true),
        withQemu('QMP round trips (query-status)', ours.roundTrips, '/s', theirs?.roundTrips),
        withQemu('empty-backup transactions over QMP', ours.transactions, '/s', theirs?.transactions, false, 'until JOB_STATUS_CHANGE null'),
      ];
    },
  },
  {
    name: 'QMP in-process API',
    group: 'qmp',
    run(): BenchResult[] {
      const saved = Error.stackTraceLimit;
      const withStacks = inProcessTransactions();
      // The fuzzer may run without stack capture: user errors (block blockers) are built per job.
      Error.stackTraceLimit = 0;
      const without = inProcessTransactions();
      Error.stackTraceLimit = saved;
      return [
        { name: 'in-process empty-backup transactions', value: withStacks, unit: '/s', note: 'vm.qmp + vm.run, goal 10k/s' },
        { name: 'in-process empty-backup transactions, no stacks', value: without, unit: '/s', note: 'Error.stackTraceLimit = 0' },
      ];
    },
  },
];
