import { closeSync, createReadStream, openSync, type ReadStream } from 'node:fs';
import { type Chardev, ChardevError, offerBytes, writeAllSync } from './chardev-core.js';
import type { InputGate } from './input-gate.js';

/** `-chardev file,path=OUT[,in=IN]` / `-serial file:OUT`: output appended/truncated to a file. */
export class FileChardev implements Chardev {
  private readonly fd: number;
  private input: ReadStream | null = null;

  constructor(
    readonly id: string,
    readonly channel: string,
    gate: InputGate,
    path: string,
    options: { readonly append?: boolean; readonly inPath?: string } = {},
  ) {
    try {
      this.fd = openSync(path, options.append === true ? 'a' : 'w');
    } catch (e) {
      throw new ChardevError(`could not open chardev file '${path}': ${(e as Error).message}`);
    }
    if (options.inPath !== undefined) {
      this.input = createReadStream(options.inPath);
      this.input.on('data', (chunk) => offerBytes(gate, channel, chunk as Buffer));
      this.input.on('error', () => {});
    }
  }

  write(bytes: Uint8Array): void {
    writeAllSync(this.fd, bytes);
  }

  close(): void {
    this.input?.destroy();
    this.input = null;
    closeSync(this.fd);
  }
}

/**
 * `-serial pipe:PATH`: QEMU opens PATH.in for reading and PATH.out for writing when both exist,
 * else PATH for both (a named pipe).
 */
export class PipeChardev implements Chardev {
  private readonly outFd: number;
  private readonly input: ReadStream;

  constructor(
    readonly id: string,
    readonly channel: string,
    gate: InputGate,
    path: string,
    exists: (p: string) => boolean,
  ) {
    const split = exists(`${path}.in`) && exists(`${path}.out`);
    const inPath = split ? `${path}.in` : path;
    const outPath = split ? `${path}.out` : path;
    try {
      this.outFd = openSync(outPath, 'r+');
    } catch (e) {
      throw new ChardevError(`could not open pipe '${outPath}': ${(e as Error).message}`);
    }
    this.input = createReadStream(inPath, { flags: 'r+' });
    this.input.on('data', (chunk) => offerBytes(gate, channel, chunk as Buffer));
    this.input.on('error', () => {});
  }

  write(bytes: Uint8Array): void {
    writeAllSync(this.outFd, bytes);
  }

  close(): void {
    this.input.destroy();
    closeSync(this.outFd);
  }
}
