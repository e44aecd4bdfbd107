import { describe, expect, it } from 'vitest';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { type Co, YIELD, sleep } from '../../../src/engine/coroutine.js';
import { CoEvent, CoMutex, CoQueue, PauseGate } from '../../../src/engine/sync.js';
import { ClockType } from '../../../src/engine/clock.js';

describe('coroutines', () => {
  it('sleep jumps virtual time straight to the deadline', () => {
    const loop = new MainLoop();
    const log: string[] = [];
    loop.spawn('a', (function* (): Co {
      yield sleep(3_600_000_000_000); // an hour
      log.push(`a@${loop.nowNs}`);
    })());
    loop.spawn('b', (function* (): Co {
      yield sleep(5);
      log.push(`b@${loop.nowNs}`);
    })());
    loop.runUntilIdle();
    expect(log).toEqual(['b@5', 'a@3600000000000']);
  });

  it('enter runs to the first wait synchronously; spawn runs later', () => {
    const loop = new MainLoop();
    const log: string[] = [];
    loop.spawn('s', (function* (): Co {
      log.push('spawned');
    })());
    loop.enter('e', (function* (): Co {
      log.push('entered');
      yield YIELD;
      log.push('entered-2');
    })());
    expect(log).toEqual(['entered']);
    loop.runUntilIdle();
    expect(log).toEqual(['entered', 'spawned', 'entered-2']);
  });

  it('join returns the result and yield* composes coroutines', () => {
    const loop = new MainLoop();
    function* double(x: number): Co<number> {
      yield sleep(10);
      return 2 * x;
    }
    const child = loop.spawn('child', double(21));
    const parent = loop.spawn('parent', (function* (): Co<number> {
      const a = yield* child.join();
      const b = yield* double(a);
      return b;
    })());
    loop.runUntilIdle();
    expect(child.result).toBe(42);
    expect(parent.result).toBe(84);
    expect(loop.nowNs).toBe(20);
    expect(loop.runCoroutine('rc', double(5))).toBe(10);
  });

  it('a wake-up ends a sleep early and cancels its timer', () => {
    const loop = new MainLoop();
    let wokeWith: unknown;
    const co = loop.spawn('sleeper', (function* (): Co {
      wokeWith = yield sleep(1_000_000);
    })());
    loop.step(10);
    co.wake('early');
    loop.runUntilIdle();
    expect(wokeWith).toBe('early');
    expect(loop.nowNs).toBe(10);
    expect(loop.nextDeadlineNs()).toBe(Infinity);
  });

  it('CoMutex serializes critical sections and hands over in FIFO order', () => {
    const loop = new MainLoop();
    const mutex = new CoMutex();
    const log: string[] = [];
    for (const name of ['a', 'b', 'c']) {
      loop.spawn(name, (function* (): Co {
        yield* mutex.lock();
        log.push(`${name}+`);
        yield sleep(10);
        log.push(`${name}-`);
        mutex.unlock();
      })());
    }
    loop.runUntilIdle();
    expect(log).toEqual(['a+', 'a-', 'b+', 'b-', 'c+', 'c-']);
    expect(mutex.locked).toBe(false);
  });

  it('CoQueue, CoEvent and PauseGate park and release coroutines', () => {
    const loop = new MainLoop();
    const queue = new CoQueue();
    const event = new CoEvent();
    const gate = new PauseGate();
    const log: string[] = [];
    loop.spawn('q', (function* (): Co {
      yield* queue.wait();
      log.push('queue');
    })());
    loop.spawn('e', (function* (): Co {
      yield* event.wait();
      log.push('event');
    })());
    gate.pause();
    gate.pause();
    loop.spawn('p', (function* (): Co {
      yield* gate.pausePoint();
      log.push('gate');
    })());
    loop.runUntilIdle();
    expect(log).toEqual([]);
    expect(queue.next()).toBe(true);
    event.fire();
    gate.resume();
    loop.runUntilIdle();
    expect(log).toEqual(['queue', 'event']);
    gate.resume();
    loop.runUntilIdle();
    expect(log).toEqual(['queue', 'event', 'gate']);
    expect(() => gate.resume()).toThrow();
  });

  it('virtual-clock sleeps stand still while the VM is stopped; realtime ones do not', () => {
    const loop = new MainLoop();
    const log: string[] = [];
    loop.clocks.setRunning(false);
    loop.spawn('v', (function* (): Co {
      yield sleep(100, ClockType.Virtual);
      log.push(`v@${loop.nowNs}`);
    })());
    loop.spawn('r', (function* (): Co {
      yield sleep(100, ClockType.Realtime);
      log.push(`r@${loop.nowNs}`);
    })());
    loop.runUntilIdle();
    expect(log).toEqual(['r@100']);
    loop.clocks.setRunning(true);
    loop.runUntilIdle();
    expect(log).toEqual(['r@100', 'v@200']);
  });
});
