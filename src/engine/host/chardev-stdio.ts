import { type Chardev, type QuitHandler, offerBytes, writeAllSync } from './chardev-core.js';
import type { InputGate } from './input-gate.js';

const CTRL_A = 0x01;

/** QEMU's mux escape help text (`Ctrl-A h`), for the commands tsqemu implements. */
export const MUX_HELP = [
  'C-a h    print this help',
  'C-a x    exit emulator',
  'C-a C-a  sends C-a',
  '',
].join('\r\n');

/**
 * Splits host keystrokes into guest input and escape commands (Ctrl-A x quits, Ctrl-A h prints
 * help, Ctrl-A Ctrl-A sends one Ctrl-A), as QEMU's mux chardev does with `-nographic`.
 */
export class EscapeDecoder {
  private pendingEscape = false;

  constructor(
    private readonly onQuit: QuitHandler,
    private readonly onHelp: () => void,
  ) {}

  /** Returns the bytes destined for the guest. */
  feed(bytes: Uint8Array): Uint8Array {
    const out: number[] = [];
    for (const b of bytes) {
      if (this.pendingEscape) {
        this.pendingEscape = false;
        if (b === CTRL_A) out.push(CTRL_A);
        else if (b === 0x78 /* x */) {
          this.onQuit();
          break;
        } else if (b === 0x68 /* h */ || b === 0x3f /* ? */) this.onHelp();
        // Other escapes (s, t, b, c) are not implemented and are swallowed, as unknown ones are in QEMU.
        continue;
      }
      if (b === CTRL_A) {
        this.pendingEscape = true;
        continue;
      }
      out.push(b);
    }
    return Uint8Array.from(out);
  }
}

export interface StdioChardevOptions {
  /** Interpret Ctrl-A escapes (QEMU: `-nographic`, `-serial mon:stdio`). Default true. */
  readonly mux?: boolean;
  readonly onQuit?: QuitHandler;
  readonly stdin?: NodeJS.ReadStream;
  readonly stdoutFd?: number;
}

/**
 * The stdio backend: the terminal in raw mode (so keys reach the guest unmodified and Ctrl-C is
 * the guest's), restored on close; input offered to the gate.
 */
export class StdioChardev implements Chardev {
  private readonly stdin: NodeJS.ReadStream;
  private readonly stdoutFd: number;
  private readonly wasRaw: boolean;
  private readonly decoder: EscapeDecoder | null;
  private readonly onData: (chunk: Buffer) => void;
  private closed = false;

  constructor(
    readonly id: string,
    readonly channel: string,
    gate: InputGate,
    options: StdioChardevOptions = {},
  ) {
    this.stdin = options.stdin ?? process.stdin;
    this.stdoutFd = options.stdoutFd ?? 1;
    const onQuit = options.onQuit ?? (() => {});
    // QEMU's mux prints this before it shuts down on Ctrl-A x.
    const quit = (): void => {
      this.write(new TextEncoder().encode('QEMU: Terminated\n\r'));
      onQuit();
    };
    this.decoder = options.mux === false ? null : new EscapeDecoder(quit, () => this.write(new TextEncoder().encode(MUX_HELP)));
    this.wasRaw = this.stdin.isTTY === true && this.stdin.isRaw;
    if (this.stdin.isTTY === true) this.stdin.setRawMode(true);
    this.onData = (chunk) => {
      const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      offerBytes(gate, channel, this.decoder === null ? bytes : this.decoder.feed(bytes));
    };
    this.stdin.on('data', this.onData);
    this.stdin.resume();
  }

  write(bytes: Uint8Array): void {
    if (!this.closed) writeAllSync(this.stdoutFd, bytes);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stdin.off('data', this.onData);
    this.stdin.pause();
    if (this.stdin.isTTY === true) this.stdin.setRawMode(this.wasRaw);
  }
}
