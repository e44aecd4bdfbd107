import { describe, expect, it } from 'vitest';
import { getopt, GetoptError, splitWords } from '../../../src/block/image/getopt.js';
import { qemuJson } from '../../../src/block/image/json.js';
import { cFixed, cvtstr, parseSize, sizeToStr } from '../../../src/block/image/size.js';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { MemoryByteIO } from '../../../src/block/qcow2/io.js';
import { createQcow2 } from '../../../src/block/qcow2/create.js';
import { openImage } from '../../../src/block/image/handle.js';
import { ImageError } from '../../../src/block/qcow2/errors.js';

describe('sizes as qemu-img parses and prints them', () => {
  it('parses suffixes', () => {
    expect(parseSize('64M')).toBe(64 << 20);
    expect(parseSize('1.5G')).toBe(1.5 * 2 ** 30);
    expect(parseSize('512')).toBe(512);
    expect(parseSize('4k')).toBe(4096);
    expect(parseSize('1Q')).toBeNull();
    expect(parseSize('-1')).toBeNull();
    expect(parseSize('1.5')).toBeNull();
  });

  it('prints size_to_str and cvtstr like QEMU', () => {
    expect(sizeToStr(67108864)).toBe('64 MiB');
    expect(sizeToStr(331776)).toBe('324 KiB');
    expect(sizeToStr(1140850688)).toBe('1.06 GiB');
    expect(sizeToStr(512)).toBe('512 B');
    expect(sizeToStr(0)).toBe('0 B');
    expect(cvtstr(65536)).toBe('64 KiB');
    expect(cvtstr(36000)).toBe('35.156 KiB');
    expect(cvtstr(512)).toBe('512 bytes');
    expect(cvtstr(66912256)).toBe('63.812 MiB'); // glibc rounds the exact tie 63.8125 to even
    expect(cFixed(3.125, 2)).toBe('3.12');
    expect(cFixed(0.1 * 3, 2)).toBe('0.30');
  });
});

describe('getopt like getopt_long', () => {
  it('short, clustered, attached and long options; permutation', () => {
    const p = getopt(['-fqcow2', 'file', '-qv', '--output=json', '-o', 'a=b', '--backing-chain', 'x'], 'f:o:qv', [
      { name: 'output', hasArg: true },
      { name: 'backing-chain', hasArg: false },
    ]);
    expect(p.positional).toEqual(['file', 'x']);
    expect(p.opts.get('f')).toEqual(['qcow2']);
    expect(p.opts.get('o')).toEqual(['a=b']);
    expect(p.opts.get('output')).toEqual(['json']);
    expect(p.opts.has('q') && p.opts.has('v') && p.opts.has('backing-chain')).toBe(true);
  });

  it('reports errors as getopt does', () => {
    expect(() => getopt(['-z'], 'f:')).toThrow(new GetoptError("invalid option -- 'z'"));
    expect(() => getopt(['-f'], 'f:')).toThrow(new GetoptError("option requires an argument -- 'f'"));
    expect(() => getopt(['--nope'], 'f:')).toThrow(new GetoptError("unrecognized option '--nope'"));
  });

  it('splits qemu-io command lines with quotes', () => {
    expect(splitWords(`write -P 0xab 0 "64 k"  'x y'`)).toEqual(['write', '-P', '0xab', '0', '64 k', 'x y']);
  });
});

describe('QEMU JSON pretty printer', () => {
  it('prints nested objects and empty arrays like qobject_to_json_pretty', () => {
    expect(qemuJson({ a: 1, b: { flags: [], c: ['x'] }, d: undefined })).toBe('{\n    "a": 1,\n    "b": {\n        "flags": [\n        ],\n        "c": [\n            "x"\n        ]\n    }\n}');
  });
});

describe('backing chains', () => {
  it('opens iteratively and refuses loops and missing backing files with nested messages', () => {
    const loop = new MainLoop();
    const files = new Map<string, MemoryByteIO>();
    const mk = (name: string, backing: string | null): void => {
      const io = new MemoryByteIO(name);
      loop.runCoroutine('c', createQcow2(io, { sizeBytes: 1 << 20, backingFile: backing, backingFormat: backing === null ? null : 'qcow2' }));
      files.set(name, io);
    };
    const openFile = (p: string): MemoryByteIO => {
      const f = files.get(p);
      if (f === undefined) throw new ImageError('ENOENT');
      return new MemoryByteIO(p, f.bytes);
    };
    mk('/d/a', '/d/b');
    mk('/d/b', '/d/c');
    mk('/d/c', null);
    const h = loop.runCoroutine('o', openImage('/d/a', { readOnly: true, openFile }));
    expect([h.filename, h.backing?.filename, h.backing?.backing?.filename]).toEqual(['/d/a', '/d/b', '/d/c']);
    mk('/d/c', '/d/a');
    expect(() => loop.runCoroutine('o', openImage('/d/a', { readOnly: true, openFile }))).toThrow(/creates an infinite loop/);
    mk('/d/c', '/d/missing');
    expect(() => loop.runCoroutine('o', openImage('/d/a', { readOnly: true, openFile }))).toThrow("Could not open backing file: Could not open backing file: Could not open '/d/missing': No such file or directory");
  });
});
