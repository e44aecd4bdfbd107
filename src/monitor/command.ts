import { assert } from '../engine/assert.js';
import type { Co } from '../engine/coroutine.js';
import type { MainLoop } from '../engine/main-loop.js';
import type { EventBus } from '../blockjob/events.js';
import type { StructSchema, UnionSchema } from './schema.js';
import type { RunState } from './run-state.js';
import type { PathPolicy } from './path-policy.js';

/** The version QMP reports (the QEMU release whose behaviour tsqemu matches). */
export const QMP_VERSION = { qemu: { micro: 0, minor: 2, major: 7 }, package: 'tsqemu 0.1.0' } as const;

/**
 * What the monitor needs of the VM it controls. `src/system` builds it; commands reach every
 * subsystem through it, so a command table can be tested against any VM that provides these.
 */
export interface MonitorVm {
  readonly loop: MainLoop;
  readonly events: EventBus;
  readonly runState: RunState;
  readonly paths: PathPolicy;
  /** Subsystem services by name (`block`, `jobs`, ...): registered by whoever builds the VM. */
  readonly services: ReadonlyMap<string, unknown>;
  /** `quit`: the VM should end once the reply is out. */
  requestQuit(): void;
  readonly quitRequested: boolean;
  /** `system_reset`: resets the machine's devices and CPU. */
  resetMachine(): void;
}

/** A service registered under `name`, or a CommandNotFound-like error when the VM lacks it. */
export function service<T>(vm: MonitorVm, name: string): T {
  const found = vm.services.get(name);
  assert(found !== undefined, () => `VM has no '${name}' service`);
  return found as T;
}

export interface CommandContext {
  readonly vm: MonitorVm;
}

/** One QMP command: its argument schema and its handler. */
export interface CommandDef {
  readonly name: string;
  /** null: the command takes no arguments. */
  readonly args: StructSchema | UnionSchema | null;
  /** Runs after the arguments passed the schema; returns the `return` value (undefined → {}). */
  readonly run: (ctx: CommandContext, args: never) => unknown;
  /** True when `run` returns a coroutine body (it waits for drains or I/O). */
  readonly co?: boolean;
}

/** Typed helper: `defineCommand<{device: string}>({...})`. */
export function defineCommand<A>(def: { name: string; args: StructSchema | UnionSchema | null; run: (ctx: CommandContext, args: A) => unknown; co?: false }): CommandDef;
export function defineCommand<A>(def: { name: string; args: StructSchema | UnionSchema | null; run: (ctx: CommandContext, args: A) => Co<unknown>; co: true }): CommandDef;
export function defineCommand(def: CommandDef): CommandDef {
  return def;
}

/** The command table: the QMP commands a VM offers (qmp_register_command). */
export class CommandTable {
  private readonly commands = new Map<string, CommandDef>();

  register(...defs: CommandDef[]): this {
    for (const def of defs) {
      assert(!this.commands.has(def.name), () => `command '${def.name}' registered twice`);
      this.commands.set(def.name, def);
    }
    return this;
  }

  get(name: string): CommandDef | undefined {
    return this.commands.get(name);
  }

  names(): string[] {
    return [...this.commands.keys()];
  }
}
