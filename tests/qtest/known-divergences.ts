/**
 * Where tsqemu's devices still answer differently from QEMU 7.2 in the qtest scripts, as found by
 * the differential test (tests/diff/qtest-virt.test.ts). Each entry is asserted: when a device is
 * fixed, the script passes there and the entry must be removed.
 */
export interface Divergence {
  /** Line of the command in the script. */
  readonly line: number;
  readonly command: string;
  /** What QEMU 7.2 answers (the script's `# expect:`); in the differential test, IRQ lines first. */
  readonly qemu: string;
  readonly tsqemu: string;
  readonly why: string;
}

export const KNOWN_DIVERGENCES: Readonly<Record<string, readonly Divergence[]>> = {
  'irq.qtest': [
    {
      line: 25,
      command: 'writel 0x0c201004 10',
      qemu: 'OK',
      tsqemu: 'IRQ raise 1\nIRQ raise 0\nOK',
      why: 'completing source 10 while the UART still holds its line high: tsqemu re-pends it (level-triggered), QEMU 7.2 does not (pending only on a raise)',
    },
  ],
  'plic.qtest': [
    {
      line: 34,
      command: 'readl 0x0c001000',
      qemu: 'OK 0x0000000000000000',
      tsqemu: 'OK 0x0000000000000400',
      why: 'QEMU 7.2 sifive_plic sets a pending bit only when a source is raised; tsqemu re-pends a source whose line is still high at completion (level-triggered, as later QEMU)',
    },
    {
      line: 40,
      command: 'readl 0x0c201004',
      qemu: 'OK 0x0000000000000000',
      tsqemu: 'OK 0x000000000000000a',
      why: 'same cause: source 10 is pending again in tsqemu, so the S-mode context can claim it',
    },
  ],
};
