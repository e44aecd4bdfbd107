/**
 * Drives a virt board like a person at a terminal would, for record/replay tests: runs slices of
 * random virtual length and types each command character by character after a random delay,
 * once the prompt it waits for has appeared. Host randomness only decides *when* keys arrive.
 */
import seedrandom from 'seedrandom';
import { ConsoleCapture } from '../../src/engine/hw/virt/console-script.js';
import type { VirtRun } from '../../src/replay/virt-run.js';

export interface TypedStep {
  readonly expect: string;
  readonly send: string;
}

export async function typeSession(run: VirtRun, capture: ConsoleCapture, steps: readonly TypedStep[], hostSeed: number, limitNs: number): Promise<number> {
  const host = seedrandom.alea(String(hostSeed));
  const loop = run.loop;
  let step = 0;
  let from = 0;
  let typing: number[] = [];
  const off = () => run.machine.shutdown !== null;
  while (!off() && loop.nowNs < limitNs) {
    // Loop turns, as the host loop slices them (a virtual-time limit would split time jumps).
    loop.runUntil(off, { maxTasks: 1 + Math.floor(host() * 6) });
    if (typing.length > 0) {
      loop.gate.offer({ channel: 'serial0', kind: 'chardev', data: new Uint8Array([typing.shift()!]) });
    } else if (step < steps.length) {
      const at = capture.text.indexOf(steps[step]!.expect, from);
      if (at >= 0 && host() < 0.5) {
        from = at + steps[step]!.expect.length;
        typing = Array.from(new TextEncoder().encode(steps[step]!.send));
        step++;
      }
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  return step;
}
