import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createVm, type Vm, type VmEvent } from '../../src/system/vm.js';
import { externalPolicy } from '../../src/engine/policy.js';
import { BlockBackend, BlkPerm, devicePerms } from '../../src/block/block-backend.js';
import { observeTransactions } from '../../src/blockjob/transaction.js';
import type { Job, JobHook } from '../../src/blockjob/job.js';
import type { JobStatus } from '../../src/blockjob/job-status.js';
import { BACKUP_PAIRS, BITMAP_NODES, CLUSTER_BYTES, DATA_BYTES, DATA_CLUSTERS, DATA_NODES, actionToQmp, describeCommand, type FuzzCase, type FuzzCommand, type TxnAction } from './commands.js';
import { LEGAL_TRANSITIONS, VERB_QMP } from './tables.js';

/** A broken invariant: the name says which, the detail says how. */
export class InvariantError extends Error {
  override readonly name = 'InvariantError';
  /** What the case did up to the failure (filled in when the case records). */
  report: CaseReport | null = null;
  constructor(
    readonly invariant: string,
    detail: string,
  ) {
    super(`invariant '${invariant}' broken: ${detail}`);
  }
}

export interface CaseOptions {
  /** Scratch directory for the data disks (reused between cases). */
  readonly dir: string;
  /** TEST-ONLY: backups start during prepare, as QEMU did before the 2016 fix. */
  readonly legacyStartInPrepare?: boolean;
  /** Keep a QMP transcript and a per-job timeline (replay reports). */
  readonly record?: boolean;
  /** Invariants not to check (to show that a deeper one catches a bug too). */
  readonly ignore?: readonly string[];
}

export interface CaseReport {
  readonly transcript: string[];
  readonly timeline: Map<string, string[]>;
  /** (status, verb, event) transitions this case covered. */
  readonly coverage: Set<string>;
  /** Scheduler choices actually consumed. */
  readonly choicesUsed: number;
}

/** Bound on engine work per command: a case that needs more is stuck, which is itself a failure. */
const MAX_TASKS_PER_COMMAND = 2_000_000;

interface BitmapModel {
  enabled: boolean;
  /** Dirty clusters, or null once the exact content is unknowable (failed bitmap-mode=always). */
  dirty: Set<number> | null;
  frozen: Set<number> | null;
  successor: Set<number> | null;
  /** Bounds while the content is unknown: successor ⊆ bitmap ⊆ frozen ∪ successor. */
  lower: Set<number> | null;
  upper: Set<number> | null;
}

interface JobInstance {
  readonly id: string;
  readonly serial: number;
  status: JobStatus | 'undefined';
  spec: TxnAction | null;
  txnSerial: number;
  txnAborted: boolean;
  started: boolean;
  hooks: JobHook[];
  completion: VmEvent | null;
  pitSnapshot: Uint8Array | null;
  frozenBitmap: string | null;
}

interface GroupedTxn {
  readonly jobs: JobInstance[];
  checked: boolean;
}

const union = (a: Set<number>, b: Set<number>) => new Set([...a, ...b]);

/**
 * Runs one fuzz case on a fresh in-process VM, checking every named invariant after every
 * command; throws an InvariantError at the first one broken.
 */
export function runCase(fuzzCase: FuzzCase, options: CaseOptions): CaseReport {
  return new CaseRun(fuzzCase, options).run();
}

class CaseRun {
  private readonly vm: Vm;
  private readonly transcript: string[] = [];
  private readonly timeline = new Map<string, string[]>();
  private readonly coverage = new Set<string>();
  private readonly violations: InvariantError[] = [];
  private readonly data = new Map<string, Uint8Array>();
  private readonly bitmaps = new Map<string, BitmapModel>();
  private readonly guests = new Map<string, BlockBackend>();
  private readonly readers = new Map<string, BlockBackend>();
  private readonly live = new Map<string, JobInstance>();
  private readonly grouped: GroupedTxn[] = [];
  private jobSerial = 0;
  private choiceIndex = 0;
  private txnLog: string[] | null = null;
  private createdInTxn: JobInstance[] = [];
  /** Backup actions of the transaction running now, by job id (jobs start inside the call). */
  private txnBackups = new Map<string, TxnAction>();

  constructor(
    private readonly fuzzCase: FuzzCase,
    private readonly options: CaseOptions,
  ) {
    for (const name of ['d0', 'd1', 't0', 't1']) writeFileSync(join(options.dir, `${name}.raw`), new Uint8Array(DATA_BYTES));
    this.vm = createVm({ seed: 0 }, { cwd: options.dir, legacyStartInPrepare: options.legacyStartInPrepare === true });
    this.vm.loop.setPolicy(
      externalPolicy((_label, count) => {
        const pick = this.fuzzCase.choices[this.choiceIndex++] ?? 0;
        return pick % count;
      }),
    );
  }

  run(): CaseReport {
    this.setUp();
    const stop = observeTransactions({ phase: (_serial, action, index, phase) => this.txnLog?.push(`${phase}:${action}#${index}`) });
    let primary: unknown = null;
    try {
      for (const [index, command] of this.fuzzCase.commands.entries()) {
        this.note(`# ${index}: ${describeCommand(command)}`);
        this.execute(command);
        this.checkAll(command);
        this.throwFirstViolation();
      }
      this.vm.run({ maxTasks: MAX_TASKS_PER_COMMAND });
      this.checkAll({ cmd: 'run' });
      this.throwFirstViolation();
    } catch (error) {
      primary = error;
      throw error;
    } finally {
      stop();
      try {
        this.tearDown();
      } catch (error) {
        // A failing teardown is a bug of its own, unless the case already failed.
        if (primary === null) throw error;
      }
    }
    return this.report();
  }

  private report(): CaseReport {
    return { transcript: this.transcript, timeline: this.timeline, coverage: this.coverage, choicesUsed: this.choiceIndex };
  }

  private throwFirstViolation(): void {
    const first = this.violations[0];
    if (first === undefined) return;
    first.report = this.report();
    throw first;
  }

  /** As QEMU's quit: cancel what still runs, dismiss what waits, close every node (and its files). */
  private tearDown(): void {
    for (const job of [...this.vm.jobs.jobs]) if (job.id !== null) this.vm.qmp('job-cancel', { id: job.id });
    this.vm.run({ maxTasks: MAX_TASKS_PER_COMMAND });
    for (const job of [...this.vm.jobs.jobs]) if (job.id !== null) this.vm.qmp('job-dismiss', { id: job.id });
    for (const blk of [...this.guests.values(), ...this.readers.values()]) blk.dispose();
    this.vm.graph.closeAll();
  }

  // ---- set-up --------------------------------------------------------------------------------

  private setUp(): void {
    const raw = (name: string) => ({ driver: 'raw', 'node-name': name, file: { driver: 'file', filename: join(this.options.dir, `${name}.raw`) } });
    const nodes: Record<string, unknown>[] = [
      raw('d0'),
      raw('d1'),
      raw('t0'),
      raw('t1'),
      { driver: 'null-co', 'node-name': 'e0', size: 0 },
      { driver: 'null-co', 'node-name': 'te', size: 0 },
      {
        driver: 'raw',
        'node-name': 'f0',
        file: { driver: 'blkdebug', image: { driver: 'null-co', size: DATA_BYTES, 'read-zeroes': true }, 'inject-error': [{ event: 'read_aio', errno: 5, once: true }] },
      },
      { driver: 'null-co', 'node-name': 'tf', size: DATA_BYTES, 'read-zeroes': true },
    ];
    for (const node of nodes) {
      const reply = this.vm.qmp('blockdev-add', node);
      if ('error' in reply) throw new Error(`fuzz pool: blockdev-add ${String(node['node-name'])}: ${reply.error.desc}`);
    }
    for (const name of DATA_NODES) {
      this.data.set(name, new Uint8Array(DATA_BYTES));
      const perms = devicePerms(false);
      this.guests.set(name, BlockBackend.withNode(this.vm.graph, this.vm.graph.lookupNode(name), { perm: perms.perm, shared: perms.shared }));
    }
    for (const name of ['d0', 'd1', 't0', 't1']) {
      this.readers.set(name, BlockBackend.withNode(this.vm.graph, this.vm.graph.lookupNode(name), { perm: 0, shared: BlkPerm.ALL }));
    }
    this.vm.onEvent((event) => this.onEvent(event));
    this.vm.jobs.observe({
      transition: (job, from, to) => this.onTransition(job, from, to),
      hook: (job, hook) => this.onHook(job, hook),
      started: (job) => this.onStarted(job),
    });
  }

  // ---- commands ------------------------------------------------------------------------------

  private qmp(command: string, args: Record<string, unknown>): ReturnType<Vm['qmp']> {
    if (this.options.record) this.note(`> ${JSON.stringify({ execute: command, arguments: args })}`);
    const reply = this.vm.qmp(command, args);
    if (this.options.record) this.note(`< ${JSON.stringify(reply)}`);
    return reply;
  }

  private execute(command: FuzzCommand): void {
    switch (command.cmd) {
      case 'write':
        return this.guestWrite(command.node, command.cluster, command.pattern);
      case 'txn':
        return this.transaction(command.actions, command.grouped);
      case 'verb':
        return this.verb(command.verb, command.job);
      case 'step':
        this.vm.loop.step(command.ns, { maxTasks: MAX_TASKS_PER_COMMAND });
        return;
      case 'run':
        this.vm.run({ maxTasks: MAX_TASKS_PER_COMMAND });
        return;
    }
  }

  private guestWrite(node: string, cluster: number, pattern: number): void {
    const blk = this.guests.get(node)!;
    const buf = new Uint8Array(CLUSTER_BYTES).fill(pattern);
    const rc = this.vm.loop.runCoroutine('fuzz-guest-write', blk.coPwritev(cluster * CLUSTER_BYTES, CLUSTER_BYTES, buf), { maxTasks: MAX_TASKS_PER_COMMAND });
    if (this.options.record) this.note(`guest write ${node}@${cluster} = ${rc}`);
    if (rc < 0) return;
    this.data.get(node)!.fill(pattern, cluster * CLUSTER_BYTES, (cluster + 1) * CLUSTER_BYTES);
    for (const [key, bm] of this.bitmaps) {
      if (!key.startsWith(`${node}/`)) continue;
      if (bm.successor !== null) {
        if (bm.enabled) bm.successor.add(cluster);
      } else if (bm.enabled) {
        bm.dirty?.add(cluster);
        bm.upper?.add(cluster);
        bm.lower?.add(cluster);
      }
    }
  }

  private transaction(actions: readonly TxnAction[], grouped: boolean): void {
    this.txnLog = [];
    this.createdInTxn = [];
    this.txnBackups = new Map(actions.filter((a) => a.type === 'blockdev-backup').map((a) => [a.type === 'blockdev-backup' ? a.job : '', a]));
    const args: Record<string, unknown> = { actions: actions.map(actionToQmp) };
    if (grouped) args['properties'] = { 'completion-mode': 'grouped' };
    const reply = this.qmp('transaction', args);
    const log = this.txnLog;
    this.txnLog = null;
    const aborted = 'error' in reply;
    this.coverage.add(`txn:${grouped ? 'grouped' : 'individual'}:${aborted ? 'aborted' : 'committed'}`);
    // A job of this transaction may start only after the commit phase began, and never if the
    // transaction aborted.
    const firstCommit = log.findIndex((entry) => entry.startsWith('commit:'));
    for (const [index, entry] of log.entries()) {
      if (!entry.startsWith('started:')) continue;
      if (aborted) this.fail('aborted-txn-never-starts-jobs', `job ${entry.slice(8)} started in a transaction that failed with "${'error' in reply ? reply.error.desc : ''}"`);
      else if (firstCommit < 0 || index < firstCommit) this.fail('txn-job-starts-only-after-commit', `job ${entry.slice(8)} started before the commit phase (${log.join(', ')})`);
    }
    for (const job of this.createdInTxn) {
      job.txnAborted = aborted;
      // The 2016 race: an empty backup started early can finish before the abort reaches it.
      if (aborted && job.completion?.event === 'BLOCK_JOB_COMPLETED' && job.completion.data?.['error'] === undefined) {
        this.fail('aborted-txn-never-completes-jobs', `job ${job.id} emitted BLOCK_JOB_COMPLETED although its transaction failed with "${'error' in reply ? reply.error.desc : ''}"`);
      }
    }
    if (aborted) return;
    if (grouped && this.createdInTxn.length > 0) this.grouped.push({ jobs: [...this.createdInTxn], checked: false });
    for (const action of actions) this.applyAction(action);
  }

  private applyAction(action: TxnAction): void {
    if (action.type === 'abort') return;
    if (action.type === 'blockdev-backup') return;
    const key = `${action.node}/${action.name}`;
    const bm = this.bitmaps.get(key);
    switch (action.type) {
      case 'block-dirty-bitmap-add':
        this.bitmaps.set(key, { enabled: true, dirty: new Set(), frozen: null, successor: null, lower: null, upper: null });
        return;
      case 'block-dirty-bitmap-remove':
        this.bitmaps.delete(key);
        return;
      case 'block-dirty-bitmap-clear':
        if (bm !== undefined) Object.assign(bm, { dirty: new Set(), lower: null, upper: null });
        return;
      case 'block-dirty-bitmap-enable':
        if (bm !== undefined) bm.enabled = true;
        return;
      case 'block-dirty-bitmap-disable':
        if (bm !== undefined) bm.enabled = false;
        return;
      case 'block-dirty-bitmap-merge': {
        const from = this.bitmaps.get(`${action.node}/${action.from}`);
        if (bm === undefined || from === undefined) return;
        if (bm.dirty !== null && from.dirty !== null) bm.dirty = union(bm.dirty, from.dirty);
        else Object.assign(bm, { dirty: null, lower: union(bm.lower ?? bm.dirty ?? new Set(), from.lower ?? from.dirty ?? new Set()), upper: union(bm.upper ?? bm.dirty ?? new Set(), from.upper ?? from.dirty ?? new Set()) });
        return;
      }
    }
  }

  private verb(verb: string, id: string): void {
    const before = JSON.stringify(this.vm.qmp('query-jobs', {}));
    const [command, args] = VERB_QMP(verb, id);
    const status = this.live.get(id)?.status ?? 'none';
    const reply = this.qmp(command, args);
    this.coverage.add(`verb:${verb}@${status}:${'error' in reply ? 'refused' : 'accepted'}`);
    if ('error' in reply) {
      const after = JSON.stringify(this.vm.qmp('query-jobs', {}));
      if (after !== before) this.fail('refused-verb-changes-nothing', `${command} ${id} was refused ("${reply.error.desc}") but query-jobs changed:\n  before ${before}\n  after  ${after}`);
    }
  }

  // ---- observation ---------------------------------------------------------------------------

  private onTransition(job: Job, from: JobStatus, to: JobStatus): void {
    const id = job.id ?? '(anonymous)';
    let instance = this.live.get(id);
    if (instance === undefined || from === 'undefined') {
      instance = { id, serial: this.jobSerial++, status: 'undefined', spec: null, txnSerial: -1, txnAborted: false, started: false, hooks: [], completion: null, pitSnapshot: null, frozenBitmap: null };
      this.live.set(id, instance);
      if (this.txnLog !== null) {
        this.createdInTxn.push(instance);
        instance.spec = this.txnBackups.get(id) ?? null;
      }
    }
    if (!(LEGAL_TRANSITIONS[from] ?? []).includes(to)) this.fail('legal-transitions-only', `job ${id}: ${from} → ${to}`);
    instance.status = to;
    this.coverage.add(`status:${from}>${to}`);
    this.timelineOf(instance).push(`${to}@${this.vm.loop.nowNs}`);
    if (to === 'running' && instance.txnAborted) this.fail('aborted-txn-never-starts-jobs', `job ${id} runs although its transaction aborted`);
    if (to === 'null') this.finishInstance(instance);
  }

  private onStarted(job: Job): void {
    const instance = this.live.get(job.id ?? '(anonymous)');
    this.txnLog?.push(`started:${job.id}`);
    if (instance === undefined) return;
    instance.started = true;
    const spec = instance.spec;
    if (spec === null || spec.type !== 'blockdev-backup') return;
    const [source] = BACKUP_PAIRS[spec.pair] ?? BACKUP_PAIRS[0];
    if (spec.sync === 'full' && this.data.has(source)) instance.pitSnapshot = this.data.get(source)!.slice();
    if (spec.bitmap !== null && (spec.sync === 'bitmap' || spec.sync === 'incremental')) {
      const key = `${source}/${spec.bitmap}`;
      const bm = this.bitmaps.get(key);
      if (bm !== undefined) {
        bm.frozen = bm.dirty === null ? null : new Set(bm.dirty);
        bm.successor = new Set();
        instance.frozenBitmap = key;
      }
    }
  }

  private onHook(job: Job, hook: JobHook): void {
    const instance = this.live.get(job.id ?? '(anonymous)');
    if (instance === undefined) return;
    instance.hooks.push(hook);
    this.coverage.add(`hook:${hook}`);
    const decided = instance.hooks.filter((h) => h === 'commit' || h === 'abort').length;
    const cleaned = instance.hooks.filter((h) => h === 'clean').length;
    if (decided > 1) this.fail('one-commit-or-abort-then-clean', `job ${instance.id} got ${instance.hooks.join(', ')}`);
    if (hook === 'clean' && (decided !== 1 || cleaned !== 1)) this.fail('one-commit-or-abort-then-clean', `job ${instance.id} cleaned after ${instance.hooks.join(', ')}`);
    if ((hook === 'commit' || hook === 'abort') && cleaned > 0) this.fail('one-commit-or-abort-then-clean', `job ${instance.id}: ${hook} after clean`);
  }

  private onEvent(event: VmEvent): void {
    this.coverage.add(`event:${event.event}`);
    if (this.options.record) this.note(`! ${JSON.stringify({ event: event.event, data: event.data })}`);
    if (!event.event.startsWith('BLOCK_JOB_')) return;
    const id = String(event.data?.['device'] ?? event.data?.['id'] ?? '');
    const instance = this.live.get(id);
    if (instance === undefined) {
      this.fail('events-in-legal-order', `${event.event} for unknown job ${id}`);
      return;
    }
    this.timelineOf(instance).push(`${event.event}@${this.vm.loop.nowNs}`);
    switch (event.event) {
      case 'BLOCK_JOB_COMPLETED':
      case 'BLOCK_JOB_CANCELLED':
        if (instance.completion !== null) this.fail('events-in-legal-order', `job ${id}: a second completion event ${event.event}`);
        if (instance.status !== 'pending' && instance.status !== 'aborting' && instance.status !== 'waiting') this.fail('events-in-legal-order', `job ${id}: ${event.event} in status ${instance.status}`);
        if (!instance.started) this.fail('events-in-legal-order', `job ${id} never started but emitted ${event.event}`);
        instance.completion = event;
        this.settleBitmap(instance, event.event === 'BLOCK_JOB_COMPLETED' && event.data?.['error'] === undefined);
        return;
      case 'BLOCK_JOB_READY':
        if (instance.status !== 'ready') this.fail('events-in-legal-order', `job ${id}: BLOCK_JOB_READY in status ${instance.status}`);
        return;
      case 'BLOCK_JOB_PENDING':
        if (instance.status !== 'pending') this.fail('events-in-legal-order', `job ${id}: BLOCK_JOB_PENDING in status ${instance.status}`);
        return;
    }
  }

  /** The bitmap a backup froze, after the job: bitmap-mode decides what it holds. */
  private settleBitmap(instance: JobInstance, success: boolean): void {
    const key = instance.frozenBitmap;
    const spec = instance.spec;
    if (key === null || spec === null || spec.type !== 'blockdev-backup') return;
    instance.frozenBitmap = null;
    const bm = this.bitmaps.get(key);
    if (bm === undefined || bm.successor === null) return;
    const successor = bm.successor;
    const frozen = bm.frozen;
    bm.successor = null;
    bm.frozen = null;
    const mode = spec.sync === 'incremental' ? 'on-success' : (spec.mode ?? 'on-success');
    if (frozen === null) {
      Object.assign(bm, { dirty: null, lower: successor, upper: null });
      return;
    }
    if (success && mode !== 'never') bm.dirty = successor;
    else if (!success && mode === 'always') Object.assign(bm, { dirty: null, lower: successor, upper: union(frozen, successor) });
    else bm.dirty = union(frozen, successor);
  }

  private finishInstance(instance: JobInstance): void {
    const decided = instance.hooks.filter((h) => h === 'commit' || h === 'abort').length;
    if (decided !== 1 || instance.hooks[instance.hooks.length - 1] !== 'clean') {
      this.fail('one-commit-or-abort-then-clean', `job ${instance.id} ended with hooks [${instance.hooks.join(', ')}]`);
    }
    if (instance.started && instance.completion === null) this.fail('events-in-legal-order', `job ${instance.id} started and ended without a completion event`);
    if (instance.txnAborted && instance.completion?.event === 'BLOCK_JOB_COMPLETED' && instance.completion.data?.['error'] === undefined) this.fail('aborted-txn-never-completes-jobs', `job ${instance.id} completed although its transaction aborted`);
  }

  // ---- invariants after each command ----------------------------------------------------------

  private checkAll(command: FuzzCommand): void {
    this.checkGrouped();
    this.checkBitmaps();
    this.checkPointInTime();
    if (command.cmd === 'run' || this.vm.jobs.jobs.length === 0) this.checkNoLeaks();
  }

  private checkGrouped(): void {
    for (const txn of this.grouped) {
      if (txn.checked || txn.jobs.some((j) => j.completion === null && j.status !== 'null' && j.status !== 'concluded')) continue;
      txn.checked = true;
      const ok = txn.jobs.filter((j) => j.completion?.event === 'BLOCK_JOB_COMPLETED' && j.completion.data?.['error'] === undefined);
      if (ok.length !== 0 && ok.length !== txn.jobs.length) {
        this.fail('grouped-txn-all-or-nothing', `jobs ${txn.jobs.map((j) => `${j.id}:${j.completion?.event ?? j.status}${j.completion?.data?.['error'] ? ' error' : ''}`).join(', ')}`);
      }
    }
  }

  private checkBitmaps(): void {
    const reply = this.vm.qmp('query-named-block-nodes', { flat: true });
    if (!('return' in reply)) return;
    const actual = new Map<string, number>();
    for (const node of reply.return as Record<string, unknown>[]) {
      const name = String(node['node-name']);
      if (!(BITMAP_NODES as readonly string[]).includes(name)) continue;
      // Anonymous bitmaps (block-copy's own) are listed too, as in QEMU; the model has named ones.
      for (const bm of (node['dirty-bitmaps'] as Record<string, unknown>[] | undefined) ?? []) {
        if (typeof bm['name'] === 'string') actual.set(`${name}/${bm['name']}`, Number(bm['count']));
      }
    }
    for (const key of new Set([...actual.keys(), ...this.bitmaps.keys()])) {
      const model = this.bitmaps.get(key);
      const count = actual.get(key);
      if (model === undefined || count === undefined) {
        this.fail('bitmap-counts-match-model', `bitmap ${key}: model ${model === undefined ? 'absent' : 'present'}, VM ${count === undefined ? 'absent' : `count ${count}`}`);
        continue;
      }
      const expectCount = (set: Set<number>) => Math.min(set.size, DATA_CLUSTERS) * CLUSTER_BYTES;
      const live = model.successor !== null ? union(model.frozen ?? new Set(), model.successor) : null;
      if (model.dirty !== null && live === null && count !== expectCount(model.dirty)) {
        this.fail('bitmap-counts-match-model', `bitmap ${key}: count ${count}, model ${expectCount(model.dirty)} (clusters ${[...model.dirty].sort().join(',')})`);
      } else if (model.dirty === null && live === null) {
        const low = model.lower === null ? 0 : expectCount(model.lower);
        const high = model.upper === null ? DATA_BYTES : expectCount(model.upper);
        if (count < low || count > high) this.fail('bitmap-counts-match-model', `bitmap ${key}: count ${count} outside [${low}, ${high}] after a failed bitmap-mode=always backup`);
      }
    }
  }

  private checkPointInTime(): void {
    for (const instance of this.live.values()) {
      const snapshot = instance.pitSnapshot;
      if (snapshot === null || instance.completion === null) continue;
      instance.pitSnapshot = null;
      if (instance.completion.event !== 'BLOCK_JOB_COMPLETED' || instance.completion.data?.['error'] !== undefined) continue;
      const spec = instance.spec;
      if (spec === null || spec.type !== 'blockdev-backup') continue;
      const [, target] = BACKUP_PAIRS[spec.pair] ?? BACKUP_PAIRS[0];
      const reader = this.readers.get(target);
      if (reader === undefined) continue;
      const buf = new Uint8Array(DATA_BYTES);
      const rc = this.vm.loop.runCoroutine('fuzz-read-target', reader.coPreadv(0, DATA_BYTES, buf), { maxTasks: MAX_TASKS_PER_COMMAND });
      if (rc < 0) continue;
      const at = buf.findIndex((byte, i) => byte !== snapshot[i]);
      if (at >= 0) this.fail('backup-target-is-point-in-time', `job ${instance.id}: target ${target} byte ${at} is 0x${buf[at]!.toString(16)}, the source held 0x${snapshot[at]!.toString(16)} when the job started`);
    }
  }

  private checkNoLeaks(): void {
    if (this.vm.jobs.jobs.length > 0) return;
    for (const [name, bs] of this.vm.graph.nodes) {
      if (bs.inFlight !== 0) this.fail('no-leaked-requests-or-drains', `node ${name} has ${bs.inFlight} requests in flight with no job left`);
      if (bs.quiesceCounter !== 0) this.fail('no-leaked-requests-or-drains', `node ${name} is still drained (${bs.quiesceCounter}) with no job left`);
    }
    for (const [name, blk] of [...this.guests, ...this.readers]) {
      if (blk.inFlight !== 0) this.fail('no-leaked-requests-or-drains', `backend on ${name} has ${blk.inFlight} requests in flight`);
    }
  }

  // ---- helpers -------------------------------------------------------------------------------

  private fail(invariant: string, detail: string): void {
    if (this.options.ignore?.includes(invariant)) return;
    if (this.violations.length < 8) this.violations.push(new InvariantError(invariant, detail));
  }

  private note(line: string): void {
    if (this.options.record) this.transcript.push(`[${this.vm.loop.nowNs} ns] ${line}`);
  }

  private timelineOf(instance: JobInstance): string[] {
    const key = `${instance.id}#${instance.serial}`;
    let line = this.timeline.get(key);
    if (line === undefined) {
      line = [];
      this.timeline.set(key, line);
    }
    return line;
  }
}
