/**
 * Linux errno values and texts. Block-layer coroutines return `0` (or a positive count/flags) on
 * success and a *negative* errno on failure, as QEMU's `bdrv_co_*` functions do; messages shown to
 * users (qemu-io's "write failed: Input/output error", BLOCK_JOB_COMPLETED's `error`) use
 * {@link strerror}, which gives glibc's texts so golden outputs match QEMU's byte for byte.
 */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EMFILE: 24,
  ENOTTY: 25,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EPIPE: 32,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ELOOP: 40,
  ENODATA: 61,
  EOVERFLOW: 75,
  EMEDIUMTYPE: 124,
  ENOTSUP: 95,
  ETIMEDOUT: 110,
  EINPROGRESS: 115,
  EDQUOT: 122,
  ENOMEDIUM: 123,
  ECANCELED: 125,
} as const;

export type ErrnoName = keyof typeof Errno;

/** EOPNOTSUPP and ENOTSUP are the same value on Linux. */
export const EOPNOTSUPP = Errno.ENOTSUP;

const TEXTS: ReadonlyMap<number, string> = new Map<number, string>([
  [Errno.EPERM, 'Operation not permitted'],
  [Errno.ENOENT, 'No such file or directory'],
  [Errno.EIO, 'Input/output error'],
  [Errno.ENXIO, 'No such device or address'],
  [Errno.E2BIG, 'Argument list too long'],
  [Errno.EBADF, 'Bad file descriptor'],
  [Errno.EAGAIN, 'Resource temporarily unavailable'],
  [Errno.ENOMEM, 'Cannot allocate memory'],
  [Errno.EACCES, 'Permission denied'],
  [Errno.EFAULT, 'Bad address'],
  [Errno.EBUSY, 'Device or resource busy'],
  [Errno.EEXIST, 'File exists'],
  [Errno.EXDEV, 'Invalid cross-device link'],
  [Errno.ENODEV, 'No such device'],
  [Errno.ENOTDIR, 'Not a directory'],
  [Errno.EISDIR, 'Is a directory'],
  [Errno.EINVAL, 'Invalid argument'],
  [Errno.EMFILE, 'Too many open files'],
  [Errno.ENOTTY, 'Inappropriate ioctl for device'],
  [Errno.EFBIG, 'File too large'],
  [Errno.ENOSPC, 'No space left on device'],
  [Errno.ESPIPE, 'Illegal seek'],
  [Errno.EROFS, 'Read-only file system'],
  [Errno.EPIPE, 'Broken pipe'],
  [Errno.ERANGE, 'Numerical result out of range'],
  [Errno.ENAMETOOLONG, 'File name too long'],
  [Errno.ENOSYS, 'Function not implemented'],
  [Errno.ELOOP, 'Too many levels of symbolic links'],
  [Errno.ENODATA, 'No data available'],
  [Errno.EOVERFLOW, 'Value too large for defined data type'],
  [Errno.EMEDIUMTYPE, 'Wrong medium type'],
  [Errno.ENOTSUP, 'Operation not supported'],
  [Errno.ETIMEDOUT, 'Connection timed out'],
  [Errno.EINPROGRESS, 'Operation now in progress'],
  [Errno.EDQUOT, 'Disk quota exceeded'],
  [Errno.ENOMEDIUM, 'No medium found'],
  [Errno.ECANCELED, 'Operation canceled'],
]);

const NAMES: ReadonlyMap<number, string> = new Map(Object.entries(Errno).map(([name, value]) => [value, name]));

/**
 * glibc's strerror text for an errno; accepts the negative return values of block coroutines too
 * (`strerror(-5)` = `strerror(5)` = "Input/output error"). Unknown values read "Unknown error N".
 */
export function strerror(errno: number): string {
  const positive = Math.abs(errno);
  return TEXTS.get(positive) ?? `Unknown error ${positive}`;
}

/** The symbolic name ("EIO") of an errno value (either sign), or undefined. */
export function errnoName(errno: number): string | undefined {
  return NAMES.get(Math.abs(errno));
}

/** The errno value for a Node.js system error code such as 'ENOENT', or EIO when unknown. */
export function errnoFromCode(code: string | undefined): number {
  if (code !== undefined && code in Errno) return Errno[code as ErrnoName];
  if (code === 'EOPNOTSUPP') return Errno.ENOTSUP;
  return Errno.EIO;
}

/** Maps a thrown host error (from `node:fs` *Sync calls) to a positive errno. */
export function errnoFromHostError(error: unknown): number {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string') return errnoFromCode(code);
  }
  return Errno.EIO;
}
