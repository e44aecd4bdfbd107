import type { Co } from '../engine/coroutine.js';
import { CoQueue } from '../engine/sync.js';
import { BlkPerm, ChildRole, type PreallocMode } from './driver.js';
import { Errno } from './errno.js';
import type { Errp } from './error.js';
import { BlockError } from './error.js';
import type { BlockGraph, NamedBackend } from './graph.js';
import {
  type BlockStatusResult,
  bdrvCoBlockStatus,
  bdrvCoFlush,
  bdrvCoPdiscard,
  bdrvCoPreadv,
  bdrvCoPwriteZeroes,
  bdrvCoPwritev,
  bdrvCoTruncate,
  bdrvDrainedBegin,
  bdrvDrainedEnd,
  bdrvCoDrainedBegin,
} from './io.js';
import type { BdrvChild, BdrvChildParent, BlockDriverState } from './node.js';

// Devices (src/engine/hw) may import only this file from the block layer: everything they need
// is re-exported here.
export { Errno, strerror } from './errno.js';
export { BdrvReq, BlkPerm, BlockStatus } from './driver.js';
export { BlockError } from './error.js';
export type { BlockStatusResult } from './io.js';

/** query-block's io-status. */
export type IoStatus = 'ok' | 'failed' | 'nospace';
/** BlockdevOnError: what a device or job does when a request fails. */
export type BlockdevOnError = 'report' | 'ignore' | 'enospc' | 'stop' | 'auto';
/** BlockErrorAction: what to do with one failed request. */
export type BlockErrorAction = 'report' | 'ignore' | 'stop';

/** Permissions a guest device takes (blkconf_apply_backend_options, without share-rw). */
export function devicePerms(readOnly: boolean, shareRw = false): { perm: number; shared: number } {
  let perm: number = BlkPerm.CONSISTENT_READ;
  if (!readOnly) perm |= BlkPerm.WRITE;
  let shared: number = BlkPerm.CONSISTENT_READ | BlkPerm.WRITE_UNCHANGED | BlkPerm.GRAPH_MOD | BlkPerm.RESIZE;
  if (shareRw) shared |= BlkPerm.WRITE;
  return { perm, shared };
}

export interface BlockBackendOptions {
  /** Device name for `device=` lookups and messages (-drive id); '' for anonymous. */
  readonly name?: string;
  /** Permissions taken on the root node (default none: blk_new(ctx, 0, BLK_PERM_ALL)). */
  readonly perm?: number;
  /** Permissions shared with other users (default all). */
  readonly shared?: number;
}

/**
 * BlockBackend: what devices and jobs hold. It owns one 'root' edge to a node (with its
 * permissions), checks requests against the node's length, queues new requests while the node is
 * drained, counts its own in-flight requests for drain, and keeps the io-status of its device.
 */
export class BlockBackend implements BdrvChildParent, NamedBackend {
  root: BdrvChild | null = null;
  readonly name: string;
  /** The qdev id of the attached device, for messages ("block device 'virtio0'"). */
  devId: string | null = null;
  perm: number;
  shared: number;
  iostatusEnabled = false;
  iostatus: IoStatus = 'ok';
  onReadError: BlockdevOnError = 'report';
  onWriteError: BlockdevOnError = 'enospc';
  /** Jobs disable queuing: their requests must go through during a drain of their own nodes. */
  disableRequestQueuing = false;
  /** Allow writes past the end (image creation). */
  allowWriteBeyondEof = false;
  /** Requests accepted and not finished (blk->in_flight). */
  inFlight = 0;
  quiesceCounter = 0;
  /** Called when the root node changes length (virtio-blk's config update). */
  onResize: (() => void) | null = null;
  private readonly queued = new CoQueue();

  constructor(
    readonly graph: BlockGraph,
    options: BlockBackendOptions = {},
  ) {
    this.name = options.name ?? '';
    this.perm = options.perm ?? 0;
    this.shared = options.shared ?? BlkPerm.ALL;
    if (this.name !== '') graph.addBackend(this);
  }

  /** A backend on `bs` (blk_new_with_bs); throws a permission conflict. */
  static withNode(graph: BlockGraph, bs: BlockDriverState, options: BlockBackendOptions = {}): BlockBackend {
    const blk = new BlockBackend(graph, options);
    try {
      blk.insertBs(bs);
    } catch (error) {
      blk.dispose();
      throw error;
    }
    return blk;
  }

  get parentNode(): null {
    return null;
  }

  parentDescription(): string {
    if (this.name !== '') return `block device '${this.name}'`;
    if (this.devId !== null && this.devId !== '') return `block device '${this.devId}'`;
    return 'an unnamed block device';
  }

  /** The root node, or null without medium. */
  get bs(): BlockDriverState | null {
    return this.root?.bs ?? null;
  }

  /** NamedBackend: what `device=` lookups resolve to. */
  get rootNode(): BlockDriverState | null {
    return this.bs;
  }

  /** blk_insert_bs: attaches the root edge with this backend's permissions. */
  insertBs(bs: BlockDriverState): void {
    if (this.root !== null) throw new BlockError('Block backend already has a node attached');
    this.root = this.graph.attachChild(this, bs, 'root', ChildRole.DATA | ChildRole.PRIMARY, { perm: this.perm, shared: this.shared });
  }

  /** blk_remove_bs: drains and detaches the root edge. */
  removeBs(): void {
    const root = this.root;
    if (root === null) return;
    if (this.graph.loop.current === null) this.drain();
    this.root = null;
    this.graph.detachChild(root);
  }

  /** blk_set_perm: throws the conflict and keeps the old permissions. */
  setPerm(perm: number, shared: number): void {
    if (this.root !== null) this.graph.setChildPerms(this.root, perm, shared);
    this.perm = perm;
    this.shared = shared;
  }

  /** blk_unref of the last reference: removes the root and the name. */
  dispose(): void {
    this.removeBs();
    if (this.name !== '') this.graph.removeBackend(this.name);
  }

  get isAvailable(): boolean {
    const bs = this.bs;
    return bs !== null && !bs.closed;
  }

  get isReadOnly(): boolean {
    const bs = this.bs;
    return bs === null ? false : bs.readOnly || (this.perm & BlkPerm.WRITE) === 0;
  }

  /** blk_getlength: bytes, or -ENOMEDIUM. */
  getLength(): number {
    const bs = this.bs;
    if (bs === null || bs.closed) return -Errno.ENOMEDIUM;
    return bs.getLength();
  }

  // ---- drain ------------------------------------------------------------------------------------

  drainedBegin(): void {
    this.quiesceCounter++;
  }

  drainedEnd(): void {
    if (this.quiesceCounter > 0) this.quiesceCounter--;
    if (this.quiesceCounter === 0) this.queued.restartAll();
  }

  drainedPoll(): boolean {
    return this.inFlight > 0;
  }

  resized(): void {
    this.onResize?.();
  }

  /** blk_drain: waits (running the loop) until this backend and its node are idle. */
  drain(): void {
    const bs = this.bs;
    if (bs !== null) {
      bdrvDrainedBegin(bs);
      bdrvDrainedEnd(bs);
    } else if (this.inFlight > 0) {
      this.graph.loop.runUntil(() => this.inFlight === 0);
    }
  }

  *coDrain(): Co<void> {
    const bs = this.bs;
    if (bs === null) return;
    yield* bdrvCoDrainedBegin(bs);
    bdrvDrainedEnd(bs);
  }

  /** True when a new request must wait for the end of a drained section. */
  private get mustQueue(): boolean {
    return this.quiesceCounter > 0 && !this.disableRequestQueuing;
  }

  private *waitWhileDrained(): Co<void> {
    this.inFlight++;
    if (this.mustQueue) {
      // blk_wait_while_drained: a queued request does not count as in flight.
      this.inFlight--;
      this.graph.kickDrain();
      for (let guard = 0; this.quiesceCounter > 0; guard++) {
        if (guard > 1 << 24) break;
        yield* this.queued.wait();
      }
      this.inFlight++;
    }
  }

  private leave(): void {
    this.inFlight--;
    if (this.inFlight === 0) this.graph.kickDrain();
  }

  /** blk_check_byte_request: -ENOMEDIUM without a node, -EIO out of range. */
  private checkByteRequest(offset: number, bytes: number): number {
    if (!this.isAvailable) return -Errno.ENOMEDIUM;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(bytes) || offset < 0 || bytes < 0) return -Errno.EIO;
    if (!this.allowWriteBeyondEof) {
      const len = this.getLength();
      if (len < 0) return len;
      if (offset > len || len - offset < bytes) return -Errno.EIO;
    }
    return 0;
  }

  // ---- requests -----------------------------------------------------------------------------------

  /**
   * The frame every byte-range request shares: queue while drained (or count as in flight),
   * check the range against the medium, run `io` on the root child, leave.
   */
  private *byteRequest(offset: number, bytes: number, io: (root: BdrvChild) => Co<number>): Co<number> {
    if (this.mustQueue) yield* this.waitWhileDrained();
    else this.inFlight++;
    try {
      const check = this.checkByteRequest(offset, bytes);
      if (check < 0) return check;
      return yield* io(this.root!);
    } finally {
      this.leave();
    }
  }

  /** blk_co_preadv: 0 or a negative errno. */
  *coPreadv(offset: number, bytes: number, buf: Uint8Array, flags = 0): Co<number> {
    return yield* this.byteRequest(offset, bytes, (root) => bdrvCoPreadv(root, offset, bytes, buf, flags));
  }

  /** blk_co_pwritev: 0 or a negative errno (-EPERM without the write permission). */
  *coPwritev(offset: number, bytes: number, buf: Uint8Array, flags = 0): Co<number> {
    return yield* this.byteRequest(offset, bytes, (root) => bdrvCoPwritev(root, offset, bytes, buf, flags));
  }

  /** blk_co_pwrite_zeroes. */
  *coPwriteZeroes(offset: number, bytes: number, flags = 0): Co<number> {
    return yield* this.byteRequest(offset, bytes, (root) => bdrvCoPwriteZeroes(root, offset, bytes, flags));
  }

  /** blk_co_pdiscard. */
  *coPdiscard(offset: number, bytes: number): Co<number> {
    return yield* this.byteRequest(offset, bytes, (root) => bdrvCoPdiscard(root, offset, bytes));
  }

  /** blk_co_flush (0 without medium, as QEMU: nothing to flush). */
  *coFlush(): Co<number> {
    if (this.mustQueue) yield* this.waitWhileDrained();
    else this.inFlight++;
    try {
      if (!this.isAvailable) return -Errno.ENOMEDIUM;
      return yield* bdrvCoFlush(this.root!);
    } finally {
      this.leave();
    }
  }

  /** blk_co_truncate (needs the RESIZE permission). */
  *coTruncate(offset: number, exact: boolean, prealloc: PreallocMode = 'off', flags = 0, errp?: Errp): Co<number> {
    if (!this.isAvailable) {
      if (errp !== undefined) errp.error = new BlockError('No medium inserted');
      return -Errno.ENOMEDIUM;
    }
    if (this.mustQueue) yield* this.waitWhileDrained();
    else this.inFlight++;
    try {
      return yield* bdrvCoTruncate(this.root!, offset, exact, prealloc, flags, errp);
    } finally {
      this.leave();
    }
  }

  /** bdrv_co_block_status of the root node. */
  *coBlockStatus(wantZero: boolean, offset: number, bytes: number): Co<BlockStatusResult> {
    if (!this.isAvailable) return { ret: -Errno.ENOMEDIUM, pnum: 0, map: 0, file: null };
    return yield* bdrvCoBlockStatus(this.root!, wantZero, offset, bytes);
  }

  // ---- errors ---------------------------------------------------------------------------------------

  /** blk_get_error_action: what the policy says about a failed request (`errno` positive or negative). */
  errorAction(isRead: boolean, errno: number): BlockErrorAction {
    const policy = isRead ? this.onReadError : this.onWriteError;
    const positive = Math.abs(errno);
    switch (policy) {
      case 'enospc':
        return positive === Errno.ENOSPC ? 'stop' : 'report';
      case 'stop':
        return 'stop';
      case 'report':
        return 'report';
      case 'ignore':
        return 'ignore';
      case 'auto':
        return 'report';
    }
  }

  /** blk_error_action's iostatus part: a stop records failed/nospace (first error wins). */
  setIoStatusFromError(action: BlockErrorAction, errno: number): void {
    if (action !== 'stop' || !this.iostatusEnabled || this.iostatus !== 'ok') return;
    this.iostatus = Math.abs(errno) === Errno.ENOSPC ? 'nospace' : 'failed';
  }

  resetIoStatus(): void {
    this.iostatus = 'ok';
  }
}
