import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestQmpClient } from './qmp-client.js';

/** The tsqemu bin as built by `npm run build` (npm test builds first). */
export const TSQEMU_BIN = join(import.meta.dirname, '../../../dist/tools/tsqemu.js');

export const QMP_ARGS = ['-M', 'virt', '-S', '-display', 'none', '-nodefaults'];

/** A QEMU-compatible process (tsqemu or qemu-system-riscv64) with a negotiated QMP client. */
export class QmpProcess {
  private constructor(
    readonly child: ChildProcess,
    readonly client: TestQmpClient,
    private readonly dir: string,
    readonly stderr: () => string,
  ) {}

  static async start(target: 'tsqemu' | 'qemu', extra: readonly string[] = []): Promise<QmpProcess> {
    const dir = mkdtempSync(join(tmpdir(), `qmp-${target}-`));
    const sock = join(dir, 'qmp.sock');
    const args = [...QMP_ARGS, '-qmp', `unix:${sock},server=on,wait=off`, ...extra];
    const child = target === 'qemu' ? spawn('qemu-system-riscv64', args, { stdio: ['ignore', 'ignore', 'pipe'] }) : spawn(process.execPath, [TSQEMU_BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (existsSync(sock)) {
        try {
          const client = await TestQmpClient.connect(sock);
          await client.waitFor(1);
          const reply = await client.command('qmp_capabilities');
          if (!('return' in reply)) throw new Error(`negotiation failed: ${JSON.stringify(reply)}`);
          client.messages.length = 0;
          return new QmpProcess(child, client, dir, () => err);
        } catch (error) {
          if (Date.now() > deadline) throw error;
        }
      }
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`${target} did not serve QMP: ${err}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async stop(): Promise<void> {
    this.client.close();
    if (this.child.exitCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      this.child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
      if (this.child.exitCode === null) this.child.kill('SIGKILL');
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function haveQemu(): boolean {
  return ['/usr/bin/qemu-system-riscv64', '/usr/local/bin/qemu-system-riscv64'].some((p) => existsSync(p));
}

/** A conversation step: a command, or a wait for an event matching `match`. */
export type Step =
  | { readonly cmd: string; readonly args?: Record<string, unknown>; readonly pick?: readonly string[] }
  | { readonly wait: string; readonly match?: Record<string, unknown> };

export interface Transcript {
  readonly replies: unknown[];
  readonly events: { event: string; data?: unknown }[];
}

function matches(data: unknown, match: Record<string, unknown> | undefined): boolean {
  if (match === undefined) return true;
  if (typeof data !== 'object' || data === null) return false;
  return Object.entries(match).every(([k, v]) => JSON.stringify((data as Record<string, unknown>)[k]) === JSON.stringify(v));
}

function project(value: unknown, pick: readonly string[] | undefined): unknown {
  if (pick === undefined) return value;
  const one = (v: unknown): unknown => (typeof v === 'object' && v !== null ? Object.fromEntries(pick.filter((k) => k in v).map((k) => [k, (v as Record<string, unknown>)[k]])) : v);
  return Array.isArray(value) ? value.map(one) : one(value);
}

/**
 * Runs a conversation and returns its replies and events. Timestamps are dropped, and so are the
 * paused/running JOB_STATUS_CHANGE pairs QEMU emits while it drains a job inside a command.
 */
export async function converse(p: QmpProcess, steps: readonly Step[]): Promise<Transcript> {
  const c = p.client;
  const replies: unknown[] = [];
  for (const step of steps) {
    if ('cmd' in step) {
      const reply = await c.command(step.cmd, step.args);
      replies.push('return' in reply ? { return: project(reply['return'], step.pick) } : reply);
    } else {
      const deadline = Date.now() + 5000;
      while (!c.events().some((e) => e['event'] === step.wait && matches(e['data'], step.match))) {
        if (Date.now() > deadline) throw new Error(`no ${step.wait} ${JSON.stringify(step.match ?? {})}; events: ${JSON.stringify(c.events())}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  }
  // Let trailing events arrive: a query round trip after the last one flushes the pipe.
  await c.command('query-status');
  return { replies, events: dropDrainBlips(c.events().map((e) => ({ event: e['event'] as string, ...(e['data'] !== undefined ? { data: e['data'] } : {}) }))) };
}

/**
 * QEMU pauses and resumes jobs while it drains them inside commands, emitting paused/running pairs
 * interleaved with other jobs' events; tsqemu drains without them. Both transcripts drop every
 * 'paused' status change and the 'running' that follows one for the same job.
 */
function dropDrainBlips(events: { event: string; data?: unknown }[]): { event: string; data?: unknown }[] {
  const last = new Map<string, string>();
  const out: { event: string; data?: unknown }[] = [];
  for (const e of events) {
    if (e.event === 'JOB_STATUS_CHANGE') {
      const { id, status } = e.data as { id: string; status: string };
      const previous = last.get(id);
      last.set(id, status);
      if (status === 'paused' || (status === 'running' && previous === 'paused')) continue;
    }
    out.push(e);
  }
  return out;
}
