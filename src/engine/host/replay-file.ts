import { closeSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';

/** Where a recorder's bytes go: appended in order, each call complete before it returns. */
export interface ReplayByteSink {
  append(bytes: Uint8Array): void;
  close(): void;
}

/**
 * Appends a replay log to a file with synchronous writes, so every record is in the file (in the
 * kernel's page cache) before the engine moves on: a recorder killed at any point leaves a log
 * that reads up to its last complete record.
 */
export class ReplayFileSink implements ReplayByteSink {
  private fd: number | null;
  private written = 0;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
  }

  get sizeBytes(): number {
    return this.written;
  }

  append(bytes: Uint8Array): void {
    if (this.fd === null) throw new Error(`replay log ${this.path} is closed`);
    let done = 0;
    for (let guard = 0; done < bytes.length && guard < 1 << 20; guard++) {
      done += writeSync(this.fd, bytes, done, bytes.length - done);
    }
    this.written += done;
  }

  close(): void {
    if (this.fd === null) return;
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.fd = null;
  }
}

/** Reads a whole replay log (logs hold external inputs only, so they stay small). */
export function readReplayFile(path: string): Uint8Array {
  const buffer = readFileSync(path);
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.length);
}
