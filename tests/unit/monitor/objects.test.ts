import { describe, expect, it } from 'vitest';
import { UsageError } from '../../../src/system/keyval.js';
import { parseCommandLine } from '../../../src/system/options.js';
import { createVm } from '../../../src/system/vm.js';
import { findThrottleGroup } from '../../../src/block/throttle-groups.js';

const err = (desc: string) => ({ error: { class: 'GenericError', desc } });

function usage(argv: string[]): string {
  try {
    createVm(parseCommandLine(argv));
  } catch (error) {
    if (error instanceof UsageError) return error.message;
    throw error;
  }
  return 'no error';
}

describe('user-creatable objects (object-add, object-del, -object)', () => {
  it('object-add validates like QEMU 7.2 before creating anything', () => {
    const vm = createVm();
    expect(vm.qmp('object-add', { 'qom-type': 'bogus', id: 'x' })).toEqual(err("Parameter 'qom-type' does not accept value 'bogus'"));
    expect(vm.qmp('object-add', { 'qom-type': 'throttle-group' })).toEqual(err("Parameter 'id' is missing"));
    expect(vm.qmp('object-add', { id: 'x' })).toEqual(err("Parameter 'qom-type' is missing"));
    expect(vm.qmp('object-add', { 'qom-type': 'throttle-group', id: 'x', 'x-bogus': 1 })).toEqual(err("Parameter 'x-bogus' is unexpected"));
    expect(vm.qmp('object-add', { 'qom-type': 'throttle-group', id: 'x', 'x-iops-total': '5' })).toEqual(err("Invalid parameter type for 'x-iops-total', expected: integer"));
    expect(vm.qmp('object-add', { 'qom-type': 'throttle-group', id: 'x', limits: { 'bps-totalx': 7 } })).toEqual(err("Parameter 'limits.bps-totalx' is unexpected"));
    expect(vm.qmp('object-add', { 'qom-type': 'throttle-group', id: '0bad', 'x-iops-total': -1 })).toEqual(err("Parameter 'id' expects an identifier"));
    expect(vm.qmp('object-add', { 'qom-type': 'throttle-group', id: 'x', 'x-bps-total': -1 })).toEqual(err('Property values cannot be negative'));
    expect(vm.qmp('object-add', { 'qom-type': 'throttle-group', id: 'x', 'x-iops-size': 5 })).toEqual(err('iops size requires an iops value to be set'));
    expect(vm.qmp('object-add', { 'qom-type': 'throttle-group', id: 'x', 'x-iops-total': 5, 'x-iops-read': 3 })).toEqual(err('bps/iops/max total values and read/write values cannot be used at the same time'));
    expect(vm.qmp('object-add', { 'qom-type': 'iothread', id: 'i', 'poll-max-ns': -10 })).toEqual(err('poll-max-ns value must be in range [0, 9223372036854775807]'));
    expect(vm.qmp('object-add', { 'qom-type': 'iothread', id: 'i', 'thread-pool-min': 10, 'thread-pool-max': 5 })).toEqual(err('bad thread-pool-min/thread-pool-max values'));
    expect(vm.graph.objects.size).toBe(0);
  });

  it('a throttle group serves throttle nodes, merges x- properties with limits, and is refused deletion while in use', () => {
    const vm = createVm();
    expect(vm.qmp('object-add', { 'qom-type': 'throttle-group', id: 'tg0', 'x-iops-total': 5, limits: { 'bps-total': 7 } })).toEqual({ return: {} });
    expect(vm.qmp('object-add', { 'qom-type': 'throttle-group', id: 'tg0' })).toEqual(err("attempt to add duplicate property 'tg0' to object (type 'container')"));
    expect(vm.qmp('object-add', { 'qom-type': 'iothread', id: 'tg0' })).toEqual(err("attempt to add duplicate property 'tg0' to object (type 'container')"));
    expect(vm.execute('qom-get', { path: '/objects/tg0', property: 'limits' })).toMatchObject({ 'iops-total': 5, 'bps-total': 7, 'iops-total-max-length': 1 });
    expect(vm.qmp('blockdev-add', { driver: 'throttle', 'node-name': 't', 'throttle-group': 'tgx', file: { driver: 'null-co' } })).toEqual(err("Throttle group 'tgx' does not exist"));
    vm.execute('blockdev-add', { driver: 'throttle', 'node-name': 't', 'throttle-group': 'tg0', file: { driver: 'null-co' } });
    expect(vm.qmp('object-del', { id: 'tg0' })).toEqual(err("object 'tg0' is in use, can not be deleted"));
    vm.execute('blockdev-del', { 'node-name': 't' });
    expect(vm.qmp('object-del', { id: 'tg0' })).toEqual({ return: {} });
    expect(vm.qmp('object-del', { id: 'tg0' })).toEqual(err("object 'tg0' not found"));
  });

  it('iothreads are recorded and listed with QEMU fields, newest first', () => {
    const vm = createVm();
    vm.execute('object-add', { 'qom-type': 'iothread', id: 'io0' });
    vm.execute('object-add', { 'qom-type': 'iothread', id: 'io1', 'poll-max-ns': 10, 'aio-max-batch': 3 });
    expect(vm.execute('query-iothreads')).toEqual([
      { 'poll-shrink': 0, 'thread-id': 0, 'aio-max-batch': 3, 'poll-grow': 0, 'poll-max-ns': 10, id: 'io1' },
      { 'poll-shrink': 0, 'thread-id': 0, 'aio-max-batch': 0, 'poll-grow': 0, 'poll-max-ns': 32768, id: 'io0' },
    ]);
    // A throttle node cannot use an iothread as its group.
    expect(vm.qmp('blockdev-add', { driver: 'throttle', 'node-name': 't', 'throttle-group': 'io1', file: { driver: 'null-co' } })).toEqual(err("Throttle group 'io1' does not exist"));
    vm.execute('object-del', { id: 'io0' });
    expect(vm.execute<unknown[]>('query-iothreads').length).toBe(1);
  });

  it('-object creates objects before any -blockdev, whatever the order', () => {
    const config = parseCommandLine(['-blockdev', 'driver=throttle,node-name=t,throttle-group=tg0,file.driver=null-co', '-object', 'throttle-group,id=tg0,x-iops-total=100,x-bps-write=2000,x-bps-write-max=3000,x-bps-write-max-length=4,x-iops-size=0x200']);
    const vm = createVm(config);
    expect(vm.graph.nodes.has('t')).toBe(true);
    expect(findThrottleGroup(vm.graph, 'tg0').getLimits()).toMatchObject({ 'iops-total': 100, 'bps-write': 2000, 'bps-write-max': 3000, 'bps-write-max-length': 4, 'iops-size': 512 });
    const json = createVm(parseCommandLine(['-object', '{"qom-type":"throttle-group","id":"a","limits":{"iops-total":3}}', '-object', 'iothread,id=io0,poll-max-ns=7']));
    expect(findThrottleGroup(json.graph, 'a').getLimits()['iops-total']).toBe(3);
    expect(json.execute('query-iothreads')).toMatchObject([{ id: 'io0', 'poll-max-ns': 7 }]);
  });

  it("-object errors read as QEMU 7.2's (option errors quote the option, property errors are bare)", () => {
    expect(usage(['-object', 'bogus,id=x'])).toBe("-object bogus,id=x: Parameter 'qom-type' does not accept value 'bogus'");
    expect(usage(['-object', 'throttle-group'])).toBe("-object throttle-group: Parameter 'id' is missing");
    expect(usage(['-object', 'id=x'])).toBe("-object id=x: Parameter 'qom-type' is missing");
    expect(usage(['-object', 'throttle-group,id=tg0,x-bogus=1'])).toBe("-object throttle-group,id=tg0,x-bogus=1: Invalid parameter 'x-bogus'");
    expect(usage(['-object', 'throttle-group,id=a,limits.iops-total=3'])).toBe("-object throttle-group,id=a,limits.iops-total=3: Invalid parameter 'limits.iops-total'");
    expect(usage(['-object', 'throttle-group,id=a,x-iops-total=2k'])).toBe("-object throttle-group,id=a,x-iops-total=2k: Parameter 'x-iops-total' expects an int64 value");
    expect(usage(['-object', 'throttle-group,id=0bad'])).toBe("-object throttle-group,id=0bad: Parameter 'id' expects an identifier\nIdentifiers consist of letters, digits, '-', '.', '_', starting with a letter.");
    expect(usage(['-object', 'throttle-group,id=a', '-object', 'throttle-group,id=a'])).toBe("-object throttle-group,id=a: Duplicate ID 'a' for object");
    expect(usage(['-object', 'throttle-group,id=a,x-iops-total=-1'])).toBe('Property values cannot be negative');
    expect(usage(['-object', 'throttle-group,id=a,x-iops-total=5,x-iops-total-max-length=5000000000'])).toBe('x-iops-total-max-length value must be in therange [0, 4294967295]');
    expect(usage(['-object', 'throttle-group,id=a,x-iops-total=5,x-iops-read=3'])).toBe('bps/iops/max total values and read/write values cannot be used at the same time');
    expect(usage(['-object', '{"qom-type":"throttle-group","id":"a","x-bogus":1}'])).toBe('-object {"qom-type":"throttle-group","id":"a","x-bogus":1}: Parameter \'x-bogus\' is unexpected');
    expect(usage(['-object', 'throttle-group,id=a,x-iops-total=5,x-iops-total=6'])).toBe('no error');
  });
});
