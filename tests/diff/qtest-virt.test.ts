// Differential: the qtest scripts of tests/qtest/scripts against Debian's qemu-system-riscv64 (7.2)
// and tsqemu (in-process, and as a child process with QEMU's exact command line), reply by reply
// (IRQ lines included). Debian's QEMU has no -accel qtest (its CPU runs), so
// scripts marked `# requires: accel-qtest` (time-dependent) are left out.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseScript, runScript } from '../../src/qtest/script.js';
import { QEMU_VIRT_ARGS, openQtestTarget, qemuDriveArgs } from '../../src/qtest/targets.js';
import { KNOWN_DIVERGENCES } from '../qtest/known-divergences.js';
import { scriptDrives } from '../qtest/script-drives.js';

function haveQemu(): boolean {
  try {
    execFileSync('qemu-system-riscv64', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const have = haveQemu();
/** The built tsqemu (npm test builds first): also run as a child with QEMU's exact arguments. */
const CHILD_SCRIPT = 'irq.qtest';
const haveTsqemu = existsSync(join(import.meta.dirname, '..', '..', 'dist', 'tools', 'tsqemu.js'));
const dir = join(import.meta.dirname, '..', 'qtest', 'scripts');
const scripts = readdirSync(dir).filter((f) => f.endsWith('.qtest')).sort();
const tmp = mkdtempSync(join(tmpdir(), 'qtest-diff-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.skipIf(!have)(`qtest scripts: tsqemu vs qemu-system-riscv64 ${have ? '' : '(skipped: qemu-system-riscv64 not installed)'}`, () => {
  for (const file of scripts) {
    const text = readFileSync(join(dir, file), 'latin1');
    const timeDependent = /^# requires: accel-qtest$/m.test(text);
    it.skipIf(timeDependent)(`${file}${timeDependent ? ' (time-dependent: needs -accel qtest, which Debian lacks)' : ''}`, async () => {
      const steps = parseScript(text);
      const drives = scriptDrives(text, tmp);
      const qemu = await openQtestTarget({ kind: 'qemu', args: [...QEMU_VIRT_ARGS, ...qemuDriveArgs(drives)] });
      const qemuResults = await runScript(qemu, steps);
      await qemu.quit();
      const ours = await openQtestTarget({ kind: 'in-process', drives });
      const ourResults = await runScript(ours, steps);
      await ours.quit();
      // tsqemu as QEMU runs here: a child with the very same command line (its hart runs, as QEMU's).
      // One script only: with a hart running, each command waits for a CPU slice (~0.1-0.3 s).
      const childResults = haveTsqemu && file === CHILD_SCRIPT ? await (async () => {
        const child = await openQtestTarget({ kind: 'tsqemu', args: [...QEMU_VIRT_ARGS, ...qemuDriveArgs(drives)] });
        try {
          return await runScript(child, steps);
        } finally {
          await child.quit();
        }
      })() : null;

      // The scripts' expectations are QEMU's answers.
      expect(qemuResults.filter((r) => r.problem !== null).map((r) => `${r.step.line}: ${r.step.command} -> ${r.reply}`)).toEqual([]);
      // Everything each command produced: the IRQ lines it caused, then its reply.
      const output = (r: (typeof qemuResults)[number]): string => [...r.irqs, r.reply].join('\n');
      const differences = qemuResults
        .map((q, i) => ({ line: q.step.line, command: q.step.command, qemu: output(q), tsqemu: output(ourResults[i]!) }))
        .filter((d) => d.qemu !== d.tsqemu);
      const known = (KNOWN_DIVERGENCES[file] ?? []).map(({ line, command, qemu: q, tsqemu }) => ({ line, command, qemu: q, tsqemu }));
      expect(differences).toEqual(known);
      if (childResults !== null) {
        const childDifferences = qemuResults
          .map((q, i) => ({ line: q.step.line, command: q.step.command, qemu: output(q), tsqemu: output(childResults[i]!) }))
          .filter((d) => d.qemu !== d.tsqemu);
        expect(childDifferences).toEqual(known);
      }
      expect(qemuResults.length).toBe(steps.length);
    });
  }
});
