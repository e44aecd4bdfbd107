import { describe, expect, it } from 'vitest';
import { RTC, RTC_PATH, TEST, virt } from './virt-helpers.js';

const TIME_LOW = RTC, TIME_HIGH = RTC + 4, ALARM_LOW = RTC + 8, ALARM_HIGH = RTC + 0xc, IRQ_ENABLED = RTC + 0x10, ALARM_STATUS = RTC + 0x18, CLEAR_INTERRUPT = RTC + 0x1c;
/** The deterministic host clock starts at 2026-01-01T00:00:00Z. */
const BASE_NS = 1_767_225_600n * 1_000_000_000n;

async function readTime(qt: ReturnType<typeof virt>['qt']): Promise<bigint> {
  const low = BigInt(await qt.readl(TIME_LOW)); // latches the high half
  const high = BigInt(await qt.readl(TIME_HIGH));
  return (high << 32n) | low;
}

describe('goldfish RTC over qtest', () => {
  it('reads the deterministic host clock and moves with clock_step', async () => {
    const { qt } = virt();
    expect(await readTime(qt)).toBe(BASE_NS);
    await qt.clockStep(2_500_000_000);
    expect(await readTime(qt)).toBe(BASE_NS + 2_500_000_000n);
  });

  it('fires its alarm interrupt at the programmed time', async () => {
    const { qt } = virt();
    await qt.irqInterceptOut(RTC_PATH);
    const at = BASE_NS + 1_000_000n;
    await qt.writel(IRQ_ENABLED, 1);
    await qt.writel(ALARM_HIGH, Number(at >> 32n));
    await qt.writel(ALARM_LOW, Number(at & 0xffff_ffffn)); // arms
    expect(await qt.readl(ALARM_STATUS)).toBe(1);
    await qt.clockStep(999_999);
    expect(qt.getIrq(0)).toBe(false);
    await qt.clockStep(1);
    expect(qt.getIrq(0)).toBe(true);
    expect(await qt.readl(ALARM_STATUS)).toBe(0);
    await qt.writel(CLEAR_INTERRUPT, 1);
    expect(qt.getIrq(0)).toBe(false);
  });
});

describe('sifive_test finisher over qtest', () => {
  it('0x5555 powers off with exit code 0, 0x3333 | code << 16 with code', async () => {
    const a = virt();
    expect(await a.qt.readl(TEST)).toBe(0);
    await a.qt.writel(TEST, 0x1234); // ignored
    expect(a.machine.shutdown).toBeNull();
    await a.qt.writel(TEST, 0x5555);
    expect(a.machine.shutdown).toEqual({ kind: 'poweroff', exitCode: 0 });
    const b = virt();
    await b.qt.writel(TEST, 0x3333 | (7 << 16));
    expect(b.machine.shutdown).toEqual({ kind: 'poweroff', exitCode: 7 });
  });

  it('0x7777 resets the machine: device state returns to reset values', async () => {
    const { qt, loop, machine } = virt();
    await qt.writeb(0x1000_0007, 0x5a); // UART scratch
    await qt.writel(TEST, 0x7777);
    loop.runUntilIdle();
    expect(machine.shutdown).toBeNull();
    expect(await qt.readb(0x1000_0005)).toBe(0x60);
    expect(await qt.readb(0x1000_0007)).toBe(0);
    expect(await qt.readl(0x1000)).not.toBe(0); // the reset vector is back in MROM
  });
});
