import type { ThrottleGroup } from '../../block/throttle-groups.js';
import { type CommandDef, defineCommand } from '../command.js';
import { QmpError } from '../errors.js';
import { OBJECT_OPTIONS_SCHEMA, objectAdd, objectDel, queryIothreads } from '../objects.js';
import { str, struct } from '../schema.js';
import { blockEnv } from './block.js';

/**
 * qom-get prints a throttle group's limits in the order QEMU 7.2's QDict iterates them (its hash
 * order, stable for these keys), so replies compare equal as text.
 */
const QOM_LIMITS_ORDER = [
  'bps-read-max-length',
  'iops-read-max-length',
  'bps-read-max',
  'bps-total',
  'iops-total-max-length',
  'iops-total',
  'iops-write-max',
  'bps-write',
  'bps-total-max',
  'bps-write-max',
  'iops-size',
  'iops-read',
  'iops-write-max-length',
  'iops-write',
  'bps-total-max-length',
  'iops-read-max',
  'bps-read',
  'bps-write-max-length',
  'iops-total-max',
] as const;

/** The service under which the host registers its main thread's id (query-iothreads' thread-id). */
export const MAIN_THREAD_ID_SERVICE = 'main-thread-id';

/** object-add, object-del, query-iothreads, and qom-get of a throttle group's limits. */
export function objectCommands(): CommandDef[] {
  return [
    defineCommand<Record<string, unknown>>({
      name: 'object-add',
      args: OBJECT_OPTIONS_SCHEMA,
      run: ({ vm }, args) => objectAdd(blockEnv(vm).graph, args),
    }),
    defineCommand<{ id: string }>({
      name: 'object-del',
      args: struct({ id: str }),
      run: ({ vm }, args) => objectDel(blockEnv(vm).graph, args.id),
    }),
    defineCommand({
      name: 'query-iothreads',
      args: null,
      run: ({ vm }) => {
        const tid = vm.services.get(MAIN_THREAD_ID_SERVICE);
        return queryIothreads(blockEnv(vm).graph, typeof tid === 'number' ? tid : 0);
      },
    }),
    defineCommand<{ path: string; property: string }>({
      name: 'qom-get',
      args: struct({ path: str, property: str }),
      run: ({ vm }, args) => {
        const graph = blockEnv(vm).graph;
        const id = args.path.startsWith('/objects/') ? args.path.slice('/objects/'.length) : undefined;
        const object = id !== undefined ? graph.objects.get(id) : undefined;
        if (object === undefined) throw new QmpError(`Device '${args.path}' not found`, 'DeviceNotFound');
        if (args.property === 'type') return object.qomType;
        if (object.qomType !== 'throttle-group' || args.property !== 'limits') throw new QmpError(`Property '${object.qomType}.${args.property}' not found`);
        const limits = (object.value as ThrottleGroup).getLimits() as Record<string, number>;
        return Object.fromEntries(QOM_LIMITS_ORDER.map((k) => [k, limits[k] ?? 0]));
      },
    }),
  ];
}
