/**
 * The replay control monitor: a QMP monitor that steers play (QEMU's replay debugging commands:
 * query-replay, replay-break, replay-delete-break, replay-seek, plus stop/cont/query-status/quit)
 * without being part of the replayed run.
 *
 * In tsqemu a VM's own monitors are recorded inputs (their traffic replays from the log), so a
 * person debugging a replay cannot use them; and anything created on the replayed main loop
 * (a bottom half, a timer) would shift its task ids and make play diverge. So the control monitor
 * lives on a main loop of its own, which only the host drives: `ReplayDriver` runs it and, while
 * it says "running", slices of play.
 */
import { EventBus } from '../blockjob/events.js';
import { assert } from '../engine/assert.js';
import { Clocks } from '../engine/clock.js';
import type { HostDrivenLoop } from '../engine/host/host-loop.js';
import { MainLoop } from '../engine/main-loop.js';
import { CommandTable, type MonitorVm } from '../monitor/command.js';
import { coreCommands } from '../monitor/commands/core.js';
import { REPLAY_SERVICE, type ReplayControl, replayCommands } from '../monitor/commands/replay.js';
import { QmpError } from '../monitor/errors.js';
import { PathPolicy } from '../monitor/path-policy.js';
import { QmpServer } from '../monitor/qmp-server.js';
import { RunState } from '../monitor/run-state.js';
import { type Player, type PlayResult, SeekError } from '../replay/player.js';

/** Loop iterations of play per host slice: short enough for the control monitor to stay responsive. */
export const PLAY_SLICE_ITERATIONS = 5000;

/** The MonitorVm the control monitor commands: play, not a machine. */
class ControlVm implements MonitorVm {
  readonly loop: MainLoop;
  readonly events: EventBus;
  readonly runState: RunState;
  readonly paths = new PathPolicy([], '/');
  readonly services = new Map<string, unknown>();
  private quit = false;

  constructor(playClocks: Clocks, startStopped: boolean) {
    // Event timestamps follow the replayed machine's (deterministic) wall clock; read without side
    // effects (a `-rtc clock=host` source would take inputs from the log).
    const clocks = new Clocks(playClocks.hostBaseSeconds);
    clocks.setHostSource({ readHostTime: () => ({ seconds: playClocks.hostBaseSeconds + Math.floor(playClocks.realtimeNs / 1e9), nanos: playClocks.realtimeNs % 1e9 }) });
    this.loop = new MainLoop({ clocks });
    this.events = new EventBus(this.loop.clocks);
    this.runState = new RunState(this.loop.clocks, this.events, startStopped);
  }

  get quitRequested(): boolean {
    return this.quit;
  }

  requestQuit(): void {
    this.quit = true;
  }

  resetMachine(): void {
    throw new QmpError('system_reset is not possible while replaying (the recording decides what the machine does)');
  }
}

/**
 * Runs play under the control monitor's orders; implements the host loop's view of a main loop, so
 * `new HostLoop(driver).run(() => driver.done)` serves the monitor and plays, and sleeps when
 * play is paused and no client speaks.
 */
export class ReplayDriver implements HostDrivenLoop, ReplayControl {
  readonly vm: ControlVm;
  readonly servers: QmpServer[] = [];
  /** Set when play is over (end of the log, --until, or a divergence). */
  result: PlayResult | null = null;
  readonly mode = 'play' as const;

  constructor(
    readonly player: Player,
    readonly filename: string,
    monitorNames: readonly string[],
    /**
     * A debugger drives play: it starts paused (prelaunch, like `-S`) until `cont` or
     * `replay-seek`, and the monitor keeps serving after play ends, until `quit`.
     */
    private readonly lingerAfterEnd: boolean,
  ) {
    this.vm = new ControlVm(player.machineLoop.clocks, lingerAfterEnd);
    const table = new CommandTable();
    table.register(...coreCommands(table).filter((c) => c.name !== 'system_reset'), ...replayCommands());
    this.vm.services.set(REPLAY_SERVICE, this);
    for (const name of monitorNames) {
      const server = new QmpServer(this.vm, table, { name });
      server.attach(this.vm.loop.gate);
      this.servers.push(server);
    }
  }

  // ---- ReplayControl ----------------------------------------------------------------------------

  get icount(): number {
    return this.player.icount;
  }

  setBreak(icount: number): void {
    this.guard(() => this.player.setBreak(icount));
  }

  deleteBreak(): void {
    this.player.setBreak(null);
  }

  /** replay-seek: go there now (restore + run forward), then stand paused, as QEMU does. */
  seek(icount: number): void {
    this.guard(() => this.player.seek(icount));
    this.result = null;
    // Run forward to the target within the command: its reply tells the client play is there.
    for (let guard = 0; !this.player.paused && this.result === null; guard++) {
      assert(guard < 1 << 30, 'seek did not reach its target');
      this.result = this.player.advance(PLAY_SLICE_ITERATIONS);
    }
    if (this.player.paused) this.player.setBreak(null);
    this.vm.runState.stop();
  }

  private guard(action: () => unknown): void {
    try {
      action();
    } catch (error) {
      if (error instanceof SeekError) throw new QmpError(error.message);
      throw error;
    }
  }

  // ---- HostDrivenLoop ---------------------------------------------------------------------------

  get gate(): MainLoop['gate'] {
    return this.vm.loop.gate;
  }

  private get playing(): boolean {
    return this.vm.runState.running && this.result === null && !this.player.paused;
  }

  get idle(): boolean {
    return this.vm.loop.idle && !this.playing;
  }

  /** True when the process should end: quit, or play over with nobody to linger for. */
  get done(): boolean {
    return this.vm.quitRequested || (this.result !== null && !this.lingerAfterEnd);
  }

  runUntilIdle(limits: { maxTasks?: number }): number {
    let work = this.vm.loop.runUntilIdle(limits);
    if (this.playing) {
      this.result = this.player.advance(PLAY_SLICE_ITERATIONS);
      work++;
      if (this.player.paused) {
        // A breakpoint stops the VM and is deleted (replay_stop_vm).
        this.player.setBreak(null);
        this.vm.runState.stop();
      } else if (this.result !== null && this.lingerAfterEnd) {
        this.vm.runState.stop();
      }
    }
    return work;
  }
}
