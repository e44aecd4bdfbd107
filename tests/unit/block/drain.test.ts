import { describe, expect, it } from 'vitest';
import { type Co, sleep } from '../../../src/engine/coroutine.js';
import { BlockBackend, devicePerms } from '../../../src/block/block-backend.js';
import { bdrvCoDrainedBegin, bdrvCoPwritev, bdrvDrainedBegin, bdrvDrainedEnd, bdrvIsBusy } from '../../../src/block/io.js';
import { throttleGroupAdd } from '../../../src/block/throttle-groups.js';
import { newGraph } from './helpers.js';

describe('drain and in-flight tracking', () => {
  it('waits for requests in flight and queues new ones until the end', () => {
    const { loop, graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'raw', file: { driver: 'null-aio', 'latency-ns': 1_000_000, 'node-name': 'proto' } });
    const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
    const done: string[] = [];
    for (let i = 0; i < 4; i++) {
      loop.spawn(`w${i}`, (function* (): Co {
        const ret = yield* blk.coPwritev(i * 512, 512, new Uint8Array(512));
        done.push(`w${i}:${ret}`);
      })());
    }
    loop.runUntil(() => bs.inFlight === 4);
    expect(graph.findNode('proto')!.inFlight).toBe(4);
    bdrvDrainedBegin(bs);
    expect(done).toEqual(['w0:0', 'w1:0', 'w2:0', 'w3:0']);
    expect(bs.inFlight).toBe(0);
    expect(blk.inFlight).toBe(0);
    expect(bs.quiesceCounter).toBe(1);
    expect(blk.quiesceCounter).toBe(1);
    // A request submitted in the drained section waits.
    loop.spawn('late', (function* (): Co {
      const ret = yield* blk.coPreadv(0, 512, new Uint8Array(512));
      done.push(`late:${ret}`);
    })());
    loop.runUntilIdle();
    expect(done).toHaveLength(4);
    // Nested sections: only the last end releases it.
    bdrvDrainedBegin(bs);
    bdrvDrainedEnd(bs);
    loop.runUntilIdle();
    expect(done).toHaveLength(4);
    bdrvDrainedEnd(bs);
    loop.runUntilIdle();
    expect(done[4]).toBe('late:0');
    expect(bdrvIsBusy(bs)).toBe(false);
    expect(bs.quiesceCounter).toBe(0);
  });

  it('lets a job backend with queuing disabled through a drain', () => {
    const { loop, graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'null-co', 'latency-ns': 1000 });
    const job = BlockBackend.withNode(graph, bs, { perm: 1, shared: 0x1f });
    job.disableRequestQueuing = true;
    bdrvDrainedBegin(bs);
    let ret = 1;
    loop.spawn('job', (function* (): Co {
      ret = yield* job.coPreadv(0, 512, new Uint8Array(512));
    })());
    loop.runUntilIdle();
    expect(ret).toBe(0);
    bdrvDrainedEnd(bs);
  });

  it('drains from inside a coroutine', () => {
    const { loop, graph } = newGraph();
    const bs = graph.blockdevAdd({ driver: 'null-co', 'latency-ns': 5000 });
    const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
    let writes = 0;
    for (let i = 0; i < 3; i++) {
      loop.spawn('w', (function* (): Co {
        yield sleep(i * 1000);
        if ((yield* blk.coPwritev(0, 512, new Uint8Array(512))) === 0) writes++;
      })());
    }
    let sawBusy = false;
    loop.runCoroutine('drainer', (function* (): Co {
      yield sleep(1500);
      sawBusy = bdrvIsBusy(bs);
      yield* bdrvCoDrainedBegin(bs);
      expect(bs.inFlight).toBe(0);
      bdrvDrainedEnd(bs);
    })());
    loop.runUntilIdle();
    expect(sawBusy).toBe(true);
    expect(writes).toBe(3);
  });

  it('never leaks in-flight counts on errors', () => {
    const { loop, graph } = newGraph();
    const bs = graph.blockdevAdd({
      driver: 'raw',
      file: { driver: 'blkdebug', 'inject-error': [{ event: 'read_aio', errno: 5 }], image: { driver: 'null-co', 'latency-ns': 10 } },
    });
    const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
    for (let i = 0; i < 5; i++) expect(loop.runCoroutine('r', blk.coPreadv(0, 512, new Uint8Array(512)))).toBe(-5);
    for (const node of graph.nodes.values()) {
      expect(node.inFlight).toBe(0);
      expect(node.trackedRequests).toHaveLength(0);
    }
    expect(blk.inFlight).toBe(0);
  });
});

describe('under frozen time (-accel qtest)', () => {
  it('host-like I/O completes without time passing; drain and blockdev-del work', () => {
    const { loop, graph } = newGraph();
    loop.frozen = true;
    const bs = graph.blockdevAdd({ driver: 'null-co', 'latency-ns': 50_000 });
    const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
    let ret = 1;
    loop.spawn('w', (function* (): Co {
      ret = yield* blk.coPwritev(0, 512, new Uint8Array(512));
    })());
    expect(bs.inFlight).toBe(0);
    loop.runUntil(() => bs.inFlight === 1);
    bdrvDrainedBegin(bs);
    expect(ret).toBe(0);
    expect(bs.inFlight).toBe(0);
    bdrvDrainedEnd(bs);
    expect(loop.nowNs).toBe(0);
    const x = graph.blockdevAdd({ driver: 'null-co', 'node-name': 'x', 'latency-ns': 70_000 });
    let xr = 1;
    loop.spawn('x', (function* (): Co {
      xr = yield* bdrvCoPwritev(x, 0, 512, new Uint8Array(512));
    })());
    loop.runUntil(() => x.inFlight === 1);
    graph.blockdevDel('x');
    expect(xr).toBe(0);
    expect(x.closed).toBe(true);
    blk.dispose();
    graph.closeAll();
    expect(graph.nodes.size).toBe(0);
    expect(loop.nowNs).toBe(0);
  });

  it('throttling still waits for the (frozen) clock, as QEMU uses the virtual clock under qtest; a drain lets it through', () => {
    const { loop, graph } = newGraph();
    loop.frozen = true;
    throttleGroupAdd(graph, 'tg', { limits: { 'iops-total': 10 } });
    const bs = graph.blockdevAdd({ driver: 'throttle', 'throttle-group': 'tg', file: { driver: 'null-co' } });
    const blk = BlockBackend.withNode(graph, bs, devicePerms(false));
    let done = 0;
    for (let i = 0; i < 3; i++) {
      loop.spawn(`w${i}`, (function* (): Co {
        if ((yield* blk.coPwritev(0, 512, new Uint8Array(512))) === 0) done++;
      })());
    }
    loop.runUntilIdle();
    expect(done).toBe(2);
    loop.step(100_000_000);
    expect(done).toBe(3);
  });
});
