/**
 * Programmer-error assertions (TIGER_STYLE). Errors a user can cause are typed errors elsewhere;
 * a failed assertion means tsqemu itself is wrong, so it stops the run loudly.
 */
export class AssertionError extends Error {
  override readonly name = 'AssertionError';
}

export function assert(condition: unknown, message?: string | (() => string)): asserts condition {
  if (!condition) {
    throw new AssertionError(typeof message === 'function' ? message() : (message ?? 'assertion failed'));
  }
}

/** Largest integer a JS number holds exactly: every nanosecond count stays below it. */
export const MAX_SAFE_NS = Number.MAX_SAFE_INTEGER;

export function assertNs(ns: number, what = 'time'): void {
  assert(Number.isSafeInteger(ns) && ns >= 0, () => `${what} must be a non-negative integer below 2^53 ns, got ${ns}`);
}

export function unreachable(value: never, what = 'value'): never {
  throw new AssertionError(`unexpected ${what}: ${String(value)}`);
}
