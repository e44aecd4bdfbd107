import { writeSync } from 'node:fs';
import type { InputGate } from './input-gate.js';

/**
 * A host-side character device backend (QEMU's Chardev). Output from the guest's device is
 * written synchronously (output never affects the run); input from the host is only ever offered
 * to the input gate on the backend's channel, so the engine sees it at a well-defined point and a
 * recording replays it.
 */
export interface Chardev {
  readonly id: string;
  /** The input gate channel this backend offers its input on. */
  readonly channel: string;
  write(bytes: Uint8Array): void;
  /** Stops reading input and releases host resources. */
  close(): void;
}

/** Something that wants to know when the user asked the emulator to quit (Ctrl-A x). */
export type QuitHandler = () => void;

export class ChardevError extends Error {
  override readonly name = 'ChardevError';
}

/** Offers bytes from the host to the gate. */
export function offerBytes(gate: InputGate, channel: string, bytes: Uint8Array): void {
  if (bytes.length === 0) return;
  gate.offer({ channel, kind: 'chardev', data: bytes.slice() });
}

/** Bound on EAGAIN retries when a non-blocking host fd is full. */
const MAX_WRITE_RETRIES = 1 << 16;

/** Writes all of `bytes` to a host fd synchronously, retrying short writes and EAGAIN. */
export function writeAllSync(fd: number, bytes: Uint8Array): void {
  let done = 0;
  for (let tries = 0; done < bytes.length && tries < MAX_WRITE_RETRIES; tries++) {
    try {
      done += writeSync(fd, bytes, done, bytes.length - done);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
    }
  }
}

/** The null backend: output vanishes, no input. */
export class NullChardev implements Chardev {
  constructor(
    readonly id: string,
    readonly channel: string,
  ) {}
  write(): void {}
  close(): void {}
}
