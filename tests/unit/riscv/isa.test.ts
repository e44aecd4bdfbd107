import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { SpikeMachine } from '../../../src/engine/hw/spike/machine.js';

const dir = join(import.meta.dirname, '../../../fixtures/isa/bin');
const bins = readdirSync(dir).filter((f) => f.endsWith('.elf')).sort();

function runIsa(file: string, jit: boolean): { code: number | null; icount: number; console: string } {
  const loop = new MainLoop();
  const m = new SpikeMachine(loop, { kernel: readFileSync(join(dir, file)), jit, jitThreshold: 2 });
  const code = m.run(20_000_000);
  return { code, icount: m.cpu.icount, console: m.consoleText };
}

describe('ISA tests on the spike machine', () => {
  it('has binaries', () => expect(bins.length).toBeGreaterThan(0));
  for (const file of bins) {
    for (const jit of [false, true]) {
      it(`${file} (${jit ? 'jit' : 'interpreter'})`, () => {
        const r = runIsa(file, jit);
        // Exit code 0 = pass; otherwise the failing test number (see fixtures/isa/src/test.h).
        expect({ file, code: r.code === null ? null : r.code.toString(16) }).toEqual({ file, code: '0' });
        expect(r.icount).toBeGreaterThan(0);
      });
    }
  }
});

/** The same binaries on real QEMU: the expectations in fixtures/isa are QEMU's behaviour, not just ours. */
function haveQemu(bin: string): boolean {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  return r.status === 0;
}
const qemu64 = haveQemu('qemu-system-riscv64');
const qemu32 = haveQemu('qemu-system-riscv32');

describe.skipIf(!qemu64 || !qemu32)('ISA tests on QEMU -M spike (skipped: qemu-system-riscv32/64 not installed)', () => {
  for (const file of bins) {
    it(file, () => {
      const bin = file.startsWith('rv32') ? 'qemu-system-riscv32' : 'qemu-system-riscv64';
      const r = spawnSync(bin, ['-M', 'spike', '-bios', 'none', '-kernel', join(dir, file), '-nographic', '-icount', 'shift=0'], { timeout: 20_000, encoding: 'utf8' });
      expect({ file, status: r.status, stderr: r.stderr }).toEqual({ file, status: 0, stderr: '' });
    });
  }
});
