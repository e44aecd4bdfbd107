import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:net';
import { HostLoop } from '../../../src/engine/host/host-loop.js';
import { listenQmp } from '../../../src/engine/host/qmp-transport.js';
import { type Vm, createVm } from '../../../src/system/vm.js';
import { TestQmpClient } from './qmp-client.js';

const GREETING = { QMP: { version: { qemu: { micro: 0, minor: 2, major: 7 }, package: 'tsqemu 0.1.0' }, capabilities: ['oob'] } };
const MAX_TOKEN = 4096;

describe('QMP protocol over a real unix socket', () => {
  let dir: string;
  let path: string;
  let vm: Vm;
  let server: Server;
  let host: HostLoop;
  let running: Promise<void>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tsqemu-qmp-'));
    path = join(dir, 'qmp.sock');
    vm = createVm({ startStopped: true, monitors: [{ name: 'qmp0', chardev: { backend: 'socket-unix', path, server: true, wait: false } }] }, { qmpLimits: { maxTokenSize: MAX_TOKEN } });
    server = await listenQmp(vm.loop.gate, vm.monitors[0]!, { kind: 'unix', path });
    host = new HostLoop(vm.loop);
    running = host.run();
  });

  afterAll(async () => {
    host.stop();
    await running;
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function negotiated(): Promise<TestQmpClient> {
    const c = await TestQmpClient.connect(path);
    await c.waitFor(1);
    expect(await c.command('qmp_capabilities')).toEqual({ return: {} });
    return c;
  }

  it('greets, insists on negotiation, then refuses a second one', async () => {
    const c = await TestQmpClient.connect(path);
    expect((await c.waitFor(1))[0]).toEqual(GREETING);
    expect(await c.command('query-status')).toEqual({ error: { class: 'CommandNotFound', desc: "Expecting capabilities negotiation with 'qmp_capabilities'" } });
    expect(await c.command('nosuch')).toEqual({ error: { class: 'CommandNotFound', desc: "Expecting capabilities negotiation with 'qmp_capabilities'" } });
    expect(await c.command('qmp_capabilities', { enable: ['bogus'] })).toEqual({ error: { class: 'GenericError', desc: "Parameter 'null' does not accept value 'bogus'" } });
    expect(await c.command('qmp_capabilities', undefined, 7)).toEqual({ return: {}, id: 7 });
    expect(await c.command('qmp_capabilities')).toEqual({ error: { class: 'CommandNotFound', desc: 'Capabilities negotiation is already complete, command ignored' } });
    c.close();
  });

  it('echoes any JSON id and answers envelope errors with QEMU wording', async () => {
    const c = await negotiated();
    for (const id of ['x', 0, null, true, [1, { a: 2 }], {}, 'é😀']) {
      expect(await c.command('query-status', undefined, id)).toEqual({ return: { status: 'prelaunch', singlestep: false, running: false }, id });
    }
    const base = c.replies().length;
    c.write('{"foo":1}\n[1,2]\n"str"\n{"execute":1}\n{"execute":"stop","arguments":[1]}\n{"id":5}\n{"execute":"nosuch","id":9}\n{"exec-oob":"query-status"}\n');
    await c.waitFor(base + 1 + 8);
    expect(c.replies().slice(base).map((r) => r['error'])).toEqual([
      { class: 'GenericError', desc: "QMP input member 'foo' is unexpected" },
      { class: 'GenericError', desc: 'QMP input must be a JSON object' },
      { class: 'GenericError', desc: 'QMP input must be a JSON object' },
      { class: 'GenericError', desc: "QMP input member 'execute' must be a string" },
      { class: 'GenericError', desc: "QMP input member 'arguments' must be an object" },
      { class: 'GenericError', desc: "QMP input lacks member 'execute'" },
      { class: 'CommandNotFound', desc: 'The command nosuch has not been found' },
      { class: 'GenericError', desc: "QMP input member 'exec-oob' is unexpected" },
    ]);
    expect(c.replies()[base + 5]!['id']).toBe(5);
    expect(c.replies()[base + 6]!['id']).toBe(9);
    c.close();
  });

  it('recovers from malformed JSON like QEMU and keeps serving', async () => {
    const c = await negotiated();
    const base = c.messages.length;
    // Each line is one of QEMU 7.2's observed cases; replies checked against what it answered.
    c.write('{"execute":"query-status","id":1}}\n@{"execute":"query-status","id":2}\n{execute:"x"}\n{"a" 1}\n{1:2}\n[1 2]\n{"a":1,"a":2}\n{"id":"\\ud800"}\n{"execute":"query-status","id":01}\n{"execute":"query-status",\n"id":3}{"execute":"query-status","id":4}\n');
    const got = await c.waitFor(base + 13);
    const tail = got.slice(base).map((m) => ('error' in m ? (m['error'] as { desc: string }).desc : m['id']));
    expect(tail).toEqual([
      1,
      'JSON parse error, expecting value',
      "JSON parse error, stray '@'",
      2,
      "JSON parse error, invalid keyword 'execute'",
      'JSON parse error, missing : in object pair',
      'JSON parse error, key is not a string in object',
      'JSON parse error, expected separator in list',
      'JSON parse error, duplicate key',
      'JSON parse error, \\ud800 is not a valid Unicode character',
      "JSON parse error, stray '01'",
      'JSON parse error, expecting value',
      3,
    ]);
    expect((await c.waitFor(base + 14))[base + 13]!['id']).toBe(4);
    c.close();
  });

  it('refuses an oversized message with a bounded buffer and keeps serving', async () => {
    const c = await negotiated();
    const base = c.messages.length;
    // A string token longer than the limit, then a message made of many small tokens.
    c.write(`{"execute":"query-status","id":"${'a'.repeat(MAX_TOKEN * 4)}"}\n`);
    c.write(`{"execute":"query-status","arguments":{},"id":[${'1,'.repeat(MAX_TOKEN)}1]}\n`);
    c.write('{"execute":"query-status","id":"after"}\n');
    for (let i = base; ; i++) {
      const msgs = await c.waitFor(i + 1);
      if (msgs[i]!['id'] === 'after') break;
      expect(msgs[i]!['error']).toBeDefined();
    }
    const errors = c.messages.slice(base).filter((m) => 'error' in m).map((m) => (m['error'] as { desc: string }).desc);
    expect(errors).toContain('JSON token size limit exceeded');
    expect(vm.monitors[0]!.sessions.size).toBeGreaterThan(0);
    c.close();
  });

  it('serves other clients when one disconnects mid-command or mid-message', async () => {
    const a = await negotiated();
    const b = await negotiated();
    a.write('{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"gone","size":65536}}\n{"execute":"query-st');
    a.close();
    const c = await negotiated();
    expect(await b.command('query-version')).toMatchObject({ return: { qemu: { major: 7, minor: 2 } } });
    expect(await c.command('blockdev-del', { 'node-name': 'gone' })).toEqual({ return: {} });
    // Events reach every negotiated client.
    await b.command('cont');
    await c.waitFor(c.messages.length);
    expect(b.events().map((e) => e['event'])).toContain('RESUME');
    await b.command('stop');
    expect(c.events().map((e) => e['event'])).toEqual(expect.arrayContaining(['RESUME']));
    const resume = b.events().find((e) => e['event'] === 'RESUME')!;
    expect(resume['timestamp']).toEqual({ seconds: expect.any(Number), microseconds: expect.any(Number) });
    b.close();
    c.close();
  });

  it('serves a tcp listener on the same monitor', async () => {
    const tcp = await listenQmp(vm.loop.gate, vm.monitors[0]!, { kind: 'tcp', host: '127.0.0.1', port: 0 });
    try {
      const port = (tcp.address() as { port: number }).port;
      const c = await TestQmpClient.connectTcp(port);
      expect((await c.waitFor(1))[0]).toEqual(GREETING);
      expect(await c.command('qmp_capabilities', undefined, 'tcp')).toEqual({ return: {}, id: 'tcp' });
      c.close();
    } finally {
      tcp.close();
    }
  });
});
