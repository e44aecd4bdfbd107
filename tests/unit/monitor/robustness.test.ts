import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { JsonStream } from '../../../src/monitor/json-stream.js';
import { createVm } from '../../../src/system/vm.js';

/**
 * Bad input gets a typed error reply, never an exception out of the monitor: random arguments for
 * every command (over a VM with a few nodes), and random bytes into the JSON stream.
 */
describe('QMP robustness', () => {
  it('every command answers random arguments with a reply', () => {
    const names = createVm().table.names().filter((n) => n !== 'quit');
    const value = fc.oneof(fc.constantFrom('n0', 'n1', 'j', 'b', 'full', 'none', 'top', 'bitmap', 'abort', 'blockdev-backup', 'grouped', ''), fc.integer(), fc.boolean(), fc.constant(null));
    const args = fc.dictionary(
      fc.constantFrom('device', 'target', 'node', 'name', 'id', 'job-id', 'sync', 'speed', 'node-name', 'driver', 'size', 'actions', 'properties', 'bitmaps', 'granularity', 'force', 'bitmap', 'base-node', 'top-node', 'type', 'data'),
      fc.oneof(value, fc.array(fc.oneof(value, fc.record({ type: value, data: fc.dictionary(fc.constantFrom('device', 'target', 'sync', 'node', 'name', 'job-id'), value) })), { maxLength: 3 })),
      { maxKeys: 5 },
    );
    const succeeded = new Set<string>();
    const node = fc.constantFrom('n0', 'n1');
    const jobId = fc.constantFrom('j', 'k');
    const bitmapName = fc.constantFrom('b', 'c');
    const backup = fc.record(
      { 'job-id': jobId, device: node, target: node, sync: fc.constantFrom('full', 'none', 'top', 'incremental', 'bitmap'), bitmap: bitmapName, speed: fc.constantFrom(0, 65536), 'auto-finalize': fc.boolean(), 'auto-dismiss': fc.boolean() },
      { requiredKeys: ['job-id', 'device', 'target', 'sync'] },
    );
    const bitmapRef = fc.record({ node, name: bitmapName });
    const action = fc.oneof(
      backup.map((data) => ({ type: 'blockdev-backup', data })),
      bitmapRef.map((data) => ({ type: 'block-dirty-bitmap-add', data })),
      bitmapRef.map((data) => ({ type: 'block-dirty-bitmap-clear', data })),
      bitmapRef.map((data) => ({ type: 'block-dirty-bitmap-remove', data })),
      fc.constant({ type: 'abort', data: {} }),
    );
    const shaped: fc.Arbitrary<[string, Record<string, unknown>]> = fc.oneof(
      backup.map((a) => ['blockdev-backup', a] as [string, Record<string, unknown>]),
      fc.record({ device: node, target: node, sync: fc.constantFrom('full', 'none'), 'job-id': jobId }).map((a) => ['blockdev-mirror', a] as [string, Record<string, unknown>]),
      fc.tuple(fc.constantFrom('block-dirty-bitmap-add', 'block-dirty-bitmap-remove', 'block-dirty-bitmap-clear', 'block-dirty-bitmap-enable', 'block-dirty-bitmap-disable'), bitmapRef).map(([c, a]) => [c, a] as [string, Record<string, unknown>]),
      fc.record({ actions: fc.array(action, { maxLength: 4 }), properties: fc.record({ 'completion-mode': fc.constantFrom('individual', 'grouped') }) }, { requiredKeys: ['actions'] }).map((a) => ['transaction', a] as [string, Record<string, unknown>]),
      fc.tuple(fc.constantFrom('job-pause', 'job-resume', 'job-cancel', 'job-complete', 'job-finalize', 'job-dismiss'), jobId).map(([c, id]) => [c, { id }] as [string, Record<string, unknown>]),
      fc.tuple(fc.constantFrom('block-job-pause', 'block-job-resume', 'block-job-cancel', 'block-job-complete'), jobId).map(([c, device]) => [c, { device }] as [string, Record<string, unknown>]),
      node.map((n) => ['blockdev-del', { 'node-name': n }] as [string, Record<string, unknown>]),
    );
    fc.assert(
      fc.property(fc.array(fc.oneof(shaped, shaped, fc.tuple(fc.constantFrom(...names), args)), { minLength: 1, maxLength: 10 }), (calls) => {
        // Confined to a directory that does not exist: drive-backup/-mirror targets are never created.
        const vm = createVm({ startStopped: true, allowPaths: ['/nonexistent/tsqemu-robustness'] });
        vm.execute('blockdev-add', { driver: 'null-co', 'node-name': 'n0', size: 1 << 20 });
        vm.execute('blockdev-add', { driver: 'null-co', 'node-name': 'n1', size: 1 << 20 });
        for (const [name, a] of calls) {
          const t1 = Date.now();
          const reply = vm.qmp(name, a);
          if (process.env.SHOW && Date.now() - t1 > 200) console.log("slow qmp", name, JSON.stringify(a), Date.now() - t1);
          expect('return' in reply || 'error' in reply).toBe(true);
          if ('return' in reply) succeeded.add(name);
          const t0 = Date.now();
          vm.run({ maxTasks: 10_000 });
          if (process.env.SHOW && Date.now() - t0 > 200) console.log("slow", name, JSON.stringify(a), Date.now() - t0);
        }
      }),
      { numRuns: Number(process.env.RUNS ?? 100) },
    );
    // The generator reaches past the schema: state-changing commands succeed too.
    if (process.env.SHOW) console.log([...succeeded]);
    expect([...succeeded].filter((n) => !n.startsWith('query-')).length).toBeGreaterThan(3);
  });

  it('random text into the JSON stream yields values or parse errors only', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: fc.constantFrom('{', '}', '[', ']', ',', ':', '"', "'", '\\', 'u', '0', '1', '-', '.', 'e', 't', 'n', ' ', '\n', 'a', '@', 'é') }), { maxLength: 6 }), (chunks) => {
        let emitted = 0;
        const stream = new JsonStream(() => emitted++, { maxTokenSize: 256 });
        for (const chunk of chunks) stream.feed(chunk);
        expect(stream.bufferedChars).toBeLessThanOrEqual(256 * 2);
        expect(emitted).toBeGreaterThanOrEqual(0);
      }),
      { numRuns: 500 },
    );
  });
});
