import { MainLoop } from '../../src/engine/main-loop.js';
import { type Co, YIELD, sleep } from '../../src/engine/coroutine.js';
import { ClockType } from '../../src/engine/clock.js';
import { type BenchCase, opsPerSecond } from './types.js';

function coroutineSwitches(): number {
  const loop = new MainLoop();
  const perCo = 100_000;
  const coroutines = 4;
  for (let c = 0; c < coroutines; c++) {
    loop.spawn(`spin${c}`, (function* (): Co {
      for (let i = 0; i < perCo; i++) yield YIELD;
    })());
  }
  loop.runUntilIdle();
  return perCo * coroutines;
}

function sleepSwitches(): number {
  const loop = new MainLoop();
  const perCo = 50_000;
  for (let c = 0; c < 4; c++) {
    loop.spawn(`sleeper${c}`, (function* (): Co {
      for (let i = 0; i < perCo; i++) yield sleep(10 + c, ClockType.Virtual);
    })());
  }
  loop.runUntilIdle();
  return perCo * 4;
}

function timerOps(): number {
  const loop = new MainLoop();
  const count = 2_000;
  const rounds = 50;
  const timers = Array.from({ length: count }, (_, i) => loop.newTimer(ClockType.Virtual, `t${i}`, () => {}));
  let x = 1;
  for (let r = 0; r < rounds; r++) {
    for (const t of timers) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      t.mod(loop.nowNs + (x % 100_000));
    }
    loop.step(50_000);
  }
  return count * rounds;
}

export const kernelBench: BenchCase = {
  name: 'kernel',
  group: 'kernel',
  run: () => [
    { name: 'coroutine switches (yield)', value: opsPerSecond(coroutineSwitches), unit: 'switches/s' },
    { name: 'coroutine sleeps + wake-ups', value: opsPerSecond(sleepSwitches), unit: 'switches/s' },
    { name: 'timer mod + expire', value: opsPerSecond(timerOps), unit: 'ops/s' },
  ],
};

export const benchCases: BenchCase[] = [kernelBench];
