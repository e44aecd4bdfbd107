import type { QtestClient } from '../client.js';
import type { GuestAllocator } from './guest-alloc.js';

/** virtio-mmio register offsets (legacy and modern share these). */
export const VirtioMmioRegs = {
  magic: 0x000,
  version: 0x004,
  deviceId: 0x008,
  vendorId: 0x00c,
  hostFeatures: 0x010,
  hostFeaturesSel: 0x014,
  guestFeatures: 0x020,
  guestFeaturesSel: 0x024,
  guestPageSize: 0x028,
  queueSel: 0x030,
  queueNumMax: 0x034,
  queueNum: 0x038,
  queueAlign: 0x03c,
  queuePfn: 0x040,
  queueNotify: 0x050,
  interruptStatus: 0x060,
  interruptAck: 0x064,
  status: 0x070,
  config: 0x100,
} as const;

export const VirtioStatus = { ACKNOWLEDGE: 1, DRIVER: 2, DRIVER_OK: 4, FEATURES_OK: 8 } as const;
export const VRING_DESC_F_NEXT = 1;
export const VRING_DESC_F_WRITE = 2;

const PAGE = 4096;

/** One buffer of a descriptor chain. */
export interface ChainBuffer {
  readonly addr: number;
  readonly len: number;
  /** Device writes it (VRING_DESC_F_WRITE). */
  readonly write: boolean;
}

/** A legacy split virtqueue laid out in guest memory by the test (libqos's QVirtQueue). */
export class LegacyVirtqueue {
  private freeHead = 0;
  private availIdx = 0;
  private usedSeen = 0;

  constructor(
    private readonly qt: QtestClient,
    readonly index: number,
    readonly num: number,
    readonly desc: number,
  ) {}

  get avail(): number {
    return this.desc + 16 * this.num;
  }

  get used(): number {
    return Math.ceil((this.avail + 6 + 2 * this.num) / PAGE) * PAGE;
  }

  /** Writes a descriptor chain and publishes it in the avail ring; returns the head index. */
  async add(buffers: readonly ChainBuffer[]): Promise<number> {
    if (buffers.length === 0 || buffers.length > this.num) throw new RangeError(`chain of ${buffers.length} buffers on a ${this.num}-entry queue`);
    const head = this.freeHead;
    const table = new Uint8Array(16 * buffers.length);
    const view = new DataView(table.buffer);
    buffers.forEach((b, i) => {
      const slot = (head + i) % this.num;
      const last = i === buffers.length - 1;
      view.setBigUint64(16 * i, BigInt(b.addr), true);
      view.setUint32(16 * i + 8, b.len, true);
      view.setUint16(16 * i + 12, (last ? 0 : VRING_DESC_F_NEXT) | (b.write ? VRING_DESC_F_WRITE : 0), true);
      view.setUint16(16 * i + 14, last ? 0 : (slot + 1) % this.num, true);
    });
    // Descriptors are consecutive unless the chain wraps: write them one by one then.
    if (head + buffers.length <= this.num) await this.qt.memwrite(this.desc + 16 * head, table);
    else for (let i = 0; i < buffers.length; i++) await this.qt.memwrite(this.desc + 16 * ((head + i) % this.num), table.subarray(16 * i, 16 * i + 16));
    this.freeHead = (head + buffers.length) % this.num;
    await this.qt.writew(this.avail + 4 + 2 * (this.availIdx % this.num), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    await this.qt.writew(this.avail + 2, this.availIdx);
    return head;
  }

  /** The next used element, stepping virtual time until it appears (at most `maxSteps` deadlines). */
  async waitUsed(maxSteps = 1000): Promise<{ id: number; len: number }> {
    for (let i = 0; i <= maxSteps; i++) {
      const idx = await this.qt.readw(this.used + 2);
      if (idx !== this.usedSeen) {
        const slot = this.usedSeen % this.num;
        this.usedSeen = (this.usedSeen + 1) & 0xffff;
        return { id: await this.qt.readl(this.used + 4 + 8 * slot), len: await this.qt.readl(this.used + 8 + 8 * slot) };
      }
      await this.qt.clockStep();
    }
    throw new Error(`virtqueue ${this.index}: no used element after ${maxSteps} clock steps`);
  }
}

/** A legacy virtio-mmio device driven over qtest (libqos's QVirtioMMIODevice). */
export class VirtioMmioDevice {
  constructor(
    readonly qt: QtestClient,
    readonly base: number,
  ) {}

  readl(reg: number): Promise<number> {
    return this.qt.readl(this.base + reg);
  }

  writel(reg: number, value: number): Promise<void> {
    return this.qt.writel(this.base + reg, value);
  }

  /** Offered features (64 bits, two 32-bit halves). */
  async hostFeatures(): Promise<bigint> {
    await this.writel(VirtioMmioRegs.hostFeaturesSel, 0);
    const lo = await this.readl(VirtioMmioRegs.hostFeatures);
    await this.writel(VirtioMmioRegs.hostFeaturesSel, 1);
    const hi = await this.readl(VirtioMmioRegs.hostFeatures);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** Reset, ACKNOWLEDGE | DRIVER, accept `wanted & offered`; returns the accepted set. */
  async negotiate(wanted: bigint): Promise<bigint> {
    await this.writel(VirtioMmioRegs.status, 0);
    await this.writel(VirtioMmioRegs.status, VirtioStatus.ACKNOWLEDGE);
    await this.writel(VirtioMmioRegs.status, VirtioStatus.ACKNOWLEDGE | VirtioStatus.DRIVER);
    const accepted = (await this.hostFeatures()) & wanted;
    await this.writel(VirtioMmioRegs.guestFeaturesSel, 0);
    await this.writel(VirtioMmioRegs.guestFeatures, Number(accepted & 0xffffffffn));
    await this.writel(VirtioMmioRegs.guestFeaturesSel, 1);
    await this.writel(VirtioMmioRegs.guestFeatures, Number(accepted >> 32n));
    return accepted;
  }

  /** Lays out queue `index` with `num` entries in memory from `alloc` (legacy: page frame). */
  async setupQueue(index: number, num: number, alloc: GuestAllocator): Promise<LegacyVirtqueue> {
    await this.writel(VirtioMmioRegs.guestPageSize, PAGE);
    await this.writel(VirtioMmioRegs.queueSel, index);
    const max = await this.readl(VirtioMmioRegs.queueNumMax);
    if (max < num) throw new RangeError(`queue ${index} holds at most ${max} entries, ${num} asked`);
    const size = Math.ceil((16 * num + 6 + 2 * num) / PAGE) * PAGE + Math.ceil((6 + 8 * num) / PAGE) * PAGE;
    const desc = alloc.alloc(size, PAGE);
    await this.qt.memset(desc, size, 0);
    await this.writel(VirtioMmioRegs.queueNum, num);
    await this.writel(VirtioMmioRegs.queueAlign, PAGE);
    await this.writel(VirtioMmioRegs.queuePfn, desc / PAGE);
    return new LegacyVirtqueue(this.qt, index, num, desc);
  }

  async driverOk(): Promise<void> {
    const status = await this.readl(VirtioMmioRegs.status);
    await this.writel(VirtioMmioRegs.status, status | VirtioStatus.DRIVER_OK);
  }

  async notify(queue: LegacyVirtqueue): Promise<void> {
    await this.writel(VirtioMmioRegs.queueNotify, queue.index);
  }

  /** Reads and acknowledges the interrupt status. */
  async ackInterrupt(): Promise<number> {
    const isr = await this.readl(VirtioMmioRegs.interruptStatus);
    if (isr !== 0) await this.writel(VirtioMmioRegs.interruptAck, isr);
    return isr;
  }
}

export const VirtioBlkType = { IN: 0, OUT: 1, FLUSH: 4, GET_ID: 8 } as const;

/**
 * One virtio-blk request: header, data, status byte, submitted and waited for. Returns the status
 * byte and, for reads (IN, GET_ID), the bytes the device wrote.
 */
export async function virtioBlkRequest(
  dev: VirtioMmioDevice,
  vq: LegacyVirtqueue,
  alloc: GuestAllocator,
  request: { type: number; sector: number; data?: Uint8Array; length?: number },
): Promise<{ status: number; data: Uint8Array; usedLen: number }> {
  const qt = dev.qt;
  const header = alloc.alloc(16);
  const hdr = new Uint8Array(16);
  const view = new DataView(hdr.buffer);
  view.setUint32(0, request.type, true);
  view.setBigUint64(8, BigInt(request.sector), true);
  await qt.memwrite(header, hdr);
  const length = request.data?.length ?? request.length ?? 0;
  const deviceWrites = request.type !== VirtioBlkType.OUT;
  const buffers: ChainBuffer[] = [{ addr: header, len: 16, write: false }];
  let dataAddr = 0;
  if (length > 0) {
    dataAddr = alloc.alloc(length);
    if (request.data !== undefined) await qt.memwrite(dataAddr, request.data);
    buffers.push({ addr: dataAddr, len: length, write: deviceWrites });
  }
  const statusAddr = alloc.alloc(1);
  await qt.writeb(statusAddr, 0xff);
  buffers.push({ addr: statusAddr, len: 1, write: true });
  const head = await vq.add(buffers);
  await dev.notify(vq);
  const used = await vq.waitUsed();
  if (used.id !== head) throw new Error(`virtio-blk: used element ${used.id}, expected ${head}`);
  return { status: await qt.readb(statusAddr), data: deviceWrites && length > 0 ? await qt.memread(dataAddr, length) : new Uint8Array(0), usedLen: used.len };
}
