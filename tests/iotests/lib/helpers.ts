import type { IoTestContext, QmpReply, Vm } from './test-api.js';

/** Adds a null-co node (reads zeroes: the same bytes on both targets). */
export async function addNull(vm: Vm, name: string, size: number, log = true): Promise<QmpReply> {
  const args = { driver: 'null-co', 'node-name': name, size, 'read-zeroes': true };
  return log ? vm.qmpLog('blockdev-add', args) : vm.qmp('blockdev-add', args);
}

/** Adds a qcow2 node over a file node. */
export async function addQcow2(vm: Vm, name: string, path: string, extra: Record<string, unknown> = {}, log = true): Promise<QmpReply> {
  const args = { driver: 'qcow2', 'node-name': name, file: { driver: 'file', filename: path }, ...extra };
  return log ? vm.qmpLog('blockdev-add', args) : vm.qmp('blockdev-add', args);
}

/**
 * Runs a qemu-io command against a node of the running VM (human-monitor-command, as QEMU's
 * iotests do to act as the guest) and logs its output.
 */
export async function guestIo(t: IoTestContext, vm: Vm, node: string, command: string): Promise<void> {
  const reply = await vm.qmp('human-monitor-command', { 'command-line': `qemu-io ${node} "${command}"` });
  if ('error' in reply) {
    t.log(reply);
    return;
  }
  const text = String(reply.return)
    .split('\n')
    .map((line) => line.replace(/^(\S+ \S+, \d+ ops?); .*$/, '$1; XX ops/sec (XXX YYY/sec and XXX ops/sec)').trimEnd())
    .filter((line) => line !== '')
    .join('\n');
  if (text !== '') t.log(text);
}

/** Logs a bitmap's count and state as query-block reports them. */
export async function logBitmaps(t: IoTestContext, vm: Vm, node: string): Promise<void> {
  const reply = await vm.qmp('query-named-block-nodes', { flat: true });
  if (!('return' in reply)) {
    t.log(reply);
    return;
  }
  for (const entry of reply.return as Record<string, unknown>[]) {
    if (entry['node-name'] !== node) continue;
    const bitmaps = (entry['dirty-bitmaps'] as Record<string, unknown>[] | undefined) ?? [];
    const shown = bitmaps
      .map((b) => ({ name: b['name'], count: b['count'], granularity: b['granularity'], recording: b['recording'], busy: b['busy'], persistent: b['persistent'] }))
      .sort((a, b) => String(a.name).localeCompare(String(b.name)));
    t.log({ node, bitmaps: shown });
  }
}

export const MiB = 1024 * 1024;
