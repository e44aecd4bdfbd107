// The stdio chardev (`-qtest stdio`, how fuzzer reproducers are fed): a child process serves a
// virt machine on its stdin/stdout and stops at EOF. Uses the build (npm test builds first).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const dist = join(import.meta.dirname, '..', '..', '..', 'dist', 'src');
const built = existsSync(join(dist, 'qtest', 'setup.js'));
const url = (p: string): string => pathToFileURL(join(dist, p)).href;

const server = `
import { HostLoop } from '${url('engine/host/host-loop.js')}';
import { MainLoop } from '${url('engine/main-loop.js')}';
import { buildVirtMachine } from '${url('engine/hw/virt/machine.js')}';
import { startVirtQtest } from '${url('qtest/setup.js')}';
const loop = new MainLoop();
const session = startVirtQtest(buildVirtMachine(loop), { chardev: 'stdio', accelQtest: true, log: process.argv[1] });
const host = new HostLoop(loop);
let closed = false;
session.chardev.onDisconnect = () => { closed = true; host.kick(); };
await host.run(() => closed && !loop.gate.hasPending);
session.close();
`;

describe.skipIf(!built)(`qtest over stdio ${built ? '' : '(skipped: not built)'}`, () => {
  it('answers a reproducer fed on stdin, in order, and ends at EOF', () => {
    const input = ['readl 0x10001000', 'clock_step 50', 'writel 0x80000000 0x1234', 'readw 0x80000000', 'write 0x80000000 2 0x', 'bogus', 'readb 0x10000005'].join('\n') + '\n';
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', server, '/dev/stderr'], { input, encoding: 'latin1', timeout: 20_000 });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(['OK 0x0000000074726976', 'OK 50', 'OK', 'OK 0x0000000000001234', 'ERR invalid argument size', "FAIL Unknown command 'bogus'", 'OK 0x0000000000000060', ''].join('\n'));
    expect(r.stderr.split('\n')[0]).toBe('[I 0.000000] OPENED');
    expect(r.stderr).toContain('[R +0.000000] clock_step 50\n[S +0.000000] OK 50\n');
    expect(r.stderr.trimEnd().split('\n').at(-1)).toBe('[I +0.000000] CLOSED');
  });
});
