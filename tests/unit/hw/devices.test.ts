import { describe, expect, it } from 'vitest';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { AddressSpace } from '../../../src/engine/hw/address-space.js';
import { Ns16550a } from '../../../src/engine/hw/char/ns16550a.js';
import { Clint } from '../../../src/engine/hw/intc/clint.js';
import { Plic } from '../../../src/engine/hw/intc/plic.js';
import { GoldfishRtc } from '../../../src/engine/hw/rtc/goldfish-rtc.js';
import { SifiveTest, type ShutdownRequest } from '../../../src/engine/hw/misc/sifive-test.js';
import { Clocks, DEFAULT_HOST_BASE_SECONDS } from '../../../src/engine/clock.js';

const UART = 0x1000_0000;

function uartRig() {
  const loop = new MainLoop();
  const as = new AddressSpace(loop.trace);
  const uart = new Ns16550a(loop, '/machine/soc/serial@10000000');
  as.addMmio('uart0', UART, 0x100, uart.mmio, { maxAccess: 1 });
  const out: number[] = [];
  uart.output = { write: (b) => out.push(...b) };
  loop.gate.attach('serial0', uart);
  const rd = (reg: number) => as.load(UART + reg, 1).value;
  const wr = (reg: number, v: number) => as.store(UART + reg, 1, v);
  const type = (text: string) => loop.gate.offer({ channel: 'serial0', kind: 'chardev', data: new TextEncoder().encode(text) });
  return { loop, as, uart, out, rd, wr, type };
}

describe('ns16550a', () => {
  it('has QEMU reset values', () => {
    const { rd } = uartRig();
    expect([rd(1), rd(2), rd(3), rd(4), rd(5), rd(6), rd(7)]).toEqual([0, 0x01, 0, 0x08, 0x60, 0xb0, 0]);
  });

  it('transmits, latches the divisor, and keeps the scratch register', () => {
    const { rd, wr, out } = uartRig();
    wr(0, 0x41);
    wr(0, 0x42);
    expect(out).toEqual([0x41, 0x42]);
    expect(rd(5)).toBe(0x60);
    wr(3, 0x80);
    wr(0, 0x34);
    wr(1, 0x12);
    expect([rd(0), rd(1)]).toEqual([0x34, 0x12]);
    wr(3, 0x03);
    wr(7, 0x5a);
    expect(rd(7)).toBe(0x5a);
    expect(rd(3)).toBe(3);
  });

  it('receives through the gate with flow control and raises RDA, then THRE', () => {
    const { loop, rd, wr, uart, type } = uartRig();
    wr(1, 0x01); // RDI
    type('hi');
    loop.gate.poll();
    // Without FIFOs only one byte fits; the second waits in the gate.
    expect(uart.irq.level).toBe(true);
    expect(rd(2)).toBe(0x04);
    expect(rd(5) & 1).toBe(1);
    expect(rd(0)).toBe(0x68);
    expect(uart.irq.level).toBe(false);
    loop.gate.poll();
    expect(rd(0)).toBe(0x69);
    expect(rd(5) & 1).toBe(0);
    wr(1, 0x02); // THRI: THR is empty so THRE interrupts at once
    expect(rd(2)).toBe(0x02);
    // Reading IIR cleared the THRE cause.
    expect(rd(2)).toBe(0x01);
    expect(uart.irq.level).toBe(false);
  });

  it('fills the FIFO up to the trigger level, then times out on the virtual clock', () => {
    const { loop, rd, wr, uart, type } = uartRig();
    wr(2, 0x81); // FIFO on, trigger 8
    expect(rd(2) & 0xc0).toBe(0xc0);
    wr(1, 0x01);
    type('abcdefghijklmnopqrst');
    loop.gate.poll();
    expect(uart.room()).toBe(0);
    expect(rd(2) & 0x0f).toBe(0x04); // 8 bytes: RDA
    const got: number[] = [];
    for (let i = 0; i < 7; i++) got.push(rd(0));
    expect(rd(2) & 0x0f).toBe(0x01);
    // One byte left below the trigger level: the character timeout fires later.
    loop.runUntilIdle({ untilNs: loop.nowNs + 10_000_000 });
    expect(rd(2) & 0x0f).toBe(0x0c);
    got.push(rd(0));
    expect(String.fromCharCode(...got)).toBe('abcdefgh');
    // Everything else arrives as the guest drains it: nothing is lost.
    for (let i = 0; i < 40 && got.length < 20; i++) {
      loop.gate.poll();
      while (rd(5) & 1) got.push(rd(0));
    }
    expect(String.fromCharCode(...got)).toBe('abcdefghijklmnopqrst');
  });

  it('loops back transmitted bytes and reflects modem lines', () => {
    const { rd, wr, out } = uartRig();
    wr(4, 0x10 | 0x03);
    wr(0, 0x55);
    expect(out).toEqual([]);
    expect(rd(5) & 1).toBe(1);
    expect(rd(0)).toBe(0x55);
    expect(rd(6) & 0x30).toBe(0x30); // CTS = RTS, DSR = DTR
  });

  it('reports overrun as a line-status interrupt, highest priority', () => {
    const { rd, wr, uart } = uartRig();
    wr(1, 0x07);
    wr(4, 0x10);
    wr(0, 1);
    wr(0, 2); // overruns the one-byte holding register
    expect(rd(2)).toBe(0x06);
    expect(rd(5) & 0x02).toBe(0x02);
    expect(rd(5) & 0x02).toBe(0);
    expect(rd(2)).toBe(0x04);
    expect(uart.irq.level).toBe(true);
  });
});

describe('CLINT', () => {
  it('derives mtime from virtual time at 10 MHz and raises MTIP at mtimecmp', () => {
    const loop = new MainLoop();
    const as = new AddressSpace(loop.trace);
    const clint = new Clint(loop, '/machine/soc/clint@2000000', 2);
    as.addMmio('clint', 0x200_0000, 0x10000, clint.mmio, { minAccess: 4, maxAccess: 8 });
    expect(as.load64(0x200_bff8).value).toBe(0n);
    loop.step(1000);
    expect(as.load64(0x200_bff8).value).toBe(10n);
    expect(as.load(0x200_bff8, 4).value).toBe(10);
    as.store64(0x200_4008, 50n); // hart 1
    expect(clint.mtip[1]!.level).toBe(false);
    expect(as.load(0x200_4008, 4).value).toBe(50);
    loop.step(3999);
    expect(clint.mtip[1]!.level).toBe(false);
    loop.step(1);
    expect(clint.mtip[1]!.level).toBe(true);
    expect(clint.mtip[0]!.level).toBe(false);
    // Writing a later compare value lowers MTIP; 32-bit halves work too.
    as.store(0x200_4008, 4, 0xffffffff);
    as.store(0x200_400c, 4, 0);
    expect(clint.mtip[1]!.level).toBe(false);
    as.store(0x200_0004, 4, 1);
    expect(clint.msip[1]!.level).toBe(true);
    expect(as.load(0x200_0004, 4).value).toBe(1);
    as.store(0x200_0004, 4, 0);
    expect(clint.msip[1]!.level).toBe(false);
    // mtime is writable; mtimecmp re-evaluates against it.
    as.store64(0x200_bff8, 0x1_0000_0000n);
    expect(clint.mtip[1]!.level).toBe(true);
    expect(as.load64(0x200_bff8).value).toBe(0x1_0000_0000n);
    // A huge compare value never fires and never throws.
    as.store64(0x200_4000, 0xffff_ffff_ffff_ffffn);
    loop.step(1_000_000);
    expect(clint.mtip[0]!.level).toBe(false);
  });
});

describe('PLIC', () => {
  function rig() {
    const as = new AddressSpace();
    const plic = new Plic('/machine/soc/plic@c000000', 1);
    as.addMmio('plic', 0xc00_0000, 0x60_0000, plic.mmio, { minAccess: 4, maxAccess: 4 });
    const r = (o: number) => as.load(0xc00_0000 + o, 4).value;
    const w = (o: number, v: number) => as.store(0xc00_0000 + o, 4, v);
    return { plic, r, w };
  }

  it('routes by priority, enable and threshold; claim/complete per context', () => {
    const { plic, r, w } = rig();
    plic.sources[10]!.raise();
    plic.sources[5]!.raise();
    expect(r(0x1000)).toBe((1 << 10) | (1 << 5));
    expect(plic.meip(0).level).toBe(false); // priority 0 never interrupts
    w(4 * 10, 3);
    w(4 * 5, 3);
    w(4 * 5, 0xff); // masked to 3 bits
    expect(r(4 * 5)).toBe(7);
    w(0x2000, (1 << 10) | (1 << 5) | 1); // M context; stored as written (QEMU 7.2)
    expect(r(0x2000)).toBe((1 << 10) | (1 << 5) | 1);
    // As in QEMU 7.2, an enable write does not re-evaluate the outputs; the next update does.
    expect(plic.meip(0).level).toBe(false);
    w(0x20_0000, 0);
    expect(plic.meip(0).level).toBe(true);
    expect(plic.seip(0).level).toBe(false);
    w(0x20_0000, 7); // threshold 7 masks everything
    expect(plic.meip(0).level).toBe(false);
    w(0x20_0000, 2);
    expect(plic.meip(0).level).toBe(true);
    expect(r(0x20_0004)).toBe(5); // highest priority first
    expect(r(0x20_0004)).toBe(10);
    expect(r(0x20_0004)).toBe(0);
    expect(plic.meip(0).level).toBe(false);
    // Completion does not sample the lines: 10 is still high, yet pends only when raised again.
    plic.sources[5]!.lower();
    w(0x20_0004, 5);
    w(0x20_0004, 10);
    expect(r(0x1000)).toBe(0);
    expect(plic.meip(0).level).toBe(false);
    plic.sources[10]!.raise(); // same level: the PLIC still sees the call (qemu_set_irq)
    expect(r(0x1000)).toBe(1 << 10);
    expect(plic.meip(0).level).toBe(true);
    // Lowering a line leaves its pending bit.
    plic.sources[10]!.lower();
    expect(r(0x1000)).toBe(1 << 10);
    expect(plic.meip(0).level).toBe(true);
    // S context sees the same source when enabled there (after the next update).
    w(0x2080, 1 << 10);
    expect(plic.seip(0).level).toBe(false);
    w(0x20_1000, 0);
    expect(plic.seip(0).level).toBe(true);
    expect(r(0x20_1004)).toBe(10);
    expect(plic.seip(0).level).toBe(false);
    expect(plic.meip(0).level).toBe(false);
    // Raised while claimed: pending, but held back until completion.
    plic.sources[10]!.raise();
    expect(r(0x1000)).toBe(1 << 10);
    expect(plic.meip(0).level).toBe(false);
    w(0x20_1004, 10);
    expect(plic.meip(0).level).toBe(true);
    expect(plic.seip(0).level).toBe(true);
  });

  it('completes a source from any context, enabled there or not (QEMU 7.2)', () => {
    const { plic, r, w } = rig();
    w(4 * 3, 1);
    w(0x2000, 1 << 3);
    plic.sources[3]!.raise();
    expect(r(0x20_0004)).toBe(3);
    w(0x2000, 0);
    w(0x20_1004, 3); // the S context, where source 3 is not enabled: still completes it
    w(0x2000, 1 << 3);
    plic.sources[3]!.raise();
    expect(plic.meip(0).level).toBe(true);
    expect(r(0x20_0004)).toBe(3);
    w(4 * 4, 1);
    plic.sources[4]!.raise(); // pending, not enabled yet
    w(0x2000, (1 << 3) | (1 << 4)); // no re-evaluation on an enable write
    expect(plic.meip(0).level).toBe(false);
    w(0x20_0004, 96); // beyond the sources: ignored
    expect(plic.meip(0).level).toBe(false);
    w(0x20_0004, 0); // source 0: nothing to complete, but the outputs are re-evaluated
    expect(plic.meip(0).level).toBe(true);
  });

  it('resets without sampling the lines', () => {
    const { plic, r, w } = rig();
    w(4 * 7, 1);
    w(0x2000, 1 << 7);
    plic.sources[7]!.raise();
    w(0x20_0000, 0);
    expect(plic.meip(0).level).toBe(true);
    plic.reset();
    expect(plic.meip(0).level).toBe(false);
    expect(r(0x1000)).toBe(0);
    expect(plic.sources[7]!.level).toBe(true);
  });

  it('ignores writes to pending and out-of-range registers', () => {
    const { r, w } = rig();
    w(0x1000, 0xffffffff);
    expect(r(0x1000)).toBe(0);
    w(0x3ffffc, 1);
    w(0x5ffffc, 1);
    expect(r(0x5ffffc)).toBe(0);
    expect(r(4 * 200)).toBe(0);
  });
});

describe('goldfish RTC', () => {
  it('reads deterministic host time and fires the alarm', () => {
    const loop = new MainLoop({ clocks: new Clocks(DEFAULT_HOST_BASE_SECONDS) });
    const as = new AddressSpace();
    const rtc = new GoldfishRtc(loop, '/machine/soc/rtc@101000');
    as.addMmio('rtc', 0x10_1000, 0x1000, rtc.mmio, { minAccess: 4, maxAccess: 4 });
    const read64 = () => {
      const lo = BigInt(as.load(0x10_1000, 4).value);
      const hi = BigInt(as.load(0x10_1004, 4).value);
      return (hi << 32n) | lo;
    };
    loop.step(1234);
    expect(read64()).toBe(BigInt(DEFAULT_HOST_BASE_SECONDS) * 1_000_000_000n + 1234n);
    const target = read64() + 5000n;
    as.store(0x10_100c, 4, Number(target >> 32n));
    as.store(0x10_1008, 4, Number(target & 0xffffffffn));
    as.store(0x10_1010, 4, 1);
    expect(as.load(0x10_1018, 4).value).toBe(1);
    loop.step(4999);
    expect(rtc.irq.level).toBe(false);
    loop.step(1);
    expect(rtc.irq.level).toBe(true);
    expect(as.load(0x10_1018, 4).value).toBe(0);
    as.store(0x10_101c, 4, 1);
    expect(rtc.irq.level).toBe(false);
    // Setting the time moves the guest's clock only.
    as.store(0x10_1004, 4, 0);
    as.store(0x10_1000, 4, 100);
    expect(read64()).toBe(100n);
  });
});

describe('sifive_test', () => {
  it('reports pass, fail with code, and reset', () => {
    const reqs: ShutdownRequest[] = [];
    const dev = new SifiveTest('/machine/soc/test@100000', (r) => reqs.push(r));
    const as = new AddressSpace();
    as.addMmio('test', 0x10_0000, 0x1000, dev.mmio, { minAccess: 2, maxAccess: 4 });
    as.store(0x10_0000, 4, 0x5555);
    as.store(0x10_0000, 4, (7 << 16) | 0x3333);
    as.store(0x10_0000, 4, 0x7777);
    as.store(0x10_0000, 4, 0x1234);
    expect(reqs).toEqual([{ kind: 'poweroff', exitCode: 0 }, { kind: 'poweroff', exitCode: 7 }, { kind: 'reset' }]);
    expect(as.load(0x10_0000, 4).value).toBe(0);
  });
});

describe('ns16550a on the virt bus', () => {
  it('answers a wide access with one register, as QEMU serial_mm does', async () => {
    const { buildVirtMachine } = await import('../../../src/engine/hw/virt/machine.js');
    const m = buildVirtMachine(new MainLoop());
    m.as.store(UART + 4, 1, 0x18);
    expect(m.as.load(UART + 4, 4).value).toBe(0x18);
    expect(m.as.load64(UART + 0).value).toBe(0n);
    m.as.store(UART + 4, 4, 0x1234_5603); // MCR keeps the low byte (masked to 5 bits)
    expect(m.as.load(UART + 4, 1).value).toBe(0x03);
    expect(m.as.load(UART + 5, 1).value).toBe(0x60); // LSR untouched
  });
});
