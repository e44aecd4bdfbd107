import { type Job, startJob } from '../../blockjob/job.js';
import { type BlockdevMirrorArgs, mirrorJobCreate } from '../../blockjob/mirror.js';
import { type BlockStreamArgs, streamJobCreate } from '../../blockjob/stream.js';
import { type BlockCommitArgs, commitJobCreate } from '../../blockjob/commit.js';
import { effectiveDriveSync, openDriveBackupTarget } from '../../blockjob/drive-backup.js';
import { QmpError } from '../errors.js';
import { type CommandDef, defineCommand } from '../command.js';
import { bool, enumOf, int, str, struct, uint32 } from '../schema.js';
import { blockEnv } from './block.js';

type JobVerbRun = (job: Job, args: Record<string, unknown>) => void;

/** `job-<verb> {id}`: unknown ids are GenericError "Job not found". */
function jobVerb(name: string, run: JobVerbRun): CommandDef {
  return defineCommand<{ id: string }>({
    name,
    args: struct({ id: str }),
    run: ({ vm }, args) => run(blockEnv(vm).jobs.find(args.id), args),
  });
}

/** `block-job-<verb> {device, ...}`: unknown ids are DeviceNotActive "Block job '<id>' not found". */
function blockJobVerb(name: string, key: 'device' | 'id', extra: Parameters<typeof struct>[0], run: JobVerbRun): CommandDef {
  return defineCommand<Record<string, unknown>>({
    name,
    args: struct({ [key]: str, ...extra }),
    run: ({ vm }, args) => run(blockEnv(vm).jobs.findBlockJob(args[key] as string), args),
  });
}

export function jobCommands(): CommandDef[] {
  return [
    defineCommand({ name: 'query-jobs', args: null, run: ({ vm }) => blockEnv(vm).jobs.queryJobs() }),
    defineCommand({ name: 'query-block-jobs', args: null, run: ({ vm }) => blockEnv(vm).jobs.queryBlockJobs() }),
    jobVerb('job-pause', (job) => job.userPause()),
    jobVerb('job-resume', (job) => job.userResume()),
    jobVerb('job-cancel', (job) => job.userCancel(true)),
    jobVerb('job-complete', (job) => job.complete()),
    jobVerb('job-finalize', (job) => job.finalize()),
    jobVerb('job-dismiss', (job) => job.dismiss()),
    blockJobVerb('block-job-set-speed', 'device', { speed: int }, (job, args) => job.setSpeed(Number(args['speed']))),
    blockJobVerb('block-job-cancel', 'device', { 'force?': bool }, (job, args) => job.blockJobCancel(args['force'] === true)),
    blockJobVerb('block-job-pause', 'device', {}, (job) => job.userPause()),
    blockJobVerb('block-job-resume', 'device', {}, (job) => job.userResume()),
    blockJobVerb('block-job-complete', 'device', {}, (job) => job.complete()),
    blockJobVerb('block-job-finalize', 'id', {}, (job) => job.finalize()),
    blockJobVerb('block-job-dismiss', 'id', {}, (job) => job.dismiss()),
  ];
}

const mirrorArgs = struct({
  'job-id?': str,
  device: str,
  target: str,
  'replaces?': str,
  sync: enumOf('top', 'full', 'none', 'incremental', 'bitmap'),
  'speed?': int,
  'granularity?': uint32,
  'buf-size?': int,
  'on-source-error?': enumOf('report', 'ignore', 'enospc', 'stop', 'auto'),
  'on-target-error?': enumOf('report', 'ignore', 'enospc', 'stop', 'auto'),
  'filter-node-name?': str,
  'copy-mode?': enumOf('background', 'write-blocking'),
  'auto-finalize?': bool,
  'auto-dismiss?': bool,
});

/** Commands that start a job directly (not through a transaction): blockdev-mirror. */
export function mirrorCommands(): CommandDef[] {
  return [
    defineCommand<BlockdevMirrorArgs & { replaces?: string; 'filter-node-name'?: string }>({
      name: 'blockdev-mirror',
      args: mirrorArgs,
      run: ({ vm }, args) => {
        const env = blockEnv(vm);
        if (args.sync !== 'full' && args.sync !== 'top' && args.sync !== 'none') throw new QmpError(`Sync mode '${String(args.sync)}' not supported`);
        if (args.replaces !== undefined || args['filter-node-name'] !== undefined) throw new QmpError(`Parameter '${args.replaces !== undefined ? 'replaces' : 'filter-node-name'}' is not supported by tsqemu's mirror`);
        startJob(mirrorJobCreate(env.jobs, env.graph, args) as Job);
      },
    }),
  ];
}

const onErrorEnum = enumOf('report', 'ignore', 'enospc', 'stop', 'auto');

/** Members QEMU's schema has that tsqemu's jobs do not implement: refused by name, never ignored. */
function refuseUnsupported(args: Record<string, unknown>, names: readonly string[], command: string): void {
  for (const name of names) if (args[name] !== undefined) throw new QmpError(`Parameter '${name}' of ${command} is not supported by tsqemu`);
}

/** block-stream and block-commit: create the job and start it at once, as QEMU does. */
export function streamCommitCommands(): CommandDef[] {
  return [
    defineCommand<BlockStreamArgs & Record<string, unknown>>({
      name: 'block-stream',
      args: struct({ 'job-id?': str, device: str, 'base?': str, 'base-node?': str, 'backing-file?': str, 'bottom?': str, 'speed?': int, 'on-error?': onErrorEnum, 'filter-node-name?': str, 'auto-finalize?': bool, 'auto-dismiss?': bool }),
      run: ({ vm }, args) => {
        refuseUnsupported(args, ['backing-file', 'bottom', 'filter-node-name'], 'block-stream');
        const env = blockEnv(vm);
        startJob(streamJobCreate(env.jobs, env.graph, args) as Job);
      },
    }),
    defineCommand<BlockCommitArgs & Record<string, unknown>>({
      name: 'block-commit',
      args: struct({ 'job-id?': str, device: str, 'base-node?': str, 'base?': str, 'top-node?': str, 'top?': str, 'backing-file?': str, 'speed?': int, 'on-error?': onErrorEnum, 'filter-node-name?': str, 'auto-finalize?': bool, 'auto-dismiss?': bool }),
      run: ({ vm }, args) => {
        refuseUnsupported(args, ['backing-file', 'filter-node-name'], 'block-commit');
        const env = blockEnv(vm);
        startJob(commitJobCreate(env.jobs, env.graph, args) as Job);
      },
    }),
  ];
}

const driveMirrorArgs = struct({
  'job-id?': str,
  device: str,
  target: str,
  'format?': str,
  'node-name?': str,
  'replaces?': str,
  sync: enumOf('top', 'full', 'none', 'incremental', 'bitmap'),
  'mode?': enumOf('existing', 'absolute-paths'),
  'speed?': int,
  'granularity?': uint32,
  'buf-size?': int,
  'on-source-error?': onErrorEnum,
  'on-target-error?': onErrorEnum,
  'unmap?': bool,
  'copy-mode?': enumOf('background', 'write-blocking'),
  'auto-finalize?': bool,
  'auto-dismiss?': bool,
});

type DriveMirrorArgs = BlockdevMirrorArgs & { format?: string; 'node-name'?: string; replaces?: string; mode?: 'existing' | 'absolute-paths'; unmap?: boolean };

/**
 * drive-mirror: opens (or, mode absolute-paths, creates) the target file as an implicit node, then
 * mirrors onto it like blockdev-mirror; the implicit target is closed when the job goes away.
 */
export function driveMirrorCommands(): CommandDef[] {
  return [
    defineCommand<DriveMirrorArgs>({
      name: 'drive-mirror',
      args: driveMirrorArgs,
      run: ({ vm }, args) => {
        const env = blockEnv(vm);
        if (args.sync !== 'full' && args.sync !== 'top' && args.sync !== 'none') throw new QmpError(`Sync mode '${String(args.sync)}' not supported`);
        refuseUnsupported(args as unknown as Record<string, unknown>, ['replaces'], 'drive-mirror');
        vm.paths.check(args.target);
        const bs = env.graph.lookupBs(args.device, args.device);
        const nodeName = args['node-name'];
        const open = (options: Record<string, unknown>) => env.graph.blockdevAdd(nodeName !== undefined ? { ...options, 'node-name': nodeName } : options, { monitorOwned: false });
        const target = openDriveBackupTarget(open, bs, { device: args.device, target: args.target, sync: args.sync, format: args.format, mode: args.mode });
        const closeTarget = () => {
          if (!target.closed && target.parents.length === 0) env.jobs.loop.spawn('drive-mirror-close', env.graph.coCloseTree(target));
        };
        let job: Job;
        try {
          const { format: _f, 'node-name': _n, replaces: _r, mode: _m, unmap: _u, ...mirror } = args;
          job = mirrorJobCreate(env.jobs, env.graph, { ...mirror, sync: effectiveDriveSync(bs, mirror.sync), target: target.nodeName }) as Job;
        } catch (error) {
          closeTarget();
          throw error;
        }
        const off = env.jobs.observe({
          transition(j, _from, to) {
            if (j !== job || to !== 'null') return;
            off();
            closeTarget();
          },
        });
        startJob(job);
      },
    }),
  ];
}
