import { BlockBackend } from '../../block/block-backend.js';
import type { BlockGraph, NamedBackend } from '../../block/graph.js';
import { bdrvBlockDeviceInfo, bdrvImageInfo } from '../../block/query.js';
import type { BlockDriverState } from '../../block/node.js';
import type { JobManager } from '../../blockjob/job.js';
import type { TransactionEnv } from '../../blockjob/transaction.js';
import { type CommandDef, type MonitorVm, defineCommand, service } from '../command.js';
import { BLOCK_INFO_ORDER, orderBlockDeviceInfo, qdictOrder } from '../qdict-order.js';
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

/** Most backing-image levels described (the block layer bounds chains as well). */
const MAX_IMAGE_CHAIN = 1024;

/**
 * bdrv_block_device_info with flat=false: the node's BlockDeviceInfo whose `image` carries the
 * chain below it as nested `backing-image`s, following the backing file of a COW node or the
 * filtered child of a filter (bdrv_filter_or_cow_bs), and backing_file_depth counts those levels.
 */
export function blockDeviceInfo(bs: BlockDriverState): Record<string, unknown> {
  const info = bdrvBlockDeviceInfo(bs);
  const chain: BlockDriverState[] = [];
  for (let node = filterOrCow(bs); node !== null && chain.length < MAX_IMAGE_CHAIN; node = filterOrCow(node)) chain.push(node);
  let below: Record<string, unknown> | undefined;
  for (let i = chain.length - 1; i >= 0; i--) {
    const image = bdrvImageInfo(chain[i]!);
    if (below !== undefined) image['backing-image'] = below;
    below = image;
  }
  if (below !== undefined) info['image'] = { ...(info['image'] as Record<string, unknown>), 'backing-image': below };
  info['backing_file_depth'] = chain.length;
  return info;
}

function filterOrCow(bs: BlockDriverState): BlockDriverState | null {
  if (bs.backing !== null) return bs.backing.bs;
  return bs.drv.isFilter === true ? (bs.filteredChild?.bs ?? null) : null;
}

/** The service under which the machine lists the BlockBackends its devices hold, in creation order. */
export const DEVICE_BACKENDS_SERVICE = 'device-backends';

function deviceBackends(vm: MonitorVm): readonly BlockBackend[] {
  const list = vm.services.get(DEVICE_BACKENDS_SERVICE);
  return Array.isArray(list) ? (list as BlockBackend[]) : [];
}

/**
 * qmp_query_block: a BlockInfo for every BlockBackend with a name or a device (named ones in
 * creation order, then the anonymous ones devices made from node names), as QEMU 7.2 prints it.
 * `removable` is blk_dev_has_removable_media (true without a device: virtio-blk has no media
 * change), `io-status` appears once a device enabled it, `inserted` describes the root node.
 */
export function queryBlock(graph: BlockGraph, devices: readonly BlockBackend[]): Record<string, unknown>[] {
  const backends: NamedBackend[] = [...graph.backends.values()];
  for (const blk of devices) if (!backends.includes(blk)) backends.push(blk);
  return backends.map((backend) => {
    const blk = backend instanceof BlockBackend ? backend : null;
    const info: Record<string, unknown> = { device: backend.name };
    if (blk?.devId !== null && blk?.devId !== undefined && blk.devId !== '') info['qdev'] = blk.devId;
    info['type'] = 'unknown';
    info['removable'] = blk?.devId === null || blk === null;
    info['locked'] = false;
    const root = backend.rootNode;
    if (root !== null) info['inserted'] = orderBlockDeviceInfo(blockDeviceInfo(root));
    if (blk?.iostatusEnabled === true) info['io-status'] = blk.iostatus;
    return qdictOrder(info, BLOCK_INFO_ORDER);
  });
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
        return [...graph.nodes.values()].reverse().map((bs) => orderBlockDeviceInfo(blockDeviceInfo(bs)));
      },
    }),
    defineCommand({
      name: 'query-block',
      args: null,
      run: ({ vm }) => queryBlock(blockEnv(vm).graph, deviceBackends(vm)),
    }),
  ];
}
