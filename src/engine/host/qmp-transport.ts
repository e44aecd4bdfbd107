import { createServer, type Server, type Socket } from 'node:net';
import { unlinkSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { GateOverflowError, type InputGate } from './input-gate.js';

/**
 * Host side of a QMP monitor: sockets and stdio. Every byte a client sends and every connect and
 * disconnect enters the engine through the input gate ('qmp-open' on the monitor's channel with
 * the client number, then 'qmp' text and 'qmp-close' on `<channel>#<client>`), so a session is
 * recordable and replays without the host. Output goes straight back to the client's socket.
 */

/** What the transport needs of a monitor (the QMP server implements it). */
export interface QmpEndpoint {
  readonly channel: string;
  setOutput(clientId: number, output: { send(line: string): void; close(): void }): void;
}

export type QmpListenSpec =
  | { readonly kind: 'unix'; readonly path: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

/**
 * Bytes of output a client may leave unread before it is disconnected: one slow reader must not
 * make the emulator's memory grow without bound (events keep coming while it sleeps).
 */
export const MAX_CLIENT_OUTPUT_BYTES = 16 * 1024 * 1024;

let nextClientId = 0;

/** Client numbers are unique per process, so channels never collide across monitors. */
function allocClientId(): number {
  return nextClientId++;
}

/** Connects one duplex stream (a socket or stdio) to a monitor through the gate. */
export function connectQmpClient(
  gate: InputGate,
  endpoint: QmpEndpoint,
  input: NodeJS.ReadableStream,
  output: NodeJS.WritableStream & { writableLength?: number },
  end: () => void,
): number {
  const clientId = allocClientId();
  const channel = `${endpoint.channel}#${clientId}`;
  const decoder = new StringDecoder('utf8');
  // Input and output close separately: commands a client sent before hanging up still run, and
  // their replies still go out on stdio (the engine closes the output when it is done with it).
  let inputOpen = true;
  let outputOpen = true;
  const inputEnded = (): void => {
    if (!inputOpen) return;
    inputOpen = false;
    safeOffer(gate, { channel, kind: 'qmp-close', data: null });
  };
  const closeOutput = (): void => {
    if (!outputOpen) return;
    outputOpen = false;
    end();
  };
  endpoint.setOutput(clientId, {
    send(line: string): void {
      if (!outputOpen) return;
      output.write(line + '\r\n');
      if ((output.writableLength ?? 0) > MAX_CLIENT_OUTPUT_BYTES) {
        // A client that does not read: drop it rather than buffer without bound.
        closeOutput();
        inputEnded();
      }
    },
    close(): void {
      closeOutput();
      inputEnded();
    },
  });
  safeOffer(gate, { channel: endpoint.channel, kind: 'qmp-open', data: clientId });
  input.on('data', (chunk: Buffer | string) => {
    if (!inputOpen) return;
    const text = typeof chunk === 'string' ? chunk : decoder.write(chunk);
    if (text.length === 0) return;
    if (!safeOffer(gate, { channel, kind: 'qmp', data: text })) {
      closeOutput();
      inputEnded();
    }
  });
  input.on('end', inputEnded);
  input.on('close', inputEnded);
  input.on('error', inputEnded);
  output.on('error', closeOutput);
  return clientId;
}

function safeOffer(gate: InputGate, input: Parameters<InputGate['offer']>[0]): boolean {
  try {
    gate.offer(input);
    return true;
  } catch (error) {
    if (error instanceof GateOverflowError) return false;
    throw error;
  }
}

/** Listens for QMP clients (`-qmp unix:PATH,server=on,wait=off`, `tcp:HOST:PORT,...`). */
export function listenQmp(gate: InputGate, endpoint: QmpEndpoint, spec: QmpListenSpec): Promise<Server> {
  const server = createServer((socket: Socket) => {
    socket.setNoDelay?.(true);
    connectQmpClient(gate, endpoint, socket, socket, () => socket.end());
    socket.on('close', () => socket.destroy());
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const ready = (): void => {
      server.off('error', reject);
      resolve(server);
    };
    if (spec.kind === 'unix') {
      try {
        unlinkSync(spec.path); // QEMU replaces a stale socket file
      } catch {
        // absent: nothing to replace
      }
      server.listen(spec.path, ready);
    } else {
      server.listen(spec.port, spec.host, ready);
    }
  });
}

/** `-qmp stdio`: the process's stdin/stdout are one client. */
export function connectQmpStdio(gate: InputGate, endpoint: QmpEndpoint, onEnd: () => void): number {
  return connectQmpClient(gate, endpoint, process.stdin, process.stdout, onEnd);
}
