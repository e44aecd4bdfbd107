/**
 * qemu_irq: a wire from an interrupt source (a device, the PLIC, the CLINT) to a sink (the PLIC,
 * a hart's mip bit). Like QEMU's qemu_set_irq(), every `set()` reaches the sink, even with an
 * unchanged level: sinks such as QEMU 7.2's sifive_plic act on each call (a device that raises its
 * line again makes its source pending again). Observers (qtest's intercept, replay probes) see
 * only changes, as QEMU's qtest prints `IRQ raise/lower` only when a level changes.
 */
export interface IrqLine {
  readonly name: string;
  readonly level: boolean;
  set(level: boolean): void;
  raise(): void;
  lower(): void;
}

/** An IRQ line that calls `handler` on every `set()` (qemu_set_irq); listeners see level changes only. */
export class IrqPin implements IrqLine {
  private current = false;
  private readonly listeners: ((level: boolean) => void)[] = [];

  constructor(
    readonly name: string,
    private handler: (level: boolean) => void = () => {},
  ) {}

  get level(): boolean {
    return this.current;
  }

  /** Rewires the sink (machine construction connects sources before sinks exist). */
  connect(handler: (level: boolean) => void): void {
    this.handler = handler;
  }

  /** Observes level changes without being the sink (qtest irq_intercept, replay events). */
  listen(listener: (level: boolean) => void): void {
    this.listeners.push(listener);
  }

  /**
   * qemu_set_irq: the sink runs on every call (its handler must tolerate repeats); listeners run
   * after it, and only when the level changed (QEMU's qtest intercept forwards, then prints).
   */
  set(level: boolean): void {
    const changed = level !== this.current;
    this.current = level;
    this.handler(level);
    if (!changed) return;
    for (const listener of this.listeners) listener(level);
  }

  /**
   * Snapshot restore: puts the level back without calling the sink or the listeners. The sink's own
   * state (a PLIC pending bit, a hart's mip bit) is restored with its device, and nothing happened
   * on the wire: an observer or the trace must not see an edge that the original run did not have.
   */
  restoreLevel(level: boolean): void {
    if (typeof level !== 'boolean') throw new TypeError(`IRQ '${this.name}': restored level is not a boolean`);
    this.current = level;
  }

  raise(): void {
    this.set(true);
  }

  lower(): void {
    this.set(false);
  }
}
