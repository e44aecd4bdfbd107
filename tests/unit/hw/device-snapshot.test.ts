// Device saveState/restoreState: each device is brought into a state with something pending (a
// FIFO timeout, a timer compare, an alarm, a claimed interrupt), snapshotted with the kernel
// (through msgpack), then a script of guest accesses and loop turns must observe exactly the same
// thing after a restore into the same device and into a freshly built one.
import { Packr } from 'msgpackr';
import { describe, expect, test } from 'vitest';
import { type KernelState, MainLoop } from '../../../src/engine/main-loop.js';
import { Ns16550a } from '../../../src/engine/hw/char/ns16550a.js';
import { Clint, CLINT_MTIMECMP_OFFSET } from '../../../src/engine/hw/intc/clint.js';
import { PLIC_CONTEXT_BASE, PLIC_ENABLE_BASE, PLIC_PENDING_BASE, Plic } from '../../../src/engine/hw/intc/plic.js';
import { GoldfishRtc, RTC_ALARM_HIGH, RTC_ALARM_LOW, RTC_ALARM_STATUS, RTC_IRQ_ENABLED, RTC_TIME_HIGH, RTC_TIME_LOW } from '../../../src/engine/hw/rtc/goldfish-rtc.js';

const packr = new Packr({ useRecords: false, moreTypes: false, encodeUndefinedAsNil: true });

/** A device on its own loop, with a log of what its lines did. */
interface Rig {
  readonly loop: MainLoop;
  readonly log: string[];
  save(): unknown;
  restore(state: unknown): void;
}

function check<R extends Rig>(build: () => R, setup: (r: R) => void, script: (r: R) => unknown[]): void {
  const run = (r: R): unknown => {
    const mark = r.log.length;
    const seen = script(r);
    return { seen, log: r.log.slice(mark), digest: r.loop.trace.digestHex(), events: r.loop.trace.eventCount, nowNs: r.loop.nowNs };
  };
  const a = build();
  setup(a);
  expect(a.loop.notQuiescent()).toBeNull();
  const state = packr.unpack(packr.pack({ kernel: a.loop.saveKernelState(), device: a.save() })) as { kernel: KernelState; device: unknown };
  const first = run(a);
  a.loop.restoreKernelState(state.kernel);
  a.restore(state.device);
  expect(run(a)).toEqual(first);
  const b = build();
  b.loop.restoreKernelState(state.kernel);
  b.restore(state.device);
  expect(run(b)).toEqual(first);
}

describe('device snapshots', () => {
  test('ns16550a: FIFO contents, the receive-timeout timer and the line', () => {
    const build = () => {
      const loop = new MainLoop();
      const uart = new Ns16550a(loop, '/uart');
      const log: string[] = [];
      uart.output = { write: (bytes) => log.push(`tx ${Array.from(bytes).join(',')}`) };
      uart.irq.connect((level) => log.push(`irq ${level} @${loop.nowNs}`));
      loop.gate.attach('serial', uart);
      return { loop, uart, log, save: () => uart.saveState(), restore: (s: unknown) => uart.restoreState(s as ReturnType<Ns16550a['saveState']>) };
    };
    const w = (r: ReturnType<typeof build>, offset: number, value: number) => r.uart.mmio.write(offset, 1, value);
    const rd = (r: ReturnType<typeof build>, offset: number) => r.uart.mmio.read(offset, 1);
    check(
      build,
      (r) => {
        w(r, 3, 0x03); // 8N1
        w(r, 2, 0xc1); // FIFO on, trigger level 14
        w(r, 1, 0x01); // receive interrupts
        w(r, 7, 0x5a); // scratch
        r.loop.gate.offer({ channel: 'serial', kind: 'chardev', data: new Uint8Array([0x61, 0x62, 0x63]) });
        r.loop.runUntilIdle({ untilNs: 1 }); // delivered: three bytes below the trigger, timeout armed
        w(r, 0, 0x41); // one byte out
      },
      (r) => {
        const seen: number[] = [rd(r, 2), rd(r, 5), rd(r, 7)];
        r.loop.runUntilIdle(); // the character timeout fires
        seen.push(rd(r, 2), rd(r, 0), rd(r, 0), rd(r, 0), rd(r, 5), rd(r, 2));
        return seen;
      },
    );
  });

  test('clint: mtimecmp, its timer and MTIP', () => {
    const build = () => {
      const loop = new MainLoop();
      const clint = new Clint(loop, '/clint', 2);
      const log: string[] = [];
      clint.mtip.forEach((pin, h) => pin.connect((level) => log.push(`mtip${h} ${level} @${loop.nowNs}`)));
      return { loop, clint, log, save: () => clint.saveState(), restore: (s: unknown) => clint.restoreState(s as ReturnType<Clint['saveState']>) };
    };
    check(
      build,
      (r) => {
        r.loop.clocks.advance(1_000);
        r.clint.mmio.write64!(CLINT_MTIMECMP_OFFSET, 150n); // hart 0: 15 µs
        r.clint.mmio.write64!(CLINT_MTIMECMP_OFFSET + 8, 150n); // hart 1: same deadline, armed later
        r.clint.mmio.write(0, 4, 1); // msip0
      },
      (r) => {
        const seen: unknown[] = [r.clint.mmio.read(0, 4), r.clint.readMtime()];
        r.loop.runUntilIdle();
        seen.push(r.clint.readMtime(), r.clint.mtip.map((p) => p.level));
        return seen;
      },
    );
  });

  test('goldfish rtc: an armed alarm, its interrupt and the TIME_HIGH latch', () => {
    const build = () => {
      const loop = new MainLoop();
      const rtc = new GoldfishRtc(loop, '/rtc');
      const log: string[] = [];
      rtc.irq.connect((level) => log.push(`irq ${level} @${loop.nowNs}`));
      return { loop, rtc, log, save: () => rtc.saveState(), restore: (s: unknown) => rtc.restoreState(s as ReturnType<GoldfishRtc['saveState']>) };
    };
    check(
      build,
      (r) => {
        r.loop.clocks.advance(123);
        const lo = r.rtc.mmio.read(RTC_TIME_LOW, 4);
        const hi = r.rtc.mmio.read(RTC_TIME_HIGH, 4);
        const alarm = ((BigInt(hi) << 32n) | BigInt(lo >>> 0)) + 5_000n;
        r.rtc.mmio.write(RTC_ALARM_HIGH, 4, Number(alarm >> 32n));
        r.rtc.mmio.write(RTC_ALARM_LOW, 4, Number(alarm & 0xffffffffn));
        r.rtc.mmio.write(RTC_IRQ_ENABLED, 4, 1);
      },
      (r) => {
        const seen = [r.rtc.mmio.read(RTC_ALARM_STATUS, 4), r.rtc.mmio.read(RTC_TIME_HIGH, 4)];
        r.loop.runUntilIdle();
        seen.push(r.rtc.mmio.read(RTC_ALARM_STATUS, 4), r.rtc.mmio.read(RTC_TIME_LOW, 4));
        return seen;
      },
    );
  });

  test('plic: priorities, enables, pending and claimed sources, line levels', () => {
    const build = () => {
      const loop = new MainLoop();
      const plic = new Plic('/plic', 1);
      const log: string[] = [];
      plic.contextIrq.forEach((pin, c) => pin.connect((level) => log.push(`ctx${c} ${level}`)));
      return { loop, plic, log, save: () => plic.saveState(), restore: (s: unknown) => plic.restoreState(s as ReturnType<Plic['saveState']>) };
    };
    const w = (r: ReturnType<typeof build>, offset: number, value: number) => r.plic.mmio.write(offset, 4, value);
    const rd = (r: ReturnType<typeof build>, offset: number) => r.plic.mmio.read(offset, 4);
    check(
      build,
      (r) => {
        w(r, 4 * 5, 3);
        w(r, 4 * 7, 2);
        w(r, PLIC_ENABLE_BASE, (1 << 5) | (1 << 7));
        r.plic.sources[5]!.raise();
        r.plic.sources[7]!.raise();
        rd(r, PLIC_CONTEXT_BASE + 4); // claims 5
      },
      (r) => {
        const seen = [rd(r, PLIC_PENDING_BASE), r.plic.sources[5]!.level, r.plic.meip(0).level];
        seen.push(rd(r, PLIC_CONTEXT_BASE + 4)); // claims 7
        w(r, PLIC_CONTEXT_BASE + 4, 5); // completes 5
        r.plic.sources[5]!.raise();
        seen.push(rd(r, PLIC_CONTEXT_BASE + 4), rd(r, PLIC_PENDING_BASE), r.plic.meip(0).level);
        return seen;
      },
    );
  });
});
