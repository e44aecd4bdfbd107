import { assert } from '../engine/assert.js';
import type { Co } from '../engine/coroutine.js';
import type { CoQueue } from '../engine/sync.js';
import type { MainLoop } from '../engine/main-loop.js';
import type { BlockDriver } from './driver.js';
import { ChildRole } from './driver.js';
import { BlockError } from './error.js';
import type { BdrvDirtyBitmap } from './dirty-bitmap.js';
import type { BlockGraph } from './graph.js';
import type { BlockdevOptions } from './options.js';

// The coroutine I/O entry points live in io.ts; re-exported here so `node.ts` is the one import
// drivers and jobs need.
export {
  bdrvCoPreadv,
  bdrvCoPwritev,
  bdrvCoPwriteZeroes,
  bdrvCoPdiscard,
  bdrvCoFlush,
  bdrvCoBlockStatus,
  bdrvCoBlockStatusAbove,
  bdrvCoIsAllocated,
  bdrvCoIsAllocatedAbove,
  bdrvCoTruncate,
  bdrvGetLength,
  bdrvDebugEvent,
  bdrvDrainedBegin,
  bdrvDrainedEnd,
  bdrvCoDrainedBegin,
  bdrvDrain,
  bdrvIsBusy,
  type BlockStatusResult,
} from './io.js';

/** detect-zeroes: off, on (zero writes become write-zeroes), unmap (... that may discard). */
export type DetectZeroes = 'off' | 'on' | 'unmap';

/**
 * The party on the other end of a BdrvChild (QEMU's BdrvChildClass + opaque): a node, a
 * BlockBackend or a block job. The drain callbacks let a drain stop the parent from issuing new
 * requests and wait until its own activity stops.
 */
export interface BdrvChildParent {
  /** "node 'qcow2-0'", "block device 'drive0'", "backup job 'job0'" (bdrv_child_user_desc). */
  parentDescription(): string;
  /** The parent node when the parent is a node, else null. */
  readonly parentNode: BlockDriverState | null;
  /** The node below entered a drained section: stop submitting new requests. */
  drainedBegin?(child: BdrvChild): void;
  drainedEnd?(child: BdrvChild): void;
  /** True while the parent still has activity the drain must wait for (a busy job). */
  drainedPoll?(child: BdrvChild): boolean;
  /** The node below changed its length. */
  resized?(child: BdrvChild): void;
}

/**
 * An edge of the graph: `parent` uses `bs` as its child called `name` ("file", "backing",
 * "root", "target"...), with permissions `perm` taken and `shared` allowed to others.
 * Create and remove edges through the graph (`graph.attachChild`/`detachChild`) so that
 * permissions are checked and propagated.
 */
export class BdrvChild {
  perm = 0;
  shared = 0;

  constructor(
    readonly name: string,
    /** ChildRole bits. */
    readonly role: number,
    public bs: BlockDriverState,
    readonly parent: BdrvChildParent,
  ) {}

  get parentNode(): BlockDriverState | null {
    return this.parent.parentNode;
  }

  toString(): string {
    return `${this.parent.parentDescription()} -> '${this.name}' -> ${this.bs.nodeName}`;
  }
}

/** What a write hook is told about a write (incl. zero writes, discards and truncates). */
export interface WriteRequestInfo {
  readonly bs: BlockDriverState;
  readonly offset: number;
  readonly bytes: number;
  readonly flags: number;
  readonly kind: 'write' | 'zero' | 'discard' | 'truncate';
  /** The data of a 'write' (read-only for hooks; mirror's write-blocking mode copies it). */
  readonly buf?: Uint8Array | null;
}

/**
 * A write notifier. `before` runs in the writing coroutine after the request is tracked and
 * serialised but before the driver sees it; a negative errno fails the write. `after` runs once
 * the driver finished, whatever the result (dirty bitmaps are set at the same point).
 */
export interface WriteHook {
  readonly name: string;
  before?(req: WriteRequestInfo): Co<number>;
  after?(req: WriteRequestInfo, ret: number): void;
}

/** BlockOpType: operations a job can block on a node (bdrv_op_block). */
export type BlockOpType =
  | 'backup-source'
  | 'backup-target'
  | 'change'
  | 'commit-source'
  | 'commit-target'
  | 'drive-del'
  | 'eject'
  | 'external-snapshot'
  | 'internal-snapshot'
  | 'mirror-source'
  | 'mirror-target'
  | 'resize'
  | 'stream'
  | 'replace';

export const BLOCK_OP_TYPES: readonly BlockOpType[] = [
  'backup-source',
  'backup-target',
  'change',
  'commit-source',
  'commit-target',
  'drive-del',
  'eject',
  'external-snapshot',
  'internal-snapshot',
  'mirror-source',
  'mirror-target',
  'resize',
  'stream',
  'replace',
];

/** A request in flight on a node (BdrvTrackedRequest): serialisation and drain look at these. */
export interface TrackedRequest {
  readonly seq: number;
  readonly offset: number;
  readonly bytes: number;
  /** The range others must not overlap while this one is serialising (aligned for RMW). */
  overlapOffset: number;
  overlapBytes: number;
  serialising: boolean;
  readonly kind: 'read' | 'write' | 'zero' | 'discard' | 'flush' | 'truncate';
  done: boolean;
  /** Requests waiting for this one to finish (created when the first one waits). */
  waiters: CoQueue | null;
}

/** Per-node I/O statistics (a subset of query-blockstats). */
export interface BlockStats {
  rdBytes: number;
  wrBytes: number;
  rdOperations: number;
  wrOperations: number;
  flushOperations: number;
  unmapOperations: number;
  unmapBytes: number;
  failedRdOperations: number;
  failedWrOperations: number;
  /** Highest offset+bytes ever written (wr_highest_offset). */
  wrHighestOffset: number;
}

/**
 * A BlockDriverState: one node of the block graph (a host file, a raw or qcow2 format layer, a
 * filter...). Nodes are created by `BlockGraph.open`; devices and jobs never hold one directly but
 * go through a BlockBackend or a BdrvChild.
 */
export class BlockDriverState implements BdrvChildParent {
  /** Driver state (the driver's own per-node type; cast in the driver). */
  opaque: unknown = null;
  readonly children: BdrvChild[] = [];
  /** Edges pointing at this node, in attach order. */
  readonly parents: BdrvChild[] = [];
  file: BdrvChild | null = null;
  backing: BdrvChild | null = null;
  /** Guest-visible length in bytes. */
  totalBytes = 0;
  readOnly: boolean;
  /** Requests reach the driver aligned to this (power of two); unaligned writes do RMW. */
  requestAlignment = 1;
  /** Largest request the driver takes at once (0 = unlimited); the generic layer splits. */
  maxTransferBytes = 0;
  /** Zero writes/discards are only sent to the driver in multiples of these (head/tail aside). */
  pwriteZeroesAlignment = 1;
  pdiscardAlignment = 1;
  detectZeroes: DetectZeroes = 'off';
  /** discard=unmap: discards reach the driver; with 'ignore' (the default) they are no-ops. */
  discardUnmap = false;
  /** Requests between the entry points' start and end (bdrv_inc/dec_in_flight). */
  inFlight = 0;
  /** Nesting depth of drained sections covering this node. */
  quiesceCounter = 0;
  readonly trackedRequests: TrackedRequest[] = [];
  /** Next tracked-request sequence number: a request only waits for older ones (no deadlock). */
  requestSeq = 0;
  readonly dirtyBitmaps: BdrvDirtyBitmap[] = [];
  readonly writeHooks: WriteHook[] = [];
  readonly opBlockers = new Map<BlockOpType, BlockError[]>();
  /** Created by blockdev-add at the top level: only such nodes may be blockdev-del'ed. */
  monitorOwned = false;
  /** The host file name or a description such as "json:{...}" (query-block's `file`). */
  filename = '';
  readonly stats: BlockStats = {
    rdBytes: 0,
    wrBytes: 0,
    rdOperations: 0,
    wrOperations: 0,
    flushOperations: 0,
    unmapOperations: 0,
    unmapBytes: 0,
    failedRdOperations: 0,
    failedWrOperations: 0,
    wrHighestOffset: 0,
  };
  closed = false;

  constructor(
    readonly graph: BlockGraph,
    readonly drv: BlockDriver,
    public nodeName: string,
    /** True when the graph generated the name ("#block12"). */
    readonly autoNodeName: boolean,
    /** The options the node was opened with (after child references were resolved). */
    readonly options: BlockdevOptions,
    readOnly: boolean,
  ) {
    this.readOnly = readOnly;
  }

  get loop(): MainLoop {
    return this.graph.loop;
  }

  get parentNode(): BlockDriverState {
    return this;
  }

  parentDescription(): string {
    return `node '${this.nodeName}'`;
  }

  drainedBegin(): void {
    // A node parent is quiesced by the drain walking up the graph (io.ts); nothing to do here.
  }

  /** The child that holds this node's data: `file` for formats and filters (bdrv_primary_bs). */
  get primaryChild(): BdrvChild | null {
    for (const child of this.children) if ((child.role & ChildRole.PRIMARY) !== 0) return child;
    return this.file;
  }

  /** The child a filter (or a plain raw node) passes requests to unchanged, or null. */
  get filteredChild(): BdrvChild | null {
    for (const child of this.children) if ((child.role & ChildRole.FILTERED) !== 0) return child;
    return null;
  }

  /** Cumulative permissions taken by all parents, and those all of them share. */
  get cumulativePerm(): number {
    let perm = 0;
    for (const parent of this.parents) perm |= parent.perm;
    return perm;
  }

  get cumulativeShared(): number {
    let shared = 0x1f;
    for (const parent of this.parents) shared &= parent.shared;
    return shared;
  }

  /** The dirty bitmap called `name`, if any. */
  findDirtyBitmap(name: string): BdrvDirtyBitmap | undefined {
    return this.dirtyBitmaps.find((bitmap) => bitmap.name === name);
  }

  /** Registers a write notifier; returns the function that removes it. */
  addWriteHook(hook: WriteHook): () => void {
    assert(this.writeHooks.length < 64, 'too many write hooks on one node');
    this.writeHooks.push(hook);
    return () => {
      const index = this.writeHooks.indexOf(hook);
      if (index >= 0) this.writeHooks.splice(index, 1);
    };
  }

  /** bdrv_op_block: `op` is refused with `reason` until unblocked. */
  opBlock(op: BlockOpType, reason: BlockError): void {
    const list = this.opBlockers.get(op) ?? [];
    list.push(reason);
    this.opBlockers.set(op, list);
  }

  opUnblock(op: BlockOpType, reason: BlockError): void {
    const list = this.opBlockers.get(op);
    if (list === undefined) return;
    const index = list.indexOf(reason);
    if (index >= 0) list.splice(index, 1);
    if (list.length === 0) this.opBlockers.delete(op);
  }

  opBlockAll(reason: BlockError): void {
    for (const op of BLOCK_OP_TYPES) this.opBlock(op, reason);
  }

  opUnblockAll(reason: BlockError): void {
    for (const op of BLOCK_OP_TYPES) this.opUnblock(op, reason);
  }

  /** bdrv_op_is_blocked: the error "Node 'x' is busy: <reason>", or null. */
  opIsBlocked(op: BlockOpType): BlockError | null {
    const reason = this.opBlockers.get(op)?.[0];
    if (reason === undefined) return null;
    return reason.prepend(`Node '${this.nodeName}' is busy: `);
  }

  /** Current length (bdrv_getlength): the driver's answer or `totalBytes`. */
  getLength(): number {
    if (this.drv.getLength !== undefined) return this.drv.getLength(this);
    return this.totalBytes;
  }
}
