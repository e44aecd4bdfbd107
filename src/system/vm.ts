import { assert } from '../engine/assert.js';
import { MainLoop } from '../engine/main-loop.js';
import type { RunLimits } from '../engine/main-loop.js';
import { BlockGraph } from '../block/graph.js';
import { BlockError } from '../block/error.js';
import { type AnyBusEvent, EventBus } from '../blockjob/events.js';
import { JobManager } from '../blockjob/job.js';
import type { TransactionEnv } from '../blockjob/transaction.js';
import { CommandTable, type MonitorVm } from '../monitor/command.js';
import { blockCommands, checkFilenames } from '../monitor/commands/block.js';
import { coreCommands } from '../monitor/commands/core.js';
import { hmpCommands } from '../monitor/commands/hmp.js';
import { objectCommands } from '../monitor/commands/objects.js';
import { replayCommands } from '../monitor/commands/replay.js';
import { driveMirrorCommands, jobCommands, mirrorCommands, streamCommitCommands } from '../monitor/commands/jobs.js';
import { transactionCommands } from '../monitor/commands/transaction.js';
import { QmpError } from '../monitor/errors.js';
import type { JsonObject } from '../monitor/json-value.js';
import type { JsonStreamLimits } from '../monitor/json-stream.js';
import { PathPolicy } from '../monitor/path-policy.js';
import { QmpServer, type QmpReply, eventMessage } from '../monitor/qmp-server.js';
import { RunState } from '../monitor/run-state.js';
import './drivers.js';
import { UsageError } from './keyval.js';
import { createCliObjects } from './objects-cli.js';
import { type VmConfig, defaultVmConfig } from './vm-config.js';

/** Bound on job cancellations at shutdown (each ends or dismisses one job; jobs are bounded). */
const MAX_SHUTDOWN_JOB_CANCELS = 1 << 16;

/** Machine types tsqemu knows (`-M help`). */
export const MACHINE_TYPES: Readonly<Record<string, string>> = {
  virt: 'RISC-V VirtIO board',
  spike: 'RISC-V Spike board',
  none: 'empty machine',
};

/** An event as QMP delivers it, with the deterministic timestamp. */
export interface VmEvent {
  readonly event: string;
  readonly data?: Record<string, unknown>;
  readonly timestamp: { readonly seconds: number; readonly microseconds: number };
}

export interface CreateVmOptions {
  /**
   * Directory --allow-path resolves relative file names against. The block layer opens relative
   * names against the process's directory, so anything else is only sound with absolute names.
   * Default: the process's working directory.
   */
  readonly cwd?: string;
  /** TEST-ONLY: transactions start backup jobs in prepare (QEMU before 2016); see TransactionEnv. */
  readonly legacyStartInPrepare?: boolean;
  /** JSON stream limits of every monitor (QEMU's by default; tests use small ones). */
  readonly qmpLimits?: JsonStreamLimits;
}

/**
 * A tsqemu VM built from a VmConfig: main loop, block graph, jobs, run state and its QMP
 * monitors. `qmp()` is the in-process API (no sockets, no JSON): iotests and the fuzzer drive a
 * VM with it; the command line attaches the same VM's monitors to sockets.
 */
export class Vm implements MonitorVm {
  readonly loop: MainLoop;
  readonly events: EventBus;
  readonly runState: RunState;
  readonly paths: PathPolicy;
  readonly graph: BlockGraph;
  readonly jobs: JobManager;
  readonly table = new CommandTable();
  readonly services = new Map<string, unknown>();
  /** One server per `-qmp`/`-mon` (in order), plus the in-process one. */
  readonly monitors: QmpServer[] = [];
  private readonly direct: QmpServer;
  private quitFlag = false;
  private shutDown = false;
  private readonly resetHandlers: (() => void)[] = [];

  constructor(
    readonly config: VmConfig,
    options: CreateVmOptions = {},
  ) {
    if (MACHINE_TYPES[config.machine.type] === undefined) throw new UsageError('unsupported machine type\nUse -machine help to list supported machines');
    this.loop = new MainLoop({ seed: config.seed, policy: config.policy });
    this.events = new EventBus(this.loop.clocks);
    this.runState = new RunState(this.loop.clocks, this.events, config.startStopped);
    this.paths = new PathPolicy(config.allowPaths, options.cwd ?? process.cwd());
    this.graph = new BlockGraph(this.loop);
    this.jobs = new JobManager(this.loop, this.events);
    const env: TransactionEnv = { graph: this.graph, jobs: this.jobs, legacyStartInPrepare: options.legacyStartInPrepare === true };
    this.services.set('block', this.graph).set('jobs', this.jobs).set('txn-env', env);
    this.table.register(...coreCommands(this.table), ...blockCommands(), ...jobCommands(), ...mirrorCommands(), ...driveMirrorCommands(), ...streamCommitCommands(), ...transactionCommands(), ...hmpCommands(), ...objectCommands(), ...replayCommands());
    this.direct = new QmpServer(this, this.table, { name: 'direct' });
    for (const spec of config.monitors) {
      const server = new QmpServer(this, this.table, { name: spec.name, limits: options.qmpLimits });
      server.attach(this.loop.gate);
      this.monitors.push(server);
    }
    createCliObjects(this.graph, config.objects);
    for (const options of config.blockdevs) this.addBlockdev(options);
  }

  private addBlockdev(options: Readonly<Record<string, unknown>>): void {
    try {
      checkFilenames(this, options);
      this.graph.blockdevAdd(options);
    } catch (error) {
      if (error instanceof BlockError || error instanceof QmpError) throw new UsageError(`-blockdev ${describe(options)}: ${error.message}`);
      throw error;
    }
  }

  get quitRequested(): boolean {
    return this.quitFlag;
  }

  requestQuit(): void {
    this.quitFlag = true;
  }

  /** True once `shutdown()` ran: the block graph is closed, the VM only answers queries. */
  get isShutDown(): boolean {
    return this.shutDown;
  }

  /**
   * The block half of QEMU's qemu_cleanup on quit: job_cancel_sync_all() (every job
   * force-cancelled, concluded ones dismissed, until none is left), then bdrv_close_all(): every
   * node drained and closed, so qcow2 metadata reaches the image, persistent dirty bitmaps are
   * stored and the dirty bit is cleared. The tsqemu binary calls it when its main loop ends
   * (quit, signal, guest poweroff, monitors gone); in-process users (iotests, the fuzzer) call it
   * instead of dropping the VM. Idempotent; call it from outside the engine.
   */
  shutdown(): void {
    if (this.shutDown) return;
    assert(this.loop.current === null, 'Vm.shutdown from inside the engine');
    this.shutDown = true;
    for (let guard = 0; this.jobs.jobs.length > 0; guard++) {
      assert(guard < MAX_SHUTDOWN_JOB_CANCELS, 'job_cancel_sync_all does not terminate');
      this.jobs.jobs[0]!.cancelSync(true);
    }
    this.graph.closeAll();
  }

  /** Adds what a `system_reset` must reset (the machine builder registers its devices). */
  onReset(handler: () => void): void {
    this.resetHandlers.push(handler);
  }

  resetMachine(): void {
    for (const handler of this.resetHandlers) handler();
  }

  /**
   * Runs a QMP command in process and returns QMP's reply (`{return}` or `{error}`), exactly as a
   * socket client would get it. Call it from outside the engine; time does not move unless the
   * command itself polls (drain); use `run()` to let jobs progress.
   */
  qmp(command: string, args: Record<string, unknown> = {}): QmpReply {
    return this.direct.executeDirect(command, args as JsonObject);
  }

  /** Like `qmp()` but returns the `return` value and throws a QmpError on an error reply. */
  execute<T = unknown>(command: string, args: Record<string, unknown> = {}): T {
    const reply = this.qmp(command, args);
    if ('error' in reply) throw new QmpError(reply.error.desc, reply.error.class);
    return reply.return as T;
  }

  /** Subscribes to events in QMP's shape; returns the function that unsubscribes. */
  onEvent(listener: (event: VmEvent) => void): () => void {
    return this.events.subscribe((event: AnyBusEvent) => {
      const time = this.loop.clocks.hostTime();
      listener(eventMessage(event, time.seconds, Math.floor(time.nanos / 1000)) as VmEvent);
    });
  }

  /** Runs the engine until idle (every job that can finish in virtual time finishes). */
  run(limits: RunLimits = {}): number {
    assert(this.loop.current === null, 'Vm.run from inside the engine');
    return this.loop.runUntilIdle(limits);
  }

  /** Runs until `predicate` holds or the engine is idle; returns `predicate()`. */
  runUntil(predicate: () => boolean, limits: RunLimits = {}): boolean {
    return this.loop.runUntil(predicate, limits);
  }
}

/** A -blockdev option as keyval text (`file.driver=null-co` for nested members), as QEMU quotes it. */
function describe(options: Readonly<Record<string, unknown>>, prefix = '', depth = 0): string {
  return Object.entries(options)
    .filter(([, v]) => v !== null && (typeof v !== 'object' || depth < 8))
    .map(([k, v]) => (typeof v === 'object' ? describe(v as Record<string, unknown>, `${prefix}${k}.`, depth + 1) : `${prefix}${k}=${String(v)}`))
    .join(',');
}

/** Builds a VM from a full or partial config (defaults: `-M virt`, no monitors). */
export function createVm(config: Partial<VmConfig> = {}, options: CreateVmOptions = {}): Vm {
  return new Vm(defaultVmConfig(config), options);
}
