import { describe, expect, it } from 'vitest';
import { createVm, type VmEvent } from '../../../src/system/vm.js';

function vmWithEvents() {
  const vm = createVm({ startStopped: true });
  const events: VmEvent[] = [];
  vm.onEvent((e) => events.push(e));
  return { vm, events };
}

describe('in-process QMP API', () => {
  it('answers query-status and run control like QEMU 7.2', () => {
    const { vm, events } = vmWithEvents();
    expect(vm.qmp('query-status')).toEqual({ return: { status: 'prelaunch', singlestep: false, running: false } });
    expect(vm.qmp('stop')).toEqual({ return: {} });
    expect(events).toEqual([]);
    expect(vm.qmp('cont')).toEqual({ return: {} });
    expect(events.map((e) => e.event)).toEqual(['RESUME']);
    expect(events[0]!.data).toBeUndefined();
    vm.qmp('stop');
    expect(vm.execute('query-status')).toEqual({ status: 'paused', singlestep: false, running: false });
    vm.qmp('system_reset');
    expect(events.at(-1)).toMatchObject({ event: 'RESET', data: { guest: false, reason: 'host-qmp-system-reset' } });
    expect(vm.execute('query-status')).toMatchObject({ status: 'prelaunch' });
  });

  it('validates arguments before running anything', () => {
    const { vm } = vmWithEvents();
    expect(vm.qmp('query-status', { a: 1 })).toEqual({ error: { class: 'GenericError', desc: "Parameter 'a' is unexpected" } });
    expect(vm.qmp('nosuch')).toEqual({ error: { class: 'CommandNotFound', desc: 'The command nosuch has not been found' } });
    vm.execute('blockdev-add', { driver: 'null-co', 'node-name': 'n0', size: 1048576 });
    vm.execute('blockdev-add', { driver: 'null-co', 'node-name': 'n1', size: 1048576 });
    expect(vm.qmp('blockdev-backup', { device: 'n0', target: 'n1', sync: 'bogus' })).toEqual({ error: { class: 'GenericError', desc: "Parameter 'sync' does not accept value 'bogus'" } });
    expect(vm.qmp('blockdev-backup', { device: 'n0', target: 'n1' })).toEqual({ error: { class: 'GenericError', desc: "Parameter 'sync' is missing" } });
    expect(vm.qmp('blockdev-backup', { device: 'n0', target: 'n1', sync: 'full', speed: 'x' })).toEqual({ error: { class: 'GenericError', desc: "Invalid parameter type for 'speed', expected: integer" } });
    expect(vm.qmp('transaction', { actions: [{ type: 'blockdev-backup', data: { device: 'a' } }] })).toEqual({ error: { class: 'GenericError', desc: "Parameter 'actions[0].data.sync' is missing" } });
    expect(vm.qmp('transaction', { actions: [{ type: 'abort' }] })).toEqual({ error: { class: 'GenericError', desc: "Parameter 'actions[0].data' is missing" } });
    expect(vm.qmp('transaction', { actions: [{ type: 'bogus', data: {} }] })).toEqual({ error: { class: 'GenericError', desc: "Parameter 'type' does not accept value 'bogus'" } });
    expect(vm.execute('query-jobs')).toEqual([]);
  });

  it('runs a backup to completion with QEMU events', () => {
    const { vm, events } = vmWithEvents();
    vm.execute('blockdev-add', { driver: 'null-co', 'node-name': 'n0', size: 1048576 });
    vm.execute('blockdev-add', { driver: 'null-co', 'node-name': 'n1', size: 1048576 });
    expect(vm.qmp('blockdev-backup', { 'job-id': 'j1', device: 'n0', target: 'n1', sync: 'full' })).toEqual({ return: {} });
    vm.run();
    const seen = events.map((e) => (e.event === 'JOB_STATUS_CHANGE' ? `${e.data!['status']}` : e.event));
    expect(seen.filter((s) => s !== 'paused')).toEqual(['created', 'running', 'waiting', 'pending', 'BLOCK_JOB_COMPLETED', 'concluded', 'null']);
    expect(events.find((e) => e.event === 'BLOCK_JOB_COMPLETED')!.data).toEqual({ type: 'backup', device: 'j1', len: 1048576, offset: 1048576, speed: 0 });
    expect(vm.qmp('block-job-cancel', { device: 'j1' })).toEqual({ error: { class: 'DeviceNotActive', desc: "Block job 'j1' not found" } });
    expect(vm.qmp('job-cancel', { id: 'j1' })).toEqual({ error: { class: 'GenericError', desc: 'Job not found' } });
  });
});
