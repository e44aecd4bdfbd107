import { Packr } from 'msgpackr';
import { describe, expect, test } from 'vitest';
import { ClockType } from '../../../src/engine/clock.js';
import { WaitQueue, sleep } from '../../../src/engine/coroutine.js';
import { IrqPin } from '../../../src/engine/irq.js';
import { type KernelState, KernelSnapshotError, MainLoop } from '../../../src/engine/main-loop.js';
import type { Timer } from '../../../src/engine/timer.js';

const packr = new Packr({ useRecords: false, moreTypes: false, encodeUndefinedAsNil: true });
const roundTrip = <T>(value: T): T => packr.unpack(packr.pack(value)) as T;

/** A small "board": timers built up front (as devices build theirs), firing into a log. */
function board(loop: MainLoop, log: string[]): Timer[] {
  const timers: Timer[] = [];
  for (const [clock, name] of [
    [ClockType.Virtual, 'a'],
    [ClockType.Virtual, 'b'],
    [ClockType.Realtime, 'c'],
    [ClockType.Host, 'd'],
  ] as const) {
    const rng = loop.rng.stream(`dev.${name}`);
    timers.push(loop.newTimer(clock, name, () => log.push(`${name}@${loop.nowNs}:${rng.uint32()}`)));
  }
  return timers;
}

describe('kernel snapshots', () => {
  test('timers with equal deadlines fire in their arming order after a restore, in the same and in a fresh loop', () => {
    const log: string[] = [];
    const loop = new MainLoop({ seed: 7 });
    const [a, b, c, d] = board(loop, log);
    // b armed before a at the same deadline: b must fire first, and keep doing so after a restore.
    b!.mod(500);
    a!.mod(500);
    c!.mod(300);
    d!.mod(900);
    loop.oneshot('bh', () => log.push('bh'));
    loop.runUntilIdle({ untilNs: 100 });
    expect(loop.notQuiescent()).toBeNull();
    const state = roundTrip(loop.saveKernelState());
    const mark = log.length;
    loop.runUntilIdle();
    const firstLog = log.slice(mark);
    const firstDigest = loop.trace.digestHex();
    expect(firstLog.map((e) => e.split('@')[0])).toEqual(['c', 'b', 'a', 'd']);

    loop.restoreKernelState(state);
    expect(loop.nowNs).toBe(100);
    const again = log.length;
    loop.runUntilIdle();
    expect(log.slice(again)).toEqual(firstLog);
    expect(loop.trace.digestHex()).toBe(firstDigest);

    const freshLog: string[] = [];
    const fresh = new MainLoop({ seed: 7 });
    board(fresh, freshLog);
    fresh.restoreKernelState(state);
    fresh.runUntilIdle();
    expect(freshLog).toEqual(firstLog);
    expect(fresh.trace.digestHex()).toBe(firstDigest);
    expect(fresh.trace.eventCount).toBe(loop.trace.eventCount);
  });

  test('task ids and event numbers continue from the snapshot', () => {
    const loop = new MainLoop();
    loop.runCoroutine('warm-up', (function* () {
      yield sleep(10);
    })());
    const state = loop.saveKernelState();
    const spawnIds = (): number[] => {
      const ids: number[] = [];
      const off = loop.trace.onEvent((e) => {
        if (e.name === 'co.spawn') ids.push(e.fields['id'] as number);
      });
      loop.runCoroutine('job', (function* () {
        yield sleep(5);
      })());
      off();
      return ids;
    };
    const first = spawnIds();
    const seq = loop.trace.eventCount;
    loop.restoreKernelState(state);
    expect(spawnIds()).toEqual(first);
    expect(loop.trace.eventCount).toBe(seq);
  });

  test('not quiescent: a live coroutine, a ready task, input waiting', () => {
    const loop = new MainLoop();
    const state = loop.saveKernelState();
    const bh = loop.newBh('tick', () => {});
    bh.schedule();
    expect(loop.notQuiescent()).toBe("1 task(s) ready to run, first 'tick'");
    expect(() => loop.saveKernelState()).toThrow(KernelSnapshotError);
    // A restore drops what the abandoned timeline had queued.
    loop.restoreKernelState(state);
    expect(loop.readyCount).toBe(0);
    expect(bh.scheduled).toBe(false);
    bh.schedule();
    loop.runUntilIdle();

    loop.spawn('sleeper', (function* () {
      yield sleep(1_000);
    })());
    expect(loop.notQuiescent()).toMatch(/1 coroutine\(s\) mid-flight: 'sleeper'/);
    loop.runUntilIdle();
    expect(loop.liveCoroutineCount).toBe(0);
    expect(loop.notQuiescent()).toBeNull();

    loop.gate.offer({ channel: 'nobody', kind: 'chardev', data: new Uint8Array([1]) });
    expect(loop.notQuiescent()).toBe('1 input(s) wait in the input gate');
  });

  test('a restore unwinds the abandoned timeline\'s coroutines: finally blocks run, queues and timers forget them', () => {
    const loop = new MainLoop();
    const state = loop.saveKernelState();
    const queue = new WaitQueue();
    const released: string[] = [];
    let held = 0;
    const body = (name: string, wait: 'sleep' | 'queue') =>
      (function* () {
        held++;
        try {
          if (wait === 'sleep') yield sleep(1_000);
          else yield queue.wait();
          released.push(`${name} finished`);
        } finally {
          held--;
          released.push(`${name} released`);
          queue.wakeAll(); // waking a coroutine being unwound is harmless
        }
      })();
    loop.spawn('sleeper', body('sleeper', 'sleep'));
    loop.spawn('waiter', body('waiter', 'queue'));
    loop.runUntilIdle({ untilNs: 10 });
    expect(loop.liveCoroutineCount).toBe(2);
    expect(queue.length).toBe(1);
    loop.restoreKernelState(state);
    expect(released).toEqual(['sleeper released', 'waiter released']);
    expect(held).toBe(0);
    expect(queue.length).toBe(0);
    expect(loop.liveCoroutineCount).toBe(0);
    expect(loop.nextDeadlineNs()).toBe(Infinity);
    expect(loop.notQuiescent()).toBeNull();
    expect(loop.runUntilIdle()).toBe(0);
  });

  test('a coroutine that threw is no longer alive', () => {
    const loop = new MainLoop();
    expect(() =>
      loop.runCoroutine('thrower', (function* () {
        yield sleep(5);
        throw new RangeError('boom');
      })()),
    ).toThrow(RangeError);
    expect(loop.liveCoroutineCount).toBe(0);
    expect(loop.notQuiescent()).toBeNull();
  });

  test('a restore from inside a task is refused', () => {
    const loop = new MainLoop();
    const state = loop.saveKernelState();
    let error: unknown = null;
    loop.oneshot('restorer', () => {
      try {
        loop.restoreKernelState(state);
      } catch (e) {
        error = e;
      }
    });
    loop.runUntilIdle();
    expect(error).toBeInstanceOf(KernelSnapshotError);
  });

  test('coroutine sleep timers leave the registry with their coroutine', () => {
    const loop = new MainLoop();
    for (let i = 0; i < 50; i++) {
      loop.runCoroutine(`co${i}`, (function* () {
        yield sleep(3, ClockType.Virtual);
        yield sleep(3, ClockType.Realtime);
      })());
    }
    // Only the state of the kernel itself remains: no timer armed, nothing alive.
    const state: KernelState = loop.saveKernelState();
    expect(state.timers).toEqual([]);
    const fresh = new MainLoop();
    fresh.restoreKernelState(state);
    expect(fresh.nowNs).toBe(loop.nowNs);
  });

  test('a snapshot arming a timer the loop does not have is refused before anything changes', () => {
    const loop = new MainLoop();
    const t = loop.newTimer(ClockType.Virtual, 't', () => {});
    t.mod(50);
    const state = loop.saveKernelState();
    const bare = new MainLoop();
    bare.clocks.advance(7);
    expect(() => bare.restoreKernelState(state)).toThrow(/timer task/);
    expect(bare.nowNs).toBe(7);
  });

  test('an IRQ level restored silently: no sink call, no listener', () => {
    const calls: boolean[] = [];
    const pin = new IrqPin('p', (level) => calls.push(level));
    pin.listen((level) => calls.push(level));
    pin.restoreLevel(true);
    expect(pin.level).toBe(true);
    expect(calls).toEqual([]);
  });
});
