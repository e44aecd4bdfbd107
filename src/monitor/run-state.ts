import { assert } from '../engine/assert.js';
import type { Clocks } from '../engine/clock.js';
import type { EventBus } from '../blockjob/events.js';

declare module '../blockjob/events.js' {
  interface EventMap {
    STOP: Record<string, never>;
    RESUME: Record<string, never>;
    RESET: { readonly guest: boolean; readonly reason: string };
    SHUTDOWN: { readonly guest: boolean; readonly reason: string };
  }
}

/** QAPI RunState values tsqemu can be in. */
export type RunStatus = 'prelaunch' | 'running' | 'paused' | 'shutdown' | 'internal-error';

/** Allowed run-state changes (runstate_transitions_def, the part tsqemu uses). */
const TRANSITIONS: Readonly<Record<RunStatus, readonly RunStatus[]>> = {
  prelaunch: ['running', 'paused', 'shutdown', 'prelaunch'],
  running: ['paused', 'shutdown', 'internal-error'],
  paused: ['running', 'prelaunch', 'shutdown'],
  shutdown: ['running', 'prelaunch', 'paused'],
  'internal-error': ['paused', 'prelaunch', 'running', 'shutdown'],
};

/**
 * The VM's run state as QMP sees it (`query-status`, `stop`, `cont`, `system_reset`), with QEMU's
 * quirks observed on 7.2: `stop` in prelaunch changes nothing, `cont` when running emits nothing,
 * a reset of a VM that is not running puts it back in prelaunch. The virtual clock stands still
 * whenever the VM is not running.
 */
export class RunState {
  private statusValue: RunStatus;

  constructor(
    private readonly clocks: Clocks,
    private readonly events: EventBus,
    startStopped: boolean,
  ) {
    this.statusValue = startStopped ? 'prelaunch' : 'running';
    clocks.setRunning(!startStopped);
  }

  get status(): RunStatus {
    return this.statusValue;
  }

  get running(): boolean {
    return this.statusValue === 'running';
  }

  /**
   * Puts the status back to a saved value (a replay snapshot restore): no event, and the clocks are
   * left alone (the kernel's own restore sets whether virtual time runs).
   */
  restoreStatus(status: RunStatus): void {
    assert(Object.prototype.hasOwnProperty.call(TRANSITIONS, status), () => `unknown run state '${status}'`);
    this.statusValue = status;
  }

  private transition(to: RunStatus): void {
    assert(TRANSITIONS[this.statusValue].includes(to), () => `run state ${this.statusValue} -> ${to}`);
    this.statusValue = to;
    this.clocks.setRunning(to === 'running');
  }

  /** QMP `stop`. */
  stop(): void {
    if (this.statusValue !== 'running') return;
    this.transition('paused');
    this.events.emit('STOP', {});
  }

  /** QMP `cont` (the caller checked it is allowed). */
  cont(): void {
    if (this.statusValue === 'running') return;
    this.transition('running');
    this.events.emit('RESUME', {});
  }

  /** A reset request from QMP (`host-qmp-system-reset`) or the guest. */
  reset(guest: boolean, reason: string): void {
    this.events.emit('RESET', { guest, reason });
    if (this.statusValue !== 'running') this.transition('prelaunch');
  }

  /** A shutdown request (`quit`: host-qmp-quit). */
  shutdown(guest: boolean, reason: string): void {
    this.events.emit('SHUTDOWN', { guest, reason });
    if (this.statusValue !== 'shutdown') this.transition('shutdown');
  }
}
