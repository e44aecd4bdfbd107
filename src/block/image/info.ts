/** `qemu-img info`: the ImageInfo object (same keys and order as QEMU 7.2) and its text form. */
import type { Co } from '../../engine/coroutine.js';
import { BME_FLAG_AUTO, BME_FLAG_IN_USE, readBitmapDirectory } from '../qcow2/bitmaps.js';
import type { ImageHandle } from './handle.js';
import { resolveBackingPath } from './handle.js';
import type { Json } from './json.js';
import { sizeToStr } from './size.js';

export interface ImageInfo {
  [key: string]: Json | undefined;
}

/** Builds the info object for one layer. `actualSize` is the host allocation (st_blocks*512). */
export function* imageInfo(h: ImageHandle, actualSize: number): Co<ImageInfo> {
  const info: ImageInfo = {};
  const q = h.qcow2;
  if (q !== null && q.snapshots.length > 0) {
    info['snapshots'] = q.snapshots.map((sn) => ({
      icount: sn.icount >= 0n ? Number(sn.icount) : undefined,
      'vm-clock-nsec': Number(sn.vmClockNsec % 1_000_000_000n),
      name: sn.name,
      'date-sec': sn.dateSec,
      'date-nsec': sn.dateNsec,
      'vm-clock-sec': Number(sn.vmClockNsec / 1_000_000_000n),
      id: sn.id,
      'vm-state-size': sn.vmStateSize,
    }));
  }
  if (q !== null && q.header.backingFile !== null && q.header.backingFormat !== null) info['backing-filename-format'] = q.header.backingFormat;
  info['virtual-size'] = h.sizeBytes();
  info['filename'] = h.filename;
  if (q !== null) info['cluster-size'] = q.cs;
  info['format'] = h.format;
  info['actual-size'] = actualSize;
  if (q !== null) {
    const data: { [key: string]: Json } = {};
    if (q.version >= 3) {
      data['compat'] = '1.1';
      data['compression-type'] = 'zlib';
      data['lazy-refcounts'] = q.lazyRefcounts;
      const dir = yield* readBitmapDirectory(q);
      if (dir.length > 0) {
        data['bitmaps'] = dir.map((e) => {
          const flags: string[] = [];
          if ((e.flags & BME_FLAG_IN_USE) !== 0) flags.push('in-use');
          if ((e.flags & BME_FLAG_AUTO) !== 0) flags.push('auto');
          return { flags, name: e.name, granularity: 2 ** e.granularityBits };
        });
      }
      data['refcount-bits'] = q.refcountBits;
      data['corrupt'] = q.corrupt;
      data['extended-l2'] = false;
    } else {
      data['compat'] = '0.10';
      data['compression-type'] = 'zlib';
      data['refcount-bits'] = q.refcountBits;
    }
    info['format-specific'] = { type: 'qcow2', data };
    if (q.header.backingFile !== null) {
      info['full-backing-filename'] = resolveBackingPath(h.filename, q.header.backingFile);
      info['backing-filename'] = q.header.backingFile;
    }
  }
  info['dirty-flag'] = q !== null ? q.dirty : false;
  return info;
}

function textValue(v: Json, indent: string, out: string[], key: string): void {
  if (Array.isArray(v)) {
    out.push(`${indent}${key}:`);
    v.forEach((item, i) => textValue(item, indent + '    ', out, `[${i}]`));
  } else if (v !== null && typeof v === 'object') {
    out.push(`${indent}${key}:`);
    for (const [k, val] of Object.entries(v)) if (val !== undefined) textValue(val, indent + '    ', out, k.replace(/-/g, ' '));
  } else {
    out.push(`${indent}${key}: ${String(v)}`);
  }
}

/** "YYYY-MM-DD HH:MM:SS" of a snapshot date; the tools pass local time (QEMU's strftime). */
export type DateFormatter = (sec: number) => string;

function snapshotList(list: readonly { [k: string]: Json | undefined }[], formatDate: DateFormatter): string[] {
  const row = (a: string, b: string, c: string, d: string, e: string, f: string): string => `${a.padEnd(9)} ${b.padEnd(17)} ${c.padStart(7)}${d.padStart(20)}${e.padStart(13)}${f.padStart(11)}`;
  const out = ['Snapshot list:', row('ID', 'TAG', 'VM SIZE', 'DATE', 'VM CLOCK', 'ICOUNT')];
  for (const sn of list) {
    const secs = Number(sn['vm-clock-sec']);
    const p2 = (n: number): string => String(n).padStart(2, '0');
    const clock = `${p2(Math.floor(secs / 3600))}:${p2(Math.floor(secs / 60) % 60)}:${p2(secs % 60)}.${String(Math.floor(Number(sn['vm-clock-nsec']) / 1e6)).padStart(3, '0')}`;
    out.push(row(String(sn['id']), String(sn['name']), sizeToStr(Number(sn['vm-state-size'])), formatDate(Number(sn['date-sec'])), clock, sn['icount'] === undefined ? '' : String(sn['icount'])));
  }
  return out;
}

/** The human-readable form (bdrv_image_info_dump). */
export function imageInfoText(info: ImageInfo, formatDate: DateFormatter = () => ''): string {
  const out: string[] = [];
  out.push(`image: ${String(info['filename'])}`);
  out.push(`file format: ${String(info['format'])}`);
  const vsize = Number(info['virtual-size']);
  out.push(`virtual size: ${sizeToStr(vsize)} (${vsize} bytes)`);
  out.push(`disk size: ${sizeToStr(Number(info['actual-size']))}`);
  if (info['cluster-size'] !== undefined) out.push(`cluster_size: ${String(info['cluster-size'])}`);
  if (info['backing-filename'] !== undefined) {
    const name = String(info['backing-filename']);
    const full = String(info['full-backing-filename']);
    out.push(name === full ? `backing file: ${name}` : `backing file: ${name} (actual path: ${full})`);
    if (info['backing-filename-format'] !== undefined) out.push(`backing file format: ${String(info['backing-filename-format'])}`);
  }
  if (info['dirty-flag'] === true) out.push('cleanly shut down: no');
  const snaps = info['snapshots'];
  if (Array.isArray(snaps) && snaps.length > 0) out.push(...snapshotList(snaps as { [k: string]: Json | undefined }[], formatDate));
  const fs = info['format-specific'] as { data?: { [key: string]: Json } } | undefined;
  if (fs?.data !== undefined) {
    out.push('Format specific information:');
    for (const [k, v] of Object.entries(fs.data)) textValue(v, '    ', out, k.replace(/-/g, ' '));
  }
  return out.join('\n');
}
