import { describe, expect, it } from 'vitest';
import type { InputSource, StampedInput } from '../../../src/engine/host/input-gate.js';
import { type Vm, createVm } from '../../../src/system/vm.js';

const CHANNEL = 'qmp:qmp0';

function qmpVm(): { vm: Vm; out: string[] } {
  const vm = createVm({ startStopped: true, monitors: [{ name: 'qmp0', chardev: { backend: 'null' } }] });
  const out: string[] = [];
  vm.monitors[0]!.setOutput(0, { send: (line) => out.push(line), close: () => out.push('<closed>') });
  return { vm, out };
}

/** What the host transport does, minus the socket: offer bytes, then let the engine run. */
function liveSession(vm: Vm, chunks: readonly string[]): void {
  vm.loop.gate.offer({ channel: CHANNEL, kind: 'qmp-open', data: 0 });
  vm.run();
  for (const chunk of chunks) {
    vm.loop.gate.offer({ channel: `${CHANNEL}#0`, kind: 'qmp', data: chunk });
    vm.run();
  }
  vm.loop.gate.offer({ channel: `${CHANNEL}#0`, kind: 'qmp-close', data: null });
  vm.run();
}

function arraySource(log: readonly StampedInput[]): InputSource {
  let next = 0;
  return {
    peek: () => log[next],
    take: () => log[next++]!,
  };
}

describe('QMP sessions through the input gate', () => {
  it('replay of a recorded session gives the same replies, events and trace digest', () => {
    const chunks = [
      '{"execute":"qmp_capabilities"}',
      '{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"s","size":4194304}}{"execute":"blockdev-add",',
      '"arguments":{"driver":"null-co","node-name":"t","size":4194304}}\n',
      '{"execute":"transaction","arguments":{"actions":[{"type":"block-dirty-bitmap-add","data":{"node":"s","name":"b"}},{"type":"blockdev-backup","data":{"job-id":"j","device":"s","target":"t","sync":"full","speed":1048576}}]}}',
      '{"execute":"query-jobs","id":1}',
      '{"execute":"job-pause","arguments":{"id":"j"}} bad json {"execute":"job-resume","arguments":{"id":"j"}}',
    ];
    const live = qmpVm();
    const log: StampedInput[] = [];
    live.vm.loop.gate.observe((input) => log.push(input));
    liveSession(live.vm, chunks);
    expect(live.out.some((l) => l.includes('"BLOCK_JOB_COMPLETED"'))).toBe(true);
    expect(log.map((i) => i.kind)).toEqual(['qmp-open', ...chunks.map(() => 'qmp'), 'qmp-close']);

    const replay = qmpVm();
    replay.vm.loop.gate.replayFrom(arraySource(log));
    for (let guard = 0; guard < 1000 && replay.vm.loop.gate.replayPending; guard++) replay.vm.run();
    replay.vm.run();
    expect(replay.vm.loop.gate.replayPending).toBe(false);
    expect(replay.out).toEqual(live.out);
    expect(replay.vm.loop.trace.digestHex()).toBe(live.vm.loop.trace.digestHex());
  });
});
