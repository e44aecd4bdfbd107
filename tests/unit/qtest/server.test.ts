import { describe, expect, it } from 'vitest';
import { ClockType } from '../../../src/engine/clock.js';
import type { StampedInput } from '../../../src/engine/host/input-gate.js';
import { QtestClient } from '../../../src/qtest/client.js';
import { DEV_BASE, RAM_BASE, testMachine } from './test-machine.js';

/** Runs lines through the gate and returns every line the server wrote (replies and IRQ lines). */
function session(options: Parameters<typeof testMachine>[0] = {}) {
  const m = testMachine(options);
  const out: string[] = [];
  let partial = '';
  m.server.setOutput({ write: (t) => { partial += t; const parts = partial.split('\n'); partial = parts.pop()!; out.push(...parts); } });
  m.loop.gate.offer({ channel: 'qtest', kind: 'qtest-open', data: null });
  const run = (...lines: string[]): string[] => {
    out.length = 0;
    for (const line of lines) m.loop.gate.offer({ channel: 'qtest', kind: 'qtest', data: line });
    m.loop.runUntilIdle();
    return [...out];
  };
  return { ...m, run };
}

describe('qtest server: replies byte for byte', () => {
  it('reads and writes of every width', () => {
    const s = session();
    expect(s.run(`writeq 0x${RAM_BASE.toString(16)} 0x1122334455667788`, `readq 0x${RAM_BASE.toString(16)}`, `readl ${RAM_BASE}`, `readw ${RAM_BASE + 2}`, `readb ${RAM_BASE + 7}`)).toEqual([
      'OK', 'OK 0x1122334455667788', 'OK 0x0000000055667788', 'OK 0x0000000000005566', 'OK 0x0000000000000011',
    ]);
    // values are truncated to the access size, as QEMU's uint8_t data = value
    expect(s.run(`writeb ${RAM_BASE} 0x1ff`, `readb ${RAM_BASE}`)).toEqual(['OK', 'OK 0x00000000000000ff']);
    const dev = (off: number) => `0x${(DEV_BASE + off).toString(16)}`;
    expect(s.run(`readl ${dev(0)}`, `writel ${dev(4)} 0xcafe`, `readl ${dev(4)}`)).toEqual(['OK 0x0000000012345678', 'OK', 'OK 0x000000000000cafe']);
  });

  it('read/write/b64read/b64write/memset', () => {
    const s = session();
    const a = `0x${RAM_BASE.toString(16)}`;
    expect(s.run(`write ${a} 4 0x0102`, `read ${a} 4`, `b64read ${a} 4`, `b64write ${a} 3 AQID`, `read ${a} 4`)).toEqual([
      'OK', 'OK 0x01020000', 'OK AQIAAA==', 'OK', 'OK 0x01020300',
    ]);
    expect(s.run(`memset ${a} 3 0x1ab`, `read ${a} 4`, `memset ${a} 0 1`)).toEqual(['OK', 'OK 0xababab00', 'OK']);
    expect(s.run(`write ${a} 2 0x`, `write ${a} 2 0xzz11`, `read ${a} 2`, `b64read ${a} 0`)).toEqual(['ERR invalid argument size', 'OK', 'OK 0xff11', 'OK ']);
    // ROM ignores writes; unassigned space reads 0
    expect(s.run('writel 0x1000 0', 'readl 0x1000', 'readq 0x0', 'read 0x2000 2')).toEqual(['OK', 'OK 0x00000000efbeadde', 'OK 0x0000000000000000', 'OK 0x0000']);
  });

  it('misc commands and the I/O space of a machine without one', () => {
    const s = session();
    expect(s.run('endianness', 'inb 0x10', 'inw 0x10', 'inl 0x10', 'outb 0x10 1', 'foo bar', ' readl 0')).toEqual([
      'OK little', 'OK 0x00ff', 'OK 0xffff', 'OK 0xffffffff', 'OK', "FAIL Unknown command 'foo'", "FAIL Unknown command ''",
    ]);
    // extra words are ignored, as QEMU only looks at the words it needs
    expect(s.run('readl 0x10  ', 'readl 010')).toEqual(['OK 0x0000000000000000', 'OK 0x0000000000000000']);
  });
});

describe('qtest server: malformed lines answer FAIL and the server keeps serving', () => {
  it('missing arguments, bad numbers, huge sizes, unaligned and out-of-range accesses', () => {
    const s = session();
    const replies = s.run(
      'writel 0x80000000', 'readl', 'readl 0xzz', 'readl 0x10000000000000000', 'read 0x80000000 0', 'read 0x80000000 0xffffffffff',
      'memset 0x80000000 0xffffffffffff 0', 'write 0x80000000 4', 'readq 0xfffffffffffffffc', `readl 0x${(DEV_BASE + 2).toString(16)}`,
      'outb 0x10000 1', 'set_irq_in /machine/sink unnamed-gpio-in 9 1', 'set_irq_in /machine/sink', '', 'clock_step zz', 'clock_set',
    );
    expect(replies).toHaveLength(16);
    for (const r of replies) expect(r).toMatch(/^FAIL /);
    expect(replies[0]).toBe('FAIL value: missing argument');
    expect(replies[8]).toContain('past the end of the 64-bit address space');
    expect(replies[9]).toBe('FAIL unaligned 4-byte device access at 0x10000002');
    // still serving
    expect(s.run('readl 0x80000000')).toEqual(['OK 0x0000000000000000']);
  });

  it('unaligned RAM accesses are fine; unaligned device accesses split as QEMU with unaligned=split', () => {
    expect(session().run('writel 0x80000001 0xaabbccdd', 'readl 0x80000001', 'read 0x80000000 6')).toEqual(['OK', 'OK 0x00000000aabbccdd', 'OK 0x00ddccbbaa00']);
    // the test device only takes 4-byte accesses: QEMU's split into 2-byte accesses reads 0
    expect(session({ unaligned: 'split' }).run(`readl 0x${(DEV_BASE + 2).toString(16)}`)).toEqual(['OK 0x0000000000000000']);
  });

  it('an overlong line (offered as null by the chardev) is answered', () => {
    const s = session();
    s.loop.gate.offer({ channel: 'qtest', kind: 'qtest', data: null });
    expect(s.run('endianness')).toEqual(['FAIL line too long', 'OK little']);
  });
});

describe('qtest server: time and IRQs', () => {
  it('clock_step and clock_set move frozen time and fire timers in order; IRQ lines precede the reply', () => {
    const s = session();
    expect(s.run('irq_intercept_out /machine/dev')).toEqual(['OK']);
    expect(s.run(`writel 0x${(DEV_BASE + 8).toString(16)} 1000`, 'clock_step 999')).toEqual(['OK', 'OK 999']);
    expect(s.run('clock_step 1')).toEqual(['IRQ raise 0', 'OK 1000']);
    expect(s.run(`writel 0x${(DEV_BASE + 0xc).toString(16)} 0`)).toEqual(['IRQ lower 0', 'OK']);
    expect(s.run(`writel 0x${(DEV_BASE + 8).toString(16)} 500`, 'clock_step')).toEqual(['OK', 'IRQ raise 0', 'OK 1500']);
    // nothing armed: clock_step without NS stays put; clock_set never goes back
    expect(s.run('clock_step', 'clock_set 100', 'clock_set 0x1000', 'clock_step -5')).toEqual(['OK 1500', 'OK 1500', 'OK 4096', 'OK 4096']);
    expect(s.run('clock_set 0x20000000000000')[0]).toMatch(/^FAIL time/);
  });

  it('timers fire in deadline order inside one clock_step, on every clock, and not before', () => {
    const s = session();
    const fired: string[] = [];
    const at = (clock: ClockType, name: string, ns: number) => s.loop.newTimer(clock, name, () => fired.push(`${name}@${s.loop.nowNs}`)).mod(ns);
    at(ClockType.Virtual, 'v300', 300);
    at(ClockType.Realtime, 'r100', 100);
    at(ClockType.Virtual, 'v200', 200);
    at(ClockType.Host, 'h250', 250);
    at(ClockType.Virtual, 'v200b', 200);
    s.loop.runUntilIdle();
    expect(fired).toEqual([]); // frozen: nothing moves by itself
    expect(s.run('clock_step 250')).toEqual(['OK 250']);
    expect(fired).toEqual(['r100@100', 'v200@200', 'v200b@200', 'h250@250']);
    expect(s.run('clock_step')).toEqual(['OK 300']);
    expect(fired.at(-1)).toBe('v300@300');
  });

  it('without -accel qtest, clock_step is an unknown command (as QEMU)', () => {
    const s = session({ accelQtest: false });
    expect(s.run('clock_step 10', 'clock_set 10')).toEqual(["FAIL Unknown command 'clock_step'", "FAIL Unknown command 'clock_set'"]);
  });

  it('irq_intercept_in / set_irq_in drive a device input and report it', () => {
    const s = session();
    expect(s.run('irq_intercept_in /machine/nothing', 'irq_intercept_in /machine/sink named')).toEqual(['FAIL Unknown device', 'FAIL Interception of named in-GPIOs not yet supported']);
    expect(s.run('irq_intercept_in /machine/sink', 'set_irq_in /machine/sink unnamed-gpio-in 2 1')).toEqual(['OK', 'IRQ raise 2', 'OK']);
    expect(s.sinkLevels).toEqual([false, false, true, false]);
    expect(s.run('set_irq_in /machine/sink named 1 5', 'set_irq_in /machine/sink unnamed-gpio-in 2 0')).toEqual(['IRQ raise 1', 'OK', 'IRQ lower 2', 'OK']);
    expect(s.run('irq_intercept_in /machine/sink', 'irq_intercept_out /machine/dev')).toEqual(['OK', 'FAIL IRQ intercept already enabled']);
    expect(session().run('irq_intercept_out /machine/sink')).toEqual(['FAIL No intercepts installed']);
  });
});

describe('qtest log', () => {
  it('writes QEMU\'s [I]/[R]/[S] format with the virtual clock', () => {
    const s = session();
    s.run('clock_step 1500000', 'write 0x80000000 1 0x', 'readb 0x80000000');
    s.loop.gate.offer({ channel: 'qtest', kind: 'qtest-close', data: null });
    s.loop.runUntilIdle();
    expect(s.log.text).toBe([
      '[I 0.000000] OPENED',
      '[R +0.000000] clock_step 1500000',
      '[S +0.001500] OK 1500000',
      '[R +0.001500] write 0x80000000 1 0x',
      'ERR invalid argument size',
      '[R +0.001500] readb 0x80000000',
      '[S +0.001500] OK 0x0000000000000000',
      '[I +0.001500] CLOSED',
      '',
    ].join('\n'));
  });
});

describe('qtest client in-process', () => {
  it('speaks through the gate and tracks IRQs', async () => {
    const m = testMachine();
    const inputs: string[] = [];
    m.loop.gate.observe((i) => inputs.push(`${i.kind}:${String(i.data)}`));
    const qt = QtestClient.inProcess(m.loop, m.server);
    await qt.writel(RAM_BASE, 0xdeadbeef);
    expect(await qt.readl(RAM_BASE)).toBe(0xdeadbeef);
    expect(await qt.readq(RAM_BASE)).toBe(0xdeadbeefn);
    await qt.memwrite(RAM_BASE + 8, new Uint8Array([1, 2, 3]));
    expect([...(await qt.memread(RAM_BASE + 8, 4))]).toEqual([1, 2, 3, 0]);
    await qt.bufwrite(RAM_BASE + 16, new Uint8Array([9, 8]));
    expect([...(await qt.bufread(RAM_BASE + 16, 2))]).toEqual([9, 8]);
    await qt.irqInterceptOut('/machine/dev');
    await qt.writel(DEV_BASE + 8, 100);
    expect(qt.getIrq(0)).toBe(false);
    expect(await qt.clockStep()).toBe(100);
    expect(qt.getIrq(0)).toBe(true);
    await expect(qt.command('bogus')).rejects.toThrow("answered 'FAIL Unknown command 'bogus''");
    await qt.quit();
    expect(inputs[0]).toBe('qtest-open:null');
    expect(inputs[1]).toBe(`qtest:writel 0x${RAM_BASE.toString(16)} 0xdeadbeef`);
    expect(inputs.at(-1)).toBe('qtest-close:null');
  });
});

describe('qtest sessions are recordable', () => {
  it('inputs recorded at the gate replay to the same replies, IRQ lines and log on a fresh machine', () => {
    const script = ['irq_intercept_out /machine/dev', `writel 0x${(DEV_BASE + 8).toString(16)} 700`, 'clock_step', 'writeq 0x80000010 0xabcdef', 'read 0x80000010 8', 'clock_step 33', 'bogus'];
    const record = testMachine();
    const recorded: StampedInput[] = [];
    record.loop.gate.observe((i) => recorded.push(i));
    const liveOut: string[] = [];
    record.server.setOutput({ write: (t) => liveOut.push(t) });
    record.loop.gate.offer({ channel: 'qtest', kind: 'qtest-open', data: null });
    for (const line of script) record.loop.gate.offer({ channel: 'qtest', kind: 'qtest', data: line });
    record.loop.gate.offer({ channel: 'qtest', kind: 'qtest-close', data: null });
    record.loop.runUntilIdle();
    expect(recorded).toHaveLength(script.length + 2);

    const replay = testMachine();
    let next = 0;
    replay.loop.gate.replayFrom({ peek: () => recorded[next], take: () => recorded[next++]! });
    const replayOut: string[] = [];
    replay.server.setOutput({ write: (t) => replayOut.push(t) });
    replay.loop.runUntilIdle();
    expect(next).toBe(recorded.length);
    expect(replayOut.join('')).toBe(liveOut.join(''));
    expect(replayOut.join('')).toContain('IRQ raise 0\nOK 700\n');
    expect(replay.log.text).toBe(record.log.text);
    expect(replay.loop.trace.digestHex()).toBe(record.loop.trace.digestHex());
  });
});
