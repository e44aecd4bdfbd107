import { existsSync } from 'node:fs';
import { DEFAULT_HOST_BASE_SECONDS } from '../../clock.js';
import { MachineConfigError } from './machine.js';

/**
 * Parsers for the command-line spellings the virt board understands, so the command line's code
 * (src/system) only has to pass strings through.
 */

/** Where Debian's QEMU finds its default firmware for `-M virt` without `-bios`. */
export const DEFAULT_BIOS_CANDIDATES = ['/usr/share/qemu/opensbi-riscv64-generic-fw_dynamic.bin', '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin'];

/**
 * `-bios`: `none` boots the kernel directly; a path loads it; absent (null or `default`) picks
 * QEMU's default OpenSBI build, as QEMU does, and fails clearly if it is not installed.
 */
export function resolveBios(bios: string | null, exists: (path: string) => boolean = existsSync): string | 'none' {
  if (bios === 'none') return 'none';
  if (bios !== null && bios !== 'default') return bios;
  const found = DEFAULT_BIOS_CANDIDATES.find((p) => exists(p));
  if (found === undefined) throw new MachineConfigError(`no default firmware found (looked for ${DEFAULT_BIOS_CANDIDATES.join(', ')}); use -bios PATH or -bios none`);
  return found;
}

/** `-smp N` or `-smp cpus=N[,...]`. */
export function parseSmp(spec: string | null): number {
  if (spec === null || spec === '') return 1;
  let cpus: string | undefined;
  for (const part of spec.split(',')) {
    if (/^\d+$/.test(part)) cpus = part;
    else if (part.startsWith('cpus=')) cpus = part.slice(5);
  }
  const n = Number(cpus ?? '1');
  if (!Number.isSafeInteger(n) || n < 1) throw new MachineConfigError(`-smp '${spec}': bad CPU count`);
  return n;
}

/** `-icount N`, `-icount shift=N[,...]`, `shift=auto` (taken as 0: deterministic by construction). */
export function parseIcountShift(spec: string | null): number {
  if (spec === null || spec === '') return 0;
  let shift = '0';
  for (const part of spec.split(',')) {
    if (/^\d+$/.test(part) || part === 'auto') shift = part;
    else if (part.startsWith('shift=')) shift = part.slice(6);
  }
  if (shift === 'auto') return 0;
  const n = Number(shift);
  if (!Number.isInteger(n) || n < 0 || n > 10) throw new MachineConfigError(`-icount '${spec}': shift must be 0..10 or auto`);
  return n;
}

/** Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/**
 * `-rtc base=utc|localtime|YYYY-MM-DD[THH:MM:SS]`: the host clock's base in seconds since the
 * epoch. `utc` and `localtime` keep the deterministic default base (the host's real time enters
 * only with `clock=host`, through the input gate).
 */
export function parseRtcBase(spec: string | null): number {
  if (spec === null || spec === '') return DEFAULT_HOST_BASE_SECONDS;
  let base = 'utc';
  for (const part of spec.split(',')) if (part.startsWith('base=')) base = part.slice(5);
  if (base === 'utc' || base === 'localtime') return DEFAULT_HOST_BASE_SECONDS;
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2}))?$/.exec(base);
  if (m === null) throw new MachineConfigError(`-rtc base='${base}': expected utc, localtime or YYYY-MM-DD[THH:MM:SS]`);
  const [y, mo, d, h, mi, s] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i] ?? 0)) as [number, number, number, number, number, number];
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 59 || y < 1970) throw new MachineConfigError(`-rtc base='${base}': date out of range`);
  return daysFromCivil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
}

/** `-rtc clock=host|rt|vm`: whether the guest's wall clock follows the host (read through the gate). */
export function rtcFollowsHost(spec: string | null): boolean {
  if (spec === null) return false;
  return spec.split(',').some((p) => p === 'clock=host');
}
