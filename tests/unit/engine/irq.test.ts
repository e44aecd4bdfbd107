import { describe, expect, it } from 'vitest';
import { IrqPin } from '../../../src/engine/irq.js';

describe('IrqPin (qemu_irq)', () => {
  it('calls its sink on every set, like qemu_set_irq, and listeners only on level changes', () => {
    const sink: boolean[] = [];
    const seen: boolean[] = [];
    const pin = new IrqPin('/dev/irq', (level) => sink.push(level));
    pin.listen((level) => seen.push(level));
    pin.lower(); // already low: the sink still runs, a listener sees no change
    pin.raise();
    pin.raise();
    pin.set(true);
    pin.lower();
    expect(sink).toEqual([false, true, true, true, false]);
    expect(seen).toEqual([true, false]);
    expect(pin.level).toBe(false);
  });

  it('shows the new level to the sink and runs listeners after it', () => {
    const order: string[] = [];
    const pin = new IrqPin('/dev/irq');
    pin.connect(() => order.push(`sink ${pin.level}`));
    pin.listen((level) => order.push(`listener ${level}`));
    pin.raise();
    expect(order).toEqual(['sink true', 'listener true']);
  });
});
