// tsqemu-qtest as a command (needs the build: `npm test` builds first).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const bin = join(root, 'dist', 'tools', 'tsqemu-qtest.js');
const scripts = join(root, 'tests', 'qtest', 'scripts');
const built = existsSync(bin);
let qemu = false;
try {
  execFileSync('qemu-system-riscv64', ['--version'], { stdio: 'ignore' });
  qemu = true;
} catch {
  qemu = false;
}

function run(args: string[], input?: string) {
  return spawnSync(process.execPath, [bin, ...args], { input, encoding: 'latin1', timeout: 30_000 });
}

describe.skipIf(!built)(`tsqemu-qtest run ${built ? '' : '(skipped: not built, run npm run build)'}`, () => {
  it('prints the replies and exits 0 when every check holds', () => {
    const r = run(['run', join(scripts, 'memory.qtest')]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe('OK little');
    expect(r.stdout).toContain("FAIL Unknown command 'nonsense'\n");
  });

  it('exits 1 on a FAIL reply or a mismatched "# expect:", naming the line; reads stdin for "-"', () => {
    const r = run(['run', '-'], 'readl 0x80000000\n# expect: OK 0x0000000000000001\nwritel 0x80000000\nendianness\n');
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('OK 0x0000000000000000\nFAIL value: missing argument\nOK little\n');
    expect(r.stderr).toBe("<stdin>:1: readl 0x80000000: got 'OK 0x0000000000000000', expected 'OK 0x0000000000000001'\n<stdin>:3: writel 0x80000000: got 'FAIL value: missing argument', command failed\n");
  });

  it.skipIf(!qemu)(`runs the same script against real QEMU with --qemu ${qemu ? '' : '(skipped: qemu-system-riscv64 missing)'}`, () => {
    const r = run(['run', join(scripts, 'virtio-mmio.qtest'), '--qemu']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe('OK 0x0000000074726976');
  });
});

describe.skipIf(!built || !qemu)(`tsqemu-qtest diff ${built && qemu ? '' : '(skipped: needs the build and qemu-system-riscv64)'}`, () => {
  it('prints the commands whose output differs from QEMU and exits 1; 0 when none does', () => {
    const same = run(['diff', join(scripts, 'memory.qtest')]);
    expect(same.status).toBe(0);
    expect(same.stdout).toMatch(/^\d+ commands, 0 differ\n$/);
    // Debian's QEMU has no -accel qtest, so clock_step is unknown there: a difference that stays.
    const dir = mkdtempSync(join(tmpdir(), 'qtest-cli-'));
    const script = join(dir, 'step.qtest');
    writeFileSync(script, 'endianness\nclock_step 10\n');
    const differs = run(['diff', script]);
    rmSync(dir, { recursive: true, force: true });
    expect(differs.status).toBe(1);
    expect(differs.stdout).toBe(`${script}:2: clock_step 10\n  qemu:   FAIL Unknown command 'clock_step'\n  tsqemu: OK 10\n2 commands, 1 differ\n`);
  });
});

const tsqemu = join(root, 'dist', 'tools', 'tsqemu.js');

describe.skipIf(!existsSync(tsqemu))(`tsqemu -qtest ${existsSync(tsqemu) ? '' : '(skipped: not built)'}`, () => {
  it('serves a reproducer on stdio (tsqemu -M virt -accel qtest -qtest stdio < repro) and exits with the guest\'s code', () => {
    const r = spawnSync(process.execPath, [tsqemu, '-M', 'virt', '-accel', 'qtest', '-qtest', 'stdio', '-display', 'none', '-nodefaults'], {
      input: 'readl 0x10001000\nclock_step 100\nreadq 0x200bff8\nwritel 0x80000000\nwritel 0x100000 0x73333\n',
      encoding: 'latin1',
      timeout: 20_000,
    });
    expect(r.stdout.split('\n').slice(0, 5)).toEqual(['OK 0x0000000074726976', 'OK 100', 'OK 0x0000000000000001', 'FAIL value: missing argument', 'OK']);
    expect(r.status).toBe(7);
  });

  it('tsqemu-qtest run SCRIPT -- ARGS runs the script on a tsqemu child over a unix socket', () => {
    const r = run(['run', join(scripts, 'clint.qtest'), '--', '-M', 'virt', '-accel', 'qtest', '-display', 'none', '-nodefaults']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('OK 1000000000\n');
  });
});
