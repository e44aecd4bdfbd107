import { copyFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTools, filterIo, haveQemuImg, sh, workdir, type Result } from './qemu-img-tools.js';

describe.skipIf(!haveQemuImg)('qcow2 and tools against qemu-img / qemu-io (needs Debian qemu-utils)', () => {
  let tools: { img: string; io: string; dir: string };
  let w: { dir: string; cleanup(): void };
  const ours = (bin: 'img' | 'io', ...args: string[]): Result => sh(process.execPath, [tools[bin], ...args], w.dir);
  const qemu = (bin: 'qemu-img' | 'qemu-io', ...args: string[]): Result => sh(bin, args, w.dir);
  const ioArgs = (cmds: string[]): string[] => cmds.flatMap((c) => ['-c', c]);

  beforeAll(() => {
    tools = buildTools();
    w = workdir();
  });
  afterAll(() => {
    w.cleanup();
    rmSync(tools.dir, { recursive: true, force: true });
  });

  const script = [
    'write -P 0x11 0 64k',
    'write -P 0x22 100000 300000',
    'write -z 640k 128k',
    'write -z -u 64k 4k',
    'discard 1M 256k',
    'write -P 0x33 3M 5000',
    'write -P 0x44 1020k 8k',
  ];
  const verify = [
    'read -P 0x11 0 64k',
    'read -P 0x22 100000 300000',
    'read -P 0 640k 128k',
    'read -P 0x33 3M 5000',
    'read -P 0x44 1020k 8k',
    'read -P 0 1028k 252k',
  ];

  for (const opts of ['cluster_size=65536', 'cluster_size=512', 'cluster_size=4096,lazy_refcounts=on', 'compat=0.10', 'cluster_size=2M,refcount_bits=8']) {
    it(`images we write pass qemu-img check and read back in qemu-io (${opts})`, () => {
      const f = `ours-${opts.replace(/[=,]/g, '_')}.qcow2`;
      const c = ours('img', 'create', '-f', 'qcow2', '-o', opts, f, '4M');
      expect(c.status, c.stderr).toBe(0);
      const wr = ours('io', ...ioArgs(script), f);
      expect(wr.status, wr.stdout + wr.stderr).toBe(0);
      const chk = qemu('qemu-img', 'check', f);
      expect(chk.status, chk.stdout + chk.stderr).toBe(0);
      const rd = qemu('qemu-io', ...ioArgs(verify), f);
      expect(rd.stdout).not.toContain('Pattern verification failed');
      expect(rd.status, rd.stdout + rd.stderr).toBe(0);
    });
  }

  it('the same qemu-io script gives the same output, the same data and the same map as qemu-io', () => {
    qemu('qemu-img', 'create', '-f', 'qcow2', 'a.qcow2', '4M');
    copyFileSync(join(w.dir, 'a.qcow2'), join(w.dir, 'b.qcow2'));
    const cmds = [...script, ...verify, 'map', 'alloc 0 4M', 'length', 'read -v 100000 40', 'read -P 0x99 0 512', 'write 4M 1', 'info'];
    const a = ours('io', ...ioArgs(cmds), 'a.qcow2');
    const b = qemu('qemu-io', ...ioArgs(cmds), 'b.qcow2');
    expect(filterIo(a.stdout)).toBe(filterIo(b.stdout));
    expect(a.status).toBe(b.status);
    expect(qemu('qemu-img', 'compare', 'a.qcow2', 'b.qcow2').status).toBe(0);
    const ma = JSON.parse(qemu('qemu-img', 'map', '--output=json', 'a.qcow2').stdout) as unknown;
    const mb = JSON.parse(qemu('qemu-img', 'map', '--output=json', 'b.qcow2').stdout) as unknown;
    expect(ma).toEqual(mb);
  });

  it("QEMU's images (backing chain, compressed clusters, persistent bitmaps) read right in ours; info and map JSON agree", () => {
    qemu('qemu-img', 'create', '-f', 'qcow2', 'base.qcow2', '4M');
    qemu('qemu-io', ...ioArgs(['write -P 0x55 0 1M', 'write -P 0x66 2M 512k']), 'base.qcow2');
    qemu('qemu-img', 'convert', '-c', '-O', 'qcow2', 'base.qcow2', 'comp.qcow2');
    qemu('qemu-img', 'create', '-f', 'qcow2', '-b', 'comp.qcow2', '-F', 'qcow2', 'top.qcow2');
    qemu('qemu-img', 'bitmap', '--add', '-g', '128k', 'top.qcow2', 'bm0');
    const w1 = qemu('qemu-io', ...ioArgs(['write -P 0x77 512k 64k', 'write -z 2M 64k', 'discard 3M 64k']), 'top.qcow2');
    expect(w1.status, w1.stderr).toBe(0);
    const rd = ours('io', '-r', ...ioArgs(['read -P 0x55 0 512k', 'read -P 0x77 512k 64k', 'read -P 0x55 576k 448k', 'read -P 0 2M 64k', 'read -P 0x66 2112k 448k', 'read -P 0 3M 1M']), 'top.qcow2');
    expect(rd.stdout).not.toContain('verification failed');
    expect(rd.status, rd.stdout + rd.stderr).toBe(0);
    for (const args of [['info', '--output=json'], ['info', '--output=json', '--backing-chain'], ['map', '--output=json'], ['check', '--output=json']]) {
      const a = ours('img', ...args, 'top.qcow2');
      const b = qemu('qemu-img', ...args, 'top.qcow2');
      expect(a.status, a.stderr).toBe(b.status);
      expect(JSON.parse(a.stdout)).toEqual(JSON.parse(b.stdout));
    }
    for (const args of [['info'], ['map'], ['check']]) {
      expect(ours('img', ...args, 'comp.qcow2').stdout).toBe(qemu('qemu-img', ...args, 'comp.qcow2').stdout);
    }
    // Whole-disk comparison: our convert of the chain equals QEMU's, and compare agrees both ways.
    expect(ours('img', 'convert', '-O', 'raw', 'top.qcow2', 'ours.raw').status).toBe(0);
    expect(qemu('qemu-img', 'convert', '-O', 'raw', 'top.qcow2', 'qemu.raw').status).toBe(0);
    expect(qemu('qemu-img', 'compare', '-f', 'raw', '-F', 'raw', 'ours.raw', 'qemu.raw').status).toBe(0);
    expect(ours('img', 'compare', 'top.qcow2', 'qemu.raw').stdout).toBe('Images are identical.\n');
  });

  for (const opts of ['compat=0.10', 'refcount_bits=1,cluster_size=4096', 'cluster_size=512', 'lazy_refcounts=on', 'refcount_bits=64,cluster_size=2M']) {
    it(`QEMU's images with ${opts} read right in ours, and check/map/info agree`, () => {
      const f = `q-${opts.replace(/[=,]/g, '_')}.qcow2`;
      expect(qemu('qemu-img', 'create', '-f', 'qcow2', '-o', opts, f, '4M').status).toBe(0);
      expect(qemu('qemu-io', ...ioArgs(script), f).status).toBe(0);
      const rd = ours('io', '-r', ...ioArgs(verify), f);
      expect(rd.stdout).not.toContain('verification failed');
      expect(rd.status, rd.stdout + rd.stderr).toBe(0);
      for (const args of [['info', '--output=json'], ['map', '--output=json'], ['check', '--output=json']]) {
        const a = ours('img', ...args, f);
        const b = qemu('qemu-img', ...args, f);
        expect(a.status, a.stderr).toBe(b.status);
        expect(JSON.parse(a.stdout)).toEqual(JSON.parse(b.stdout));
      }
      // And our writes on top of QEMU's metadata keep qemu-img check happy.
      expect(ours('io', ...ioArgs(['write -P 0x5 2M 200k', 'discard 0 64k']), f).status).toBe(0);
      const chk = qemu('qemu-img', 'check', f);
      expect(chk.status, chk.stdout + chk.stderr).toBe(0);
    });
  }

  it('bitmaps we store are seen by QEMU, and writes through ours mark them', () => {
    ours('img', 'create', '-f', 'qcow2', 'bm.qcow2', '8M');
    expect(ours('img', 'bitmap', '--add', '-g', '64k', 'bm.qcow2', 'b1').status).toBe(0);
    expect(ours('img', 'bitmap', '--add', '--disable', 'bm.qcow2', 'b2').status).toBe(0);
    expect(ours('io', ...ioArgs(['write 1M 100k'])).status).not.toBe(0); // no file: fails cleanly
    expect(ours('io', ...ioArgs(['write 1M 100k']), 'bm.qcow2').status).toBe(0);
    expect(qemu('qemu-img', 'check', 'bm.qcow2').status).toBe(0);
    const info = JSON.parse(qemu('qemu-img', 'info', '--output=json', 'bm.qcow2').stdout) as { 'format-specific': { data: { bitmaps: unknown } } };
    expect(info['format-specific'].data.bitmaps).toEqual([
      { flags: ['auto'], name: 'b1', granularity: 65536 },
      { flags: [], name: 'b2', granularity: 65536 },
    ]);
    // QEMU copies only dirty clusters with an incremental convert of the bitmap.
    const conv = qemu('qemu-img', 'convert', '-f', 'qcow2', '-O', 'qcow2', '--bitmaps', 'bm.qcow2', 'bm-copy.qcow2');
    expect(conv.status, conv.stderr).toBe(0);
    expect(JSON.parse(ours('img', 'info', '--output=json', 'bm-copy.qcow2').stdout)).toEqual(JSON.parse(qemu('qemu-img', 'info', '--output=json', 'bm-copy.qcow2').stdout));
    expect(ours('img', 'bitmap', '--remove', 'bm.qcow2', 'b2').status).toBe(0);
    expect(qemu('qemu-img', 'check', 'bm.qcow2').status).toBe(0);
  });

  it('check: same findings and exit codes as qemu-img on a damaged image; our repair satisfies qemu-img', () => {
    qemu('qemu-img', 'create', '-f', 'qcow2', 'd.qcow2', '4M');
    qemu('qemu-io', ...ioArgs(['write 0 128k']), 'd.qcow2');
    // Bump the refcount of cluster 5 (a data cluster) to 5: a leak and an OFLAG_COPIED error.
    const buf = Buffer.from([0, 5]);
    writeFileSync(join(w.dir, 'patch.bin'), buf);
    expect(sh('dd', ['if=patch.bin', 'of=d.qcow2', 'bs=1', `seek=${0x20000 + 10}`, 'conv=notrunc', 'status=none'], w.dir).status).toBe(0);
    const a = ours('img', 'check', 'd.qcow2');
    const b = qemu('qemu-img', 'check', 'd.qcow2');
    expect(a.status).toBe(2);
    expect(a.status).toBe(b.status);
    expect(a.stdout).toBe(b.stdout);
    expect(a.stderr).toBe(b.stderr);
    const aj = ours('img', 'check', '--output=json', 'd.qcow2');
    const bj = qemu('qemu-img', 'check', '--output=json', 'd.qcow2');
    expect(JSON.parse(aj.stdout)).toEqual(JSON.parse(bj.stdout));
    const leaks = ours('img', 'check', '-r', 'leaks', 'd.qcow2');
    expect(leaks.stdout).toContain('1 leaked clusters');
    const fixed = qemu('qemu-img', 'check', 'd.qcow2');
    expect(fixed.status, fixed.stdout + fixed.stderr).toBe(0);
  });

  it('an overlapping write marks the image corrupt so QEMU sees it; check -r all (ours) clears it for QEMU', () => {
    qemu('qemu-img', 'create', '-f', 'qcow2', 'c.qcow2', '4M');
    qemu('qemu-io', ...ioArgs(['write -P 1 0 64k']), 'c.qcow2');
    // Point guest cluster 0's L2 entry (L2 table at 0x40000) at the L1 table (0x30000).
    writeFileSync(join(w.dir, 'entry.bin'), Buffer.from([0x80, 0, 0, 0, 0, 3, 0, 0]));
    expect(sh('dd', ['if=entry.bin', 'of=c.qcow2', 'bs=1', `seek=${0x40000}`, 'conv=notrunc', 'status=none'], w.dir).status).toBe(0);
    const wr = ours('io', ...ioArgs(['write -P 2 0 512']), 'c.qcow2');
    expect(wr.stdout).toContain('write failed: Input/output error');
    expect(wr.stderr).toContain('qcow2: Marking image as corrupt: Preventing invalid write on metadata (overlaps with active L1 table); further corruption events will be suppressed');
    const info = JSON.parse(qemu('qemu-img', 'info', '--output=json', 'c.qcow2').stdout) as { 'format-specific': { data: { corrupt: boolean } } };
    expect(info['format-specific'].data.corrupt).toBe(true);
    expect(qemu('qemu-io', ...ioArgs(['write 0 512']), 'c.qcow2').stderr).toContain('Image is corrupt; cannot be opened read/write');
    // Check and repair find and print exactly what qemu-img finds and prints (on a copy).
    copyFileSync(join(w.dir, 'c.qcow2'), join(w.dir, 'c2.qcow2'));
    for (const args of [['check'], ['check', '-r', 'all']]) {
      const a = ours('img', ...args, 'c.qcow2');
      const b = qemu('qemu-img', ...args, 'c2.qcow2');
      expect([a.status, a.stdout, a.stderr]).toEqual([b.status, b.stdout, b.stderr]);
    }
    const after = JSON.parse(qemu('qemu-img', 'info', '--output=json', 'c.qcow2').stdout) as { 'format-specific': { data: { corrupt: boolean } } };
    expect(after['format-specific'].data.corrupt).toBe(false);
    expect(qemu('qemu-img', 'check', 'c.qcow2').status).toBe(0);
  });

  it('a lazy-refcounts image left dirty by us is repaired by QEMU on open, and vice versa', () => {
    ours('img', 'create', '-f', 'qcow2', '-o', 'lazy_refcounts=on', 'lz.qcow2', '4M');
    // Mark it dirty as a crash would leave it (dirty bit set, refcounts behind).
    writeFileSync(join(w.dir, 'dirty.bin'), Buffer.from([1]));
    expect(sh('dd', ['if=dirty.bin', 'of=lz.qcow2', 'bs=1', 'seek=79', 'conv=notrunc', 'status=none'], w.dir).status).toBe(0);
    expect(JSON.parse(qemu('qemu-img', 'info', '--output=json', 'lz.qcow2').stdout)['dirty-flag']).toBe(true);
    expect(ours('io', ...ioArgs(['write -P 9 0 64k']), 'lz.qcow2').status).toBe(0);
    expect(JSON.parse(qemu('qemu-img', 'info', '--output=json', 'lz.qcow2').stdout)['dirty-flag']).toBe(false);
    expect(qemu('qemu-img', 'check', 'lz.qcow2').status).toBe(0);
    expect(sh('dd', ['if=dirty.bin', 'of=lz.qcow2', 'bs=1', 'seek=79', 'conv=notrunc', 'status=none'], w.dir).status).toBe(0);
    expect(qemu('qemu-io', ...ioArgs(['read -P 9 0 64k']), 'lz.qcow2').status).toBe(0);
    expect(JSON.parse(ours('img', 'info', '--output=json', 'lz.qcow2').stdout)['dirty-flag']).toBe(false);
  });

  it('rebase (safe and unsafe) and commit give the same data and map as qemu-img', () => {
    for (const prefix of ['q', 'o']) {
      qemu('qemu-img', 'create', '-f', 'qcow2', `${prefix}0.qcow2`, '1M');
      qemu('qemu-io', ...ioArgs(['write -P 1 0 512k']), `${prefix}0.qcow2`);
      qemu('qemu-img', 'create', '-f', 'qcow2', '-b', `${prefix}0.qcow2`, '-F', 'qcow2', `${prefix}1.qcow2`);
      qemu('qemu-io', ...ioArgs(['write -P 2 256k 64k', 'write -z 400k 64k']), `${prefix}1.qcow2`);
      qemu('qemu-img', 'create', '-f', 'qcow2', '-b', `${prefix}1.qcow2`, '-F', 'qcow2', `${prefix}2.qcow2`);
      qemu('qemu-io', ...ioArgs(['write -P 3 0 4k']), `${prefix}2.qcow2`);
    }
    expect(qemu('qemu-img', 'rebase', '-b', 'q0.qcow2', '-F', 'qcow2', 'q2.qcow2').status).toBe(0);
    expect(ours('img', 'rebase', '-b', 'o0.qcow2', '-F', 'qcow2', 'o2.qcow2').status).toBe(0);
    const strip = (json: string): unknown => (JSON.parse(json) as object[]).map((e) => ({ ...e }));
    expect(strip(qemu('qemu-img', 'map', '--output=json', 'o2.qcow2').stdout)).toEqual(strip(qemu('qemu-img', 'map', '--output=json', 'q2.qcow2').stdout));
    expect(qemu('qemu-img', 'compare', 'o2.qcow2', 'q2.qcow2').status).toBe(0);
    expect(qemu('qemu-img', 'commit', 'q2.qcow2').stdout).toBe('Image committed.\n');
    expect(ours('img', 'commit', 'o2.qcow2').stdout).toBe('Image committed.\n');
    expect(qemu('qemu-img', 'compare', 'o0.qcow2', 'q0.qcow2').status).toBe(0);
    expect(qemu('qemu-img', 'compare', 'o2.qcow2', 'q2.qcow2').status).toBe(0);
    expect(qemu('qemu-img', 'check', 'o0.qcow2').status).toBe(0);
    expect(qemu('qemu-img', 'check', 'o2.qcow2').status).toBe(0);
    expect(ours('img', 'rebase', '-u', '-b', '', 'o2.qcow2').status).toBe(0);
    expect(JSON.parse(qemu('qemu-img', 'info', '--output=json', 'o2.qcow2').stdout)['backing-filename']).toBeUndefined();
  });

  it('images with internal snapshots: info/check agree, our writes keep the snapshots intact', () => {
    qemu('qemu-img', 'create', '-f', 'qcow2', 'sn.qcow2', '1M');
    qemu('qemu-io', ...ioArgs(['write -P 1 0 128k']), 'sn.qcow2');
    expect(qemu('qemu-img', 'snapshot', '-c', 'snap1', 'sn.qcow2').status).toBe(0);
    qemu('qemu-io', ...ioArgs(['write -P 2 64k 128k']), 'sn.qcow2');
    for (const args of [['info'], ['info', '--output=json'], ['check'], ['map', '--output=json']]) {
      expect(ours('img', ...args, 'sn.qcow2').stdout).toBe(qemu('qemu-img', ...args, 'sn.qcow2').stdout);
    }
    const wr = ours('io', ...ioArgs(['read -P 1 0 64k', 'read -P 2 64k 128k', 'write -P 5 0 300k', 'discard 0 64k', 'write -z 512k 64k']), 'sn.qcow2');
    expect(wr.stdout).not.toContain('failed');
    expect(qemu('qemu-img', 'check', 'sn.qcow2').status).toBe(0);
    expect(ours('img', 'resize', 'sn.qcow2', '2M').stderr).toContain("Can't resize an image which has snapshots");
    expect(qemu('qemu-img', 'snapshot', '-a', 'snap1', 'sn.qcow2').status).toBe(0);
    const back = ours('io', '-r', ...ioArgs(['read -P 1 0 128k', 'read -P 0 128k 896k']), 'sn.qcow2');
    expect(back.stdout).not.toContain('verification failed');
  });

  it('compressed writes: convert -c and write -c match qemu-img/qemu-io (output, data, map, check)', () => {
    qemu('qemu-img', 'create', '-f', 'qcow2', 'csrc.qcow2', '4M');
    qemu('qemu-io', ...ioArgs(script), 'csrc.qcow2');
    expect(ours('img', 'convert', '-c', '-O', 'qcow2', 'csrc.qcow2', 'c-ours.qcow2').status).toBe(0);
    expect(qemu('qemu-img', 'convert', '-c', '-O', 'qcow2', 'csrc.qcow2', 'c-qemu.qcow2').status).toBe(0);
    expect(qemu('qemu-img', 'compare', 'c-ours.qcow2', 'csrc.qcow2').status).toBe(0);
    const ca = JSON.parse(qemu('qemu-img', 'check', '--output=json', 'c-ours.qcow2').stdout) as Record<string, unknown>;
    const cb = JSON.parse(qemu('qemu-img', 'check', '--output=json', 'c-qemu.qcow2').stdout) as Record<string, unknown>;
    expect({ ...ca, filename: '' }).toEqual({ ...cb, filename: '' });
    qemu('qemu-img', 'create', '-f', 'qcow2', 'cw1.qcow2', '1M');
    copyFileSync(join(w.dir, 'cw1.qcow2'), join(w.dir, 'cw2.qcow2'));
    const cmds = ['write -c -P 7 0 64k', 'write -c -P 8 64k 64k', 'write -c 0 64k', 'write -c 1000 64k', 'write -P 9 70k 1k', 'discard 0 64k', 'read -P 8 64k 6k', 'read -P 9 70k 1k'];
    const a = ours('io', ...ioArgs(cmds), 'cw1.qcow2');
    const b = qemu('qemu-io', ...ioArgs(cmds), 'cw2.qcow2');
    expect(filterIo(a.stdout)).toBe(filterIo(b.stdout));
    expect(qemu('qemu-img', 'compare', 'cw1.qcow2', 'cw2.qcow2').status).toBe(0);
    expect(JSON.parse(qemu('qemu-img', 'map', '--output=json', 'cw1.qcow2').stdout)).toEqual(JSON.parse(qemu('qemu-img', 'map', '--output=json', 'cw2.qcow2').stdout));
    expect(qemu('qemu-img', 'check', 'cw1.qcow2').status).toBe(0);
  });

  it('qemu-io command errors (argument counts, bad numbers, bad options, out of range) print as in qemu-io', () => {
    qemu('qemu-img', 'create', '-f', 'qcow2', 'err1.qcow2', '1M');
    copyFileSync(join(w.dir, 'err1.qcow2'), join(w.dir, 'err2.qcow2'));
    const cmds = ['read', 'read 0', 'read x 1', 'read 0 1y', 'write -P 300 0 1', 'write -P 1 -z 0 1', 'write -u 0 1', 'read -P 1 -s 10 -l 10 0 5', 'alloc', 'discard 0 2M', 'write 2M 1', 'read -1 1', 'aio_read 0', 'length extra', 'read -P 1 0 1 2', 'write -Q 0 1', 'nosuchcmd'];
    const a = ours('io', ...ioArgs(cmds), 'err1.qcow2');
    const b = qemu('qemu-io', ...ioArgs(cmds), 'err2.qcow2');
    expect([a.stdout, a.stderr, a.status]).toEqual([b.stdout, b.stderr, b.status]);
  });

  it('bad input: the tools fail with QEMU-like messages, never a stack trace', () => {
    writeFileSync(join(w.dir, 'junk.qcow2'), Buffer.alloc(1000, 7));
    const r = ours('io', '-f', 'qcow2', ...ioArgs(['read 0 1']), 'junk.qcow2');
    expect(r.stderr).toBe("tsqemu-io: can't open device junk.qcow2: Image is not in qcow2 format\n");
    expect(r.status).toBe(1);
    const i = ours('img', 'info', '-f', 'qcow2', 'junk.qcow2');
    expect(i.stderr).toBe("tsqemu-img: Could not open 'junk.qcow2': Image is not in qcow2 format\n");
    qemu('qemu-img', 'create', '-f', 'qcow2', 'loop1.qcow2', '1M');
    qemu('qemu-img', 'create', '-f', 'qcow2', '-b', 'loop1.qcow2', '-F', 'qcow2', 'loop2.qcow2');
    qemu('qemu-img', 'rebase', '-u', '-b', 'loop2.qcow2', '-F', 'qcow2', 'loop1.qcow2');
    const l = ours('io', ...ioArgs(['read 0 1']), 'loop2.qcow2');
    expect(l.stderr).toContain('creates an infinite loop');
    expect(l.stderr).not.toContain('    at ');
    const li = ours('img', 'info', '--backing-chain', 'loop2.qcow2');
    expect(li.status).toBe(1);
    expect(li.stderr).toContain('creates an infinite loop');
    const c = ours('img', 'create', '-f', 'qcow2', '-o', 'cluster_size=1000', 'x.qcow2', '1M');
    expect(c.stderr).toBe('tsqemu-img: x.qcow2: Cluster size must be a power of two between 512 and 2048k\n');
  });
});
