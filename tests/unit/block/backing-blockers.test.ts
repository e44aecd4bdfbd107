import { describe, expect, it } from 'vitest';
import { BlockBackend } from '../../../src/block/block-backend.js';
import { ChildRole } from '../../../src/block/driver.js';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { BlockGraph } from '../../../src/block/graph.js';

describe('backing file op blockers (bdrv_backing_attach)', () => {
  it('a backing node refuses every operation but commit-target, stream and backup while attached', () => {
    const graph = new BlockGraph(new MainLoop());
    const base = graph.blockdevAdd({ driver: 'null-co', 'node-name': 'base', size: 1 << 20 });
    const top = graph.blockdevAdd({ driver: 'null-co', 'node-name': 'top', size: 1 << 20 });
    const edge = graph.attachChild(top, base, 'backing', ChildRole.COW);
    expect(base.opIsBlocked('external-snapshot')?.message).toBe("Node 'base' is busy: node is used as backing hd of 'top'");
    expect(base.opIsBlocked('mirror-source')).not.toBeNull();
    expect(base.opIsBlocked('drive-del')).not.toBeNull();
    for (const op of ['commit-target', 'stream', 'backup-source', 'backup-target'] as const) expect(base.opIsBlocked(op)).toBeNull();
    expect(top.opIsBlocked('external-snapshot')).toBeNull();
    graph.detachChild(edge);
    expect(base.opBlockers.size).toBe(0);
  });

  it('names the parent by its BlockBackend when it has a named one', () => {
    const graph = new BlockGraph(new MainLoop());
    const base = graph.blockdevAdd({ driver: 'null-co', 'node-name': 'base', size: 1 << 20 });
    const top = graph.blockdevAdd({ driver: 'null-co', 'node-name': 'top', size: 1 << 20 });
    const blk = BlockBackend.withNode(graph, top, { name: 'drive0' });
    graph.attachChild(top, base, 'backing', ChildRole.COW);
    expect(base.opIsBlocked('resize')?.message).toBe("Node 'base' is busy: node is used as backing hd of 'drive0'");
    blk.dispose();
  });
});
