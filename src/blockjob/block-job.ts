import { assert } from '../engine/assert.js';
import { BlockError } from '../block/error.js';
import type { BlockGraph } from '../block/graph.js';
import type { BdrvChild, BdrvChildParent, BlockDriverState } from '../block/node.js';
import type { Job } from './job.js';

const blockers = new Map<string, BlockError>();

/**
 * One blocker per job type, shared by all jobs of that type: op blockers are counted per entry,
 * so sharing the object is safe, and an Error (with its stack) is not built for every job.
 */
function blockerFor(jobType: string): BlockError {
  let blocker = blockers.get(jobType);
  if (blocker === undefined) {
    blocker = new BlockError(`block device is in use by block job: ${jobType}`);
    blockers.set(jobType, blocker);
  }
  return blocker;
}

/**
 * The block side of a job (QEMU's BlockJob): the graph edges it holds on its nodes, the op
 * blocker "block device is in use by block job: <type>" on each of them, and the drain
 * callbacks through which a drained node pauses the job.
 */
export class BlockJobNodes implements BdrvChildParent {
  readonly children: BdrvChild[] = [];
  readonly blocker: BlockError;
  private readonly blocked: BlockDriverState[] = [];
  private drainedSections = 0;

  constructor(
    readonly graph: BlockGraph,
    readonly job: Job,
  ) {
    this.blocker = blockerFor(job.jobType);
    // Drains wait for a busy job; when it parks, whoever waits in a drain must look again.
    job.onIdle = () => graph.kickDrain();
  }

  get parentNode(): null {
    return null;
  }

  parentDescription(): string {
    return `${this.job.jobType} job '${this.job.id ?? this.job.name}'`;
  }

  drainedBegin(): void {
    this.drainedSections++;
    this.job.pause();
  }

  drainedEnd(): void {
    assert(this.drainedSections > 0, 'drained end without begin');
    this.drainedSections--;
    this.job.resume();
  }

  /** child_job_drained_poll: a job that is busy (and not completed) may still issue requests. */
  drainedPoll(): boolean {
    return this.job.busy && !this.job.isCompleted;
  }

  /** block_job_add_bdrv: an edge from the job to `bs` and the op blocker on it. */
  add(name: string, bs: BlockDriverState, perm: number, shared: number, block = true): BdrvChild {
    const child = this.graph.attachChild(this, bs, name, 0, { perm, shared });
    // A drained section that began before this edge existed does not pause the job: the block
    // layer ends each section for exactly the parents it began it for.
    this.children.push(child);
    if (block) {
      bs.opBlockAll(this.blocker);
      this.blocked.push(bs);
    }
    return child;
  }

  /** block_job_remove_all_bdrv: drops every edge and blocker (clean). */
  removeAll(): void {
    for (const bs of this.blocked.splice(0)) bs.opUnblockAll(this.blocker);
    // Sections that began while an edge existed still end here later (drainedEnd stays balanced).
    for (const child of this.children.splice(0)) this.graph.detachChild(child);
  }
}
