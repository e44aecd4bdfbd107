/** QMP's ErrorClass values tsqemu reports. */
export type QmpErrorClass = 'GenericError' | 'CommandNotFound' | 'DeviceNotActive' | 'DeviceNotFound' | 'KVMMissingCap';

const CLASSES: ReadonlySet<string> = new Set(['GenericError', 'CommandNotFound', 'DeviceNotActive', 'DeviceNotFound', 'KVMMissingCap']);

/** A user-visible QMP error: `{"error": {"class": ..., "desc": ...}}`. */
export class QmpError extends Error {
  override readonly name = 'QmpError';

  constructor(
    message: string,
    readonly errorClass: QmpErrorClass = 'GenericError',
  ) {
    super(message);
  }
}

/** The `error` member of a reply. */
export interface QmpErrorBody {
  readonly class: QmpErrorClass;
  readonly desc: string;
}

/**
 * Maps an error thrown by a command to its reply body, or undefined when it is a programmer error
 * (an assertion) that must not be disguised as a user error. Lower layers' typed errors carry an
 * `errorClass` (BlockError, job errors); any other `Error` subclass raised on purpose is a
 * GenericError with its message.
 */
export function errorBody(error: unknown): QmpErrorBody | undefined {
  if (!(error instanceof Error)) return undefined;
  if (error.name === 'AssertionError' || error instanceof TypeError || error instanceof RangeError || error instanceof ReferenceError) return undefined;
  const cls = (error as { errorClass?: unknown }).errorClass;
  return { class: typeof cls === 'string' && CLASSES.has(cls) ? (cls as QmpErrorClass) : 'GenericError', desc: error.message };
}
