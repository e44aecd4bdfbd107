/**
 * Checkpoint probe for the disks of a replay run: what the guest wrote to each `snapshot=on`
 * overlay since the last checkpoint, one digest per changed 4 KiB chunk (so a report names the
 * disk and the byte range). Chunks are immutable once stored, so "changed" is an identity check.
 */
import type { BlockDriverState } from '../block/node.js';
import { OVERLAY_CHUNK_BYTES, saveOverlay } from '../block/drivers/snapshot-overlay.js';
import { Digest } from '../engine/digest.js';
import type { StateEntries } from './log-format.js';
import type { StateProbe } from './state.js';

export class DiskWritesProbe implements StateProbe {
  readonly name = 'disk';
  private seen: Map<string, Map<number, Uint8Array>>;

  constructor(private readonly overlays: readonly { readonly id: string; readonly node: BlockDriverState }[]) {
    this.seen = this.current();
  }

  private current(): Map<string, Map<number, Uint8Array>> {
    return new Map(this.overlays.map((o) => [o.id, new Map(saveOverlay(o.node).chunks)]));
  }

  capture(): StateEntries {
    const out: Record<string, string> = {};
    const now = this.current();
    for (const [id, chunks] of now) {
      const before = this.seen.get(id);
      for (const [index, bytes] of chunks) {
        if (before?.get(index) === bytes) continue;
        const start = index * OVERLAY_CHUNK_BYTES;
        out[`${id} 0x${start.toString(16)}`] = new Digest().bytes(bytes).hex();
      }
    }
    this.seen = now;
    return out;
  }

  resync(): void {
    this.seen = this.current();
  }
}
