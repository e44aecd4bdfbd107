import { describe, expect, it } from 'vitest';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { ClockType } from '../../../src/engine/clock.js';
import { externalPolicy, replayPolicy } from '../../../src/engine/policy.js';
import type { InputSink, StampedInput } from '../../../src/engine/host/input-gate.js';

describe('MainLoop', () => {
  it('runs a bottom half once however often it is scheduled, and not after cancel', () => {
    const loop = new MainLoop();
    let runs = 0;
    const bh = loop.newBh('bh', () => runs++);
    bh.schedule();
    bh.schedule();
    loop.runUntilIdle();
    expect(runs).toBe(1);
    bh.schedule();
    bh.cancel();
    loop.runUntilIdle();
    expect(runs).toBe(1);
  });

  it('fires timers in deadline order and skips one re-armed after it expired', () => {
    const loop = new MainLoop();
    const log: string[] = [];
    const t1 = loop.newTimer(ClockType.Virtual, 't1', () => log.push(`t1@${loop.nowNs}`));
    const t2 = loop.newTimer(ClockType.Virtual, 't2', () => {
      log.push(`t2@${loop.nowNs}`);
      t1.mod(loop.nowNs + 5); // t1 was due at the same instant: it now waits 5 more ns
    });
    t2.mod(10);
    t1.mod(10);
    loop.runUntilIdle();
    expect(log).toEqual(['t2@10', 't1@15']);
  });

  it('frozen time only moves with step and clockSet', () => {
    const loop = new MainLoop();
    loop.frozen = true;
    let fired = 0;
    loop.newTimer(ClockType.Virtual, 't', () => fired++).mod(1000);
    loop.runUntilIdle();
    expect([fired, loop.nowNs]).toEqual([0, 0]);
    expect(loop.step(999)).toBe(999);
    expect(fired).toBe(0);
    expect(loop.clockSet(1000)).toBe(1000);
    expect(fired).toBe(1);
    expect(loop.clockSet(10)).toBe(1000); // never backwards
  });

  it('runUntil stops at the predicate and respects limits', () => {
    const loop = new MainLoop();
    let ticks = 0;
    const t = loop.newTimer(ClockType.Realtime, 'tick', () => {
      ticks++;
      t.mod(loop.nowNs + 100);
    });
    t.mod(100);
    expect(loop.runUntil(() => ticks === 5)).toBe(true);
    expect(loop.nowNs).toBe(500);
    expect(loop.runUntil(() => false, { untilNs: 1000 })).toBe(false);
    expect(loop.nowNs).toBe(1000);
    expect(loop.runUntil(() => false, { maxTasks: 10 })).toBe(false);
  });

  it('explore and external policies pick among ready tasks; replay repeats the choices', () => {
    const order = (loop: MainLoop) => {
      const log: number[] = [];
      for (let i = 0; i < 4; i++) loop.newBh(`bh${i}`, () => log.push(i)).schedule();
      loop.runUntilIdle();
      return log;
    };
    expect(order(new MainLoop())).toEqual([0, 1, 2, 3]);
    const orders = new Set<string>();
    for (let seed = 0; seed < 20; seed++) orders.add(order(new MainLoop({ seed, policy: 'explore' })).join());
    expect(orders.size).toBeGreaterThan(1);
    const last = externalPolicy((_label, count) => count - 1);
    expect(order(new MainLoop({ policy: last }))).toEqual([3, 2, 1, 0]);
    const recorded = new MainLoop({ seed: 3, policy: 'explore' });
    const first = order(recorded);
    expect(order(new MainLoop({ policy: replayPolicy(recorded.chooser.choices) }))).toEqual(first);
  });
});

describe('InputGate', () => {
  function byteSink(capacity: number, got: StampedInput[]): InputSink & { free: number } {
    return {
      free: capacity,
      room(input) {
        return input.data instanceof Uint8Array ? this.free : 1;
      },
      deliver(input) {
        got.push(input);
        if (input.data instanceof Uint8Array) this.free -= input.data.length;
      },
    };
  }

  it('stamps inputs, keeps what a full sink cannot take (flow control), and feeds observers', () => {
    const loop = new MainLoop();
    const got: StampedInput[] = [];
    const seen: StampedInput[] = [];
    const sink = byteSink(3, got);
    loop.gate.attach('serial0', sink);
    loop.gate.observe((i) => seen.push(i));
    loop.gate.offer({ channel: 'serial0', kind: 'chardev', data: new Uint8Array([1, 2, 3, 4, 5]) });
    loop.step(7);
    expect(got.map((i) => [...(i.data as Uint8Array)])).toEqual([[1, 2, 3]]);
    expect(got[0]).toMatchObject({ ns: 0, seq: 0, icount: 0 });
    sink.free = 10;
    loop.runUntilIdle();
    expect(got.map((i) => [...(i.data as Uint8Array)])).toEqual([[1, 2, 3], [4, 5]]);
    expect(got[1]!.ns).toBe(7);
    expect(seen).toEqual(got);
    expect(loop.idle).toBe(true);
  });

  it('replay delivers logged inputs at their step and ignores live offers', () => {
    const live = new MainLoop();
    const recorded: StampedInput[] = [];
    live.gate.observe((i) => recorded.push(i));
    const liveGot: StampedInput[] = [];
    live.gate.attach('qmp', byteSink(0, liveGot));
    live.newBh('x', () => live.gate.offer({ channel: 'qmp', kind: 'qmp', data: '{"execute":"x"}' })).schedule();
    live.gate.offer({ channel: 'qmp', kind: 'qmp', data: 'first' });
    live.runUntilIdle();
    expect(recorded.map((r) => [r.data, r.step])).toEqual([['first', 0], ['{"execute":"x"}', 1]]);

    const replay = new MainLoop();
    const got: StampedInput[] = [];
    replay.gate.attach('qmp', byteSink(0, got));
    let index = 0;
    replay.gate.replayFrom({ peek: () => recorded[index], take: () => recorded[index++]! });
    replay.gate.offer({ channel: 'qmp', kind: 'qmp', data: 'ignored' });
    replay.newBh('x', () => {}).schedule();
    replay.runUntilIdle();
    expect(got.map((r) => [r.data, r.step])).toEqual([['first', 0], ['{"execute":"x"}', 1]]);
  });
});

describe('trace digest', () => {
  it('does not depend on how the host slices idle time', () => {
    const run = (slices: number[]) => {
      const loop = new MainLoop();
      loop.newTimer(ClockType.Virtual, 'late', () => {}).mod(1_000_000);
      for (const untilNs of slices) loop.runUntilIdle({ untilNs });
      loop.runUntilIdle();
      return loop.trace.digestHex();
    };
    expect(run([10, 500, 70_000])).toBe(run([]));
  });
});
