/** QMP error classes a job refusal can carry. */
export type QmpErrorClass = 'GenericError' | 'DeviceNotActive' | 'DeviceNotFound';

/**
 * A user error from the job layer (a refused verb, a bad argument, an unknown job): the QMP layer
 * answers it as `{error: {class, desc}}`. Nothing has changed when one is thrown.
 */
export class JobError extends Error {
  override readonly name = 'JobError';

  constructor(
    message: string,
    readonly errorClass: QmpErrorClass = 'GenericError',
  ) {
    super(message);
  }
}

/** POSIX errno values jobs see from the block layer (Linux numbering, as QEMU reports them). */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EAGAIN: 11,
  ENOMEM: 12,
  EBUSY: 16,
  EINVAL: 22,
  EFBIG: 27,
  ENOSPC: 28,
  EROFS: 30,
  ENOTSUP: 95,
  ENOMEDIUM: 123,
  ECANCELED: 125,
} as const;

const STRERROR: Readonly<Record<number, string>> = {
  1: 'Operation not permitted',
  2: 'No such file or directory',
  5: 'Input/output error',
  11: 'Resource temporarily unavailable',
  12: 'Cannot allocate memory',
  16: 'Device or resource busy',
  22: 'Invalid argument',
  27: 'File too large',
  28: 'No space left on device',
  30: 'Read-only file system',
  95: 'Operation not supported',
  123: 'No medium found',
  125: 'Operation canceled',
};

/** glibc's strerror for a positive errno (what QEMU puts in a job's `error`). */
export function strerror(errno: number): string {
  return STRERROR[errno] ?? `Unknown error ${errno}`;
}
