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

// None left: the last ones (plic.qtest, irq.qtest) were the PLIC re-pending a source at completion
// while its line was still high; it now follows QEMU 7.2 (a pending bit is set by each raise of the
// line, never by completion), and IrqPin calls its sink on every set, as qemu_set_irq does.
export const KNOWN_DIVERGENCES: Readonly<Record<string, readonly Divergence[]>> = {};
