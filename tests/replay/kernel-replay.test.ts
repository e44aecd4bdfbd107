import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemorySink, Recorder } from '../../src/replay/recorder.js';
import { encodeRecord, frame, parseLog, type LogRecord, LOG_PREAMBLE_BYTES } from '../../src/replay/log-format.js';
import { Player, formatDivergence } from '../../src/replay/player.js';
import { buildKernelSession, driveLive, sessionScript } from './kernel-session.js';

function record(seed: number, hostSeed: number, options: { events?: boolean; interval?: number } = {}) {
  const session = buildKernelSession({ seed });
  const sink = new MemorySink();
  const recorder = new Recorder(session, sink, { machine: 'kernel', machineDigest: 'k1', commandLine: ['kernel-session'], seed, checkpointInterval: options.interval ?? 16, events: options.events ?? false });
  driveLive(session, sessionScript(), hostSeed);
  const stats = recorder.finish('idle');
  return { session, bytes: sink.bytes(), stats };
}

function play(bytes: Uint8Array, seed: number, perturb?: 'timing' | 'state') {
  const session = buildKernelSession({ seed, perturb });
  const player = new Player(session, parseLog(bytes));
  const result = player.run();
  return { session, result };
}

describe('kernel-level record/replay', () => {
  it('a plain run and a recorded run have the same trace digest (recording changes nothing)', () => {
    const plain = buildKernelSession({ seed: 3 });
    driveLive(plain, sessionScript(), 11);
    const { session } = record(3, 11);
    // Host timing decides where inputs land, so compare runs with the same host timing.
    expect(session.loop.trace.digestHex()).toBe(plain.loop.trace.digestHex());
    // Only the live host-clock reading differs (it is real wall time in both runs).
    const noTime = (lines: string[]) => lines.filter((l) => !l.startsWith('return time'));
    expect(noTime(session.output)).toEqual(noTime(plain.output));
    expect(session.output.length).toBe(plain.output.length);
  });

  it('replays bit for bit: same output, same trace digest, every checkpoint matches', () => {
    for (const hostSeed of [1, 2, 3, 4, 5]) {
      const rec = record(7, hostSeed, { events: true });
      const log = parseLog(rec.bytes);
      expect(log.complete).toBe(true);
      expect(log.tail).toBeNull();
      expect(rec.stats.inputs).toBeGreaterThanOrEqual(sessionScript().length);
      expect(rec.stats.checkpoints).toBeGreaterThan(3);
      const { session, result } = play(rec.bytes, 7);
      expect(result.divergence, result.divergence ? formatDivergence(result.divergence) : '').toBeNull();
      expect(result.reachedEnd).toBe(true);
      expect(result.checkpoints).toBe(rec.stats.checkpoints);
      expect(result.events).toBe(rec.stats.events);
      expect(result.finalTrace).toBe(rec.session.loop.trace.digestHex());
      expect(session.output).toEqual(rec.session.output);
      // The host clock was read live while recording and comes from the log in play.
      expect(session.store.get('time')).toBe(rec.session.store.get('time'));
    }
  });

  it('different host timing gives different runs, each replaying exactly', () => {
    const a = record(7, 21);
    const b = record(7, 22);
    expect(a.session.loop.trace.digestHex()).not.toBe(b.session.loop.trace.digestHex());
    expect(play(a.bytes, 7).result.finalTrace).toBe(a.session.loop.trace.digestHex());
    expect(play(b.bytes, 7).result.finalTrace).toBe(b.session.loop.trace.digestHex());
  });

  it('reports a state divergence at the first checkpoint after it, naming the probe and key', () => {
    const rec = record(7, 1);
    const log = parseLog(rec.bytes);
    const { session, result } = play(rec.bytes, 7, 'state');
    const d = result.divergence;
    expect(d).not.toBeNull();
    expect(d!.kind).toBe('checkpoint');
    expect(d!.differences[0]).toMatchObject({ probe: 'jobs', key: 'c' });
    // The first checkpoint after job c's first progress step, not later.
    const firstProgress = rec.session.loop.trace.recent().find((e) => e.name === 'job.progress' && e.fields.job === 'c');
    const checkpoints = log.records.filter((r) => r.type === 'checkpoint');
    const firstAfter = checkpoints.find((c) => c.ns >= firstProgress!.ns);
    expect(d!.checkpoint).toBe(firstAfter!.index);
    const report = formatDivergence(d!);
    expect(report).toContain(`checkpoint #${firstAfter!.index}`);
    expect(report).toContain('jobs c: recorded');
    expect(report).toContain('last inputs before it');
    expect(session.loop.steps).toBe(firstAfter!.step);
  });

  it('reports a timing divergence as an input the run can no longer reach, without hanging', () => {
    const rec = record(7, 1);
    const { result } = play(rec.bytes, 7, 'timing');
    const d = result.divergence;
    expect(d).not.toBeNull();
    expect(['stuck', 'input', 'checkpoint']).toContain(d!.kind);
    expect(d!.expected).toBeDefined();
    expect(formatDivergence(d!)).toMatch(/due at icount 0, step \d+, \d+ ns|recorded at/);
  });

  it('reports a divergence when an input is changed in the log (valid checksum, different content)', () => {
    const rec = record(7, 1);
    const log = parseLog(rec.bytes);
    // Rebuild the log with the 'set' command's value changed: framing and CRC stay valid.
    const header = rec.bytes.subarray(0, log.records[0]!.offset);
    const parts: Uint8Array[] = [header];
    for (const r of log.records) {
      let record: LogRecord = r;
      if (r.type === 'input' && typeof r.data === 'string' && r.data.includes('"set"')) record = { ...r, data: r.data.replace('"value":1', '"value":2') };
      parts.push(encodeRecord(record));
    }
    const edited = Buffer.concat(parts);
    const { result } = play(new Uint8Array(edited), 7);
    expect(result.divergence?.kind).toBe('checkpoint');
    expect(result.divergence!.differences.some((d) => d.probe === 'store' && d.key === 'x' && d.recorded === '1' && d.replayed === '2')).toBe(true);
    expect(formatDivergence(result.divergence!)).toContain('store x: recorded 1, replayed 2');
  });

  it('replays a log cut off mid-record up to its last complete record', () => {
    const rec = record(7, 4);
    for (const fraction of [0.3, 0.6, 0.9]) {
    let cutAt = Math.floor(rec.bytes.length * fraction);
    // A cut exactly on a frame boundary leaves no partial record; one byte earlier always does.
    if (parseLog(rec.bytes.subarray(0, cutAt)).tail === null) cutAt -= 1;
    const log = parseLog(rec.bytes.subarray(0, cutAt));
    expect(log.complete).toBe(false);
    expect(log.tail).not.toBeNull();
    expect(log.tail!.offset).toBeGreaterThanOrEqual(LOG_PREAMBLE_BYTES);
    const { result } = play(rec.bytes.subarray(0, cutAt), 7);
    expect(result.divergence).toBeNull();
    expect(result.reachedEnd).toBe(true);
    expect(result.checkpoints).toBe(log.records.filter((r) => r.type === 'checkpoint').length);
    expect(frame(new Uint8Array([1])).length).toBe(9);
    }
  });

  it('property: any seed and any host timing records a run that replays exactly', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: 1_000_000 }), fc.integer({ min: 1, max: 64 }), (seed, hostSeed, interval) => {
        const rec = record(seed, hostSeed, { events: true, interval });
        const { session, result } = play(rec.bytes, seed);
        expect(result.divergence, result.divergence ? formatDivergence(result.divergence) : '').toBeNull();
        expect(result.finalTrace).toBe(rec.session.loop.trace.digestHex());
        expect(session.output).toEqual(rec.session.output);
      }),
      { numRuns: 40 },
    );
  });
});
