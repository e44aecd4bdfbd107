/**
 * A host file as a `ByteIO`, with synchronous I/O (CONTRIBUTING: host file I/O inside src/ is
 * synchronous, so completion order never depends on the host). Used by the image tools; the VM
 * reaches host files through the `file` protocol driver instead.
 */
import { closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import type { Co } from '../../engine/coroutine.js';
import { ImageError, type ImageErrno } from '../qcow2/errors.js';
import type { ByteIO } from '../qcow2/io.js';

/** Maps a Node fs error to our errno vocabulary and QEMU's wording. */
export function hostError(e: unknown): ImageError {
  const code = (e as { code?: string }).code;
  const known: Record<string, ImageErrno> = { ENOENT: 'ENOENT', EACCES: 'EACCES', EPERM: 'EPERM', EROFS: 'EROFS', ENOSPC: 'ENOSPC', EFBIG: 'EFBIG', EEXIST: 'EEXIST', EINVAL: 'EINVAL' };
  return new ImageError(code !== undefined && known[code] !== undefined ? known[code] : 'EIO');
}

export class HostFileIO implements ByteIO {
  private fd: number;
  private closed = false;

  private constructor(
    readonly name: string,
    fd: number,
    readonly readOnly: boolean,
    /** cache=unsafe: flushes are no-ops (qemu-img convert's default for its target). */
    readonly noFlush: boolean,
  ) {
    this.fd = fd;
  }

  /** Opens an existing file; `create` makes (or truncates) it. Throws ImageError on failure. */
  static open(path: string, opts: { readOnly?: boolean; create?: boolean; noFlush?: boolean } = {}): HostFileIO {
    const readOnly = opts.readOnly ?? false;
    try {
      const fd = openSync(path, opts.create === true ? 'w+' : readOnly ? 'r' : 'r+');
      if (fstatSync(fd).isDirectory()) {
        closeSync(fd);
        throw new ImageError('EINVAL', 'Is a directory');
      }
      return new HostFileIO(path, fd, readOnly, opts.noFlush ?? false);
    } catch (e) {
      if (e instanceof ImageError) throw e;
      throw hostError(e);
    }
  }

  /** Bytes the file occupies on disk (st_blocks * 512), as qemu-img's "disk size". */
  get allocatedBytes(): number {
    return fstatSync(this.fd).blocks * 512;
  }

  get lengthBytes(): number {
    return fstatSync(this.fd).size;
  }

  *length(): Co<number> {
    return this.lengthBytes;
  }

  *pread(offset: number, buf: Uint8Array): Co<void> {
    let done = 0;
    // Bounded: each pass reads at least one byte or stops at end of file.
    while (done < buf.length) {
      let n: number;
      try {
        n = readSync(this.fd, buf, done, buf.length - done, offset + done);
      } catch (e) {
        throw hostError(e);
      }
      if (n === 0) break;
      done += n;
    }
    if (done < buf.length) buf.fill(0, done);
  }

  *pwrite(offset: number, data: Uint8Array): Co<void> {
    if (this.readOnly) throw new ImageError('EACCES', 'Permission denied');
    let done = 0;
    while (done < data.length) {
      try {
        done += writeSync(this.fd, data, done, data.length - done, offset + done);
      } catch (e) {
        throw hostError(e);
      }
    }
  }

  *truncate(lengthBytes: number): Co<void> {
    try {
      ftruncateSync(this.fd, lengthBytes);
    } catch (e) {
      throw hostError(e);
    }
  }

  *flush(): Co<void> {
    if (this.readOnly || this.noFlush) return;
    try {
      fsyncSync(this.fd);
    } catch (e) {
      throw hostError(e);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}
