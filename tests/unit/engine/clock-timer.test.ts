import { describe, expect, it } from 'vitest';
import { ClockType, Clocks, DEFAULT_HOST_BASE_SECONDS } from '../../../src/engine/clock.js';
import { TimerList, Timer } from '../../../src/engine/timer.js';
import { AssertionError } from '../../../src/engine/assert.js';

describe('Clocks', () => {
  it('moves virtual with realtime only while the VM runs', () => {
    const clocks = new Clocks();
    clocks.advance(100);
    expect([clocks.realtimeNs, clocks.virtualNs]).toEqual([100, 100]);
    clocks.setRunning(false);
    clocks.advance(50);
    expect([clocks.realtimeNs, clocks.virtualNs]).toEqual([150, 100]);
    expect(clocks.toMasterDeadline(ClockType.Virtual, 120)).toBe(Infinity);
    clocks.setRunning(true);
    expect(clocks.toMasterDeadline(ClockType.Virtual, 120)).toBe(170);
    expect(clocks.hostTime()).toEqual({ seconds: DEFAULT_HOST_BASE_SECONDS, nanos: 150 });
  });

  it('refuses to go backwards or past 2^53 ns', () => {
    const clocks = new Clocks();
    expect(() => clocks.advance(-1)).toThrow(AssertionError);
    expect(() => clocks.advance(1.5)).toThrow(AssertionError);
    clocks.advance(Number.MAX_SAFE_INTEGER - 10);
    expect(() => clocks.advance(100)).toThrow(/2\^53/);
  });
});

describe('TimerList', () => {
  it('pops in (deadline, arming order) and supports re-arm and delete', () => {
    const list = new TimerList(ClockType.Virtual);
    const fired: string[] = [];
    const mk = (name: string) => new Timer(list, name, () => fired.push(name));
    const a = mk('a');
    const b = mk('b');
    const c = mk('c');
    const d = mk('d');
    a.mod(30);
    b.mod(10);
    c.mod(10);
    d.mod(5);
    d.del();
    a.mod(10); // re-armed later than b and c at the same deadline
    expect(list.size).toBe(3);
    const order: string[] = [];
    for (let t = list.popExpired(100); t; t = list.popExpired(100)) order.push(t.name);
    expect(order).toEqual(['b', 'c', 'a']);
    expect(list.nextDeadlineNs).toBe(Infinity);
  });

  it('keeps heap order over many random operations', () => {
    const list = new TimerList(ClockType.Realtime);
    const timers = Array.from({ length: 200 }, (_, i) => new Timer(list, `t${i}`, () => {}));
    let x = 12345;
    const rnd = () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0);
    for (let i = 0; i < 5000; i++) {
      const t = timers[rnd() % timers.length]!;
      if (rnd() % 4 === 0) t.del();
      else t.mod(rnd() % 1000);
    }
    let last = -1;
    for (let t = list.popExpired(1e9); t; t = list.popExpired(1e9)) {
      expect(t.deadlineNs).toBeGreaterThanOrEqual(last);
      last = t.deadlineNs;
    }
  });
});
