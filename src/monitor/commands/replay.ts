import { assert } from '../../engine/assert.js';
import { type CommandDef, type MonitorVm, defineCommand } from '../command.js';
import { QmpError } from '../errors.js';
import { int, struct } from '../schema.js';

/**
 * What the replay commands need: the record/replay mode of the process, and in play mode the
 * player's breakpoint and seek. The host registers it under the `replay` service (absent: no
 * record/replay, as QEMU without `-icount rr=`).
 */
export interface ReplayControl {
  readonly mode: 'none' | 'record' | 'play';
  readonly filename: string | null;
  /** Instructions executed so far (replay_get_current_icount). */
  readonly icount: number;
  /** Pause play when the instruction count reaches `icount` (play mode only). */
  setBreak(icount: number): void;
  deleteBreak(): void;
  /** Go to `icount` (restoring a snapshot when it lies behind) and pause there (play mode only). */
  seek(icount: number): void;
}

export const REPLAY_SERVICE = 'replay';

const NO_REPLAY: ReplayControl = {
  mode: 'none',
  filename: null,
  icount: 0,
  setBreak: () => assert(false, 'breakpoint without play'),
  deleteBreak: () => assert(false, 'breakpoint without play'),
  seek: () => assert(false, 'seek without play'),
};

/**
 * A recording VM's answer (`tsqemu -icount rr=record`): mode `record`. A VM replaying such a log
 * answers the same, because its monitors replay the recorded traffic and must reply as they did.
 */
export const RECORDING_REPLAY_CONTROL: Omit<ReplayControl, 'filename' | 'icount'> = {
  mode: 'record',
  setBreak: () => assert(false, 'breakpoint while recording'),
  deleteBreak: () => assert(false, 'breakpoint while recording'),
  seek: () => assert(false, 'seek while recording'),
};

function control(vm: MonitorVm): ReplayControl {
  return (vm.services.get(REPLAY_SERVICE) as ReplayControl | undefined) ?? NO_REPLAY;
}

/** query-replay, replay-break, replay-delete-break, replay-seek (QEMU 7.2's replay.json, its error texts). */
export function replayCommands(): CommandDef[] {
  return [
    defineCommand({
      name: 'query-replay',
      args: null,
      run: ({ vm }) => {
        const c = control(vm);
        return c.filename === null ? { icount: c.icount, mode: c.mode } : { icount: c.icount, mode: c.mode, filename: c.filename };
      },
    }),
    defineCommand<{ icount: number }>({
      name: 'replay-break',
      args: struct({ icount: int }),
      run: ({ vm }, args) => {
        const c = control(vm);
        if (c.mode !== 'play') throw new QmpError('setting the breakpoint is allowed only in play mode');
        if (args.icount < c.icount) throw new QmpError('cannot set breakpoint at the instruction in the past');
        c.setBreak(args.icount);
      },
    }),
    defineCommand({
      name: 'replay-delete-break',
      args: null,
      run: ({ vm }) => {
        const c = control(vm);
        if (c.mode !== 'play') throw new QmpError('replay breakpoints are allowed only in play mode');
        c.deleteBreak();
      },
    }),
    defineCommand<{ icount: number }>({
      name: 'replay-seek',
      args: struct({ icount: int }),
      run: ({ vm }, args) => {
        const c = control(vm);
        if (c.mode !== 'play') throw new QmpError('replay must be enabled to seek');
        c.seek(args.icount);
      },
    }),
  ];
}
