import type { Chardev, QuitHandler } from '../../host/chardev-core.js';
import { NullChardev } from '../../host/chardev-core.js';
import { openChardev } from '../../host/chardev-open.js';
import type { MainLoop } from '../../main-loop.js';
import { type VirtDriveConfig, type VirtMachine, buildVirtMachine } from './machine.js';
import { riscvCpuFactory } from './riscv-harts.js';
import { parseIcountShift, parseRtcBase, parseSmp, resolveBios, rtcFollowsHost } from './virt-options.js';
import { gatedHostClock } from '../../host/wallclock.js';

/**
 * Main-loop tasks per HostLoop slice when a hart runs. Each CPU turn is up to 1 ms of virtual time
 * (a million instructions at shift 0), so the host must look at stdin and sockets after a few of
 * them or typed input waits for seconds (the default slice of 50 000 tasks suits CPU-less VMs).
 */
export const VIRT_HOST_SLICE_TASKS = 2;

/** The command-line options the virt board consumes, as strings the way the user typed them. */
export interface VirtCliOptions {
  readonly memoryBytes: number;
  readonly bios: string | null;
  readonly kernel: string | null;
  readonly append: string | null;
  readonly initrd: string | null;
  readonly smp: string | null;
  readonly icount: string | null;
  readonly nographic: boolean;
  readonly nodefaults: boolean;
  /** `-serial` specs in order (only the first is used: virt has one UART). */
  readonly serial: readonly string[];
  /** virtio-blk devices in `-device` order, their BlockBackends already opened by the block layer. */
  readonly drives: readonly VirtDriveConfig[];
  /** Modern virtio-mmio (`-global virtio-mmio.force-legacy=false`). */
  readonly virtioModern?: boolean;
  /** Ctrl-A x on a stdio console. */
  readonly onQuit: QuitHandler;
  /** `-rtc base=...,clock=...` as typed. */
  readonly rtc?: string | null;
  /** `-accel qtest`: no CPU. */
  readonly noCpu?: boolean;
  /** `-accel tcg,jit=off` (false): the harts interpret, nothing is translated. Default true. */
  readonly jit?: boolean;
}

/** What the command line holds while the VM runs. */
export interface VirtSession {
  readonly machine: VirtMachine;
  readonly serial: Chardev;
  /** The process's exit status once the guest powered off (null while it runs). */
  readonly exitCode: number | null;
  close(): void;
}

/**
 * `-M virt` from command-line options: builds the board with the RISC-V hart and connects UART0
 * to its chardev (QEMU's defaults: `-nographic` means `mon:stdio`, `-nodefaults` means none,
 * otherwise the first `-serial`). The caller runs the main loop (`new HostLoop(loop,
 * VIRT_HOST_SLICE_TASKS)`) until `exitCode` is set or the user quits, then exits with `exitCode`.
 */
export function startVirtFromCli(loop: MainLoop, options: VirtCliOptions): VirtSession {
  const serialSpec = options.serial[0] ?? (options.nographic ? 'mon:stdio' : options.nodefaults ? 'null' : 'null');
  const smp = parseSmp(options.smp);
  const rtc = options.rtc ?? null;
  const rtcBase = /(^|,)base=\d/.test(rtc ?? '') ? parseRtcBase(rtc) : undefined;
  parseRtcBase(rtc); // validates every spelling, even the ones that keep the default base
  // clock=host: the guest's wall clock follows the host's, read through the input gate (recordable).
  if (rtcFollowsHost(rtc) && rtcBase === undefined) loop.clocks.setHostSource(gatedHostClock(loop.gate));
  const machine = buildVirtMachine(loop, {
    ramSizeBytes: options.memoryBytes,
    bios: resolveBios(options.bios),
    kernel: options.kernel ?? undefined,
    append: options.append ?? undefined,
    initrd: options.initrd ?? undefined,
    smp,
    drives: options.drives,
    virtioModern: options.virtioModern,
    rtcBaseSeconds: rtcBase,
    cpu: options.noCpu === true ? undefined : riscvCpuFactory({ icountShift: parseIcountShift(options.icount), jit: options.jit ?? true }),
  });
  const serial = serialSpec === 'none' ? new NullChardev('serial0', 'serial0') : openChardev(serialSpec, loop.gate, { id: 'serial0', channel: 'serial0', onQuit: options.onQuit });
  machine.uart.output = serial;
  return {
    machine,
    serial,
    get exitCode(): number | null {
      return machine.shutdown?.kind === 'poweroff' ? machine.shutdown.exitCode : null;
    },
    close(): void {
      serial.close();
    },
  };
}
