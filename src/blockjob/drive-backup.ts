import { closeSync, ftruncateSync, openSync, readSync } from 'node:fs';
import { BlockError } from '../block/error.js';
import { errnoFromHostError } from '../block/errno.js';
import type { BlockDriverState } from '../block/node.js';
import { HostFileIO } from '../block/image/host-file.js';
import { createQcow2 } from '../block/qcow2/create.js';
import type { BackupCommonArgs } from './backup.js';

/** `drive-backup` arguments: the target is a file name. */
export interface DriveBackupArgs extends BackupCommonArgs {
  readonly target: string;
  readonly format?: string;
  /** existing: open the file as it is; absolute-paths (default): create it first. */
  readonly mode?: 'existing' | 'absolute-paths';
}

const QCOW2_MAGIC = [0x51, 0x46, 0x49, 0xfb];

/** Format probing as QEMU does for the two formats tsqemu writes: qcow2 by its magic, else raw. */
function probeFormat(filename: string): string {
  let fd = -1;
  try {
    fd = openSync(filename, 'r');
    const head = new Uint8Array(4);
    const n = readSync(fd, head, 0, 4, 0);
    return n === 4 && QCOW2_MAGIC.every((b, i) => head[i] === b) ? 'qcow2' : 'raw';
  } catch (error) {
    throw BlockError.withErrno(`Could not open '${filename}'`, errnoFromHostError(error));
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

/**
 * bdrv_img_create of a drive-backup's qcow2 target: the source's size, and for sync=top the
 * source's backing file (sync=none: the source itself) as its backing file. Returns the node the
 * target is to be backed by, or null.
 */
function createQcow2Target(source: BlockDriverState, args: DriveBackupArgs): BlockDriverState | null {
  let backing: BlockDriverState | null = null;
  if (args.sync === 'top') backing = source.backing?.bs ?? null;
  if (args.sync === 'none') backing = source;
  let io: HostFileIO;
  try {
    io = HostFileIO.open(args.target, { create: true });
  } catch (error) {
    throw new BlockError(`Could not create '${args.target}': ${(error as Error).message}`);
  }
  try {
    const options = { sizeBytes: source.getLength(), backingFile: backing?.filename ?? null, backingFormat: backing?.drv.formatName ?? null };
    source.loop.runCoroutine('drive-backup-create', createQcow2(io, options));
  } catch (error) {
    if (error instanceof Error && error.name === 'ImageError') throw new BlockError(`Could not create '${args.target}': ${error.message}`);
    throw error;
  } finally {
    io.close();
  }
  return backing;
}

/**
 * The sync mode a drive-backup or drive-mirror really runs with: sync=top on a source without a
 * backing file is a full copy (drive_backup_prepare and qmp_drive_mirror switch it to full).
 */
export function effectiveDriveSync<S extends string>(source: BlockDriverState, sync: S): S | 'full' {
  return sync === 'top' && source.backing === null ? 'full' : sync;
}

/**
 * The target node of a drive-backup (or drive-mirror). mode=absolute-paths creates the image in
 * `format`, by default the source's own format as in QEMU: qcow2 (backed by the source's backing
 * file for sync=top, by the source for sync=none) or raw of the source's size; other formats
 * cannot be created here. mode=existing opens the file, probing its format when none is given.
 * Host I/O is synchronous and happens before the job exists, like QEMU's bdrv_img_create in
 * prepare. The caller (QMP) checks the file name against --allow-path first.
 */
export function openDriveBackupTarget(openNode: (options: Record<string, unknown>) => BlockDriverState, source: BlockDriverState, args: DriveBackupArgs): BlockDriverState {
  const mode = args.mode ?? 'absolute-paths';
  const sync = effectiveDriveSync(source, args.sync);
  let format = args.format;
  if (mode === 'absolute-paths') {
    format ??= source.drv.formatName;
    if (format === 'qcow2') {
      const backing = createQcow2Target(source, { ...args, sync });
      // The new image's backing file is a node that is already open: refer to it.
      return openNode({ driver: format, file: { driver: 'file', filename: args.target }, ...(backing !== null ? { backing: backing.nodeName } : {}) });
    }
    if (format !== 'raw') throw new BlockError(`Format driver '${format}' does not support image creation`);
    // bdrv_img_create of a raw image with the backing file sync=top/none would give it.
    if (sync === 'none' || sync === 'top') throw new BlockError("Backing file not supported for file format 'raw'");
    let fd = -1;
    try {
      fd = openSync(args.target, 'w');
      ftruncateSync(fd, source.getLength());
    } catch (error) {
      throw BlockError.withErrno(`Could not create '${args.target}'`, errnoFromHostError(error));
    } finally {
      if (fd >= 0) closeSync(fd);
    }
  } else {
    format ??= probeFormat(args.target);
  }
  // No node-name: the graph generates one ('#block<N>'), as for QEMU's implicit nodes.
  return openNode({ driver: format, file: { driver: 'file', filename: args.target } });
}
