import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InputGate } from '../../../src/engine/host/input-gate.js';
import { EscapeDecoder } from '../../../src/engine/host/chardev-stdio.js';
import { openChardev } from '../../../src/engine/host/chardev-open.js';
import { ChardevError } from '../../../src/engine/host/chardev-core.js';
import type { SocketChardev } from '../../../src/engine/host/chardev-socket.js';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { AddressSpace } from '../../../src/engine/hw/address-space.js';
import { Ns16550a } from '../../../src/engine/hw/char/ns16550a.js';

describe('chardev backends', () => {
  it('decodes Ctrl-A escapes like QEMU mux', () => {
    const events: string[] = [];
    const d = new EscapeDecoder(() => events.push('quit'), () => events.push('help'));
    expect(Array.from(d.feed(Uint8Array.of(0x61, 0x01, 0x01, 0x62, 0x01)))).toEqual([0x61, 0x01, 0x62]);
    expect(Array.from(d.feed(Uint8Array.of(0x68, 0x63)))).toEqual([0x63]);
    expect(Array.from(d.feed(Uint8Array.of(0x01, 0x78, 0x64)))).toEqual([]);
    expect(events).toEqual(['help', 'quit']);
  });

  it('writes a file backend and rejects bad specs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'chr-'));
    const gate = new InputGate();
    const file = openChardev(`file:${join(dir, 'out.txt')}`, gate, { id: 'serial0' });
    file.write(new TextEncoder().encode('hello\n'));
    file.close();
    expect(readFileSync(join(dir, 'out.txt'), 'utf8')).toBe('hello\n');
    expect(() => openChardev('bogus:x', gate, { id: 's' })).toThrow(ChardevError);
    expect(() => openChardev('tcp:localhost:99999', gate, { id: 's' })).toThrow(ChardevError);
    openChardev('null', gate, { id: 'n' }).write(Uint8Array.of(1));
  });

  it('delivers socket input through the gate into the UART, with flow control', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'chr-'));
    const path = join(dir, 'serial.sock');
    const loop = new MainLoop();
    const as = new AddressSpace();
    const uart = new Ns16550a(loop, '/machine/soc/serial@10000000');
    as.addMmio('uart', 0x1000_0000, 0x100, uart.mmio);
    loop.gate.attach('serial0', uart);
    const chr = openChardev(`unix:${path},server=on,wait=off`, loop.gate, { id: 'serial0' }) as SocketChardev;
    await chr.listening();
    const received: string[] = [];
    const client = connect(path);
    client.on('data', (d) => received.push(d.toString()));
    await new Promise<void>((r) => client.once('connect', () => r()));
    client.write('xyz');
    for (let i = 0; i < 50 && !loop.gate.hasPending; i++) await new Promise((r) => setTimeout(r, 10));
    const got: number[] = [];
    for (let i = 0; i < 10 && got.length < 3; i++) {
      loop.gate.poll();
      if (as.load(0x1000_0005, 1).value & 1) got.push(as.load(0x1000_0000, 1).value);
    }
    expect(String.fromCharCode(...got)).toBe('xyz');
    uart.output = chr;
    as.store(0x1000_0000, 1, 0x21);
    for (let i = 0; i < 50 && received.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(received.join('')).toBe('!');
    client.destroy();
    chr.close();
  });
});

describe('pipe chardev', () => {
  it('reads PATH.in and writes PATH.out when both exist', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'chr-'));
    const base = join(dir, 'p');
    writeFileSync(`${base}.in`, 'in!');
    writeFileSync(`${base}.out`, '');
    const gate = new InputGate();
    const got: number[] = [];
    gate.attach('s', { room: () => 100, deliver: (i) => got.push(...(i.data as Uint8Array)) });
    const chr = openChardev(`pipe:${base}`, gate, { id: 's' });
    chr.write(new TextEncoder().encode('out!'));
    for (let i = 0; i < 50 && !gate.hasPending; i++) await new Promise((r) => setTimeout(r, 10));
    gate.poll();
    chr.close();
    expect(String.fromCharCode(...got)).toBe('in!');
    expect(readFileSync(`${base}.out`, 'utf8')).toBe('out!');
  });
});

describe('stdio chardev', () => {
  it('offers typed bytes to the gate, handles Ctrl-A h and Ctrl-A x, and writes output', async () => {
    const { PassThrough } = await import('node:stream');
    const { StdioChardev } = await import('../../../src/engine/host/chardev-stdio.js');
    const { openSync, closeSync } = await import('node:fs');
    const dir = mkdtempSync(join(tmpdir(), 'chr-'));
    const outPath = join(dir, 'out');
    const fd = openSync(outPath, 'w');
    const stdin = new PassThrough() as unknown as NodeJS.ReadStream;
    const gate = new InputGate();
    const got: number[] = [];
    gate.attach('serial0', { room: () => 100, deliver: (i) => got.push(...(i.data as Uint8Array)) });
    let quit = 0;
    const chr = new StdioChardev('serial0', 'serial0', gate, { stdin, stdoutFd: fd, onQuit: () => quit++ });
    (stdin as unknown as InstanceType<typeof PassThrough>).write(Buffer.from([0x61, 0x01, 0x68, 0x62, 0x01, 0x78]));
    await new Promise((r) => setImmediate(r));
    gate.poll();
    chr.write(new TextEncoder().encode('guest says hi'));
    chr.close();
    closeSync(fd);
    expect(String.fromCharCode(...got)).toBe('ab');
    expect(quit).toBe(1);
    const out = readFileSync(outPath, 'utf8');
    expect(out).toContain('C-a x    exit emulator');
    expect(out).toContain('QEMU: Terminated\n\r');
    expect(out.endsWith('guest says hi')).toBe(true);
  });
});
