import type { InputGate } from './input-gate.js';

/**
 * A wall-clock reading. Nanoseconds since 1970 do not fit a JS number exactly (2^53 ns is 104
 * days), so the host clock is seconds plus nanoseconds.
 */
export interface HostTime {
  readonly seconds: number;
  readonly nanos: number;
}

/** Where the host clock comes from outside deterministic mode (host mode reads it through the gate). */
export interface HostClockSource {
  readHostTime(): HostTime;
}

/** Reads the host's wall clock. The one place tsqemu asks the host what time it is. */
export function hostWallClock(): HostTime {
  const ms = Date.now();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

/** Host mode (`-rtc clock=host`): host-clock reads cross the input gate, so a recording replays them. */
export function gatedHostClock(gate: InputGate): HostClockSource {
  return {
    readHostTime(): HostTime {
      const value = gate.readHost('host-clock', 'host-clock', () => {
        const now = hostWallClock();
        return `${now.seconds}.${String(now.nanos).padStart(9, '0')}`;
      });
      const [seconds, nanos] = String(value).split('.');
      return { seconds: Number(seconds), nanos: Number(nanos ?? 0) };
    },
  };
}
