import fc from 'fast-check';
import { MainLoop, type MainLoopOptions } from '../../src/engine/main-loop.js';
import { type Co, YIELD, sleep } from '../../src/engine/coroutine.js';
import { CoMutex, CoQueue } from '../../src/engine/sync.js';
import { ClockType } from '../../src/engine/clock.js';

/** One step of a test actor. */
export type Op =
  | { op: 'sleep'; ns: number }
  | { op: 'yield' }
  | { op: 'bh' }
  | { op: 'timer'; ns: number }
  | { op: 'locked'; ns: number }
  | { op: 'notify' }
  | { op: 'wait' };

export type Program = Op[][];

export const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('sleep' as const), ns: fc.integer({ min: 0, max: 1000 }) }),
  fc.constant({ op: 'yield' as const }),
  fc.constant({ op: 'bh' as const }),
  fc.record({ op: fc.constant('timer' as const), ns: fc.integer({ min: 0, max: 1000 }) }),
  fc.record({ op: fc.constant('locked' as const), ns: fc.integer({ min: 0, max: 100 }) }),
  fc.constant({ op: 'notify' as const }),
);

export const programArb: fc.Arbitrary<Program> = fc.array(fc.array(opArb, { maxLength: 12 }), { minLength: 1, maxLength: 6 });

export interface RunResult {
  readonly log: string[];
  readonly digest: string;
  readonly choices: number[];
  readonly times: number[];
}

/** Runs a program of actors; every observable step is logged with the time it happened. */
export function runProgram(program: Program, options: MainLoopOptions): RunResult {
  const loop = new MainLoop(options);
  const mutex = new CoMutex();
  const queue = new CoQueue();
  const log: string[] = [];
  const times: number[] = [];
  const note = (what: string) => {
    log.push(`${what}@${loop.nowNs}`);
    times.push(loop.nowNs);
  };
  program.forEach((ops, actor) => {
    loop.spawn(`actor${actor}`, (function* (): Co {
      for (const [index, step] of ops.entries()) {
        const tag = `${actor}.${index}`;
        switch (step.op) {
          case 'sleep':
            yield sleep(step.ns, ClockType.Virtual);
            break;
          case 'yield':
            yield YIELD;
            break;
          case 'bh':
            loop.oneshot(`bh${tag}`, () => note(`bh${tag}`));
            break;
          case 'timer':
            loop.newTimer(ClockType.Virtual, `t${tag}`, () => note(`t${tag}`)).mod(loop.clocks.virtualNs + step.ns);
            break;
          case 'locked':
            yield* mutex.lock();
            note(`lock${tag}`);
            yield sleep(step.ns, ClockType.Virtual);
            mutex.unlock();
            break;
          case 'notify':
            queue.restartAll();
            break;
          case 'wait':
            yield* queue.wait();
            break;
        }
        note(tag);
      }
    })());
  });
  loop.runUntilIdle({ maxTasks: 1_000_000 });
  return { log, digest: loop.trace.digestHex(), choices: [...loop.chooser.choices], times };
}
