import type { BlockGraph } from '../../block/graph.js';
import type { BlockDriverState } from '../../block/node.js';
import type { JobManager } from '../../blockjob/job.js';
import type { TransactionEnv } from '../../blockjob/transaction.js';
import { type CommandDef, type MonitorVm, defineCommand, service } from '../command.js';
import { bool, str, struct } from '../schema.js';

/** The block services a VM registers: its graph and job list. */
export function blockEnv(vm: MonitorVm): TransactionEnv {
  const env = vm.services.get('txn-env') as TransactionEnv | undefined;
  if (env !== undefined) return env;
  return { graph: service<BlockGraph>(vm, 'block'), jobs: service<JobManager>(vm, 'jobs') };
}

/** Every `filename` in a blockdev option tree passes the VM's path policy before anything opens. */
export function checkFilenames(vm: MonitorVm, options: unknown, depth = 0): void {
  if (depth > 64 || typeof options !== 'object' || options === null) return;
  for (const [key, value] of Object.entries(options)) {
    if (key === 'filename' && typeof value === 'string') vm.paths.check(value);
    else if (typeof value === 'object') checkFilenames(vm, value, depth + 1);
  }
}

/** QEMU's BlockDeviceInfo for one node (query-named-block-nodes, query-block's `inserted`). */
export function nodeInfo(bs: BlockDriverState, summary: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const size = bs.totalBytes;
  const bitmaps = summary['dirty-bitmaps'] as unknown[] | undefined;
  return {
    'iops_rd': 0,
    'detect_zeroes': summary['detect_zeroes'] ?? 'off',
    'image': { 'virtual-size': size, filename: bs.filename, format: bs.drv.formatName, 'actual-size': 0 },
    'iops_wr': 0,
    'ro': bs.readOnly,
    'node-name': bs.nodeName,
    'backing_file_depth': 0,
    'drv': bs.drv.formatName,
    'iops': 0,
    'bps_wr': 0,
    'write_threshold': 0,
    ...(bitmaps !== undefined && bitmaps.length > 0 ? { 'dirty-bitmaps': bitmaps } : {}),
    'encrypted': false,
    'bps': 0,
    'bps_rd': 0,
    'cache': { 'no-flush': false, direct: false, writeback: true },
    'file': bs.filename,
  };
}

export function blockCommands(): CommandDef[] {
  return [
    defineCommand<Record<string, unknown>>({
      name: 'blockdev-add',
      // The block layer checks the driver-specific members with QAPI's wording (OptionReader).
      args: struct({}, true),
      run: ({ vm }, args) => {
        checkFilenames(vm, args);
        blockEnv(vm).graph.blockdevAdd(args);
      },
    }),
    defineCommand<{ 'node-name': string }>({
      name: 'blockdev-del',
      args: struct({ 'node-name': str }),
      run: ({ vm }, args) => blockEnv(vm).graph.blockdevDel(args['node-name']),
    }),
    defineCommand<{ flat?: boolean }>({
      name: 'query-named-block-nodes',
      args: struct({ 'flat?': bool }),
      run: ({ vm }) => {
        const graph = blockEnv(vm).graph;
        const summaries = new Map(graph.queryNodes().map((s) => [s['node-name'] as string, s]));
        return [...graph.nodes.values()].reverse().map((bs) => nodeInfo(bs, summaries.get(bs.nodeName) ?? {}));
      },
    }),
    defineCommand<{ flat?: boolean }>({
      name: 'query-block',
      args: null,
      run: ({ vm }) => {
        const graph = blockEnv(vm).graph;
        const summaries = new Map(graph.queryNodes().map((s) => [s['node-name'] as string, s]));
        return [...graph.backends.values()].map((backend) => ({
          device: backend.name,
          locked: false,
          removable: false,
          ...(backend.rootNode !== null ? { inserted: nodeInfo(backend.rootNode, summaries.get(backend.rootNode.nodeName) ?? {}) } : {}),
          'io-status': 'ok',
        }));
      },
    }),
  ];
}
