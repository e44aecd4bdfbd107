import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FRAME_HEADER_BYTES, LOG_PREAMBLE_BYTES, type LogHeader, type LogRecord, ReplayLogError, checkCompatible, encodeHeader, encodeRecord, parseLog } from '../../../src/replay/log-format.js';
import { crc32 } from '../../../src/replay/crc32.js';

const header: LogHeader = {
  tsqemuVersion: '0.1.0',
  machine: 'virt',
  machineDigest: 'abcd',
  commandLine: ['-M', 'virt'],
  seed: 5,
  disks: [{ name: 'hd0', path: 'disk.img', sizeBytes: 1024, digest: 'd1' }],
  checkpointUnit: 'icount',
  checkpointInterval: 1000,
  events: true,
  icountShift: 0,
};

const key = fc.stringMatching(/^[a-z][a-z0-9.]{0,6}$/);
const u = fc.integer({ min: 0, max: 1_000_000 });
const recordBody = fc.oneof(
  fc.record({
    type: fc.constant('input' as const),
    channel: key,
    kind: fc.constantFrom('chardev' as const, 'qmp' as const, 'host-clock' as const, 'qtest' as const),
    data: fc.oneof(fc.uint8Array({ maxLength: 40 }), fc.string(), fc.integer(), fc.constant(null)),
  }),
  fc.record({ type: fc.constant('checkpoint' as const), trace: fc.stringMatching(/^[0-9a-f]{0,16}$/), state: fc.dictionary(key, fc.dictionary(key, fc.oneof(fc.string(), fc.integer()))) }),
  fc.record({ type: fc.constant('event' as const), name: key, fields: fc.dictionary(key, fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null))) }),
);

/** Random records with non-decreasing points and consecutive checkpoint indexes. */
const recordsArb = fc.array(fc.tuple(recordBody, u, u, u), { maxLength: 30 }).map((items) => {
  let step = 0;
  let icount = 0;
  let ns = 0;
  let index = 0;
  return items.map(([body, ds, di, dn]): LogRecord => {
    step += ds % 5;
    icount += di;
    ns += dn;
    const point = { step, icount, ns };
    return body.type === 'checkpoint' ? { ...body, ...point, index: index++ } : ({ ...body, ...point } as LogRecord);
  });
});

function build(records: readonly LogRecord[]): Uint8Array {
  return new Uint8Array(Buffer.concat([encodeHeader(header), ...records.map(encodeRecord)]));
}

function strip(records: readonly (LogRecord & { offset?: number })[]): LogRecord[] {
  return records.map(({ offset: _offset, ...rest }) => rest as LogRecord);
}

describe('replay log format', () => {
  it('crc32 matches the standard check value', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
  });

  it('round-trips a header and each record kind exactly', () => {
    const records: LogRecord[] = [
      { type: 'input', step: 1, icount: 10, ns: 10, channel: 'serial0', kind: 'chardev', data: new Uint8Array([104, 105]) },
      { type: 'checkpoint', step: 2, icount: 2 ** 40, ns: 2 ** 52, index: 0, trace: '0123456789abcdef', state: { cpu: { pc: '0x80000000', x1: 7 } } },
      { type: 'event', step: 2, icount: 2 ** 40, ns: 2 ** 52, name: 'irq.raise', fields: { line: 10, level: true, dev: null } },
      { type: 'end', step: 3, icount: 2 ** 40 + 1, ns: 2 ** 52 + 1, reason: 'poweroff', trace: 'ff', inputs: 1 },
    ];
    const log = parseLog(build(records));
    expect(log.header).toEqual(header);
    expect(strip(log.records)).toEqual(records);
    expect(log.complete).toBe(true);
    expect(log.tail).toBeNull();
    expect(log.records[0]!.offset).toBeGreaterThan(LOG_PREAMBLE_BYTES);
  });

  it('property: random record sequences round-trip', () => {
    fc.assert(
      fc.property(recordsArb, (records) => {
        const log = parseLog(build(records));
        expect(strip(log.records)).toEqual(records);
        expect(log.tail).toBeNull();
      }),
      { numRuns: 200 },
    );
  });

  it('property: any truncation reads a prefix of complete records and says where it stopped', () => {
    fc.assert(
      fc.property(recordsArb.filter((r) => r.length > 0), fc.nat(), (records, cut) => {
        const bytes = build(records);
        const length = cut % bytes.length;
        let log;
        try {
          log = parseLog(bytes.subarray(0, length));
        } catch (error) {
          // Only a cut inside the preamble or header is fatal, and then as a typed error.
          expect(error).toBeInstanceOf(ReplayLogError);
          expect((error as ReplayLogError).reason).toBe('truncated');
          expect(length).toBeLessThan(bytes.length - records.reduce((n, r) => n + encodeRecord(r).length, 0));
          return;
        }
        expect(strip(log.records)).toEqual(records.slice(0, log.records.length));
        expect(log.records.length).toBeLessThan(records.length);
        const kept = log.records.reduce((n, r) => n + encodeRecord(r).length, 0);
        const headerBytes = bytes.length - records.reduce((n, r) => n + encodeRecord(r).length, 0);
        if (length === headerBytes + kept) {
          expect(log.tail).toBeNull(); // cut exactly between two records: a shorter, valid log
        } else {
          expect(log.tail).not.toBeNull();
          expect(log.tail!.offset).toBe(headerBytes + kept);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('property: any corrupted byte is detected and reported with an offset, never thrown raw', () => {
    fc.assert(
      fc.property(recordsArb.filter((r) => r.length > 0), fc.nat(), fc.integer({ min: 1, max: 255 }), (records, at, flip) => {
        const bytes = build(records).slice();
        const offset = at % bytes.length;
        bytes[offset]! ^= flip;
        let log;
        try {
          log = parseLog(bytes);
        } catch (error) {
          expect(error).toBeInstanceOf(ReplayLogError);
          const e = error as ReplayLogError;
          expect(e.offset).toBeLessThanOrEqual(offset);
          expect(e.message).toContain(`offset ${e.offset}`);
          return;
        }
        // A damaged length field can make the rest look like an incomplete last frame: reported as a tail.
        expect(log.tail).not.toBeNull();
        expect(log.tail!.offset).toBeLessThanOrEqual(offset);
        expect(offset - log.tail!.offset).toBeLessThan(FRAME_HEADER_BYTES);
      }),
      { numRuns: 500 },
    );
  });

  it('names the reason: bad magic, wrong version, checksum, wrong machine, changed disk', () => {
    const good = build([{ type: 'input', step: 0, icount: 0, ns: 0, channel: 'qmp', kind: 'qmp', data: '{}' }]);
    const bad = (mutate: (b: Uint8Array) => void) => {
      const b = good.slice();
      mutate(b);
      try {
        parseLog(b);
      } catch (error) {
        return error as ReplayLogError;
      }
      throw new Error('no error');
    };
    expect(bad((b) => (b[0] = 0x58)).reason).toBe('bad-magic');
    expect(bad((b) => (b[8] = 9))).toMatchObject({ reason: 'wrong-version', offset: 8 });
    const sum = bad((b) => (b[b.length - 1]! ^= 1));
    expect(sum.reason).toBe('checksum');
    expect(sum.offset).toBe(parseLog(good).records[0]!.offset);
    expect(() => checkCompatible(header, { machineDigest: 'other' })).toThrow(/wrong-machine/);
    const problems = checkCompatible(header, { machineDigest: 'abcd', disks: [{ ...header.disks[0]!, digest: 'd2' }] });
    expect(problems.map((p) => p.reason)).toEqual(['disk-changed']);
    expect(checkCompatible(header, { machineDigest: 'abcd', disks: header.disks })).toEqual([]);
  });

  it('refuses records that go back in time or data after the end', () => {
    const back = build([
      { type: 'input', step: 5, icount: 0, ns: 0, channel: 'q', kind: 'qmp', data: 'a' },
      { type: 'input', step: 4, icount: 0, ns: 0, channel: 'q', kind: 'qmp', data: 'b' },
    ]);
    expect(() => parseLog(back)).toThrow(/goes back/);
    const after = build([
      { type: 'end', step: 5, icount: 0, ns: 0, reason: 'x', trace: 't', inputs: 0 },
      { type: 'input', step: 5, icount: 0, ns: 0, channel: 'q', kind: 'qmp', data: 'b' },
    ]);
    expect(() => parseLog(after)).toThrow(/after the end record/);
  });
});
