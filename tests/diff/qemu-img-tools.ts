/** Shared helpers for the differential tests against Debian's qemu-utils. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildSync } from 'esbuild';

export function have(cmd: string): boolean {
  return spawnSync(cmd, ['--version'], { encoding: 'utf8' }).status === 0;
}

export const haveQemuImg = have('qemu-img') && have('qemu-io');

export interface Result {
  stdout: string;
  stderr: string;
  status: number;
}

export function sh(cmd: string, args: string[], cwd: string): Result {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status ?? -1 };
}

/**
 * Bundles the two bins into a private directory (not dist/, which parallel builds replace), under
 * node_modules/.cache so their npm imports resolve.
 */
export function buildTools(): { img: string; io: string; dir: string } {
  const root = resolve(import.meta.dirname, '../..');
  const dir = join(root, 'node_modules', '.cache', `tsqemu-diff-${process.pid}`);
  buildSync({
    entryPoints: [join(root, 'tools/tsqemu-img.ts'), join(root, 'tools/tsqemu-io.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    outdir: dir,
    packages: 'external',
    logLevel: 'warning',
  });
  return { img: join(dir, 'tsqemu-img.js'), io: join(dir, 'tsqemu-io.js'), dir };
}

export function workdir(): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'tsqemu-qcow2-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** qemu-io's timing line differs run to run; iotests filter it the same way. */
export function filterIo(text: string): string {
  return text
    .split('\n')
    .filter((l) => !/ ops; /.test(l))
    .join('\n');
}
