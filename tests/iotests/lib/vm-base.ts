import { qemuJson } from './format.js';
import { applyFilters, filterTimestamps, type Filter } from './format.js';
import type { QmpEvent, QmpReply, RunJobOptions } from './test-api.js';
import { filterJobOffsets } from './format.js';

/** Most events `runJob` will look at before declaring the job stuck. */
const DEFAULT_MAX_EVENTS = 10_000;

function matches(data: unknown, pattern: unknown): boolean {
  if (pattern === undefined) return true;
  if (pattern === null || typeof pattern !== 'object') return data === pattern;
  if (data === null || typeof data !== 'object') return false;
  for (const [k, v] of Object.entries(pattern as Record<string, unknown>)) {
    if (!matches((data as Record<string, unknown>)[k], v)) return false;
  }
  return true;
}

/** The target-independent half of a VM: logging conventions, event waits and run_job. */
export abstract class VmBase {
  private readonly held: QmpEvent[] = [];

  constructor(protected readonly log: (value: unknown) => void) {}

  abstract qmp(command: string, args?: Record<string, unknown>): Promise<QmpReply>;
  protected abstract nextEvent(): Promise<QmpEvent>;
  /** Events received by the transport and not pulled yet. */
  protected abstract drainEvents(): QmpEvent[];

  /** Every event not consumed yet, including those a wait skipped over. */
  takeEvents(): QmpEvent[] {
    return [...this.held.splice(0), ...this.drainEvents()];
  }

  async qmpLog(command: string, args: Record<string, unknown> = {}, filters: readonly Filter[] = []): Promise<QmpReply> {
    this.log(applyFilters({ execute: command, arguments: args }, filters));
    const reply = await this.qmp(command, args);
    this.log(applyFilters(reply, filters));
    return reply;
  }

  private async pull(): Promise<QmpEvent> {
    return this.held.shift() ?? (await this.nextEvent());
  }

  async eventWait(name: string, match?: Record<string, unknown>): Promise<QmpEvent> {
    const skipped: QmpEvent[] = [];
    for (let i = 0; i < DEFAULT_MAX_EVENTS; i++) {
      const event = await this.pull();
      if (event.event === name && matches(event.data, match)) {
        this.held.unshift(...skipped);
        return event;
      }
      skipped.push(event);
    }
    throw new Error(`event ${name} did not come`);
  }

  /**
   * Drives job `id` to its end as QEMU's iotests do: logs every event (timestamps filtered),
   * answers ready with complete (or cancel), pending with finalize (or cancel) when
   * auto-finalize is off, concluded with dismiss when auto-dismiss is off. Returns the job's
   * error, if it failed.
   */
  async runJob(id: string, options: RunJobOptions = {}): Promise<string | null> {
    const autoFinalize = options.autoFinalize ?? true;
    const autoDismiss = options.autoDismiss ?? false;
    const filters: Filter[] = [filterTimestamps];
    if (options.filterOffsets ?? true) filters.push(filterJobOffsets);
    const maxEvents = options.maxEvents ?? DEFAULT_MAX_EVENTS;
    // Events of other jobs wait for their own runJob; everything else is logged here.
    const others: QmpEvent[] = [];
    const isOther = (event: QmpEvent) => {
      const owner = event.event === 'JOB_STATUS_CHANGE' ? event.data?.['id'] : event.event.startsWith('BLOCK_JOB_') ? (event.data?.['device'] ?? event.data?.['id']) : undefined;
      return owner !== undefined && owner !== id;
    };
    let error: string | null = null;
    try {
      for (let i = 0; i < maxEvents; i++) {
        const event = await this.pull();
        if (isOther(event)) {
          others.push(event);
          continue;
        }
        if (await this.isDrainBlip(event, id, isOther, others)) continue;
        this.log(applyFilters(event, filters));
        if (event.event !== 'JOB_STATUS_CHANGE' || event.data?.['id'] !== id) continue;
        const status = event.data['status'];
        if (status === 'aborting') {
          const jobs = await this.qmp('query-jobs');
          if ('return' in jobs && Array.isArray(jobs.return)) {
            for (const job of jobs.return as Record<string, unknown>[]) {
              if (job['id'] === id && typeof job['error'] === 'string') {
                error = job['error'];
                this.log(`Job failed: ${error}`);
              }
            }
          }
        } else if (status === 'ready') {
          await this.qmpLog(options.cancel ? 'job-cancel' : 'job-complete', { id }, filters);
        } else if (status === 'pending' && !autoFinalize) {
          await this.qmpLog(options.cancel ? 'job-cancel' : 'job-finalize', { id }, filters);
        } else if (status === 'concluded' && !autoDismiss) {
          await this.qmpLog('job-dismiss', { id }, filters);
        } else if (status === 'null') {
          return error;
        }
      }
      throw new Error(`job ${id} did not end within ${maxEvents} events`);
    } finally {
      this.held.unshift(...others);
    }
  }

  /**
   * QEMU pauses a job while a drained section is active and resumes it right after
   * (paused→running, standby→ready); whether that happens depends on when the drain falls, not on
   * what the test does, so run_job skips such adjacent pairs.
   */
  private async isDrainBlip(event: QmpEvent, id: string, isOther: (e: QmpEvent) => boolean, others: QmpEvent[]): Promise<boolean> {
    if (event.event !== 'JOB_STATUS_CHANGE' || event.data?.['id'] !== id) return false;
    const status = event.data['status'];
    if (status !== 'paused' && status !== 'standby') return false;
    let next = await this.pull();
    for (let i = 0; i < DEFAULT_MAX_EVENTS && isOther(next); i++) {
      others.push(next);
      next = await this.pull();
    }
    const resumed = status === 'paused' ? 'running' : 'ready';
    if (next.event === 'JOB_STATUS_CHANGE' && next.data?.['id'] === id && next.data['status'] === resumed) return true;
    this.held.unshift(next);
    return false;
  }

  /** For debugging a test: the canonical text of a value. */
  static text(value: unknown): string {
    return typeof value === 'string' ? value : qemuJson(value);
  }
}
