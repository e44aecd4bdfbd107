import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { programArb, runProgram } from '../../support/kernel-programs.js';
import fc from 'fast-check';

// The kernel must not touch the host: with Date, Math.random and the timers replaced by throwing
// stubs, programs still run, and run the same as before.
describe('kernel without host APIs', () => {
  const saved = {
    Date: globalThis.Date,
    random: Math.random,
    setTimeout: globalThis.setTimeout,
    setInterval: globalThis.setInterval,
    setImmediate: globalThis.setImmediate,
    queueMicrotask: globalThis.queueMicrotask,
    hrtime: process.hrtime,
    performance: globalThis.performance,
  };
  const samples = fc.sample(programArb, { numRuns: 40, seed: 42 });
  const expected = samples.map((p) => runProgram(p, { seed: 9, policy: 'explore' }));

  const thrower = (name: string) =>
    function () {
      throw new Error(`kernel touched the host: ${name}`);
    };
  beforeEach(() => {
    const g = globalThis as Record<string, unknown>;
    g.Date = new Proxy(saved.Date, { construct: thrower('new Date'), get: thrower('Date.*'), apply: thrower('Date()') });
    Math.random = thrower('Math.random');
    g.setTimeout = thrower('setTimeout');
    g.setInterval = thrower('setInterval');
    g.setImmediate = thrower('setImmediate');
    g.queueMicrotask = thrower('queueMicrotask');
    (process as unknown as Record<string, unknown>).hrtime = thrower('process.hrtime');
    Object.defineProperty(globalThis, 'performance', { value: new Proxy({}, { get: thrower('performance') }), configurable: true });
  });
  afterEach(() => {
    const g = globalThis as Record<string, unknown>;
    g.Date = saved.Date;
    Math.random = saved.random;
    g.setTimeout = saved.setTimeout;
    g.setInterval = saved.setInterval;
    g.setImmediate = saved.setImmediate;
    g.queueMicrotask = saved.queueMicrotask;
    (process as unknown as Record<string, unknown>).hrtime = saved.hrtime;
    Object.defineProperty(globalThis, 'performance', { value: saved.performance, configurable: true });
  });

  it('runs coroutine, timer and bottom-half programs identically', () => {
    samples.forEach((program, i) => {
      const again = runProgram(program, { seed: 9, policy: 'explore' });
      expect(again.digest).toBe(expected[i]!.digest);
      expect(again.log).toEqual(expected[i]!.log);
    });
  });
});
