// Differential fuzzing: seeded random time-independent command streams (RAM, empty virtio-mmio
// slots, UART registers, and the PLIC together with the UART, whose line is its source 10) must get
// identical output from tsqemu and qemu-system-riscv64.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { firstDifference, stepOutput } from '../../src/qtest/differential.js';
import { randomScript } from '../../src/qtest/random-script.js';
import { parseScript } from '../../src/qtest/script.js';
import { QEMU_VIRT_ARGS, openQtestTarget } from '../../src/qtest/targets.js';

let qemu = false;
try {
  execFileSync('qemu-system-riscv64', ['--version'], { stdio: 'ignore' });
  qemu = true;
} catch {
  qemu = false;
}

describe.skipIf(!qemu)(`qtest differential fuzzing vs qemu-system-riscv64 ${qemu ? '' : '(skipped: not installed)'}`, () => {
  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: 300 random commands on RAM, virtio-mmio and UART agree`, async () => {
      const steps = parseScript(randomScript(seed, 300, ['ram', 'virtio', 'uart']).join('\n'));
      expect(steps).toHaveLength(300);
      const reference = await openQtestTarget({ kind: 'qemu', args: [...QEMU_VIRT_ARGS] });
      const candidate = await openQtestTarget({ kind: 'in-process' });
      try {
        const d = await firstDifference(steps, reference, candidate);
        expect(d === null ? null : `command ${d.index + 1}: ${d.step.command}: qemu '${stepOutput(d.reference)}', tsqemu '${stepOutput(d.candidate)}'`).toBeNull();
      } finally {
        await reference.quit();
        await candidate.quit();
      }
    });
  }

  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: 300 random commands on the PLIC and the UART agree`, async () => {
      const steps = parseScript(randomScript(seed, 300, ['plic', 'uart']).join('\n'));
      expect(steps).toHaveLength(300);
      const reference = await openQtestTarget({ kind: 'qemu', args: [...QEMU_VIRT_ARGS] });
      const candidate = await openQtestTarget({ kind: 'in-process' });
      try {
        const d = await firstDifference(steps, reference, candidate);
        expect(d === null ? null : `command ${d.index + 1}: ${d.step.command}: qemu '${stepOutput(d.reference)}', tsqemu '${stepOutput(d.candidate)}'`).toBeNull();
      } finally {
        await reference.quit();
        await candidate.quit();
      }
    });
  }

  it('the generator is deterministic', () => {
    expect(randomScript(7, 50)).toEqual(randomScript(7, 50));
    expect(randomScript(7, 50)).not.toEqual(randomScript(8, 50));
  });
});
