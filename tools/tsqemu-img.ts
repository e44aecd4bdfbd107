/**
 * tsqemu-img: qemu-img's commands, options, output and exit codes over tsqemu's qcow2/raw code.
 * create, info, check, map, convert, compare, resize, bitmap.
 */
import cliProgress from 'cli-progress';
import type { Co } from '../src/engine/coroutine.js';
import { MainLoop } from '../src/engine/main-loop.js';
import { BME_FLAG_AUTO, markDirty, newBitmap, storeBitmaps, validateNewBitmap, loadBitmaps } from '../src/block/qcow2/bitmaps.js';
import { checkQcow2, type CheckResult } from '../src/block/qcow2/check.js';
import { createQcow2, formattingLine, resolveCreateOptions, type Qcow2CreateOptions } from '../src/block/qcow2/create.js';
import { ImageError } from '../src/block/qcow2/errors.js';
import { checkExitCode, checkHuman, checkJsonObject, repairedHuman } from '../src/block/image/check-report.js';
import { compareImages, convertImage } from '../src/block/image/convert.js';
import { getopt, GetoptError, has, last, type Parsed } from '../src/block/image/getopt.js';
import { closeImage, openImage, parseFormat, resolveBackingPath, type ImageFormat, type ImageHandle } from '../src/block/image/handle.js';
import { HostFileIO } from '../src/block/image/host-file.js';
import { imageInfo, imageInfoText } from '../src/block/image/info.js';
import { qemuJson } from '../src/block/image/json.js';
import { mapHuman, mapImage, mapJson } from '../src/block/image/map.js';
import { parseSize, parseSizeOrThrow } from '../src/block/image/size.js';

const PROG = 'tsqemu-img';
const loop = new MainLoop();

function run<T>(name: string, co: Co<T>): T {
  return loop.runCoroutine(name, co);
}

/** A user-facing failure: message lines and the exit code. */
class Fail extends Error {
  constructor(
    message: string,
    readonly code = 1,
    /** Printed after the message without the program prefix (error_append_hint). */
    readonly hint = '',
  ) {
    super(message);
  }
}

function out(s: string): void {
  process.stdout.write(s + '\n');
}

function err(s: string): void {
  for (const line of s.split('\n')) process.stderr.write(`${PROG}: ${line}\n`);
}

function fmtOpt(p: Parsed, key = 'f'): string | null {
  return last(p, key) ?? null;
}

function openTop(filename: string, opts: { format: string | null; readOnly: boolean; noBacking?: boolean; forCheck?: boolean; bitmaps?: boolean; unsafeCache?: boolean }): ImageHandle {
  try {
    return run('open', openImage(filename, { format: opts.format === null ? null : parseFormat(opts.format), readOnly: opts.readOnly, noBacking: opts.noBacking ?? false, forCheck: opts.forCheck ?? false, bitmaps: opts.bitmaps ?? true, unsafeCache: opts.unsafeCache ?? false, onMessage: (l) => process.stderr.write(l + '\n') }));
  } catch (e) {
    if (e instanceof ImageError) throw new Fail(`Could not open '${filename}': ${e.message}`);
    throw e;
  }
}

function closeTop(h: ImageHandle): void {
  run('close', closeImage(h));
}

/** -o key=value,key=value with ",," as an escaped comma. */
function parseOptions(text: string): Map<string, string> {
  const m = new Map<string, string>();
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    if (text[i] === ',' && text[i + 1] === ',') {
      cur += ',';
      i++;
    } else if (text[i] === ',') {
      parts.push(cur);
      cur = '';
    } else {
      cur += text[i];
    }
  }
  parts.push(cur);
  for (const p of parts) {
    if (p === '') continue;
    const eq = p.indexOf('=');
    m.set(eq >= 0 ? p.slice(0, eq) : p, eq >= 0 ? p.slice(eq + 1) : 'on');
  }
  return m;
}

function parseBool(key: string, v: string): boolean {
  if (v === 'on' || v === 'true' || v === 'yes') return true;
  if (v === 'off' || v === 'false' || v === 'no') return false;
  throw new ImageError('EINVAL', `Parameter '${key}' expects 'on' or 'off'`);
}

const QCOW2_CREATE_KEYS = ['size', 'compat', 'backing_file', 'backing_fmt', 'cluster_size', 'lazy_refcounts', 'refcount_bits', 'preallocation', 'extended_l2', 'compression_type'];

/** A format to create: "Unknown file format 'x'" (with the file name for create), as qemu-img. */
function targetFormat(name: string, filename: string | null): ImageFormat {
  if (name === 'qcow2' || name === 'raw') return name;
  throw new Fail(`${filename === null ? '' : `${filename}: `}Unknown file format '${name}'`);
}

// ---- create -------------------------------------------------------------------------------------

function qcow2OptionsFrom(o: Map<string, string>, base: Qcow2CreateOptions): Qcow2CreateOptions {
  const r: { -readonly [K in keyof Qcow2CreateOptions]: Qcow2CreateOptions[K] } = { ...base };
  for (const [k, v] of o) {
    if (!QCOW2_CREATE_KEYS.includes(k)) throw new ImageError('EINVAL', `Invalid parameter '${k}'`);
    switch (k) {
      case 'cluster_size': {
        const cs = parseSize(v);
        if (cs === null) throw new ImageError('EINVAL', `Parameter 'cluster_size' expects a non-negative number below 2^64`);
        r.clusterSize = cs;
        break;
      }
      case 'lazy_refcounts':
        r.lazyRefcounts = parseBool(k, v);
        break;
      case 'compat':
        r.compat = v;
        break;
      case 'refcount_bits':
        r.refcountBits = Number(v);
        break;
      case 'backing_file':
        r.backingFile = v;
        break;
      case 'backing_fmt':
        r.backingFormat = v;
        break;
      case 'preallocation':
        if (v !== 'off') throw new ImageError('ENOTSUP', `Unsupported preallocation mode '${v}'`);
        break;
      case 'extended_l2':
        if (parseBool(k, v)) throw new ImageError('ENOTSUP', 'Extended L2 entries are not supported by tsqemu');
        break;
      case 'compression_type':
        if (v !== 'zlib') throw new ImageError('ENOTSUP', `Unsupported compression type '${v}'`);
        break;
    }
  }
  return r;
}

function createImageFile(filename: string, fmt: ImageFormat, size: number, o: Map<string, string>, backing: string | null, backingFmt: string | null, quiet: boolean): void {
  if (fmt === 'raw') {
    for (const k of o.keys()) if (k !== 'size' && k !== 'preallocation') throw new Fail(`${filename}: Invalid parameter '${k}'`);
    if (backing !== null) throw new Fail(`${filename}: Backing file not supported for file format 'raw'`);
    if (!quiet) out(`Formatting '${filename}', fmt=raw size=${size}`);
    const io = HostFileIO.open(filename, { create: true });
    try {
      run('create', io.truncate(size));
    } finally {
      io.close();
    }
    return;
  }
  const opts = qcow2OptionsFrom(o, { sizeBytes: size, backingFile: backing, backingFormat: backingFmt });
  const resolved = resolveCreateOptions(opts);
  if (!quiet) out(formattingLine(filename, resolved));
  const io = HostFileIO.open(filename, { create: true });
  try {
    run('create', createQcow2(io, opts));
  } finally {
    io.close();
  }
}

function cmdCreate(args: string[]): number {
  const p = getopt(args, 'F:b:f:o:quh', [{ name: 'help', hasArg: false, key: 'h' }, { name: 'object', hasArg: true }]);
  const quiet = has(p, 'q');
  const o = parseOptions((p.opts.get('o') ?? []).join(','));
  const [filename, sizeText, ...extra] = p.positional;
  if (filename === undefined) throw new Fail('Expecting image file name');
  const fmt = targetFormat(last(p, 'f') ?? 'raw', filename);
  if (extra.length > 0) throw new Fail(`Unexpected argument: ${extra[0]}`);
  let backing = last(p, 'b') ?? o.get('backing_file') ?? null;
  const backingFmt = last(p, 'F') ?? o.get('backing_fmt') ?? null;
  o.delete('backing_file');
  o.delete('backing_fmt');
  if (backing === '') backing = null;
  let size: number | null = null;
  const sizeArg = sizeText ?? o.get('size');
  o.delete('size');
  if (sizeArg !== undefined) {
    try {
      size = parseSizeOrThrow(sizeArg);
    } catch (e) {
      if (e instanceof ImageError) throw new Fail(e.message);
      throw e;
    }
  }
  if (backing !== null && backingFmt === null) {
    throw new Fail(`${filename}: Backing file specified without backing format`);
  }
  if (backing !== null && !has(p, 'u')) {
    // The backing file must open (and gives the size when none is given).
    const path = resolveBackingPath(filename, backing);
    let bh: ImageHandle;
    try {
      bh = run('open-backing', openImage(path, { format: parseFormat(backingFmt!), readOnly: true }));
    } catch (e) {
      if (e instanceof ImageError) throw new Fail(`${filename}: ${e.message}`, 1, 'Could not open backing image.\n');
      throw e;
    }
    size ??= bh.sizeBytes();
    closeTop(bh);
  }
  if (size === null) throw new Fail(`${filename}: Image creation needs a size parameter`);
  try {
    createImageFile(filename, fmt, size, o, backing, backingFmt, quiet);
  } catch (e) {
    if (e instanceof ImageError) throw new Fail(`${filename}: ${e.message}`);
    throw e;
  }
  return 0;
}

// ---- info ---------------------------------------------------------------------------------------

function actualSize(h: ImageHandle): number {
  return h.file instanceof HostFileIO ? h.file.allocatedBytes : 0;
}

function cmdInfo(args: string[]): number {
  const p = getopt(args, 'f:hU', [
    { name: 'output', hasArg: true },
    { name: 'backing-chain', hasArg: false },
    { name: 'force-share', hasArg: false, key: 'U' },
    { name: 'help', hasArg: false, key: 'h' },
  ]);
  const output = last(p, 'output') ?? 'human';
  if (output !== 'human' && output !== 'json') throw new Fail(`--output must be used with human or json as argument.`);
  const filename = p.positional[0];
  if (filename === undefined) throw new Fail('Expecting one image file name');
  const chain = has(p, 'backing-chain');
  const infos: { [k: string]: unknown }[] = [];
  const seen = new Set<string>();
  let path: string | null = filename;
  let fmt: string | null = fmtOpt(p);
  for (let depth = 0; path !== null && depth < 256; depth++) {
    if (seen.has(path)) throw new Fail(`Backing file '${path}' creates an infinite loop.`);
    seen.add(path);
    const h = openTop(path, { format: fmt, readOnly: true, noBacking: true });
    try {
      infos.push(run('info', imageInfo(h, actualSize(h))));
      const q = h.qcow2;
      if (!chain || q === null || q.header.backingFile === null) path = null;
      else {
        path = resolveBackingPath(path, q.header.backingFile);
        fmt = q.header.backingFormat;
      }
    } finally {
      closeTop(h);
    }
  }
  if (output === 'json') out(qemuJson((chain ? infos : infos[0]) as never));
  else out(infos.map((i) => imageInfoText(i as never, localDate)).join('\n\n'));
  return 0;
}

/** strftime("%Y-%m-%d %H:%M:%S", localtime(sec)), as QEMU prints snapshot dates. */
function localDate(sec: number): string {
  const d = new Date(sec * 1000);
  const p2 = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}`;
}

// ---- check --------------------------------------------------------------------------------------

function cmdCheck(args: string[]): number {
  const p = getopt(args, 'hf:r:T:qU', [
    { name: 'output', hasArg: true },
    { name: 'repair', hasArg: true, key: 'r' },
    { name: 'force-share', hasArg: false, key: 'U' },
    { name: 'help', hasArg: false, key: 'h' },
  ]);
  const output = last(p, 'output') ?? 'human';
  if (output !== 'human' && output !== 'json') throw new Fail(`--output must be used with human or json as argument.`);
  const r = last(p, 'r');
  if (r !== undefined && r !== 'leaks' && r !== 'all') throw new Fail(`Unknown option value for -r (expecting 'leaks' or 'all'): ${r}`, 1, `Try '${PROG} --help' for more information\n`);
  const fix = { leaks: r !== undefined, errors: r === 'all' };
  const quiet = has(p, 'q');
  const filename = p.positional[0];
  if (filename === undefined) throw new Fail('Expecting one image file name');
  const h = openTop(filename, { format: fmtOpt(p), readOnly: r === undefined, noBacking: true, forCheck: true, bitmaps: false });
  try {
    if (h.qcow2 === null) {
      err('This image format does not support checks');
      return 63;
    }
    let res: CheckResult = run('check', checkQcow2(h.qcow2, fix));
    for (const m of res.messages) process.stderr.write(m + '\n');
    let fixed: { leaks: number; corruptions: number } | null = null;
    if (res.leaksFixed > 0 || res.corruptionsFixed > 0) {
      fixed = { leaks: res.leaksFixed, corruptions: res.corruptionsFixed };
      if (output === 'human' && !quiet) out(repairedHuman(res.leaksFixed, res.corruptionsFixed));
      res = run('check', checkQcow2(h.qcow2, { leaks: false, errors: false }));
      for (const m of res.messages) process.stderr.write(m + '\n');
    }
    if (output === 'json') out(qemuJson(checkJsonObject(res, filename, h.format, fixed) as never));
    else if (!quiet) out(checkHuman(res));
    return checkExitCode(res);
  } finally {
    closeTop(h);
  }
}

// ---- map ----------------------------------------------------------------------------------------

function cmdMap(args: string[]): number {
  const p = getopt(args, 'f:hU', [
    { name: 'output', hasArg: true },
    { name: 'start-offset', hasArg: true },
    { name: 'max-length', hasArg: true },
    { name: 'force-share', hasArg: false, key: 'U' },
    { name: 'help', hasArg: false, key: 'h' },
  ]);
  const output = last(p, 'output') ?? 'human';
  if (output !== 'human' && output !== 'json') throw new Fail(`--output must be used with human or json as argument.`);
  const filename = p.positional[0];
  if (filename === undefined) throw new Fail('Expecting one image file name');
  const h = openTop(filename, { format: fmtOpt(p), readOnly: true, bitmaps: false });
  try {
    const size = h.sizeBytes();
    const startText = last(p, 'start-offset');
    const start = startText === undefined ? 0 : parseSize(startText);
    if (start === null) throw new Fail('Invalid start offset specified! You may use k, M, G, T, P or E suffixes for ');
    const maxText = last(p, 'max-length');
    const max = maxText === undefined ? size : parseSize(maxText);
    if (max === null) throw new Fail('Invalid max length specified! You may use k, M, G, T, P or E suffixes for ');
    const begin = Math.min(start, size);
    const entries = run('map', mapImage(h, begin, Math.min(size - begin, max)));
    if (output === 'json') {
      out(mapJson(entries));
      return 0;
    }
    const human = mapHuman(entries);
    out(human.text);
    if (human.error !== null) {
      err(human.error);
      return 1;
    }
    return 0;
  } finally {
    closeTop(h);
  }
}

// ---- convert and compare ------------------------------------------------------------------------

/** Progress like qemu-img -p: a bar on a terminal, "(xx.xx/100%)" updates otherwise. */
function progress(enabled: boolean): { update(f: number): void; stop(): void } {
  if (!enabled) return { update: () => {}, stop: () => {} };
  if (process.stdout.isTTY) {
    const bar = new cliProgress.SingleBar({ format: '    ({percentage}/100%) [{bar}] {eta_formatted}', stream: process.stdout, hideCursor: true }, cliProgress.Presets.shades_classic);
    bar.start(100, 0);
    return { update: (f) => bar.update(Math.floor(f * 10000) / 100), stop: () => bar.stop() };
  }
  let lastShown = -1;
  process.stdout.write('    (0.00/100%)\r');
  return {
    update: (f) => {
      const pct = Math.floor(f * 100);
      if (pct !== lastShown) {
        lastShown = pct;
        process.stdout.write(`    (${(f * 100).toFixed(2)}/100%)\r`);
      }
    },
    stop: () => process.stdout.write('    (100.00/100%)\n'),
  };
}

function cmdConvert(args: string[]): number {
  const p = getopt(args, 'hf:O:B:Cco:l:S:pt:T:qnm:WrU', [
    { name: 'help', hasArg: false, key: 'h' },
    { name: 'target-is-zero', hasArg: false },
    { name: 'force-share', hasArg: false, key: 'U' },
  ]);
  const quiet = has(p, 'q');
  const outFmt = targetFormat(last(p, 'O') ?? 'raw', null);
  if (has(p, 'c') && outFmt !== 'qcow2') throw new Fail('Compression not supported for this file format');
  if (p.positional.length < 2) throw new Fail('Must specify image file name');
  if (p.positional.length > 2) throw new Fail('Converting more than one source image is not supported by tsqemu-img');
  const [srcName, dstName] = p.positional as [string, string];
  const skipCreate = has(p, 'n');
  const src = openTop(srcName, { format: fmtOpt(p), readOnly: true, bitmaps: false });
  try {
    const size = src.sizeBytes();
    if (!skipCreate) {
      const o = parseOptions((p.opts.get('o') ?? []).join(','));
      const backing = last(p, 'B') ?? null;
      try {
        createImageFile(dstName, outFmt, size, o, backing, backing !== null ? (last(p, 'F') ?? null) : null, true);
      } catch (e) {
        if (e instanceof ImageError) throw new Fail(`${dstName}: error while converting ${outFmt}: ${e.message}`);
        throw e;
      }
    }
    // Like qemu-img, the target is written with cache=unsafe unless -t says otherwise.
    const cache = last(p, 't') ?? 'unsafe';
    const dst = openTop(dstName, { format: outFmt, readOnly: false, bitmaps: false, unsafeCache: cache === 'unsafe' });
    try {
      if (skipCreate && dst.sizeBytes() < size) throw new Fail('output file is smaller than input file');
      const bar = progress(has(p, 'p') && !quiet);
      try {
        run('convert', convertImage(src, dst, { targetZeroInit: !skipCreate && dst.backing === null, compress: has(p, 'c'), onProgress: (f) => bar.update(f) }));
      } catch (e) {
        if (e instanceof ImageError) throw new Fail(`error while writing at byte 0: ${e.errnoText}`);
        throw e;
      } finally {
        bar.stop();
      }
    } finally {
      closeTop(dst);
    }
  } finally {
    closeTop(src);
  }
  return 0;
}

function cmdCompare(args: string[]): number {
  const p = getopt(args, 'hf:F:T:pqsU', [
    { name: 'help', hasArg: false, key: 'h' },
    { name: 'force-share', hasArg: false, key: 'U' },
  ]);
  const [a, b] = p.positional;
  if (a === undefined || b === undefined) {
    err('Expecting two image file names');
    return 2;
  }
  const quiet = has(p, 'q');
  let ha: ImageHandle;
  let hb: ImageHandle;
  try {
    ha = openTop(a, { format: fmtOpt(p, 'f'), readOnly: true, bitmaps: false });
  } catch (e) {
    if (e instanceof Fail) {
      err(e.message);
      return 2;
    }
    throw e;
  }
  try {
    try {
      hb = openTop(b, { format: fmtOpt(p, 'F'), readOnly: true, bitmaps: false });
    } catch (e) {
      if (e instanceof Fail) {
        err(e.message);
        return 2;
      }
      throw e;
    }
    try {
      const bar = progress(has(p, 'p') && !quiet);
      const r = run('compare', compareImages(ha, hb, has(p, 's'), (f) => bar.update(f)));
      bar.stop();
      if (r.identical) {
        if (!quiet) out('Images are identical.');
        return 0;
      }
      if ('sizeMismatch' in r) {
        if (!quiet) out('Strict mode: Image size mismatch!');
        return 1;
      }
      if (!quiet) out(`Content mismatch at offset ${r.offset}!`);
      return 1;
    } finally {
      closeTop(hb);
    }
  } finally {
    closeTop(ha);
  }
}

// ---- resize -------------------------------------------------------------------------------------

function cmdResize(args: string[]): number {
  // "-1G" must reach us as a size, not an option: take the last argument first.
  const sizeText = args[args.length - 1];
  if (sizeText === undefined || args.length < 2) throw new Fail('Expecting image file name and size');
  const p = getopt(args.slice(0, -1), 'f:hqU', [
    { name: 'shrink', hasArg: false },
    { name: 'preallocation', hasArg: true },
    { name: 'help', hasArg: false, key: 'h' },
  ]);
  const filename = p.positional[0];
  if (filename === undefined) throw new Fail('Expecting image file name and size');
  const h = openTop(filename, { format: fmtOpt(p), readOnly: false });
  try {
    const cur = h.sizeBytes();
    const rel = sizeText.startsWith('+') || sizeText.startsWith('-');
    const v = parseSize(rel ? sizeText.slice(1) : sizeText);
    if (v === null) throw new Fail('Invalid image size specified. You may use k, M, G, T, P or E suffixes for\nkilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.');
    const target = sizeText.startsWith('+') ? cur + v : sizeText.startsWith('-') ? cur - v : v;
    if (target < 0) throw new Fail('New image size must be positive');
    if (target < cur && !has(p, 'shrink')) {
      throw new Fail(
        'Use the --shrink option to perform a shrink operation.',
        1,
        `${PROG}: warning: Shrinking an image will delete all data beyond the shrunken image's end. Before performing such an operation, make sure there is no important data there.\n`,
      );
    }
    try {
      run('resize', h.truncate(target, true));
    } catch (e) {
      if (e instanceof ImageError) throw new Fail(e.message);
      throw e;
    }
    if (!has(p, 'q')) out('Image resized.');
    return 0;
  } finally {
    closeTop(h);
  }
}

// ---- bitmap -------------------------------------------------------------------------------------

function cmdBitmap(args: string[]): number {
  const p = getopt(args, 'b:f:F:g:h', [
    { name: 'add', hasArg: false },
    { name: 'remove', hasArg: false },
    { name: 'clear', hasArg: false },
    { name: 'enable', hasArg: false },
    { name: 'disable', hasArg: false },
    { name: 'merge', hasArg: true },
    { name: 'granularity', hasArg: true, key: 'g' },
    { name: 'help', hasArg: false, key: 'h' },
  ]);
  const actions = ['add', 'remove', 'clear', 'enable', 'disable', 'merge'].filter((a) => has(p, a));
  if (actions.length === 0) throw new Fail('Need at least one of --add, --remove, --clear, --enable, --disable, or --merge');
  const [filename, name] = p.positional;
  if (filename === undefined || name === undefined) throw new Fail('Expecting filename and bitmap name');
  const gText = last(p, 'g');
  if (gText !== undefined && !has(p, 'add')) throw new Fail('granularity only supported with --add');
  const granularity = gText === undefined ? null : parseSize(gText);
  if (gText !== undefined && granularity === null) throw new Fail('Invalid granularity specified');
  const h = openTop(filename, { format: fmtOpt(p), readOnly: false, bitmaps: false });
  try {
    const q = h.qcow2;
    if (q === null) throw new Fail(`Format '${h.format}' does not support persistent bitmaps`);
    run('bitmap', q.withLock(function* () {
      const list = yield* loadBitmaps(q);
      const find = (): number => {
        const i = list.findIndex((b) => b.name === name);
        if (i < 0) throw new ImageError('ENOENT', `Dirty bitmap '${name}' not found`);
        return i;
      };
      for (const a of ['add', 'merge', 'clear', 'enable', 'disable', 'remove']) {
        if (!has(p, a)) continue;
        switch (a) {
          case 'add': {
            const g = granularity ?? Math.max(65536, q.cs);
            validateNewBitmap(list, name, g);
            list.push(newBitmap(q.sizeBytes, name, g, !has(p, 'disable')));
            break;
          }
          case 'remove':
            list.splice(find(), 1);
            break;
          case 'clear':
            list[find()]!.bits.fill(0);
            break;
          case 'enable':
            list[find()]!.flags |= BME_FLAG_AUTO;
            break;
          case 'disable':
            if (!has(p, 'add')) list[find()]!.flags &= ~BME_FLAG_AUTO;
            break;
          case 'merge': {
            const srcName = last(p, 'merge')!;
            const src = list.find((b) => b.name === srcName);
            if (src === undefined) throw new ImageError('ENOENT', `Dirty bitmap '${srcName}' not found`);
            const dst = list[find()]!;
            // Different granularities: every dirty source chunk dirties the destination range.
            for (let i = 0; i < src.bits.length * 8; i++) {
              if ((src.bits[i >> 3]! & (1 << (i & 7))) !== 0) markDirty(dst, i * src.granularity, Math.min(src.granularity, q.sizeBytes - i * src.granularity));
            }
            break;
          }
        }
      }
      yield* storeBitmaps(q, list);
    }));
    return 0;
  } catch (e) {
    if (e instanceof ImageError) throw new Fail(`Operation ${actions[0]} on bitmap ${name} failed: ${e.message}`);
    throw e;
  } finally {
    closeTop(h);
  }
}

// ---- rebase and commit --------------------------------------------------------------------------

function cmdRebase(args: string[]): number {
  const p = getopt(args, 'hf:F:b:upt:T:qU', [{ name: 'help', hasArg: false, key: 'h' }, { name: 'force-share', hasArg: false, key: 'U' }]);
  const filename = p.positional[0];
  if (filename === undefined) throw new Fail('Expecting one image file name');
  const newBacking = last(p, 'b');
  if (newBacking === undefined) throw new Fail('Must specify backing file (-b)');
  const newFmt = last(p, 'F') ?? null;
  if (newBacking !== '' && newFmt === null) throw new Fail(`Could not change the backing file to '${newBacking}': backing format must be specified`);
  const unsafe = has(p, 'u');
  const top = openTop(filename, { format: fmtOpt(p), readOnly: false, noBacking: unsafe, bitmaps: false });
  try {
    const q = top.qcow2;
    if (q === null) throw new Fail(`Could not change the backing file to '${newBacking}': Operation not supported`);
    if (!unsafe) {
      // Safe mode: wherever the new backing chain reads differently from the old one, copy the
      // old contents into the image first, so the guest-visible data does not change.
      let target: ImageHandle | null = null;
      if (newBacking !== '') {
        const path = resolveBackingPath(filename, newBacking);
        try {
          target = run('open-new-backing', openImage(path, { format: parseFormat(newFmt!), readOnly: true, bitmaps: false }));
        } catch (e) {
          if (e instanceof ImageError) throw new Fail(`Could not open new backing file '${path}': ${e.message}`);
          throw e;
        }
      }
      try {
        const bar = progress(has(p, 'p') && !has(p, 'q'));
        run('rebase', rebaseCopy(top, target, (f) => bar.update(f)));
        bar.stop();
      } finally {
        if (target !== null) closeTop(target);
      }
    }
    run('rebase', q.setBacking(newBacking === '' ? null : newBacking, newFmt));
    return 0;
  } catch (e) {
    if (e instanceof ImageError) throw new Fail(`Could not change the backing file to '${newBacking}': ${e.message}`);
    throw e;
  } finally {
    closeTop(top);
  }
}

function* rebaseCopy(top: ImageHandle, target: ImageHandle | null, onProgress: (f: number) => void): Co<void> {
  const size = top.sizeBytes();
  const q = top.qcow2!;
  const step = Math.max(q.cs, 1 << 20);
  const a = new Uint8Array(step);
  const b = new Uint8Array(step);
  for (let pos = 0; pos < size; ) {
    const st = yield* top.layerStatus(pos, Math.min(step - (pos % step), size - pos));
    if (!st.allocated) {
      const n = st.bytes;
      const oldData = a.subarray(0, n);
      const newData = b.subarray(0, n);
      yield* top.read(pos, oldData);
      newData.fill(0);
      if (target !== null && pos < target.sizeBytes()) yield* target.read(pos, newData.subarray(0, Math.min(n, target.sizeBytes() - pos)));
      // Only clusters that differ get written (each write allocates whole clusters in the image).
      for (let at = 0; at < n; ) {
        const end = Math.min(n, (Math.floor((pos + at) / q.cs) + 1) * q.cs - pos);
        if (Buffer.compare(oldData.subarray(at, end), newData.subarray(at, end)) !== 0) yield* top.write(pos + at, oldData.subarray(at, end));
        at = end;
      }
    }
    pos += st.bytes;
    onProgress(pos / size);
  }
}

function cmdCommit(args: string[]): number {
  const p = getopt(args, 'f:ht:b:dpqr:', [{ name: 'help', hasArg: false, key: 'h' }]);
  const filename = p.positional[0];
  if (filename === undefined) throw new Fail('Expecting one image file name');
  if (has(p, 'b')) throw new Fail('Committing into a base other than the backing file is not supported by tsqemu-img');
  const top = openTop(filename, { format: fmtOpt(p), readOnly: false, noBacking: true, bitmaps: false });
  try {
    const q = top.qcow2;
    if (q === null || q.header.backingFile === null) throw new Fail(`Image does not have a backing file`);
    const basePath = resolveBackingPath(filename, q.header.backingFile);
    const baseFmt = q.header.backingFormat;
    const base = openTop(basePath, { format: baseFmt, readOnly: false, bitmaps: true });
    try {
      const bar = progress(has(p, 'p') && !has(p, 'q'));
      run('commit', (function* (): Co<void> {
        const size = top.sizeBytes();
        if (base.sizeBytes() < size) yield* base.truncate(size, false);
        const buf = new Uint8Array(1 << 20);
        for (let pos = 0; pos < size; ) {
          const st = yield* top.layerStatus(pos, Math.min(buf.length, size - pos));
          if (st.allocated) {
            if (st.zero) yield* base.writeZeroes(pos, st.bytes, false);
            else {
              const chunk = buf.subarray(0, st.bytes);
              yield* top.read(pos, chunk);
              yield* base.write(pos, chunk);
            }
          }
          pos += st.bytes;
          bar.update(pos / size);
        }
        yield* base.flush();
        if (!has(p, 'd')) yield* q.makeEmpty();
      })());
      bar.stop();
    } finally {
      closeTop(base);
    }
  } catch (e) {
    if (e instanceof ImageError) throw new Fail(e.message);
    throw e;
  } finally {
    closeTop(top);
  }
  if (!has(p, 'q')) out('Image committed.');
  return 0;
}

// ---- main ---------------------------------------------------------------------------------------

const USAGE = `${PROG} version 7.2.0 (tsqemu)
usage: ${PROG} [standard options] command [command options]
Deterministic image tool: qemu-img's commands over tsqemu's block layer.

Command syntax:
  bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)... [-f fmt] [-g granularity] filename bitmap
  check [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] filename
  commit [-q] [-f fmt] [-d] [-p] filename
  compare [-f fmt] [-F fmt] [-p] [-q] [-s] filename1 filename2
  convert [-c] [-p] [-q] [-n] [-f fmt] [-O output_fmt] [-o options] filename output_filename
  create [-q] [-f fmt] [-b backing_file -F backing_fmt] [-u] [-o options] filename [size]
  info [-f fmt] [--output=ofmt] [--backing-chain] filename
  map [-f fmt] [--start-offset=offset] [--max-length=len] [--output=ofmt] filename
  rebase [-f fmt] [-p] [-u] -b backing_file -F backing_fmt filename
  resize [-f fmt] [--shrink] [-q] filename [+ | -]size

Supported formats: qcow2 raw`;

export function main(argv: string[]): number {
  const [cmd, ...rest] = argv;
  if (cmd === undefined) {
    err('Not enough arguments\nTry \'tsqemu-img --help\' for more information');
    return 1;
  }
  try {
    switch (cmd) {
      case '-h':
      case '--help':
        out(USAGE);
        return 0;
      case '-V':
      case '--version':
        out(`${PROG} version 7.2.0 (tsqemu 0.1.0)`);
        return 0;
      case 'create':
        return cmdCreate(rest);
      case 'info':
        return cmdInfo(rest);
      case 'check':
        return cmdCheck(rest);
      case 'map':
        return cmdMap(rest);
      case 'convert':
        return cmdConvert(rest);
      case 'compare':
        return cmdCompare(rest);
      case 'resize':
        return cmdResize(rest);
      case 'bitmap':
        return cmdBitmap(rest);
      case 'rebase':
        return cmdRebase(rest);
      case 'commit':
        return cmdCommit(rest);
      default:
        err(`Command not found: ${cmd}`);
        return 1;
    }
  } catch (e) {
    if (e instanceof Fail) {
      err(e.message);
      process.stderr.write(e.hint);
      return e.code;
    }
    if (e instanceof ImageError) {
      err(e.message);
      return 1;
    }
    if (e instanceof GetoptError) {
      err(`${e.message}\nTry '${PROG} --help' for more information`);
      return 1;
    }
    throw e;
  }
}

process.exitCode = main(process.argv.slice(2));
