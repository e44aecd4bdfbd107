import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Socket } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { QtestChardevError, parseQtestChardev } from '../../../src/engine/host/qtest-chardev.js';
import { socketTransport } from '../../../src/engine/host/qtest-process.js';
import { HostLoop } from '../../../src/engine/host/host-loop.js';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { QtestClient, QtestClosedError } from '../../../src/qtest/client.js';
import { startVirtQtest } from '../../../src/qtest/setup.js';
import { buildVirtMachine } from '../../../src/engine/hw/virt/machine.js';

const dir = mkdtempSync(join(tmpdir(), 'qtest-sock-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('qtest over a unix socket (chardev server mode, host loop)', () => {
  it('serves commands, IRQ lines and long lines; logs in QEMU format; records inputs at the gate', async () => {
    const loop = new MainLoop();
    const machine = buildVirtMachine(loop);
    const path = join(dir, 'qtest.sock');
    const logPath = join(dir, 'qtest.log');
    const session = startVirtQtest(machine, { chardev: `unix:${path},server=on,wait=off`, log: logPath, accelQtest: true });
    const kinds: string[] = [];
    loop.gate.observe((i) => kinds.push(i.kind));
    const host = new HostLoop(loop);
    const running = host.run();
    const qt = await QtestClient.connect(`unix:${path}`);
    expect(await qt.raw('endianness')).toBe('OK little');
    await qt.writeq(0x8000_0000, 0x0123456789abcdefn);
    expect(await qt.readq(0x8000_0000)).toBe(0x0123456789abcdefn);
    // 256 KiB through one line each way
    const big = new Uint8Array(256 * 1024).map((_, i) => (i * 31) & 0xff);
    await qt.memwrite(0x8010_0000, big);
    expect(Buffer.compare(await qt.bufread(0x8010_0000, big.length), big)).toBe(0);
    expect(Buffer.compare(await qt.memread(0x8010_0000, big.length), big)).toBe(0);
    await qt.irqInterceptOut('/machine/soc/clint@2000000');
    await qt.writel(0x200_0000, 1);
    expect(qt.getIrq(0)).toBe(true);
    expect(await qt.clockStep(1_000_000)).toBe(1_000_000);
    expect(await qt.raw('writel 0x80000000')).toBe('FAIL value: missing argument');
    expect(await qt.raw('readb 0x80000000')).toBe('OK 0x00000000000000ef');
    await qt.quit();
    await new Promise((r) => setTimeout(r, 50));
    host.stop();
    await running;
    session.close();
    expect(kinds[0]).toBe('qtest-open');
    expect(kinds.at(-1)).toBe('qtest-close');
    expect(kinds.filter((k) => k === 'qtest')).toHaveLength(11);
    const log = readFileSync(logPath, 'latin1').split('\n');
    expect(log[0]).toBe('[I 0.000000] OPENED');
    expect(log[1]).toBe('[R +0.000000] endianness');
    expect(log[2]).toBe('[S +0.000000] OK little');
    expect(log).toContain('[S +0.000000] IRQ raise 0');
    expect(log).toContain('[S +0.001000] OK 1000000');
    expect(log.at(-2)).toBe('[I +0.001000] CLOSED');
  });
});

describe('qtest chardev client mode and errors', () => {
  it('unix:PATH without server=on connects to a listening client (how libqtest starts QEMU)', async () => {
    const path = join(dir, 'listen.sock');
    const listener = createServer();
    await new Promise<void>((r) => listener.listen(path, r));
    const accepted = new Promise<Socket>((r) => listener.once('connection', r));
    const loop = new MainLoop();
    const session = startVirtQtest(buildVirtMachine(loop), { chardev: `unix:${path}`, accelQtest: true });
    const host = new HostLoop(loop);
    const running = host.run();
    await session.chardev.connected;
    const qt = new QtestClient(socketTransport(await accepted));
    expect(await qt.readl(0x1000_1000)).toBe(0x74726976);
    expect(await qt.clockStep(5)).toBe(5);
    await qt.quit();
    host.stop();
    await running;
    session.close();
    listener.close();
  });

  it('tcp:HOST:PORT works the same way', async () => {
    const listener = createServer();
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    const port = (listener.address() as { port: number }).port;
    const accepted = new Promise<Socket>((r) => listener.once('connection', r));
    const loop = new MainLoop();
    const session = startVirtQtest(buildVirtMachine(loop), { chardev: `tcp:127.0.0.1:${port}`, accelQtest: true });
    const host = new HostLoop(loop);
    const running = host.run();
    await session.chardev.connected;
    const qt = new QtestClient(socketTransport(await accepted));
    expect(await qt.raw('readb 0x10000005')).toBe('OK 0x0000000000000060');
    await qt.quit();
    host.stop();
    await running;
    session.close();
    listener.close();
  });

  it('a socket that cannot be reached is a typed error, not a crash', async () => {
    const loop = new MainLoop();
    const session = startVirtQtest(buildVirtMachine(loop), { chardev: `unix:${join(dir, 'nobody.sock')}`, accelQtest: true });
    await expect(session.chardev.connected).rejects.toThrow(/cannot connect to .*nobody\.sock/);
    session.close();
  });

  it('a silent emulator fails the command after the reply timeout instead of hanging', async () => {
    const path = join(dir, 'silent.sock');
    const listener = createServer(() => {});
    await new Promise<void>((r) => listener.listen(path, r));
    const qt = await QtestClient.connect(`unix:${path}`, { replyTimeoutMs: 100 });
    await expect(qt.raw('readl 0x80000000')).rejects.toThrow('no reply from the emulator within 100 ms');
    await expect(qt.raw('endianness')).rejects.toThrow(QtestClosedError);
    await qt.quit();
    listener.close();
  });

  it('parses QEMU chardev spellings', () => {
    expect(parseQtestChardev('stdio')).toEqual({ kind: 'stdio' });
    expect(parseQtestChardev('unix:/tmp/q,server=on,wait=off')).toEqual({ kind: 'unix', path: '/tmp/q', server: true, wait: false });
    expect(parseQtestChardev('unix:/tmp/q,server,nowait')).toEqual({ kind: 'unix', path: '/tmp/q', server: true, wait: false });
    expect(parseQtestChardev('tcp::4444,server=on')).toEqual({ kind: 'tcp', host: 'localhost', port: 4444, server: true, wait: true });
    expect(() => parseQtestChardev('pty')).toThrow(QtestChardevError);
    expect(() => parseQtestChardev('unix:/q,bogus=1')).toThrow(/unknown option/);
  });
});
