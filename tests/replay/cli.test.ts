import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const BIN = join(process.cwd(), 'dist/tools/tsqemu-replay.js');
const built = existsSync(BIN);
const dir = mkdtempSync(join(tmpdir(), 'rr-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cli(args: string[], input = '') {
  const r = spawnSync(process.execPath, [BIN, ...args], { input, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe.skipIf(!built)('tsqemu-replay command line (needs npm run build)', () => {
  const disk = join(dir, 'disk.img');
  copyFileSync('fixtures/demo/demo-disk.img', disk);
  const log = join(dir, 'demo.tsqr');
  const args = ['-M', 'virt', '-m', '64M', '-bios', 'none', '-kernel', 'fixtures/demo/demo.elf', '-drive', `file=${disk},if=virtio,format=raw`];

  it('demo records the bundled guest, plays it back and verifies it', () => {
    const r = cli(['demo']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('virtio-blk sector 0 (status 0): tsqemu demo disk');
    expect(r.stdout).toContain('timer tick 3');
    expect(r.stdout).toContain('you typed: hello replay');
    expect(r.stdout).toMatch(/output: +identical/);
    expect(r.stdout).toMatch(/digest: +recorded ([0-9a-f]{16}), replayed \1 \(match\)/);
    expect(r.stdout).toContain('OK: replay verified');
  });

  it('record takes the console from stdin; play reproduces the output with stdin closed; verify exits 0', () => {
    const rec = cli(['record', '-o', log, '--events', '--', ...args], 'first line\rquit\r');
    expect(rec.code, rec.stderr).toBe(0);
    expect(rec.stdout).toContain('you typed: first line');
    expect(rec.stderr).toMatch(/recorded .* \d+ inputs/);
    const play = cli(['play', log]);
    expect(play.code, play.stderr).toBe(0);
    expect(play.stdout).toBe(rec.stdout);
    expect(play.stderr).toMatch(/final digest [0-9a-f]{16} matches/);
    for (let i = 0; i < 3; i++) expect(cli(['verify', log]).code).toBe(0);
    const seek = cli(['seek', log, '3000']);
    expect(seek.code, seek.stderr).toBe(0);
    expect(seek.stdout).toMatch(/^at icount 3000, /);
    expect(seek.stdout).toMatch(/pc +0x8000[0-9a-f]{4}/);
    // play --snapshots keeps the snapshots; seek --snapshots starts from the nearest one and lands
    // on the same state as seek from the start.
    const snaps = join(dir, 'demo.snap');
    const played = cli(['play', log, '--serial', 'null', '--snapshots', snaps]);
    expect(played.code, played.stderr).toBe(0);
    expect(played.stderr).toMatch(/snapshots in .*demo\.snap \((\d+) kept in memory\)/);
    const late = Number(/ (\d+) instructions/.exec(played.stderr)![1]) - 10;
    const fromStart = cli(['seek', log, String(late)]);
    const fromSnap = cli(['seek', log, String(late), '--snapshots', snaps]);
    expect(fromSnap.code, fromSnap.stderr).toBe(0);
    expect(fromSnap.stderr).toMatch(/restoring the snapshot at icount \d+/);
    expect(fromSnap.stdout).toBe(fromStart.stdout);
    const bad = join(dir, 'bad.snap');
    writeFileSync(bad, 'not snapshots');
    const refused = cli(['seek', log, '100', '--snapshots', bad]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/bad\.snap: offset 0: /);
    const info = cli(['info', log]);
    expect(info.stdout).toContain('status:       complete');
    expect(info.stdout).toMatch(/inputs: +\d+ \(chardev \d+\)/);
    const dump = cli(['dump', log, '--events']);
    expect(dump.stdout).toContain('input      chardev');
    expect(dump.stdout).toContain('event      virtio-blk.req');
    // Interrupt lines are events too: the CLINT timer and the virtio transport.
    expect(dump.stdout).toMatch(/event {6}irq line="clint@2000000\[1\]" level=true/);
    expect(dump.stdout).toContain('checkpoint #0');
    const html = join(dir, 't.html');
    expect(cli(['dump', log, '--html', html]).code).toBe(0);
    expect(readFileSync(html, 'utf8')).toContain('input serial0');
  });

  it('a changed disk byte: a warning from the header digest, then the divergence at the checkpoint after the read', () => {
    const original = readFileSync(disk);
    const changed = Buffer.from(original);
    changed[5] = changed[5]! ^ 0x20;
    writeFileSync(disk, changed);
    try {
      const r = cli(['verify', log]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('disk-changed');
      expect(r.stderr).toMatch(/DIVERGENCE \((checkpoint|event)\)/);
    } finally {
      writeFileSync(disk, original);
    }
  });

  it('bad logs: a typed error with the offset and reason, exit 2; a cut log plays to its last record', () => {
    const bytes = readFileSync(log);
    const damaged = Buffer.from(bytes);
    damaged[200] = damaged[200]! ^ 0xff;
    writeFileSync(join(dir, 'bad.tsqr'), damaged);
    const bad = cli(['verify', join(dir, 'bad.tsqr')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/replay log, offset \d+: (checksum|malformed|oversize)/);
    writeFileSync(join(dir, 'notalog'), 'hello');
    expect(cli(['info', join(dir, 'notalog')]).stderr).toMatch(/offset \d+: (truncated|bad-magic)/);
    writeFileSync(join(dir, 'cut.tsqr'), bytes.subarray(0, Math.floor(bytes.length * 0.7)));
    const cut = cli(['play', join(dir, 'cut.tsqr'), '--serial', 'null']);
    expect(cut.stderr).toContain('cut short at offset');
    expect(cut.code, cut.stderr).toBe(0);
  });

  it('tsqemu -icount shift=0,rr=record,rrfile=F then rr=replay: same console output with stdin closed', () => {
    const tsqemu = join(process.cwd(), 'dist/tools/tsqemu.js');
    const rrLog = join(dir, 'rr.tsqr');
    const base = ['-M', 'virt', '-m', '64M', '-bios', 'none', '-kernel', 'fixtures/demo/demo.elf', '-drive', `file=${disk},if=none,id=hd0,format=raw`, '-device', 'virtio-blk-device,drive=hd0', '-nographic'];
    const run = (extra: string, input: string) => spawnSync(process.execPath, [tsqemu, ...base, '-icount', extra], { input, encoding: 'utf8', timeout: 60_000 });
    const rec = run(`shift=0,rr=record,rrfile=${rrLog}`, 'typed in tsqemu\rquit\r');
    expect(rec.status, rec.stderr).toBe(0);
    expect(rec.stdout).toContain('you typed: typed in tsqemu');
    const play = run(`shift=0,rr=replay,rrfile=${rrLog}`, '');
    expect(play.status, play.stderr).toBe(0);
    expect(play.stdout).toBe(rec.stdout);
    expect(cli(['info', rrLog]).stdout).toContain('machine:      tsqemu-virt');
    const noFile = run('shift=0,rr=replay', '');
    expect(noFile.status).toBe(1);
    expect(noFile.stderr).toContain('rr=replay needs rrfile=FILE');
  });

  it('a QMP-only block-job session (tsqemu -M none -qmp stdio) replays to the same replies and events', () => {
    const tsqemu = join(process.cwd(), 'dist/tools/tsqemu.js');
    const rrLog = join(dir, 'qmp.tsqr');
    const commands = [
      { execute: 'qmp_capabilities' },
      { execute: 'blockdev-add', arguments: { driver: 'null-co', 'node-name': 's', size: 4194304 } },
      { execute: 'blockdev-add', arguments: { driver: 'null-co', 'node-name': 't', size: 4194304 } },
      { execute: 'blockdev-backup', arguments: { 'job-id': 'j', device: 's', target: 't', sync: 'full', speed: 1048576 } },
      { execute: 'query-jobs' },
    ];
    const run = (mode: string, input: string) => spawnSync(process.execPath, [tsqemu, '-M', 'none', '-qmp', 'stdio', '-icount', `shift=0,rr=${mode},rrfile=${rrLog}`], { input, encoding: 'utf8', timeout: 60_000 });
    const rec = run('record', commands.map((c) => JSON.stringify(c)).join('\n') + '\n');
    expect(rec.status, rec.stderr).toBe(0);
    expect(rec.stdout).toContain('BLOCK_JOB_COMPLETED');
    const play = run('replay', '');
    expect(play.status, play.stderr).toBe(0);
    expect(play.stdout).toBe(rec.stdout);
    expect(cli(['info', rrLog]).stdout).toMatch(/checkpoints: +\d+ every \d+ steps/);
  });
});
