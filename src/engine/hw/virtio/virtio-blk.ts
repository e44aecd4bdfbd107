import { assert } from '../../assert.js';
import type { Co } from '../../coroutine.js';
import type { MainLoop } from '../../main-loop.js';
import type { VirtioDevice, VirtioTransport } from './virtio-mmio.js';
import { type Virtqueue, type VirtqElement, VirtioRingError, gather, scatter } from './virtqueue.js';

export const VIRTIO_ID_BLOCK = 2;
export const VirtioBlkFeature = {
  SIZE_MAX: 1,
  SEG_MAX: 2,
  GEOMETRY: 4,
  RO: 5,
  BLK_SIZE: 6,
  SCSI: 7,
  FLUSH: 9,
  TOPOLOGY: 10,
  CONFIG_WCE: 11,
  DISCARD: 13,
  WRITE_ZEROES: 14,
} as const;
export const VirtioBlkType = { IN: 0, OUT: 1, FLUSH: 4, GET_ID: 8, DISCARD: 11, WRITE_ZEROES: 13 } as const;
export const VirtioBlkStatus = { OK: 0, IOERR: 1, UNSUPP: 2 } as const;
export const VIRTIO_BLK_ID_BYTES = 20;
export const SECTOR_SIZE = 512;
/** Bound on discard/write-zeroes segments per request (max_discard_seg / max_write_zeroes_seg). */
export const VIRTIO_BLK_MAX_DWZ_SEGMENTS = 1;
/** Bound on sectors per discard/write-zeroes segment (QEMU's default: BDRV_REQUEST_MAX_SECTORS). */
export const VIRTIO_BLK_MAX_DWZ_SECTORS = 0x3fffff;
const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1;

/** BDRV_REQ_MAY_UNMAP (the block layer's BdrvReq.MAY_UNMAP): write-zeroes may deallocate. */
export const BDRV_REQ_MAY_UNMAP = 0x4;
/** BDRV_REQ_FUA: the write is on stable storage when it completes (writethrough mode). */
export const BDRV_REQ_FUA = 0x10;
/** Offset of `writeback` in struct virtio_blk_config. */
const CONFIG_WRITEBACK_OFFSET = 32;

/**
 * The part of the block layer's `BlockBackend` (src/block/block-backend.ts) virtio-blk uses: its
 * coroutine I/O, which returns a negative errno on failure as QEMU's blk_co_* do. Declared
 * structurally so a BlockBackend is assignable to it as is.
 */
export interface VirtioBlkBackend {
  readonly name: string;
  /** Length in bytes (negative errno if unknown). */
  getLength(): number;
  readonly isReadOnly: boolean;
  coPreadv(offset: number, bytes: number, buf: Uint8Array, flags?: number): Co<number>;
  coPwritev(offset: number, bytes: number, buf: Uint8Array, flags?: number): Co<number>;
  coFlush(): Co<number>;
  coPdiscard(offset: number, bytes: number): Co<number>;
  coPwriteZeroes(offset: number, bytes: number, flags?: number): Co<number>;
}

declare module '../../trace.js' {
  interface TraceEventMap {
    'virtio-blk.req': { dev: string; type: number; sector: number; bytes: number };
    'virtio-blk.done': { dev: string; type: number; status: number };
  }
}

export interface VirtioBlkOptions {
  /** Serial number returned by GET_ID (at most 20 bytes are used). */
  readonly serial?: string;
  readonly queueSize?: number;
  /** Logical block size in bytes (power of two, ≥ 512). */
  readonly logicalBlockSize?: number;
}

/** virtio-blk's own state for machine snapshots (the disk's bytes are the block layer's). */
export interface VirtioBlkState {
  readonly generation: number;
  readonly writeback: boolean;
}

/**
 * virtio-blk on a BlockBackend: read, write, flush, discard, write-zeroes and get-id. Each request
 * runs as a coroutine entered right away (as QEMU's blk_aio_* enters its coroutine), so the block
 * layer's modelled latency decides when it completes; completions go to the used ring in the
 * order they finish.
 */
export class VirtioBlk implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_BLOCK;
  readonly numQueues = 1;
  readonly queueSize: number;
  private transport: VirtioTransport | null = null;
  private readonly blockSize: number;
  private readonly config: Uint8Array;
  /** Bumped on reset so requests in flight from before it do not touch the new rings. */
  private generation = 0;
  private inFlightCount = 0;
  /** Write cache on (writeback) or off (writethrough: every write is FUA); CONFIG_WCE lets the driver choose. */
  private writeback = true;

  constructor(
    private readonly loop: MainLoop,
    readonly path: string,
    readonly backend: VirtioBlkBackend,
    private readonly options: VirtioBlkOptions = {},
  ) {
    this.queueSize = options.queueSize ?? 256;
    this.blockSize = options.logicalBlockSize ?? SECTOR_SIZE;
    this.config = new Uint8Array(60);
  }

  get inFlight(): number {
    return this.inFlightCount;
  }

  /** Snapshot state; only taken with no request in flight (a request is a coroutine mid-flight). */
  saveState(): VirtioBlkState {
    assert(this.inFlightCount === 0, () => `${this.path}: ${this.inFlightCount} request(s) in flight`);
    return { generation: this.generation, writeback: this.writeback };
  }

  restoreState(s: VirtioBlkState): void {
    assert(Number.isSafeInteger(s.generation) && s.generation >= 0, () => `${this.path}: bad restored generation`);
    assert(this.inFlightCount === 0, () => `${this.path}: restore with ${this.inFlightCount} request(s) in flight`);
    this.generation = s.generation;
    this.writeback = s.writeback === true;
  }

  bind(transport: VirtioTransport): void {
    this.transport = transport;
  }

  /** QEMU 7.2's default virtio-blk features; legacy transports also get SCSI (commands answer UNSUPP). */
  features(legacy: boolean): bigint {
    const F = VirtioBlkFeature;
    const bits: number[] = [F.SEG_MAX, F.GEOMETRY, F.BLK_SIZE, F.FLUSH, F.TOPOLOGY, F.CONFIG_WCE, F.DISCARD, F.WRITE_ZEROES];
    if (legacy) bits.push(F.SCSI);
    if (this.backend.isReadOnly) bits.push(F.RO);
    return bits.reduce((f, b) => f | (1n << BigInt(b)), 0n);
  }

  /** virtio_blk_update_config: the layout of struct virtio_blk_config. */
  private refreshConfig(): void {
    const v = new DataView(this.config.buffer);
    const sectors = Math.floor(Math.max(0, this.backend.getLength()) / SECTOR_SIZE);
    v.setBigUint64(0, BigInt(sectors), true);
    v.setUint32(8, 0, true); // size_max
    v.setUint32(12, this.queueSize - 2, true); // seg_max
    // geometry: QEMU's defaults for a disk without -global (16 heads, 63 sectors).
    const cylinders = Math.min(Math.floor(sectors / (16 * 63)), 0xffff);
    v.setUint16(16, cylinders, true);
    v.setUint8(18, 16);
    v.setUint8(19, 63);
    v.setUint32(20, this.blockSize, true);
    v.setUint8(24, 0); // physical_block_exp
    v.setUint8(25, 0); // alignment_offset
    v.setUint16(26, 0, true); // min_io_size
    v.setUint32(28, 0, true); // opt_io_size
    v.setUint8(CONFIG_WRITEBACK_OFFSET, this.writeback ? 1 : 0);
    v.setUint16(34, 1, true); // num_queues
    v.setUint32(36, VIRTIO_BLK_MAX_DWZ_SECTORS, true);
    v.setUint32(40, VIRTIO_BLK_MAX_DWZ_SEGMENTS, true);
    v.setUint32(44, this.blockSize / SECTOR_SIZE, true);
    v.setUint32(48, VIRTIO_BLK_MAX_DWZ_SECTORS, true);
    v.setUint32(52, VIRTIO_BLK_MAX_DWZ_SEGMENTS, true);
    v.setUint8(56, 1); // write_zeroes_may_unmap
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    if (offset + size > this.config.length) return 0;
    this.refreshConfig();
    const v = new DataView(this.config.buffer);
    return size === 1 ? v.getUint8(offset) : size === 2 ? v.getUint16(offset, true) : v.getUint32(offset, true);
  }

  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void {
    // Only `writeback` is writable, and only once the driver took CONFIG_WCE.
    if (offset !== CONFIG_WRITEBACK_OFFSET || size !== 1) return;
    if (!(this.transport!.guestFeatures & (1n << BigInt(VirtioBlkFeature.CONFIG_WCE)))) return;
    this.writeback = (value & 1) === 1;
  }

  reset(): void {
    this.generation++;
    this.writeback = true;
  }

  handleQueue(queue: Virtqueue): void {
    const transport = this.transport;
    if (transport === null) return;
    for (let guard = 0; guard <= queue.num; guard++) {
      let elem: VirtqElement | null;
      try {
        elem = queue.pop();
      } catch (e) {
        if (!(e instanceof VirtioRingError)) throw e;
        transport.fail(e.message);
        return;
      }
      if (elem === null) return;
      const request = elem;
      const generation = this.generation;
      this.inFlightCount++;
      this.loop.enter(`${this.path}:req`, this.runRequest(queue, request, generation));
    }
  }

  private *runRequest(queue: Virtqueue, elem: VirtqElement, generation: number): Co<void> {
    const transport = this.transport!;
    let status: number;
    let written = 0;
    try {
      if (elem.outBytes < 16 || elem.inBytes < 1) {
        transport.fail('virtio-blk request without header or status byte');
        return;
      }
      const header = gather(transport.as, elem.out, 0, 16);
      if (!header.ok) {
        transport.fail('virtio-blk request header outside RAM');
        return;
      }
      const hv = new DataView(header.bytes.buffer);
      const type = hv.getUint32(0, true);
      const sectorBig = hv.getBigUint64(8, true);
      const sector = sectorBig > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(sectorBig);
      const dataIn = elem.inBytes - 1;
      this.loop.trace.emit('virtio-blk.req', { dev: this.path, type, sector, bytes: type === VirtioBlkType.OUT ? elem.outBytes - 16 : dataIn });
      const result = yield* this.execute(type, sector, elem, dataIn);
      status = result.status;
      written = result.written;
      this.loop.trace.emit('virtio-blk.done', { dev: this.path, type, status });
    } finally {
      this.inFlightCount--;
    }
    if (generation !== this.generation) return; // the driver reset the device meanwhile
    const statusOk = scatter(transport.as, elem.in, elem.inBytes - 1, Uint8Array.of(status));
    if (!statusOk) {
      transport.fail('virtio-blk status byte outside RAM');
      return;
    }
    try {
      queue.push(elem, written + 1);
    } catch (e) {
      if (!(e instanceof VirtioRingError)) throw e;
      transport.fail(e.message);
      return;
    }
    transport.notify(queue);
  }

  private rangeOk(sector: number, bytes: number): boolean {
    const length = this.backend.getLength();
    const offset = sector * SECTOR_SIZE;
    return Number.isSafeInteger(offset) && offset % this.blockSize === 0 && bytes % this.blockSize === 0 && offset + bytes <= length;
  }

  private *execute(type: number, sector: number, elem: VirtqElement, dataIn: number): Co<{ status: number; written: number }> {
    const as = this.transport!.as;
    const S = VirtioBlkStatus;
    switch (type) {
      case VirtioBlkType.IN: {
        if (!this.rangeOk(sector, dataIn)) return { status: S.IOERR, written: 0 };
        const buf = new Uint8Array(dataIn);
        const ret = yield* this.backend.coPreadv(sector * SECTOR_SIZE, dataIn, buf);
        if (ret < 0) return { status: S.IOERR, written: 0 };
        if (!scatter(as, elem.in, 0, buf)) return { status: S.IOERR, written: 0 };
        return { status: S.OK, written: dataIn };
      }
      case VirtioBlkType.OUT: {
        const bytes = elem.outBytes - 16;
        if (this.backend.isReadOnly) return { status: S.IOERR, written: 0 };
        if (!this.rangeOk(sector, bytes)) return { status: S.IOERR, written: 0 };
        const data = gather(as, elem.out, 16, bytes);
        if (!data.ok) return { status: S.IOERR, written: 0 };
        const ret = yield* this.backend.coPwritev(sector * SECTOR_SIZE, bytes, data.bytes, this.writeback ? 0 : BDRV_REQ_FUA);
        return { status: ret < 0 ? S.IOERR : S.OK, written: 0 };
      }
      case VirtioBlkType.FLUSH: {
        const ret = yield* this.backend.coFlush();
        return { status: ret < 0 ? S.IOERR : S.OK, written: 0 };
      }
      case VirtioBlkType.GET_ID: {
        const id = new Uint8Array(VIRTIO_BLK_ID_BYTES);
        const serial = new TextEncoder().encode(this.options.serial ?? '');
        id.set(serial.subarray(0, VIRTIO_BLK_ID_BYTES));
        const n = Math.min(dataIn, VIRTIO_BLK_ID_BYTES);
        if (!scatter(as, elem.in, 0, id.subarray(0, n))) return { status: S.IOERR, written: 0 };
        return { status: S.OK, written: n };
      }
      case VirtioBlkType.DISCARD:
      case VirtioBlkType.WRITE_ZEROES: {
        const F = VirtioBlkFeature;
        const feature = type === VirtioBlkType.DISCARD ? F.DISCARD : F.WRITE_ZEROES;
        if (!(this.transport!.guestFeatures & (1n << BigInt(feature))) || this.backend.isReadOnly) return { status: S.UNSUPP, written: 0 };
        const payload = elem.outBytes - 16;
        if (payload % 16 !== 0 || payload === 0 || payload / 16 > VIRTIO_BLK_MAX_DWZ_SEGMENTS) return { status: S.UNSUPP, written: 0 };
        const segs = gather(as, elem.out, 16, payload);
        if (!segs.ok) return { status: S.IOERR, written: 0 };
        const sv = new DataView(segs.bytes.buffer);
        for (let i = 0; i < payload / 16; i++) {
          const segSector = Number(sv.getBigUint64(16 * i, true) & 0x1f_ffff_ffff_ffffn);
          const numSectors = sv.getUint32(16 * i + 8, true);
          const flags = sv.getUint32(16 * i + 12, true);
          const bytes = numSectors * SECTOR_SIZE;
          if (numSectors > VIRTIO_BLK_MAX_DWZ_SECTORS) return { status: S.IOERR, written: 0 };
          if (type === VirtioBlkType.DISCARD && flags !== 0) return { status: S.UNSUPP, written: 0 };
          if (type === VirtioBlkType.WRITE_ZEROES && (flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) !== 0) return { status: S.UNSUPP, written: 0 };
          if (!this.rangeOk(segSector, bytes)) return { status: S.IOERR, written: 0 };
          const ret =
            type === VirtioBlkType.DISCARD
              ? yield* this.backend.coPdiscard(segSector * SECTOR_SIZE, bytes)
              : yield* this.backend.coPwriteZeroes(segSector * SECTOR_SIZE, bytes, (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) !== 0 ? BDRV_REQ_MAY_UNMAP : 0);
          // A discard the backend cannot do is not an error (it is only a hint).
          if (ret < 0 && type === VirtioBlkType.WRITE_ZEROES) return { status: S.IOERR, written: 0 };
        }
        return { status: S.OK, written: 0 };
      }
      default:
        return { status: S.UNSUPP, written: 0 };
    }
  }
}
