// Record/replay figures: record overhead vs a plain run, play speed vs record, log bytes per input,
// checkpoint cost. The workload is the OpenSBI + U-Boot console session of the acceptance test
// when Debian's firmware is installed, else the bundled demo guest.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { ConsoleCapture } from '../../src/engine/hw/virt/console-script.js';
import { encodeRecord, parseLog } from '../../src/replay/log-format.js';
import { Player } from '../../src/replay/player.js';
import { MemorySink, Recorder } from '../../src/replay/recorder.js';
import { captureState } from '../../src/replay/state.js';
import { type VirtRun, type VirtRunSpec, buildVirtRun, virtSpecDigest } from '../../src/replay/virt-run.js';
import type { BenchCase, BenchResult } from './types.js';

const FW = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';
const UBOOT = '/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin';

interface Workload {
  readonly name: string;
  readonly spec: VirtRunSpec;
  readonly steps: readonly { expect: string; send: string }[];
}

function workload(dir: string): Workload {
  const disk = join(dir, 'disk.raw');
  const bytes = new Uint8Array(1 << 20);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + 7) & 0xff;
  writeFileSync(disk, bytes);
  if (existsSync(FW) && existsSync(UBOOT)) {
    return {
      name: 'OpenSBI+U-Boot session',
      spec: { memoryBytes: 128 << 20, bios: FW, kernel: UBOOT, append: null, drives: [{ id: 'hd0', file: disk, format: 'raw' }], icountShift: 3, seed: 0, policy: 'fifo' },
      steps: [
        { expect: 'Hit any key to stop autoboot', send: ' ' },
        { expect: '=> ', send: 'virtio scan\r' },
        { expect: '=> ', send: 'virtio read 84000000 0 8\r' },
        { expect: '=> ', send: 'md.b 84000000 0x40\r' },
        { expect: '=> ', send: 'poweroff\r' },
      ],
    };
  }
  return {
    name: 'demo guest',
    spec: { memoryBytes: 64 << 20, bios: 'none', kernel: 'fixtures/demo/demo.elf', append: null, drives: [{ id: 'hd0', file: 'fixtures/demo/demo-disk.img', format: 'raw' }], icountShift: 0, seed: 0, policy: 'fifo' },
    steps: [
      { expect: 'demo> ', send: 'hello\r' },
      { expect: 'demo> ', send: 'quit\r' },
    ],
  };
}

/** Drives the console script the same way every time (inputs offered when their prompt shows). */
function drive(run: VirtRun, capture: ConsoleCapture, steps: Workload['steps']): number {
  let step = 0;
  let from = 0;
  let inputs = 0;
  const off = (): boolean => run.machine.shutdown !== null;
  for (let guard = 0; guard < 50_000_000 && !off(); guard++) {
    run.loop.runUntil(off, { maxTasks: 4 });
    const next = steps[step];
    if (next !== undefined) {
      const at = capture.text.indexOf(next.expect, from);
      if (at >= 0) {
        from = at + next.expect.length;
        for (const byte of new TextEncoder().encode(next.send)) {
          run.loop.gate.offer({ channel: 'serial0', kind: 'chardev', data: new Uint8Array([byte]) });
          inputs++;
        }
        step++;
      }
    }
  }
  return inputs;
}

function measure(): BenchResult[] {
  const dir = mkdtempSync(join(tmpdir(), 'bench-replay-'));
  try {
    const w = workload(dir);
    // Plain run.
    let capture = new ConsoleCapture();
    let run = buildVirtRun(w.spec, capture);
    let start = performance.now();
    drive(run, capture, w.steps);
    let plainMs = performance.now() - start;
    const icount = run.loop.cpu?.icount ?? 0;
    const plainDigest = run.loop.trace.digestHex();
    run.close();
    // Once more, so JIT warm-up does not count against the plain run: the faster of the two counts.
    capture = new ConsoleCapture();
    run = buildVirtRun(w.spec, capture);
    start = performance.now();
    drive(run, capture, w.steps);
    plainMs = Math.min(plainMs, performance.now() - start);
    run.close();
    // Recorded run.
    capture = new ConsoleCapture();
    run = buildVirtRun(w.spec, capture);
    const sink = new MemorySink();
    start = performance.now();
    const recorder = new Recorder(run, sink, { machine: 'virt', machineDigest: virtSpecDigest(w.spec), commandLine: [], seed: 0, disks: run.disks });
    const inputs = drive(run, capture, w.steps);
    const stats = recorder.finish('poweroff');
    const recordMs = performance.now() - start;
    const recordDigest = run.loop.trace.digestHex();
    // Checkpoint cost on this machine (all probes, RAM compare included).
    const cpStart = performance.now();
    for (let i = 0; i < 5; i++) captureState(run.probes);
    const checkpointMs = (performance.now() - cpStart) / 5;
    run.close();
    // Play, without snapshots (compared with record) and with them (their cost).
    const log = parseLog(sink.bytes());
    run = buildVirtRun(w.spec, new ConsoleCapture());
    start = performance.now();
    const result = new Player(run, log, { snapshotInterval: 0 }).run();
    const playMs = performance.now() - start;
    run.close();
    run = buildVirtRun(w.spec, new ConsoleCapture());
    start = performance.now();
    const player = new Player(run, log);
    const snapResult = player.run();
    const playSnapMs = performance.now() - start;
    const snapshots = player.snapshots.snapshots.length;
    // One snapshot: save, its msgpack size, restore (at the end of the run, in place).
    const snapshotter = run.snapshotter!;
    start = performance.now();
    const saved = snapshotter.save();
    const saveMs = performance.now() - start;
    const packedBytes = new Packr({ useRecords: false, moreTypes: true }).pack(saved).length;
    start = performance.now();
    snapshotter.restore(saved);
    const restoreMs = performance.now() - start;
    // Seek from the end back to the middle: nearest snapshot + run forward; and from the start.
    const middle = Math.floor(snapResult.point.icount / 2);
    start = performance.now();
    player.seek(middle);
    for (let guard = 0; !player.paused && guard < 1 << 30; guard++) player.advance(5000);
    const seekMs = performance.now() - start;
    const seekOk = player.icount === middle;
    run.close();
    run = buildVirtRun(w.spec, new ConsoleCapture());
    start = performance.now();
    new Player(run, log, { until: middle, snapshotInterval: 0 }).run();
    const seekFromStartMs = performance.now() - start;
    run.close();
    const inputBytes = log.records.filter((r) => r.type === 'input').reduce((n, r) => n + encodeRecord(r).length, 0);
    const ok = result.divergence === null && result.finalTrace === recordDigest && recordDigest === plainDigest;
    const note = `${w.name}, ${(icount / 1e6).toFixed(1)} M instructions, ${stats.checkpoints} checkpoints${ok ? '' : ' (DIGEST MISMATCH)'}`;
    return [
      { name: 'replay: plain run', value: plainMs, unit: 'ms', note },
      { name: 'replay: record overhead vs plain run', value: ((recordMs - plainMs) / plainMs) * 100, unit: '%', note: 'aim < 5%' },
      { name: 'replay: play time / record time', value: playMs / recordMs, unit: 'x', note: 'below 1 = play faster than record' },
      { name: 'replay: log bytes per input', value: stats.bytes / Math.max(1, inputs), unit: 'B', note: `${stats.bytes} bytes for ${inputs} inputs, checkpoints included` },
      { name: 'replay: bytes per input record', value: inputBytes / Math.max(1, inputs), unit: 'B', note: 'frame (length + CRC) + msgpack (point, channel, kind, data)' },
      { name: 'replay: checkpoint capture (regs, devices, RAM)', value: checkpointMs, unit: 'ms', note: `${w.spec.memoryBytes >> 20} MiB RAM compared page by page` },
      { name: 'replay: play with snapshots, overhead', value: ((playSnapMs - playMs) / playMs) * 100, unit: '%', note: `${snapshots} snapshots kept, ${(player.snapshots.totalNewBytes / 1e6).toFixed(1)} MB of new pages in the store` },
      { name: 'replay: snapshot save', value: saveMs, unit: 'ms', note: `${(packedBytes / 1e6).toFixed(2)} MB as msgpack (${w.spec.memoryBytes >> 20} MiB RAM, zero pages left out)` },
      { name: 'replay: snapshot restore', value: restoreMs, unit: 'ms', note: 'in place: kernel, harts, RAM, devices, disk overlays' },
      { name: 'replay: seek back to the middle', value: seekMs, unit: 'ms', note: `${seekOk ? '' : 'MISSED TARGET, '}nearest snapshot + run forward; replaying from the start takes ${seekFromStartMs.toFixed(0)} ms` },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const benchCases: BenchCase[] = [{ name: 'record/replay', group: 'replay', run: measure }];
