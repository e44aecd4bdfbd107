import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseScript, runScript } from '../../src/qtest/script.js';
import { openQtestTarget } from '../../src/qtest/targets.js';
import { KNOWN_DIVERGENCES } from './known-divergences.js';
import { scriptDrives } from './script-drives.js';

const dir = join(import.meta.dirname, 'scripts');
const scripts = readdirSync(dir).filter((f) => f.endsWith('.qtest')).sort();
const tmp = mkdtempSync(join(tmpdir(), 'qtest-scripts-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));


describe('qtest scripts (tests/qtest/scripts) in-process on the virt machine', () => {
  for (const file of scripts) {
    it(file, async () => {
      const text = readFileSync(join(dir, file), 'latin1');
      const steps = parseScript(text);
      expect(steps.length).toBeGreaterThan(0);
      const client = await openQtestTarget({ kind: 'in-process', drives: scriptDrives(text, tmp) });
      const results = await runScript(client, steps);
      await client.quit();
      const problems = results.filter((r) => r.problem !== null).map((r) => ({ line: r.step.line, command: r.step.command, tsqemu: r.reply }));
      // The script's checks see replies (and expected IRQ lines), not extra IRQ lines: those
      // divergences only show in the differential test.
      const reply = (output: string): string => output.slice(output.lastIndexOf('\n') + 1);
      const known = (KNOWN_DIVERGENCES[file] ?? []).filter((d) => reply(d.qemu) !== reply(d.tsqemu)).map(({ line, command, tsqemu }) => ({ line, command, tsqemu }));
      // Every check passes except the recorded divergences from QEMU 7.2, which must still be there
      // exactly (when a device is fixed, its entry has to go).
      expect(problems).toEqual(known);
    });
  }
});
