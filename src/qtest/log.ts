/**
 * QEMU's `-qtest-log` format, written with the deterministic clock so two runs of the same script
 * produce the same log: `[I 0.000000] OPENED`, `[R +t] <words>`, `[S +t] <reply>`,
 * `[I +t] CLOSED`, where t is seconds since the connection opened with six decimals (`%.06f`).
 */

/** Where log text goes (a file opened by the host side, or a buffer in tests). */
export interface QtestLogSink {
  write(text: string): void;
}

/** `%.06f` of `ns` nanoseconds expressed in seconds, without floating-point rounding surprises. */
export function formatSeconds(ns: number): string {
  const us = Math.floor(Math.max(0, ns) / 1000);
  const seconds = Math.floor(us / 1_000_000);
  const micros = us - seconds * 1_000_000;
  return `${seconds}.${String(micros).padStart(6, '0')}`;
}

/** Collects log text in memory (tests, in-process sessions). */
export class MemoryLogSink implements QtestLogSink {
  private readonly parts: string[] = [];

  write(text: string): void {
    this.parts.push(text);
  }

  get text(): string {
    return this.parts.join('');
  }
}
