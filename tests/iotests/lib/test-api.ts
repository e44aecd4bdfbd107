import type { Filter } from './format.js';

/** A QMP reply as both targets return it. */
export type QmpReply = { return: unknown } | { error: { class: string; desc: string } };

export interface QmpEvent {
  readonly event: string;
  readonly data?: Record<string, unknown>;
  readonly timestamp?: { seconds: number; microseconds: number };
}

export interface RunJobOptions {
  readonly autoFinalize?: boolean;
  readonly autoDismiss?: boolean;
  /** Cancel the job once it is ready/pending instead of completing it. */
  readonly cancel?: boolean;
  /** Log job events with offsets filtered (default true). */
  readonly filterOffsets?: boolean;
  /** Upper bound on events processed before giving up. */
  readonly maxEvents?: number;
}

/** A running VM on either target. */
export interface Vm {
  /** Sends a command; the reply is returned, not logged. */
  qmp(command: string, args?: Record<string, unknown>): Promise<QmpReply>;
  /** Logs the command and its reply the way QEMU's iotests `qmp_log` does. */
  qmpLog(command: string, args?: Record<string, unknown>, filters?: readonly Filter[]): Promise<QmpReply>;
  /** Waits for the next event called `name` whose data matches `match` (deep partial). */
  eventWait(name: string, match?: Record<string, unknown>): Promise<QmpEvent>;
  /** Takes every event received so far. */
  takeEvents(): QmpEvent[];
  /** Drives a job to its end, logging each event and the QMP it sends (QEMU's run_job). */
  runJob(id: string, options?: RunJobOptions): Promise<string | null>;
  shutdown(): Promise<void>;
}

export interface ImageTools {
  create(format: string, path: string, size: string, options?: { backing?: string; backingFormat?: string; opts?: string }): Promise<void>;
  /** Logs `qemu-img check` output (the summary lines) and returns the exit code. */
  check(path: string, format?: string): Promise<number>;
  /** Logs whether two images have the same content and returns the exit code (0 identical). */
  compare(a: string, b: string): Promise<number>;
  /** Returns the qemu-img info JSON. */
  info(path: string): Promise<Record<string, unknown>>;
}

/** What a test gets. */
export interface IoTestContext {
  readonly target: 'tsqemu' | 'qemu';
  readonly seed: number;
  /** Scratch directory for this test run (removed afterwards). */
  readonly dir: string;
  /** Path to a file in the scratch directory. */
  path(name: string): string;
  /** `legacyStartInPrepare` is TEST-ONLY and tsqemu-only: backups start during prepare (pre-2016 QEMU). */
  launchVm(options?: { args?: readonly string[]; legacyStartInPrepare?: boolean }): Promise<Vm>;
  readonly img: ImageTools;
  /** Runs qemu-io / tsqemu-io commands on an image; logs their output. */
  io(path: string, commands: readonly string[], format?: string): Promise<string>;
  /** Logs a value (JSON like QEMU's iotests, or a string as is) after the standard filters. */
  log(value: unknown, filters?: readonly Filter[]): void;
}

/** A numbered iotest. */
export interface IoTest {
  readonly groups: readonly string[];
  /** Set when the test can only run on tsqemu (the reason is printed on skip). */
  readonly tsqemuOnly?: string;
  /**
   * Set when tsqemu lacks what the test needs (a known gap, named in the reason): the test still
   * runs against QEMU, is skipped with the reason on tsqemu, and `--include-gaps` runs it anyway.
   */
  readonly tsqemuGap?: string;
  run(t: IoTestContext): Promise<void>;
}

export function defineTest(test: IoTest): IoTest {
  return test;
}
