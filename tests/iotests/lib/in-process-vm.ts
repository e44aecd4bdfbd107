import { createVm, type Vm as TsqemuVm } from '../../../src/system/vm.js';
import { parseCommandLine } from '../../../src/system/options.js';
import type { TargetTools } from './context.js';
import type { QmpEvent, QmpReply, Vm } from './test-api.js';
import { VmBase } from './vm-base.js';

/** Tasks the engine may run while a test waits for one event: a job that needs more is stuck. */
const MAX_TASKS_PER_WAIT = 50_000_000;

/**
 * tsqemu in the test's own process: the same VM the command line builds, driven through its
 * in-process QMP API. Waiting for an event runs the deterministic engine until the event is
 * emitted, so a test takes milliseconds and every run is identical for a given seed.
 */
class InProcessVm extends VmBase implements Vm {
  private readonly events: QmpEvent[] = [];

  constructor(
    private readonly vm: TsqemuVm,
    log: (value: unknown) => void,
  ) {
    super(log);
    vm.onEvent((event) => this.events.push(event as QmpEvent));
  }

  async qmp(command: string, args?: Record<string, unknown>): Promise<QmpReply> {
    // A command reaches QEMU's monitor only after its main loop has dispatched what was already
    // runnable (bottom halves, woken coroutines): run that much first, without moving virtual
    // time, so e.g. a soft-cancelled mirror has finished before the next command, as on QEMU.
    this.vm.loop.runUntil(() => false, { untilNs: this.vm.loop.nowNs, maxTasks: MAX_TASKS_PER_WAIT });
    return this.vm.qmp(command, args ?? {}) as QmpReply;
  }

  protected async nextEvent(): Promise<QmpEvent> {
    if (this.events.length === 0) {
      this.vm.runUntil(() => this.events.length > 0, { maxTasks: MAX_TASKS_PER_WAIT });
    }
    const event = this.events.shift();
    if (event === undefined) throw new Error(`no QMP event: the VM went idle at ${this.vm.loop.nowNs} ns`);
    return event;
  }

  protected drainEvents(): QmpEvent[] {
    return this.events.splice(0);
  }

  async shutdown(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // QEMU's quit: the VM cancels every job and closes every node (qcow2 metadata and
    // persistent bitmaps reach the images), exactly as the tsqemu binary does when it ends.
    this.vm.shutdown();
  }

  private closed = false;
}

/** The default target: tsqemu in process, with its own tsqemu-img and tsqemu-io bins. */
export function inProcessTarget(tools: { img: string[]; io: string[] }, policy: 'fifo' | 'explore'): TargetTools {
  return {
    target: 'tsqemu',
    img: tools.img,
    io: tools.io,
    async launchVm(dir, args, log, seed, options = {}) {
      const config = parseCommandLine(['-M', 'virt', '-S', '-display', 'none', '-nodefaults', ...args]);
      const vm = createVm({ ...config, seed, policy }, { cwd: dir, legacyStartInPrepare: options.legacyStartInPrepare === true });
      return new InProcessVm(vm, log);
    },
  };
}
