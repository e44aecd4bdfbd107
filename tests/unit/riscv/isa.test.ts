import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { SpikeMachine } from '../../../src/engine/hw/spike/machine.js';

const dir = join(import.meta.dirname, '../../../fixtures/isa/bin');
const bins = readdirSync(dir).filter((f) => f.endsWith('.elf')).sort();

function runIsa(file: string, jit: boolean): { code: number | null; icount: number; console: string } {
  const loop = new MainLoop();
  const m = new SpikeMachine(loop, { kernel: readFileSync(join(dir, file)), jit });
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
