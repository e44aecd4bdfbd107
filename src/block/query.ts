import type { BlockDriverState } from './node.js';

/**
 * QAPI ImageInfo of one node (query-named-block-nodes' `image`), keys in QEMU 7.2's output
 * order: `actual-size` when the driver knows it, `dirty-flag` (and `cluster-size`) when it answers
 * bdrv_get_info, `format-specific` when it has any, the backing file when there is one.
 */
export function bdrvImageInfo(bs: BlockDriverState): Record<string, unknown> {
  const image: Record<string, unknown> = {
    'virtual-size': bs.totalBytes,
    filename: bs.filename,
    format: bs.drv.formatName,
  };
  const actual = bs.drv.getAllocatedFileSize?.(bs);
  if (actual !== undefined && actual >= 0) image['actual-size'] = actual;
  const info = bs.drv.getInfo?.(bs);
  if (info !== undefined && info !== null) {
    if (info.clusterSize > 0) image['cluster-size'] = info.clusterSize;
    image['dirty-flag'] = info.isDirty;
  }
  const backing = bs.backing?.bs;
  if (backing !== undefined) {
    image['backing-filename'] = backing.filename;
    image['full-backing-filename'] = backing.filename;
    image['backing-filename-format'] = backing.drv.formatName;
  }
  const specific = bs.drv.getSpecificInfo?.(bs);
  if (specific !== undefined && specific !== null) image['format-specific'] = specific;
  return image;
}

/** Length of the backing chain below `bs` (backing_file_depth), bounded. */
export function backingFileDepth(bs: BlockDriverState): number {
  let depth = 0;
  for (let node = bs.backing?.bs; node !== undefined && depth < 1024; node = node.backing?.bs) depth++;
  return depth;
}

/**
 * QAPI BlockDeviceInfo of a node (query-named-block-nodes, query-block's `inserted`), keys in
 * QEMU 7.2's output order. Throttle figures are 0: I/O limits live in throttle nodes here.
 */
export function bdrvBlockDeviceInfo(bs: BlockDriverState): Record<string, unknown> {
  const cache = (bs.options['cache'] ?? {}) as Readonly<Record<string, unknown>>;
  const out: Record<string, unknown> = {
    iops_rd: 0,
    detect_zeroes: bs.detectZeroes,
    image: bdrvImageInfo(bs),
    iops_wr: 0,
    ro: bs.readOnly,
    'node-name': bs.nodeName,
    backing_file_depth: backingFileDepth(bs),
    drv: bs.drv.formatName,
  };
  const backing = bs.backing?.bs;
  if (backing !== undefined) out['backing_file'] = backing.filename;
  out['iops'] = 0;
  out['bps_wr'] = 0;
  out['write_threshold'] = 0;
  if (bs.dirtyBitmaps.length > 0) out['dirty-bitmaps'] = bs.dirtyBitmaps.filter((b) => b.name !== null).map((b) => b.info());
  out['encrypted'] = false;
  out['bps'] = 0;
  out['bps_rd'] = 0;
  out['cache'] = {
    'no-flush': cache['no-flush'] === true || cache['no-flush'] === 'on',
    direct: cache['direct'] === true || cache['direct'] === 'on',
    writeback: true,
  };
  out['file'] = bs.filename;
  return out;
}
