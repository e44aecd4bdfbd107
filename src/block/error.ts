import { strerror } from './errno.js';

/** QMP error classes a block-layer failure maps to (see QMP's `ErrorClass`). */
export type BlockErrorClass = 'GenericError' | 'DeviceNotFound' | 'DeviceNotActive';

/**
 * A user error from the block layer (bad blockdev-add options, a refused permission, a busy node,
 * a file that cannot be opened). The message is QEMU's text, without the "qemu-img: " prefix that
 * the tools add. Programmer errors are assertions instead.
 */
export class BlockError extends Error {
  override readonly name = 'BlockError';

  constructor(
    message: string,
    /** QMP error class the monitor reports. */
    readonly errorClass: BlockErrorClass = 'GenericError',
    /** Positive errno when the error wraps one (error_setg_errno). */
    readonly errno: number | undefined = undefined,
    /** Extra lines QEMU prints after the message (error_append_hint), each ending in "\n". */
    readonly hint: string | undefined = undefined,
  ) {
    super(message);
  }

  /** error_setg_errno: "<message>: <strerror(errno)>". */
  static withErrno(message: string, errno: number, errorClass: BlockErrorClass = 'GenericError'): BlockError {
    return new BlockError(`${message}: ${strerror(errno)}`, errorClass, Math.abs(errno));
  }

  /** error_prepend: a new error with `prefix` in front of this one's message. */
  prepend(prefix: string): BlockError {
    return new BlockError(prefix + this.message, this.errorClass, this.errno, this.hint);
  }
}

/**
 * Error out-parameter for coroutines that return a negative errno but also want to explain it
 * (QEMU's `Error **errp` next to an int result), e.g. truncate's "Image is read-only".
 */
export interface Errp {
  error?: BlockError;
}

/** Sets `errp.error` if the caller passed an errp, and returns `ret` for `return setErr(...)`. */
export function setErr(errp: Errp | undefined, ret: number, message: string): number {
  if (errp !== undefined && errp.error === undefined) errp.error = new BlockError(message, 'GenericError', ret < 0 ? -ret : undefined);
  return ret;
}
