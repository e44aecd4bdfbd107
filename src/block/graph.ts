import { assert } from '../engine/assert.js';
import type { Co } from '../engine/coroutine.js';
import type { MainLoop } from '../engine/main-loop.js';
import { CoQueue } from '../engine/sync.js';
import { type ChildPerms, ChildRole, type OpenChildOptions, type OpenContext } from './driver.js';
import { BlockBackend } from './block-backend.js';
import { BlockError } from './error.js';
import { bdrvCoDrainedBegin, bdrvCoFlush, bdrvDrainedBegin, bdrvDrainedEnd } from './io.js';
import { BdrvChild, type BdrvChildParent, BlockDriverState, type DetectZeroes } from './node.js';
import { type BlockdevOptions, type BlockdevRef, OptionReader } from './options.js';
import { updatePerms } from './perms.js';
import { bdrvBlockDeviceInfo } from './query.js';
import { driverNames, findDriver } from './registry.js';
import './builtin-drivers.js';

/** QEMU's node names are at most 31 characters (char node_name[32]). */
export const MAX_NODE_NAME_LENGTH = 31;
/** Bound on nodes per graph: more is a runaway script, not a configuration. */
export const MAX_NODES = 1 << 16;

/** id_wellformed: a letter, then letters, digits, '-', '.', '_'. */
export function idWellformed(id: string): boolean {
  return /^[A-Za-z][A-Za-z0-9\-._]*$/.test(id);
}

/** A named user of the graph that QEMU looks up as `device=` (a BlockBackend with a name). */
export interface NamedBackend {
  readonly name: string;
  /** The root node, or null without medium. */
  readonly rootNode: BlockDriverState | null;
}

/** How `open` reports an unknown driver: QMP's enum message or the legacy (-drive, qemu-img) one. */
export type DriverMessageStyle = 'qapi' | 'legacy';

export interface OpenOptions {
  /** blockdev-add: the node belongs to the monitor (blockdev-del may remove it). Default true. */
  readonly monitorOwned?: boolean;
  readonly driverMessage?: DriverMessageStyle;
}

/**
 * The block graph of one VM (or one tool run): nodes by node-name, named BlockBackends, objects
 * (throttle groups), and the operations that change the graph: open (blockdev-add), close
 * (blockdev-del), attach/detach of children with permission checks.
 */
export class BlockGraph {
  readonly nodes = new Map<string, BlockDriverState>();
  readonly backends = new Map<string, NamedBackend>();
  /** QOM-like objects by id (throttle-group). */
  readonly objects = new Map<string, { readonly qomType: string; readonly value: unknown }>();
  /** Coroutines in a drained section waiting for in-flight requests to end. */
  readonly drainWaiters = new CoQueue();
  /** parent->backing_blocker of each backing edge (bdrv_backing_attach). */
  private readonly backingBlockers = new WeakMap<BdrvChild, BlockError>();
  private autoNameCounter = 0;

  constructor(readonly loop: MainLoop) {}

  /** Wakes coroutines waiting in a drain; jobs call it when they pause. */
  kickDrain(): void {
    if (!this.drainWaiters.empty) this.drainWaiters.restartAll();
  }

  /**
   * QEMU's generated node names (id_generate(ID_BLOCK)): "#block", a counter, then two random
   * digits ("#block041", "#block156"). The digits come from a seeded RNG stream, so a run's names
   * are reproducible.
   */
  generateNodeName(): string {
    const rng = this.loop.rng.stream('block-node-names');
    for (let guard = 0; guard < MAX_NODES * 2; guard++) {
      const name = `#block${this.autoNameCounter++}${String(rng.int(100)).padStart(2, '0')}`;
      if (!this.nodes.has(name)) return name;
    }
    assert(false, 'no free node name');
  }

  /** The node called `nodeName`, or undefined. */
  findNode(nodeName: string): BlockDriverState | undefined {
    return this.nodes.get(nodeName);
  }

  /**
   * bdrv_lookup_bs: a BlockBackend named `device` (its root node) or a node named `nodeName`.
   * Throws "Cannot find device='d' nor node-name='n'" or "Device 'd' has no medium".
   */
  lookupBs(device: string | null, nodeName: string | null): BlockDriverState {
    if (device !== null) {
      const backend = this.backends.get(device);
      if (backend !== undefined) {
        if (backend.rootNode === null) throw new BlockError(`Device '${device}' has no medium`);
        return backend.rootNode;
      }
    }
    if (nodeName !== null) {
      const bs = this.nodes.get(nodeName);
      if (bs !== undefined) return bs;
    }
    throw new BlockError(`Cannot find device='${device ?? ''}' nor node-name='${nodeName ?? ''}'`);
  }

  /** Looks up a node by node-name only: "Cannot find device='' nor node-name='x'". */
  lookupNode(nodeName: string): BlockDriverState {
    return this.lookupBs(null, nodeName);
  }

  /** Registers a named backend (for `device=` lookups); "Device with id 'x' already exists". */
  addBackend(backend: NamedBackend): void {
    if (this.backends.has(backend.name)) throw new BlockError(`Device with id '${backend.name}' already exists`);
    if (this.nodes.has(backend.name)) throw new BlockError(`Device name '${backend.name}' conflicts with an existing node name`);
    this.backends.set(backend.name, backend);
  }

  removeBackend(name: string): void {
    this.backends.delete(name);
  }

  // ---- opening ----------------------------------------------------------------------------------

  /**
   * blockdev-add from outside a coroutine: opens the node tree described by `options` (running
   * the loop while drivers read their metadata). Throws BlockError with QEMU's message; on
   * failure nothing stays behind.
   */
  blockdevAdd(options: BlockdevOptions, openOptions: OpenOptions = {}): BlockDriverState {
    const result = this.loop.runCoroutine('blockdev-add', this.catching(this.coBlockdevAdd(options, openOptions)));
    if (result instanceof BlockError) throw result;
    return result;
  }

  /** Runs `body`, turning a thrown BlockError into a returned one (so the loop never sees it). */
  private *catching<T>(body: Co<T>): Co<T | BlockError> {
    try {
      return yield* body;
    } catch (error) {
      if (error instanceof BlockError) return error;
      throw error;
    }
  }

  /** blockdev-add inside a coroutine. */
  *coBlockdevAdd(options: BlockdevOptions, openOptions: OpenOptions = {}): Co<BlockDriverState> {
    const created: BlockDriverState[] = [];
    try {
      const bs = yield* this.coOpenNode(options, '', created, openOptions.driverMessage ?? 'qapi');
      bs.monitorOwned = openOptions.monitorOwned ?? true;
      return bs;
    } catch (error) {
      // Undo: close what this call created, parents before their children, without flushing.
      for (const bs of created) yield* this.coCloseOne(bs, false);
      throw error;
    }
  }

  private checkNodeName(name: string): void {
    if (!idWellformed(name)) throw new BlockError(`Invalid node-name: '${name}'`);
    if (name.length > MAX_NODE_NAME_LENGTH) throw new BlockError('Node name too long');
    if (this.backends.has(name)) throw new BlockError(`node-name=${name} is conflicting with a device id`);
    if (this.nodes.has(name)) throw new BlockError(`Duplicate nodes with node-name='${name}'`);
  }

  private *coOpenNode(options: BlockdevOptions, prefix: string, created: BlockDriverState[], style: DriverMessageStyle): Co<BlockDriverState> {
    const reader = new OptionReader(options, prefix);
    const driverName = reader.str('driver', true);
    const drv = findDriver(driverName);
    if (drv === undefined) {
      if (style === 'legacy') throw new BlockError(`Unknown driver '${driverName}'`);
      throw new BlockError(`Parameter '${prefix}driver' does not accept value '${driverName}'`);
    }
    const requestedName = reader.str('node-name');
    if (requestedName !== undefined) this.checkNodeName(requestedName);
    if (this.nodes.size >= MAX_NODES) throw new BlockError('Too many block nodes');
    const readOnly = reader.bool('read-only', false);
    reader.bool('auto-read-only', false);
    reader.bool('force-share', false);
    const cache = reader.raw('cache');
    if (cache !== undefined) {
      if (typeof cache !== 'object' || cache === null || Array.isArray(cache)) throw reader.invalidType('cache', 'BlockdevCacheOptions');
      // BlockdevCacheOptions: the file driver acts on them; every node accepts them.
      const cacheReader = new OptionReader(cache as BlockdevOptions, `${prefix}cache.`);
      cacheReader.bool('direct', false);
      cacheReader.bool('no-flush', false);
      cacheReader.finish();
    }
    const discardValue = reader.enumOf('discard', ['ignore', 'unmap', 'off', 'on'] as const, 'ignore');
    const discardUnmap = discardValue === 'unmap' || discardValue === 'on';
    const detectZeroes: DetectZeroes = reader.enumOf('detect-zeroes', ['off', 'on', 'unmap'] as const, 'off');
    if (detectZeroes === 'unmap' && !discardUnmap) {
      throw new BlockError('setting detect-zeroes to unmap is not allowed without setting discard operation to unmap');
    }
    const nodeName = requestedName ?? this.generateNodeName();
    const bs = new BlockDriverState(this, drv, nodeName, requestedName === undefined, options, readOnly);
    bs.detectZeroes = detectZeroes;
    bs.discardUnmap = discardUnmap;
    this.nodes.set(nodeName, bs);
    created.push(bs);
    yield* drv.open(bs, reader, this.openContext(created, style));
    reader.finish();
    drv.refreshLimits?.(bs);
    if (bs.filename === '') bs.filename = bs.primaryChild?.bs.filename ?? '';
    assert(Number.isSafeInteger(bs.totalBytes) && bs.totalBytes >= 0, () => `driver ${drv.formatName} left a bad length ${bs.totalBytes}`);
    return bs;
  }

  private openContext(created: BlockDriverState[], style: DriverMessageStyle): OpenContext {
    return {
      loop: this.loop,
      graph: this,
      openChild: (bs, opts, key, role, options) => this.coOpenChild(created, style, bs, opts, key, role, options),
    };
  }

  private *coOpenChild(created: BlockDriverState[], style: DriverMessageStyle, bs: BlockDriverState, opts: OptionReader, key: string, role: number, options: OpenChildOptions = {}): Co<BdrvChild | null> {
    const ref: BlockdevRef | null | undefined = opts.ref(key);
    if (ref === undefined) {
      if (options.required === true) throw opts.missing(key);
      return null;
    }
    if (ref === null) return null;
    let childBs: BlockDriverState;
    if (typeof ref === 'string') childBs = this.lookupBs(ref, ref);
    else childBs = yield* this.coOpenNode(ref, `${opts.prefix}${key}.`, created, style);
    return this.attachChild(bs, childBs, options.childName ?? key, role);
  }

  // ---- edges ------------------------------------------------------------------------------------

  /**
   * bdrv_attach_child: makes `bs` the child `name` of `parent`. A node parent's driver decides
   * the permissions (`childPerms`); other parents (BlockBackend, job) pass `perms`. Throws the
   * permission conflict (QEMU 7.2's "Permission conflict on node 'n': permissions 'write' are both
   * required by ... (uses node 'n' as 'root' child) and unshared by ... (uses node ...).")
   * and leaves the graph unchanged then.
   */
  attachChild(parent: BlockDriverState | BdrvChildParent, bs: BlockDriverState, name: string, role: number, perms?: ChildPerms): BdrvChild {
    assert(!bs.closed, () => `attach of closed node ${bs.nodeName}`);
    const parentNode = parent.parentNode;
    if (parentNode !== null) this.assertNoCycle(parentNode, bs);
    const child = new BdrvChild(name, role, bs, parent);
    const wanted = perms ?? (parentNode !== null ? parentNode.drv.childPerms(parentNode, null, role, parentNode.cumulativePerm, parentNode.cumulativeShared) : { perm: 0, shared: 0x1f });
    bs.parents.push(child);
    if (parentNode !== null) parentNode.children.push(child);
    const error = updatePerms(new Map([[child, wanted]]));
    if (error !== null) {
      bs.parents.splice(bs.parents.indexOf(child), 1);
      if (parentNode !== null) parentNode.children.splice(parentNode.children.indexOf(child), 1);
      throw error;
    }
    if (parentNode !== null) {
      if (name === 'file') parentNode.file = child;
      else if (name === 'backing') parentNode.backing = child;
      if ((role & ChildRole.COW) !== 0) this.blockBackingOps(parentNode, child);
    }
    return child;
  }

  /**
   * bdrv_backing_attach: a backing file refuses every operation ("Node 'b' is busy: node is used
   * as backing hd of 'top'") except those that work on a chain: commit into it, stream, backup.
   */
  private blockBackingOps(parent: BlockDriverState, child: BdrvChild): void {
    // bdrv_get_device_or_node_name: the name of a BlockBackend on the parent, else its node name.
    let parentName = parent.nodeName;
    for (const p of parent.parents) {
      if (p.parent instanceof BlockBackend && p.parent.name !== '') {
        parentName = p.parent.name;
        break;
      }
    }
    const blocker = new BlockError(`node is used as backing hd of '${parentName}'`);
    this.backingBlockers.set(child, blocker);
    child.bs.opBlockAll(blocker);
    for (const op of ['commit-target', 'stream', 'backup-source', 'backup-target'] as const) child.bs.opUnblock(op, blocker);
  }

  private assertNoCycle(parent: BlockDriverState, bs: BlockDriverState): void {
    // A cycle would make every walk of the graph loop: refuse it as QEMU does.
    const stack = [bs];
    const seen = new Set<BlockDriverState>();
    for (let guard = 0; stack.length > 0; guard++) {
      assert(guard < MAX_NODES * 4, 'graph walk does not terminate');
      const node = stack.pop()!;
      if (node === parent) throw new BlockError(`Making '${bs.nodeName}' a child of '${parent.nodeName}' would create a cycle`);
      if (seen.has(node)) continue;
      seen.add(node);
      for (const c of node.children) stack.push(c.bs);
    }
  }

  /**
   * bdrv_root_unref_child: removes the edge and relaxes the permissions below it. Detaching an
   * edge twice is harmless (closing a node detaches its parents' edges, and a BlockBackend may
   * drop its root afterwards).
   */
  detachChild(child: BdrvChild): void {
    const bs = child.bs;
    const index = bs.parents.indexOf(child);
    if (index < 0) return;
    bs.parents.splice(index, 1);
    const parentNode = child.parentNode;
    if (parentNode !== null) {
      const at = parentNode.children.indexOf(child);
      if (at >= 0) parentNode.children.splice(at, 1);
      if (parentNode.file === child) parentNode.file = null;
      if (parentNode.backing === child) parentNode.backing = null;
    }
    const blocker = this.backingBlockers.get(child);
    if (blocker !== undefined) {
      bs.opUnblockAll(blocker);
      this.backingBlockers.delete(child);
    }
    child.perm = 0;
    child.shared = 0x1f;
    // Dropping a user only relaxes constraints, so this cannot conflict.
    const error = updatePerms(new Map(), [bs]);
    assert(error === null, () => `permission relax failed: ${error?.message}`);
  }

  /** bdrv_child_try_set_perm: new permissions for an edge of a non-node parent; throws on conflict. */
  setChildPerms(child: BdrvChild, perm: number, shared: number): void {
    const error = updatePerms(new Map([[child, { perm, shared }]]));
    if (error !== null) throw error;
  }

  /** Recomputes the permissions below `bs` (after a node's read-only state changed). */
  refreshPerms(bs: BlockDriverState): void {
    const error = updatePerms(new Map(), [bs]);
    if (error !== null) throw error;
  }

  /**
   * bdrv_set_backing_hd: makes `backing` the backing file of `bs` (null: none), all or nothing,
   * then closes the old backing node if nothing else uses it and the monitor does not own it.
   * Only the graph changes; a format driver records the new backing file name in its image when
   * the job asks it to (stream/commit). Throws "Driver 'raw' of node 'x' does not support backing
   * files", a cycle or a permission conflict.
   */
  *coSetBacking(bs: BlockDriverState, backing: BlockDriverState | null): Co<void> {
    if (bs.drv.supportsBacking !== true) throw new BlockError(`Driver '${bs.drv.formatName}' of node '${bs.nodeName}' does not support backing files`);
    const old = bs.backing;
    if (old !== null && old.bs === backing) return;
    if (old !== null) {
      // Detach first so the new edge is checked against the graph without the old one; on a
      // refusal the old edge comes back.
      this.detachChild(old);
    }
    if (backing !== null) {
      try {
        this.attachChild(bs, backing, 'backing', ChildRole.COW);
      } catch (error) {
        if (old !== null) this.attachChild(bs, old.bs, 'backing', ChildRole.COW);
        throw error;
      }
    }
    if (old !== null && old.bs.parents.length === 0 && !old.bs.monitorOwned) yield* this.coCloseTree(old.bs);
  }

  /** coSetBacking from outside a coroutine. */
  setBacking(bs: BlockDriverState, backing: BlockDriverState | null): void {
    const result = this.loop.runCoroutine('set-backing', this.catching(this.coSetBacking(bs, backing)));
    if (result instanceof BlockError) throw result;
  }

  /**
   * bdrv_reopen_set_read_only: switches `bs` and the nodes below it along its primary children
   * (a format's file, a filter's child; not backing files) to read-only or read-write, all or
   * nothing. Going read-only is refused while a parent writes ("Block node is read-only"); going
   * read-write reopens host files writable and lets format drivers take write permissions.
   * Drains the node first when called from outside a coroutine.
   */
  reopenReadOnly(bs: BlockDriverState, readOnly: boolean): void {
    const chain: BlockDriverState[] = [];
    for (let node: BlockDriverState | null = bs; node !== null && chain.length < MAX_NODES; node = node.primaryChild?.bs ?? null) chain.push(node);
    const order = readOnly ? chain : [...chain].reverse();
    const changed: BlockDriverState[] = [];
    const undo = (): void => {
      for (const node of changed.reverse()) {
        node.drv.reopenReadOnly?.(node, !readOnly);
        node.readOnly = !readOnly;
      }
      const error = updatePerms(new Map(), [bs]);
      assert(error === null, () => `reopen undo failed: ${error?.message}`);
    };
    const drained = this.loop.current === null;
    if (drained) bdrvDrainedBegin(bs);
    try {
      for (const node of order) {
        if (node.readOnly === readOnly) continue;
        const error = node.drv.reopenReadOnly?.(node, readOnly) ?? null;
        if (error !== null) {
          undo();
          throw error;
        }
        node.readOnly = readOnly;
        changed.push(node);
      }
      const error = updatePerms(new Map(), chain);
      if (error !== null) {
        undo();
        throw error;
      }
    } finally {
      if (drained) bdrvDrainedEnd(bs);
    }
  }

  /**
   * bdrv_replace_node-like: moves every parent edge of `from` (except those of `except` parents)
   * to `to`, all or nothing (jobs insert and remove filters with it).
   */
  replaceNode(from: BlockDriverState, to: BlockDriverState, except: readonly BdrvChildParent[] = []): void {
    const moving = from.parents.filter((c) => !except.includes(c.parent) && c.parentNode !== to);
    for (const c of moving) if (c.parentNode !== null) this.assertNoCycle(c.parentNode, to);
    for (const c of moving) {
      from.parents.splice(from.parents.indexOf(c), 1);
      c.bs = to;
      to.parents.push(c);
    }
    const error = updatePerms(new Map(), [from, to]);
    if (error !== null) {
      for (const c of moving) {
        to.parents.splice(to.parents.indexOf(c), 1);
        c.bs = from;
        from.parents.push(c);
      }
      const undo = updatePerms(new Map(), [from, to]);
      assert(undo === null, 'undo of a node replacement failed');
      throw error;
    }
  }

  // ---- closing ----------------------------------------------------------------------------------

  /**
   * blockdev-del. Refusals, in QEMU 7.2's order: "Failed to find node with node-name='x'",
   * "Node x is in use" (a BlockBackend uses it), "Node 'x' is busy: <blocker>" (a job),
   * "Node x is not owned by the monitor", "Block device x is in use" (other users remain).
   */
  blockdevDel(nodeName: string): void {
    const bs = this.checkDeletable(nodeName);
    // Drain from outside first: that also works under frozen time, where a coroutine waiting
    // for I/O would never be resumed by runCoroutine.
    bdrvDrainedBegin(bs);
    let result: BlockError | void;
    try {
      result = this.loop.runCoroutine('blockdev-del', this.catching(this.coCloseTree(bs)));
    } finally {
      bdrvDrainedEnd(bs);
    }
    if (result instanceof BlockError) throw result;
  }

  *coBlockdevDel(nodeName: string): Co<void> {
    const bs = this.checkDeletable(nodeName);
    yield* this.coCloseTree(bs);
  }

  private checkDeletable(nodeName: string): BlockDriverState {
    const bs = this.nodes.get(nodeName);
    if (bs === undefined) throw new BlockError(`Failed to find node with node-name='${nodeName}'`);
    if (bs.parents.some((p) => p.parent instanceof BlockBackend)) throw new BlockError(`Node ${nodeName} is in use`);
    const blocked = bs.opIsBlocked('drive-del');
    if (blocked !== null) throw blocked;
    if (!bs.monitorOwned) throw new BlockError(`Node ${nodeName} is not owned by the monitor`);
    if (bs.parents.length > 0) throw new BlockError(`Block device ${nodeName} is in use`);
    return bs;
  }

  /**
   * Closes `bs` and then every child nobody else uses (implicitly created children, not
   * monitor-owned ones), iteratively: drain, flush, driver close, detach.
   */
  *coCloseTree(bs: BlockDriverState): Co<void> {
    const queue = [bs];
    for (let guard = 0; queue.length > 0; guard++) {
      assert(guard < MAX_NODES * 4, 'close walk does not terminate');
      const node = queue.shift()!;
      if (node.closed) continue;
      const children = node.children.map((c) => c.bs);
      yield* this.coCloseOne(node, true);
      for (const child of children) if (child.parents.length === 0 && !child.monitorOwned && !child.closed) queue.push(child);
    }
  }

  /**
   * Closes one node only: drain (and flush when `flush`), driver close, detach its children and
   * parents, forget its name. Its children stay open (use `coCloseTree` to close unused ones too).
   */
  *coCloseNode(bs: BlockDriverState, flush = true): Co<void> {
    yield* this.coCloseOne(bs, flush);
  }

  private *coCloseOne(bs: BlockDriverState, flush: boolean): Co<void> {
    if (bs.closed) return;
    yield* bdrvCoDrainedBegin(bs);
    if (flush) yield* bdrvCoFlush(bs);
    // After a failed open the driver's close runs only if it got as far as setting its state.
    if (bs.drv.close !== undefined && bs.opaque !== null) yield* bs.drv.close(bs);
    bdrvDrainedEnd(bs);
    bs.closed = true;
    for (const child of bs.children.slice()) this.detachChild(child);
    for (const parent of bs.parents.slice()) this.detachChild(parent);
    if (this.nodes.get(bs.nodeName) === bs) this.nodes.delete(bs.nodeName);
  }

  /** bdrv_close_all: closes every node, top-down (shutdown, end of a tool run). */
  *coCloseAll(): Co<void> {
    for (let guard = 0; this.nodes.size > 0; guard++) {
      assert(guard < MAX_NODES * 4, 'close-all does not terminate');
      const roots = [...this.nodes.values()].filter((bs) => bs.parents.every((p) => p.parentNode === null));
      const victims = roots.length > 0 ? roots : [this.nodes.values().next().value!];
      for (const bs of victims) {
        for (const parent of bs.parents.slice()) this.detachChild(parent);
        bs.monitorOwned = false;
        yield* this.coCloseTree(bs);
      }
    }
  }

  closeAll(): void {
    // Drain every node from outside first (works under frozen time too), then close.
    for (const bs of [...this.nodes.values()]) {
      bdrvDrainedBegin(bs);
      bdrvDrainedEnd(bs);
    }
    this.loop.runCoroutine('bdrv-close-all', this.coCloseAll());
  }

  /**
   * query-named-block-nodes: every node's BlockDeviceInfo (see `query.ts`), newest node first as
   * QEMU lists them.
   */
  queryNodes(): Array<Record<string, unknown>> {
    return [...this.nodes.values()].reverse().map((bs) => bdrvBlockDeviceInfo(bs));
  }

  /** Names of the registered drivers. */
  static drivers(): string[] {
    return driverNames();
  }
}
