import type { Server } from 'node:net';
import type { InputGate } from '../engine/host/input-gate.js';
import { connectQmpStdio, listenQmp } from '../engine/host/qmp-transport.js';
import type { QmpServer } from '../monitor/qmp-server.js';
import type { MonitorSpec } from './vm-config.js';

/** A monitor's endpoint could not be opened (the command line prints it and exits 1). */
export class MonitorEndpointError extends Error {
  override readonly name = 'MonitorEndpointError';
}

/**
 * Connects each QMP server to the host endpoint its spec names: unix or tcp listeners, or stdio.
 * `monitors[i]` serves `specs[i]`; the returned listeners are closed by the caller at exit.
 */
export async function connectQmpMonitors(gate: InputGate, monitors: readonly QmpServer[], specs: readonly MonitorSpec[], onStdioEnd: () => void): Promise<Server[]> {
  const servers: Server[] = [];
  for (let i = 0; i < specs.length; i++) {
    const spec = specs[i]!;
    const monitor = monitors[i]!;
    const dev = spec.chardev;
    if (dev.backend === 'stdio') {
      connectQmpStdio(gate, monitor, onStdioEnd);
      continue;
    }
    if (dev.backend !== 'socket-unix' && dev.backend !== 'socket-tcp') throw new MonitorEndpointError(`monitor ${spec.name}: chardev backend '${dev.backend}' cannot carry QMP`);
    try {
      servers.push(await listenQmp(gate, monitor, dev.backend === 'socket-unix' ? { kind: 'unix', path: dev.path } : { kind: 'tcp', host: dev.host, port: dev.port }));
    } catch (error) {
      throw new MonitorEndpointError(`-qmp: Failed to open ${dev.backend === 'socket-unix' ? dev.path : dev.backend}: ${(error as Error).message}`);
    }
  }
  return servers;
}
