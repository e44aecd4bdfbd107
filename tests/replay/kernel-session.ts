/**
 * A kernel-level machine for record/replay tests: a QMP-like command channel that starts jobs
 * (coroutines sleeping on timers), a chardev with flow control echoed by a coroutine, and
 * host-clock reads through the gate. Its state is exposed through probes, its output as lines.
 */
import seedrandom from 'seedrandom';
import { MainLoop } from '../../src/engine/main-loop.js';
import { type Co, sleep } from '../../src/engine/coroutine.js';
import { ClockType } from '../../src/engine/clock.js';
import { CoQueue } from '../../src/engine/sync.js';
import { gatedHostClock } from '../../src/engine/host/wallclock.js';
import type { GateInput } from '../../src/engine/host/input-gate.js';
import type { ReplayMachine } from '../../src/replay/machine.js';
import { valueProbe } from '../../src/replay/state.js';

declare module '../../src/engine/trace.js' {
  interface TraceEventMap {
    'job.progress': { job: string; n: number };
    'serial.rx': { device: string; len: number };
  }
}

export interface KernelSession extends ReplayMachine {
  readonly output: string[];
  readonly store: Map<string, string>;
}

export interface SessionOptions {
  readonly seed: number;
  /**
   * A deliberate behaviour change to provoke a divergence: `timing` makes every job sleep one ns
   * longer; `state` makes job 'c' count its progress twice (same timing, different state).
   */
  readonly perturb?: 'timing' | 'state';
}

export function buildKernelSession(options: SessionOptions): KernelSession {
  const loop = new MainLoop({ seed: options.seed, policy: 'explore' });
  const output: string[] = [];
  const store = new Map<string, string>();
  const progress = new Map<string, number>();
  const serialBuffer: number[] = [];
  const serialWake = new CoQueue();
  let echoed = '';
  const clock = gatedHostClock(loop.gate);

  function* job(id: string, steps: number, ns: number): Co {
    for (let n = 0; n < steps; n++) {
      yield sleep(ns + (options.perturb === 'timing' ? 1 : 0), n % 2 === 0 ? ClockType.Virtual : ClockType.Realtime);
      progress.set(id, options.perturb === 'state' && id === 'c' ? 2 * (n + 1) : n + 1);
      loop.trace.emit('job.progress', { job: id, n });
      if (loop.rng.stream('job').int(4) === 0) store.set(`${id}.lucky`, String(n));
    }
    output.push(`event JOB_COMPLETED ${id} at ${loop.nowNs}`);
  }

  loop.gate.attach('qmp', {
    room: () => 1,
    deliver(input) {
      const command = JSON.parse(String(input.data)) as { execute: string; arguments?: Record<string, string | number> };
      const args = command.arguments ?? {};
      switch (command.execute) {
        case 'job-start':
          loop.spawn(`job-${String(args.id)}`, job(String(args.id), Number(args.steps), Number(args.ns)));
          output.push(`return job-start ${String(args.id)} at ${loop.nowNs}`);
          break;
        case 'set':
          store.set(String(args.key), String(args.value));
          output.push(`return set ${String(args.key)}`);
          break;
        case 'time': {
          const t = clock.readHostTime();
          store.set('time', `${t.seconds}.${t.nanos}`);
          output.push(`return time ${t.seconds}.${t.nanos}`);
          break;
        }
        default:
          output.push(`error CommandNotFound ${command.execute}`);
      }
    },
  });

  loop.gate.attach('serial0', {
    room: () => Math.max(0, 4 - serialBuffer.length),
    deliver(input) {
      const bytes = input.data as Uint8Array;
      serialBuffer.push(...bytes);
      loop.trace.emit('serial.rx', { device: 'serial0', len: bytes.length });
      serialWake.restartAll();
    },
  });

  loop.spawn('serial-echo', (function* (): Co {
    for (;;) {
      while (serialBuffer.length === 0) yield* serialWake.wait();
      const byte = serialBuffer.shift()!;
      yield sleep(700, ClockType.Virtual);
      echoed += String.fromCharCode(byte);
      if (byte === 0x0a) {
        output.push(`serial ${JSON.stringify(echoed)} at ${loop.nowNs}`);
        echoed = '';
      }
    }
  })());

  return {
    loop,
    output,
    store,
    icountShift: 0,
    probes: [
      valueProbe('store', () => Object.fromEntries(store)),
      valueProbe('jobs', () => Object.fromEntries(progress)),
      valueProbe('serial0', () => ({ pending: serialBuffer.length, line: echoed })),
    ],
  };
}

/** A session script: QMP commands and typed serial text. */
export function sessionScript(): GateInput[] {
  const enc = (s: string) => new TextEncoder().encode(s);
  return [
    { channel: 'qmp', kind: 'qmp', data: JSON.stringify({ execute: 'job-start', arguments: { id: 'a', steps: 20, ns: 1000 } }) },
    { channel: 'serial0', kind: 'chardev', data: enc('virtio read\n') },
    { channel: 'qmp', kind: 'qmp', data: JSON.stringify({ execute: 'set', arguments: { key: 'x', value: 1 } }) },
    { channel: 'qmp', kind: 'qmp', data: JSON.stringify({ execute: 'job-start', arguments: { id: 'b', steps: 12, ns: 2500 } }) },
    { channel: 'qmp', kind: 'qmp', data: JSON.stringify({ execute: 'time' }) },
    { channel: 'serial0', kind: 'chardev', data: enc('poweroff\n') },
    { channel: 'qmp', kind: 'qmp', data: JSON.stringify({ execute: 'job-start', arguments: { id: 'c', steps: 5, ns: 333 } }) },
    { channel: 'qmp', kind: 'qmp', data: JSON.stringify({ execute: 'nope' }) },
  ];
}

/**
 * Drives a session the way a host would: runs the loop in slices of random length and offers the
 * script's inputs at random moments between slices (the host's timing is the only randomness).
 */
export function driveLive(session: KernelSession, script: readonly GateInput[], hostSeed: number): void {
  const host = seedrandom.alea(String(hostSeed));
  let next = 0;
  for (let guard = 0; guard < 100_000; guard++) {
    if (next < script.length && (session.loop.idle || host() < 0.3)) session.loop.gate.offer(script[next++]!);
    session.loop.runUntilIdle({ maxTasks: 1 + Math.floor(host() * 20) });
    if (next >= script.length && session.loop.idle) return;
  }
  throw new Error('live session did not finish');
}
