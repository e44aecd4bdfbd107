import { describe, expect, it } from 'vitest';
import { PLIC_PATH, UART, plic, virt } from './virt-helpers.js';

const RBR = UART, IER = UART + 1, IIR = UART + 2, FCR = UART + 2, LCR = UART + 3, MCR = UART + 4, LSR = UART + 5, MSR = UART + 6, SCR = UART + 7;

describe('ns16550a over qtest', () => {
  it('has the reset values of QEMU 7.2 and a working scratch register and divisor latch', async () => {
    const { qt } = virt();
    expect(await qt.readb(LSR)).toBe(0x60);
    expect(await qt.readb(IIR)).toBe(0x01);
    expect(await qt.readb(MSR)).toBe(0xb0);
    expect(await qt.readb(MCR)).toBe(0x08);
    await qt.writeb(SCR, 0xa5);
    expect(await qt.readb(SCR)).toBe(0xa5);
    await qt.writeb(LCR, 0x83);
    await qt.writeb(UART, 0x0c);
    await qt.writeb(UART + 1, 0x01);
    expect(await qt.readb(UART)).toBe(0x0c);
    expect(await qt.readb(UART + 1)).toBe(0x01);
    await qt.writeb(LCR, 0x03);
    expect(await qt.readb(LCR)).toBe(0x03);
    expect(await qt.readb(IER)).toBe(0x00);
  });

  it('transmits to the serial backend', async () => {
    const { qt, serial } = virt();
    for (const c of 'hi\n') await qt.writeb(UART, c.charCodeAt(0));
    expect(String.fromCharCode(...serial)).toBe('hi\n');
    expect(await qt.readb(LSR)).toBe(0x60);
  });

  it('loops back through the 16-byte FIFO in order and flags overrun beyond it', async () => {
    const { qt, serial } = virt();
    await qt.writeb(FCR, 0x07); // enable + clear FIFOs
    expect((await qt.readb(IIR)) & 0xc0).toBe(0xc0);
    await qt.writeb(MCR, 0x18); // loopback
    for (let i = 0; i < 16; i++) await qt.writeb(UART, 0x40 + i);
    expect(serial).toEqual([]); // loopback keeps bytes off the wire
    expect((await qt.readb(LSR)) & 0x01).toBe(1);
    const got: number[] = [];
    for (let i = 0; i < 16; i++) got.push(await qt.readb(RBR));
    expect(got).toEqual(Array.from({ length: 16 }, (_, i) => 0x40 + i));
    expect((await qt.readb(LSR)) & 0x01).toBe(0);
    // 17 bytes into a 16-byte FIFO: overrun error (LSR.OE) and the first 16 kept
    for (let i = 0; i < 17; i++) await qt.writeb(UART, i);
    expect((await qt.readb(LSR)) & 0x02).toBe(0x02);
    expect(await qt.readb(RBR)).toBe(0);
  });

  it('raises its interrupt through the PLIC (source 10) and the claim/complete cycle clears it', async () => {
    const { qt } = virt();
    await qt.irqInterceptOut(PLIC_PATH);
    await qt.writel(plic.priority(10), 1);
    await qt.writel(plic.enable(10), 1 << 10);
    await qt.writel(plic.threshold(), 0);
    expect(qt.getIrq(0)).toBe(false);
    await qt.writeb(IER, 0x02); // THRE interrupt: the transmitter is empty
    expect(qt.getIrq(0)).toBe(true);
    expect((await qt.readl(plic.pending(10))) & (1 << 10)).toBe(1 << 10);
    expect(await qt.readl(plic.claim())).toBe(10);
    expect(qt.getIrq(0)).toBe(false);
    expect(await qt.readb(IIR)).toBe(0x02); // reading IIR acknowledges THRE
    // reading IIR acknowledged THRE; complete: nothing pending any more
    await qt.writel(plic.claim(), 10);
    expect(qt.getIrq(0)).toBe(false);
    // receive-data interrupt in loopback
    await qt.writeb(IER, 0x01);
    await qt.writeb(MCR, 0x18);
    await qt.writeb(UART, 0x55);
    expect(qt.getIrq(0)).toBe(true);
    expect(await qt.readb(IIR)).toBe(0x04);
    expect(await qt.readl(plic.claim())).toBe(10);
    expect(await qt.readb(RBR)).toBe(0x55);
    await qt.writel(plic.claim(), 10);
    expect(qt.getIrq(0)).toBe(false);
    expect(await qt.readb(IIR)).toBe(0x01);
  });

  it('receives from the serial input (the gate), with the RX trigger level and the FIFO timeout on virtual time', async () => {
    const { qt, loop } = virt();
    await qt.writeb(LCR, 0x83);
    await qt.writeb(UART, 0x01); // divisor 1
    await qt.writeb(LCR, 0x03);
    await qt.writeb(FCR, 0x81); // FIFO on, trigger level 8
    await qt.writeb(IER, 0x01); // receive-data interrupt
    await qt.irqInterceptOut('/machine/unattached/device[14]'); // the UART's own line
    loop.gate.offer({ channel: 'serial0', kind: 'chardev', data: new Uint8Array([0x61, 0x62, 0x63]) });
    loop.runUntilIdle();
    expect((await qt.readb(LSR)) & 0x01).toBe(1);
    expect(qt.getIrq(0)).toBe(false); // 3 bytes: below the trigger level, no timeout yet
    expect(await qt.readb(IIR)).toBe(0xc1);
    await qt.clockStep(1_000); // far less than 4 character times
    expect(qt.getIrq(0)).toBe(false);
    const at = await qt.clockStep(); // straight to the FIFO timeout's deadline
    expect(at).toBeGreaterThan(1_000);
    expect(qt.getIrq(0)).toBe(true);
    expect(await qt.readb(IIR)).toBe(0xcc); // character timeout
    expect([await qt.readb(RBR), await qt.readb(RBR), await qt.readb(RBR)]).toEqual([0x61, 0x62, 0x63]);
    expect(qt.getIrq(0)).toBe(false);
    // 8 bytes reach the trigger level: data-available interrupt at once
    loop.gate.offer({ channel: 'serial0', kind: 'chardev', data: new Uint8Array(8).fill(0x7a) });
    loop.runUntilIdle();
    expect(qt.getIrq(0)).toBe(true);
    expect(await qt.readb(IIR)).toBe(0xc4);
  });
});
