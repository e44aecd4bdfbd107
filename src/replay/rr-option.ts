/**
 * QEMU's spelling on the tsqemu command line: `-icount shift=N,rr=record|replay,rrfile=F`.
 * Record appends every input crossing the gate (serial bytes, QMP lines, qtest lines) to F; replay
 * feeds the gate from F and checks every checkpoint. Such logs name their machine `tsqemu-virt`:
 * play them with the same command line and `rr=replay` (tsqemu-replay builds its board with
 * private disk copies and plays its own logs). Without a CPU (a QMP-only VM) checkpoints are
 * spaced in main-loop steps and carry the trace digest, so a whole block-job session replays too.
 */
import { ReplayFileSink, readReplayFile } from '../engine/host/replay-file.js';
import type { MainLoop } from '../engine/main-loop.js';
import type { VirtMachine } from '../engine/hw/virt/machine.js';
import { digestOf } from '../engine/digest.js';
import { type DiskDigest, checkCompatible, parseLog } from './log-format.js';
import type { MachineSnapshotter } from './machine.js';
import { Player } from './player.js';
import { Recorder } from './recorder.js';
import { fileDigest } from './virt-run.js';
import { virtProbes } from './virt-probes.js';
import { statSync } from 'node:fs';

/** A bad `rr=` option (the command line prints it and exits 1). */
export class ReplayOptionError extends Error {
  override readonly name = 'ReplayOptionError';
}

export interface RrOption {
  readonly mode: 'record' | 'replay';
  readonly file: string;
}

/** Reads `rr=` and `rrfile=` out of an `-icount` value; null when record/replay is off. */
export function parseRrOption(icount: string | null): RrOption | null {
  if (icount === null) return null;
  let mode: string | undefined;
  let file: string | undefined;
  for (const part of icount.split(',')) {
    if (part.startsWith('rr=')) mode = part.slice(3);
    else if (part.startsWith('rrfile=')) file = part.slice(7);
  }
  if (mode === undefined || mode === 'off') return null;
  if (mode !== 'record' && mode !== 'replay') throw new ReplayOptionError(`-icount rr=${mode}: expected record, replay or off`);
  if (file === undefined || file === '') throw new ReplayOptionError(`-icount rr=${mode} needs rrfile=FILE`);
  return { mode, file };
}

/** The command line without the rr options: what the machine digest covers. */
export function commandLineForDigest(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    // -replay-qmp steers play from outside the machine: it may differ between record and replay.
    if (argv[i] === '-replay-qmp' || argv[i] === '--replay-qmp') {
      i++;
      continue;
    }
    out.push(argv[i]!.split(',').filter((p) => !p.startsWith('rr=') && !p.startsWith('rrfile=') && !p.startsWith('rrsnapshot=')).join(','));
  }
  return out;
}

export interface RrSession {
  readonly option: RrOption;
  readonly warnings: readonly string[];
  /** Replay mode: the player (drive it with `advance`). */
  readonly player: Player | null;
  /** Ends a recording (final checkpoint + end record). */
  finish(reason: string): void;
}

export function startRecordReplay(option: RrOption, loop: MainLoop, virt: VirtMachine | null, argv: readonly string[], seed: number, driveFiles: readonly { name: string; path: string }[], snapshotter?: MachineSnapshotter): RrSession {
  const commandLine = commandLineForDigest(argv);
  const machineDigest = digestOf(commandLine);
  const disks: DiskDigest[] = driveFiles.map((d) => ({ name: d.name, path: d.path, sizeBytes: statSync(d.path).size, digest: fileDigest(d.path) }));
  const machine = { loop, probes: virt !== null ? virtProbes(virt) : [], icountShift: 0 };
  if (option.mode === 'record') {
    const recorder = new Recorder({ ...machine, icountShift: cpuShift(loop) }, new ReplayFileSink(option.file), { machine: virt !== null ? 'tsqemu-virt' : 'tsqemu-none', machineDigest, commandLine, seed, disks });
    return { option, warnings: [], player: null, finish: (reason) => void recorder.finish(reason) };
  }
  const log = parseLog(readReplayFile(option.file));
  const warnings = checkCompatible(log.header, { machineDigest, disks }).map((e) => e.message);
  if (log.tail !== null) warnings.push(`${option.file} is cut short at offset ${log.tail.offset} (${log.tail.reason}); replaying up to its last complete record`);
  const player = new Player({ ...machine, icountShift: log.header.icountShift, ...(snapshotter !== undefined ? { snapshotter } : {}) }, log);
  player.start();
  return { option, warnings, player, finish: () => undefined };
}

function cpuShift(loop: MainLoop): number {
  const cpu = loop.cpu as { shift?: unknown } | null;
  return cpu !== null && typeof cpu.shift === 'number' ? cpu.shift : 0;
}
