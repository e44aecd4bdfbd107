import { describe, expect, it } from 'vitest';
import { CLINT, CLINT_PATH, PLIC_PATH, plic, virt } from './virt-helpers.js';

const MSIP = CLINT, MTIMECMP = CLINT + 0x4000, MTIME = CLINT + 0xbff8;

describe('CLINT over qtest (10 MHz timebase, time only moves with clock_step)', () => {
  it('mtime follows the virtual clock exactly', async () => {
    const { qt } = virt();
    expect(await qt.readq(MTIME)).toBe(0n);
    expect(await qt.clockStep(1_000)).toBe(1_000);
    expect(await qt.readq(MTIME)).toBe(10n);
    expect(await qt.readq(MTIME)).toBe(10n); // frozen between commands
    expect(await qt.clockSet(1_000_000_000)).toBe(1_000_000_000);
    expect(await qt.readq(MTIME)).toBe(10_000_000n);
    expect(await qt.readl(MTIME)).toBe(10_000_000);
    expect(await qt.readl(MTIME + 4)).toBe(0);
  });

  it('mtimecmp raises MTIP when mtime reaches it, and a later compare value lowers it', async () => {
    const { qt } = virt();
    await qt.irqInterceptOut(CLINT_PATH); // outputs: msip[0], mtip[0]
    await qt.writeq(MTIMECMP, 50n); // 50 ticks = 5000 ns
    expect(qt.getIrq(1)).toBe(false);
    await qt.clockStep(4_900);
    expect(qt.getIrq(1)).toBe(false);
    // no argument: exactly to the next deadline (the mtimecmp timer)
    expect(await qt.clockStep()).toBe(5_000);
    expect(qt.getIrq(1)).toBe(true);
    expect(await qt.readq(MTIMECMP)).toBe(50n);
    await qt.writeq(MTIMECMP, 0xffff_ffff_ffff_ffffn);
    expect(qt.getIrq(1)).toBe(false);
    // a compare value already in the past fires at once
    await qt.writel(MTIMECMP + 4, 0);
    await qt.writel(MTIMECMP, 10);
    expect(qt.getIrq(1)).toBe(true);
  });

  it('waitIrq steps time until the timer interrupt arrives', async () => {
    const { qt } = virt();
    await qt.irqInterceptOut('/machine/unattached/device[1]'); // QEMU's ACLINT MTIMER: mtip per hart
    await qt.writeq(MTIMECMP, 12_345n);
    expect(await qt.waitIrq(0)).toBe(1_234_500);
    expect(await qt.readq(MTIME)).toBe(12_345n);
    await expect(qt.waitIrq(0, false, 3)).rejects.toThrow('did not go low within 3 clock steps');
  });

  it('msip raises and lowers the software interrupt', async () => {
    const { qt } = virt();
    await qt.irqInterceptOut(CLINT_PATH);
    await qt.writel(MSIP, 1);
    expect(qt.getIrq(0)).toBe(true);
    expect(await qt.readl(MSIP)).toBe(1);
    await qt.writel(MSIP, 0);
    expect(qt.getIrq(0)).toBe(false);
  });
});

describe('PLIC over qtest', () => {
  it('priorities, enables, thresholds and claim/complete as QEMU 7.2 (pending set by each raise)', async () => {
    const { qt } = virt();
    await qt.irqInterceptOut(PLIC_PATH); // outputs: context 0 (hart 0 M) = 0, context 1 (S) = 1
    await qt.setIrqIn(PLIC_PATH, null, 5, 1);
    expect((await qt.readl(plic.pending(5))) & (1 << 5)).toBe(1 << 5);
    expect(qt.getIrq(0)).toBe(false); // priority 0 never interrupts
    await qt.writel(plic.priority(5), 3);
    expect(qt.getIrq(0)).toBe(false); // not enabled
    await qt.writel(plic.enable(5), 1 << 5);
    expect(qt.getIrq(0)).toBe(false); // an enable write does not re-evaluate the outputs (QEMU 7.2)
    await qt.writel(plic.threshold(), 3); // priority must exceed the threshold
    expect(qt.getIrq(0)).toBe(false);
    await qt.writel(plic.threshold(), 2);
    expect(qt.getIrq(0)).toBe(true);
    expect(qt.getIrq(1)).toBe(false); // S context not enabled
    // priorities are 3 bits wide
    await qt.writel(plic.priority(6), 0xffffffff);
    expect(await qt.readl(plic.priority(6))).toBe(7);
    // claim returns the highest-priority pending source and takes it out of pending
    await qt.setIrqIn(PLIC_PATH, null, 6, 1);
    await qt.writel(plic.enable(5), (1 << 5) | (1 << 6));
    expect(await qt.readl(plic.claim())).toBe(6);
    expect(await qt.readl(plic.claim())).toBe(5);
    expect(qt.getIrq(0)).toBe(false);
    expect(await qt.readl(plic.claim())).toBe(0);
    // completing a source whose line is still high does not make it pending again…
    await qt.writel(plic.claim(), 5);
    expect(qt.getIrq(0)).toBe(false);
    expect(await qt.readl(plic.pending(5))).toBe(0);
    // …raising it again does, even at the same level (the PLIC sees every qemu_set_irq)
    await qt.setIrqIn(PLIC_PATH, null, 5, 1);
    expect(qt.getIrq(0)).toBe(true);
    // lowering a line leaves its pending bit
    await qt.setIrqIn(PLIC_PATH, null, 5, 0);
    await qt.setIrqIn(PLIC_PATH, null, 6, 0);
    expect(await qt.readl(plic.pending(5))).toBe((1 << 5));
    expect(await qt.readl(plic.claim())).toBe(5);
    await qt.writel(plic.claim(), 5);
    await qt.writel(plic.claim(), 6);
    expect(qt.getIrq(0)).toBe(false);
    expect(await qt.readl(plic.pending(5))).toBe(0);
  });

  it('routes to the S-mode context with its own enable and threshold', async () => {
    const { qt } = virt();
    await qt.irqInterceptOut(PLIC_PATH);
    await qt.writel(plic.priority(9), 1);
    await qt.writel(plic.enable(9, 1), 1 << 9);
    await qt.setIrqIn(PLIC_PATH, null, 9, 1);
    expect(qt.getIrq(1)).toBe(true);
    expect(qt.getIrq(0)).toBe(false);
    expect(await qt.readl(plic.claim(1))).toBe(9);
    expect(qt.getIrq(1)).toBe(false);
  });
});
