import type { ObjectSpec } from './objects-cli.js';

/**
 * A VM as the command line (or an in-process caller) describes it. `src/system` turns it into a
 * running VM; options that belong to other subsystems (firmware, kernel, qtest, replay) are
 * carried here, typed, for whoever implements them.
 */

/** Where a monitor or chardev listens. */
export type ChardevSpec =
  | { readonly backend: 'socket-unix'; readonly path: string; readonly server: boolean; readonly wait: boolean }
  | { readonly backend: 'socket-tcp'; readonly host: string; readonly port: number; readonly server: boolean; readonly wait: boolean }
  | { readonly backend: 'stdio' }
  | { readonly backend: 'null' }
  | { readonly backend: 'file'; readonly path: string };

export interface MonitorSpec {
  /** Monitor name (QEMU's "mon0"...); also its input-gate channel suffix. */
  readonly name: string;
  readonly chardev: ChardevSpec;
}

export interface MachineSpec {
  readonly type: string;
  /** Other `-machine` properties, as given. */
  readonly props: Readonly<Record<string, string>>;
}

export interface VmConfig {
  readonly machine: MachineSpec;
  readonly memoryBytes: number;
  /** `-S`: start in prelaunch, the CPU stopped until `cont`. */
  readonly startStopped: boolean;
  readonly display: string | null;
  readonly nographic: boolean;
  readonly nodefaults: boolean;
  readonly monitors: readonly MonitorSpec[];
  /**
   * `-replay-qmp SPEC` (ours): QMP monitors that steer play under `-icount rr=replay` (replay-break,
   * replay-seek, stop/cont); not part of the machine, so not part of the recording.
   */
  readonly replayMonitors: readonly MonitorSpec[];
  /** Named chardevs from `-chardev` (monitors reference them). */
  readonly chardevs: Readonly<Record<string, ChardevSpec>>;
  /** `-blockdev` options in order (JSON objects, or keyval with string values). */
  readonly blockdevs: readonly Readonly<Record<string, unknown>>[];
  /** `-drive` options in order (keyval). */
  readonly drives: readonly Readonly<Record<string, unknown>>[];
  /** `-object` options in order (created before any -blockdev). */
  readonly objects: readonly ObjectSpec[];
  readonly devices: readonly Readonly<Record<string, unknown>>[];
  /** `-accel` entries (`tcg`, `qtest`), first wins. */
  readonly accel: readonly string[];
  /** `-accel tcg,jit=off`: the CPU runs its interpreter only (no translated code). */
  readonly jit: boolean;
  /** `-snapshot`: every drive as if `snapshot=on` (writes go to a throw-away overlay). */
  readonly snapshot: boolean;
  /** Root seed of every RNG stream and of the explore scheduling policy. */
  readonly seed: number;
  /** Scheduling policy: QEMU's natural order (fifo) or seeded exploration. */
  readonly policy: 'fifo' | 'explore';
  /** `-trace FILE`: trace events and the final digest go there. */
  readonly traceFile: string | null;
  readonly bios: string | null;
  readonly kernel: string | null;
  readonly append: string | null;
  readonly initrd: string | null;
  readonly serial: readonly string[];
  readonly smp: string | null;
  readonly rtc: string | null;
  readonly icount: string | null;
  readonly qtest: string | null;
  readonly qtestLog: string | null;
  /** `--allow-path DIR`: every file QMP or the command line opens must lie inside one of these. */
  readonly allowPaths: readonly string[];
}

/** QEMU's riscv virt default RAM size. */
export const DEFAULT_MEMORY_BYTES = 128 * 1024 * 1024;

/** A VM with nothing: `-M virt -S -nodefaults`, no monitor. Override what you need. */
export function defaultVmConfig(overrides: Partial<VmConfig> = {}): VmConfig {
  return {
    machine: { type: 'virt', props: {} },
    memoryBytes: DEFAULT_MEMORY_BYTES,
    startStopped: false,
    display: null,
    nographic: false,
    nodefaults: false,
    monitors: [],
    replayMonitors: [],
    chardevs: {},
    blockdevs: [],
    drives: [],
    objects: [],
    devices: [],
    accel: [],
    jit: true,
    snapshot: false,
    seed: 0,
    policy: 'fifo',
    traceFile: null,
    bios: null,
    kernel: null,
    append: null,
    initrd: null,
    serial: [],
    smp: null,
    rtc: null,
    icount: null,
    qtest: null,
    qtestLog: null,
    allowPaths: [],
    ...overrides,
  };
}
