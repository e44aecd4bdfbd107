import type { MmioOps } from '../../memory.js';

export const SIFIVE_TEST_FAIL = 0x3333;
export const SIFIVE_TEST_PASS = 0x5555;
export const SIFIVE_TEST_RESET = 0x7777;

/** What the guest asked the machine to do. */
export type ShutdownRequest = { readonly kind: 'poweroff'; readonly exitCode: number } | { readonly kind: 'reset' };

declare module '../../trace.js' {
  interface TraceEventMap {
    'sifive-test.write': { value: number };
  }
}

/**
 * SiFive's test finisher (also the regmap of the syscon-poweroff/-reboot nodes): a 32-bit write
 * of 0x5555 powers off with exit code 0, 0x3333 | code << 16 powers off with `code`, 0x7777
 * resets. Anything else is ignored (QEMU logs a guest error). Reads return 0.
 */
export class SifiveTest {
  readonly mmio: MmioOps;

  constructor(
    readonly path: string,
    private readonly request: (req: ShutdownRequest) => void,
    private readonly trace?: { emit(name: 'sifive-test.write', fields: { value: number }): void },
  ) {
    this.mmio = {
      read: () => 0,
      write: (offset, _size, value) => {
        if (offset !== 0) return;
        this.trace?.emit('sifive-test.write', { value });
        const status = value & 0xffff;
        const code = (value >>> 16) & 0xffff;
        if (status === SIFIVE_TEST_FAIL) this.request({ kind: 'poweroff', exitCode: code });
        else if (status === SIFIVE_TEST_PASS) this.request({ kind: 'poweroff', exitCode: 0 });
        else if (status === SIFIVE_TEST_RESET) this.request({ kind: 'reset' });
      },
    };
  }
}
