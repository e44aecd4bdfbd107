// Property: whatever line arrives, the server answers it with exactly one OK/FAIL/ERR line (plus any
// IRQ lines), never throws, keeps serving, and two machines fed the same lines answer identically.
// Failures print seed and path; rerun with FC_SEED=<seed> FC_PATH=<path>.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { inProcessVirt } from '../../../src/qtest/virt.js';
import { fcReplayParams } from '../../support/fc-params.js';

const params = { numRuns: 300, ...fcReplayParams() };

const COMMANDS = ['readb', 'readw', 'readl', 'readq', 'writeb', 'writew', 'writel', 'writeq', 'read', 'write', 'b64read', 'b64write', 'memset', 'inb', 'inw', 'inl', 'outb', 'outw', 'outl', 'clock_step', 'clock_set', 'irq_intercept_in', 'irq_intercept_out', 'set_irq_in', 'endianness', 'bogus', ''];
/** Addresses where the virt devices and RAM are, plus wild ones. */
const ADDRESSES = [0x0, 0x1000, 0x100000, 0x101000, 0x2000000, 0x2004000, 0x200bff8, 0xc000000, 0xc002000, 0xc200004, 0x10000000, 0x10000005, 0x10001000, 0x10008050, 0x80000000, 0x80000ffe, 0x87fffffc];
const PATHS = ['/machine/unattached/device[2]', '/machine/unattached/device[14]', '/machine/soc/plic@c000000', 'plic', '/nothing', ''];

const number = fc.oneof(
  fc.constantFrom(...ADDRESSES).map((a) => `0x${a.toString(16)}`),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((v) => `0x${v.toString(16)}`),
  fc.integer({ min: 0, max: 300 }).map(String),
  fc.integer({ min: -5, max: 5 }).map(String),
  fc.constantFrom('0x', '08', '-', 'zz', '0x10000000000000000', '99999999999999999999999', '1e3', ''),
);
const word = fc.oneof(number, fc.constantFrom(...PATHS), fc.constantFrom('unnamed-gpio-in', 'AQID', '0x0102', '0xzz', 'x'), fc.string({ maxLength: 6 }).filter((s) => !s.includes('\n')));
const line = fc.tuple(fc.constantFrom(...COMMANDS), fc.array(word, { maxLength: 5 })).map(([cmd, args]) => [cmd, ...args].join(' '));

function session() {
  const loop = new MainLoop();
  const q = inProcessVirt(loop);
  const out: string[] = [];
  q.server.setOutput({ write: (t) => out.push(t) });
  return { ...q, out };
}

describe('qtest server under random lines (property)', () => {
  it('answers each line with exactly one reply, keeps serving, and is deterministic', () => {
    const a = session();
    const b = session();
    fc.assert(
      fc.property(fc.array(line, { minLength: 1, maxLength: 12 }), (lines) => {
        for (const s of [a, b]) {
          s.out.length = 0;
          for (const l of lines) s.server.processLine(l);
        }
        const replies = a.out.filter((t) => !t.startsWith('IRQ '));
        expect(replies).toHaveLength(lines.length);
        for (const r of replies) expect(r).toMatch(/^(OK|FAIL|ERR)( .*)?\n$/s);
        expect(b.out).toEqual(a.out);
        // still serving
        a.server.processLine('endianness');
        expect(a.out.at(-1)).toBe('OK little\n');
        b.server.processLine('endianness');
      }),
      params,
    );
  });
});
