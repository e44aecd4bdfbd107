/**
 * qemu_irq: a wire from an interrupt source (a device, the PLIC, the CLINT) to a sink (the PLIC,
 * a hart's mip bit). Level-triggered; setting the same level twice is a no-op for observers.
 */
export interface IrqLine {
  readonly name: string;
  readonly level: boolean;
  set(level: boolean): void;
  raise(): void;
  lower(): void;
}

/** An IRQ line that calls `handler` when its level changes; listeners (e.g. qtest's intercept) see changes too. */
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

  set(level: boolean): void {
    if (level === this.current) return;
    this.current = level;
    this.handler(level);
    for (const listener of this.listeners) listener(level);
  }

  raise(): void {
    this.set(true);
  }

  lower(): void {
    this.set(false);
  }
}
