import type { TargetTools } from './context.js';

/** In-process tsqemu target: filled in once the monitor's in-process VM API exists. */
export function inProcessTarget(tools: { img: string[]; io: string[] }, _policy: 'fifo' | 'explore'): TargetTools {
  return {
    target: 'tsqemu',
    img: tools.img,
    io: tools.io,
    async launchVm() {
      throw new Error('in-process target not wired yet');
    },
  };
}
