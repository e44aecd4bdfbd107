/**
 * Errors a user can cause with an image (bad file, bad request). They carry an errno name so
 * callers can print QEMU's wording ("read failed: Input/output error") and the bins their exit
 * codes. A failed `assert()` is a tsqemu bug; an `ImageError` is the image's or the user's fault.
 */
export type ImageErrno = 'EIO' | 'EINVAL' | 'ENOTSUP' | 'EFBIG' | 'ENOSPC' | 'ENOENT' | 'EROFS' | 'EPERM' | 'ENOMEDIUM' | 'EEXIST' | 'EACCES';

/** strerror() text for each errno, as glibc prints it. */
export const ERRNO_TEXT: Readonly<Record<ImageErrno, string>> = {
  EIO: 'Input/output error',
  EINVAL: 'Invalid argument',
  ENOTSUP: 'Operation not supported',
  EFBIG: 'File too large',
  ENOSPC: 'No space left on device',
  ENOENT: 'No such file or directory',
  EROFS: 'Read-only file system',
  EPERM: 'Operation not permitted',
  ENOMEDIUM: 'No medium found',
  EEXIST: 'File exists',
  EACCES: 'Permission denied',
};

export class ImageError extends Error {
  override readonly name = 'ImageError';

  constructor(
    readonly errno: ImageErrno,
    message?: string,
  ) {
    super(message ?? ERRNO_TEXT[errno]);
  }

  /** The errno text alone ("Input/output error"), as qemu-io prints failed requests. */
  get errnoText(): string {
    return ERRNO_TEXT[this.errno];
  }
}

export function isImageError(e: unknown): e is ImageError {
  return e instanceof ImageError;
}
