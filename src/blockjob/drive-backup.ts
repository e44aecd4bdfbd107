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
 * The target node of a drive-backup. mode=absolute-paths creates a raw image of the source's
 * size, or a qcow2 image (backed by the source's backing file for sync=top, by the source for
 * sync=none). Host I/O is synchronous
 * and happens before the job exists, like QEMU's bdrv_img_create in prepare. The caller (QMP)
 * checks the file name against --allow-path first.
 */
export function openDriveBackupTarget(openNode: (options: Record<string, unknown>) => BlockDriverState, source: BlockDriverState, args: DriveBackupArgs): BlockDriverState {
  const mode = args.mode ?? 'absolute-paths';
  let format = args.format;
  if (mode === 'absolute-paths' && format === 'qcow2') {
    const backing = createQcow2Target(source, args);
    // The new image's backing file is a node that is already open: refer to it.
    return openNode({ driver: format, file: { driver: 'file', filename: args.target }, ...(backing !== null ? { backing: backing.nodeName } : {}) });
  }
  if (mode === 'absolute-paths') {
    format ??= 'raw';
    if (format !== 'raw') throw new BlockError(`drive-backup: creating a '${format}' target is not supported; create it first and use mode 'existing'`);
    if (args.sync === 'none' || args.sync === 'top') {
      // QEMU would create an image backed by the source; a raw file cannot be.
      throw new BlockError(`drive-backup: sync mode '${args.sync}' needs a target backed by the source; create it first and use mode 'existing'`);
    }
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
