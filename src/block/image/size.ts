/** Sizes as qemu-img parses and prints them. */
import { ImageError } from '../qcow2/errors.js';

const SUFFIXES: Record<string, number> = { '': 1, b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50, e: 2 ** 60 };

/**
 * qemu_strtosz: a number with an optional k/M/G/T/P/E suffix (case-insensitive, binary units).
 * `defaultSuffix` applies to bare numbers (qemu-img create uses bytes). Fractions are allowed with
 * a suffix ("1.5G"). Returns null when the text is not a size.
 */
export function parseSize(text: string, defaultSuffix = ''): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]?)\s*$/.exec(text);
  if (m === null) return null;
  const suffix = (m[2] === '' ? defaultSuffix : m[2]!).toLowerCase();
  const mult = SUFFIXES[suffix];
  if (mult === undefined) return null;
  const num = Number(m[1]);
  if (m[1]!.includes('.') && mult === 1) return null;
  const v = num * mult;
  if (!Number.isFinite(v) || v > Number.MAX_SAFE_INTEGER) return null;
  return Math.floor(v);
}

/** parseSize that throws qemu-img's error. */
export function parseSizeOrThrow(text: string): number {
  const v = parseSize(text);
  if (v === null) {
    throw new ImageError('EINVAL', 'Invalid image size specified. You may use k, M, G, T, P or E suffixes for\nkilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.');
  }
  return v;
}

/** C's %0.3g for a positive value below 1000. */
function g3(v: number): string {
  let s = v.toPrecision(3);
  if (s.includes('e')) s = String(Number(s));
  if (s.includes('.')) s = s.replace(/0+$/, '').replace(/\.$/, '');
  return s;
}

/** size_to_str: "64 MiB", "324 KiB", "512 B". */
export function sizeToStr(bytes: number): string {
  const units = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei'];
  let i = 0;
  // frexp(val / (1000/1024)) exponent, as QEMU computes the unit.
  const scaled = bytes / (1000 / 1024);
  if (scaled >= 1) i = Math.floor((Math.floor(Math.log2(scaled)) + 1 - 1) / 10);
  i = Math.min(i, units.length - 1);
  return `${g3(bytes / 2 ** (i * 10))} ${units[i]}B`;
}

/** C's printf("%.Nf"): exact binary ties round to even, as glibc does (63.8125 -> "63.812"). */
export function cFixed(v: number, digits: number): string {
  const scale = 10 ** digits;
  const scaled = v * scale;
  const floor = Math.floor(scaled);
  if (scaled - floor === 0.5 && Number.isSafeInteger(floor)) {
    const even = floor % 2 === 0 ? floor : floor + 1;
    return (even / scale).toFixed(digits);
  }
  return v.toFixed(digits);
}

/** qemu-io's cvtstr: "64 KiB", "35.156 KiB", "512 bytes". */
export function cvtstr(value: number): string {
  const units: [number, string][] = [
    [2 ** 60, ' EiB'],
    [2 ** 50, ' PiB'],
    [2 ** 40, ' TiB'],
    [2 ** 30, ' GiB'],
    [2 ** 20, ' MiB'],
    [2 ** 10, ' KiB'],
  ];
  let str: string;
  let suffix = ' bytes';
  const unit = units.find(([u]) => value >= u);
  if (unit !== undefined) {
    str = cFixed(value / unit[0], 3);
    suffix = unit[1];
  } else {
    str = cFixed(value, 6);
  }
  const trim = str.indexOf('.000');
  return (trim >= 0 ? str.slice(0, trim) : str) + suffix;
}
