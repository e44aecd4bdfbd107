import { IrqPin } from '../../irq.js';
import type { MmioOps } from '../../memory.js';
import type { Trace } from '../../trace.js';
import type { AddressSpace } from '../address-space.js';
import { assert } from '../../assert.js';
import { VIRTQUEUE_MAX_SIZE, Virtqueue, VirtioRingError, type VirtqueueState } from './virtqueue.js';

export const VIRTIO_MMIO_MAGIC = 0x74726976; // "virt"
export const VIRTIO_MMIO_VENDOR = 0x554d4551; // "QEMU"
export const VIRTIO_MMIO_SIZE = 0x1000;

/** Register offsets (virtio spec 4.2.2, legacy 4.2.4). */
export const VirtioMmioReg = {
  MagicValue: 0x000,
  Version: 0x004,
  DeviceId: 0x008,
  VendorId: 0x00c,
  DeviceFeatures: 0x010,
  DeviceFeaturesSel: 0x014,
  DriverFeatures: 0x020,
  DriverFeaturesSel: 0x024,
  GuestPageSize: 0x028,
  QueueSel: 0x030,
  QueueNumMax: 0x034,
  QueueNum: 0x038,
  QueueAlign: 0x03c,
  QueuePfn: 0x040,
  QueueReady: 0x044,
  QueueNotify: 0x050,
  InterruptStatus: 0x060,
  InterruptAck: 0x064,
  Status: 0x070,
  QueueDescLow: 0x080,
  QueueDescHigh: 0x084,
  QueueDriverLow: 0x090,
  QueueDriverHigh: 0x094,
  QueueDeviceLow: 0x0a0,
  QueueDeviceHigh: 0x0a4,
  ConfigGeneration: 0x0fc,
  Config: 0x100,
} as const;

export const VirtioStatus = { ACKNOWLEDGE: 1, DRIVER: 2, DRIVER_OK: 4, FEATURES_OK: 8, NEEDS_RESET: 0x40, FAILED: 0x80 } as const;
export const VIRTIO_F_VERSION_1 = 32n;
export const VIRTIO_F_NOTIFY_ON_EMPTY = 24n;
export const VIRTIO_F_ANY_LAYOUT = 27n;
export const VIRTIO_RING_F_INDIRECT_DESC = 28n;
export const VIRTIO_RING_F_EVENT_IDX = 29n;

const ISR_USED = 1;
const ISR_CONFIG = 2;

declare module '../../trace.js' {
  interface TraceEventMap {
    'virtio.error': { dev: string; message: string };
    'virtio.notify': { dev: string; queue: number };
  }
}

/** A transport's registers, queues and line for machine snapshots (guest features as a decimal string). */
export interface VirtioMmioState {
  readonly guestFeatures: string;
  readonly hostFeaturesSel: number;
  readonly guestFeaturesSel: number;
  readonly guestPageShift: number;
  readonly queueSel: number;
  readonly status: number;
  readonly isr: number;
  readonly irq: boolean;
  readonly queues: readonly VirtqueueState[];
}

/** What a transport offers its device. */
export interface VirtioTransport {
  readonly as: AddressSpace;
  /** The features both sides agreed on. */
  readonly guestFeatures: bigint;
  queue(index: number): Virtqueue;
  /** Completions were pushed on `queue`: interrupt the driver unless it suppressed that. */
  notify(queue: Virtqueue): void;
  /** The device hit a malformed ring: stop until the driver resets it. */
  fail(message: string): void;
}

/** A virtio device model behind a transport (virtio-blk, ...). */
export interface VirtioDevice {
  readonly deviceId: number;
  readonly numQueues: number;
  readonly queueSize: number;
  /** Feature bits the device offers on a legacy or modern transport (the transport adds its own). */
  features(legacy: boolean): bigint;
  readConfig(offset: number, size: 1 | 2 | 4): number;
  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void;
  /** The driver kicked `queue`. */
  handleQueue(queue: Virtqueue): void;
  reset(): void;
  bind(transport: VirtioTransport): void;
}

/**
 * QEMU's virtio-mmio transport. `legacy` (the default on QEMU's virt, force-legacy=on) speaks
 * version 1 (GuestPageSize, QueuePFN); otherwise version 2 (QueueReady and 64-bit ring addresses,
 * VIRTIO_F_VERSION_1 required). A slot without a device reads magic, version and vendor, and 0
 * everywhere else, so drivers skip it.
 */
export class VirtioMmio implements VirtioTransport {
  readonly irq: IrqPin;
  readonly mmio: MmioOps;
  guestFeatures = 0n;
  private readonly queues: Virtqueue[] = [];
  private hostFeaturesSel = 0;
  private guestFeaturesSel = 0;
  private guestPageShift = 0;
  private queueSel = 0;
  private status = 0;
  private isr = 0;

  constructor(
    readonly as: AddressSpace,
    readonly path: string,
    readonly device: VirtioDevice | null,
    readonly legacy = true,
    private readonly trace: Trace | null = null,
  ) {
    this.irq = new IrqPin(`${path}/irq`);
    if (device !== null) {
      for (let i = 0; i < device.numQueues; i++) this.queues.push(new Virtqueue(as, i, device.queueSize));
      device.bind(this);
    }
    this.mmio = {
      read: (offset, size) => this.read(offset, size),
      write: (offset, size, value) => this.write(offset, size, value >>> 0),
    };
  }

  queue(index: number): Virtqueue {
    const q = this.queues[index];
    if (q === undefined) throw new RangeError(`no queue ${index}`);
    return q;
  }

  private hostFeatures(): bigint {
    const dev = this.device;
    if (dev === null) return 0n;
    // QEMU 7.2: indirect descriptors and event index always; NOTIFY_ON_EMPTY on legacy only;
    // ANY_LAYOUT is implied by VERSION_1 and withheld by virtio-blk on legacy.
    let f = dev.features(this.legacy) | (1n << VIRTIO_RING_F_INDIRECT_DESC) | (1n << VIRTIO_RING_F_EVENT_IDX);
    if (this.legacy) f |= 1n << VIRTIO_F_NOTIFY_ON_EMPTY;
    else f |= 1n << VIRTIO_F_VERSION_1;
    return f;
  }

  notify(queue: Virtqueue): void {
    let should: boolean;
    try {
      should = queue.shouldNotify();
    } catch (e) {
      if (!(e instanceof VirtioRingError)) throw e;
      this.fail(e.message);
      return;
    }
    if (!should) return;
    this.trace?.emit('virtio.notify', { dev: this.path, queue: queue.index });
    this.isr |= ISR_USED;
    this.irq.set(this.isr !== 0);
  }

  fail(message: string): void {
    this.trace?.emit('virtio.error', { dev: this.path, message });
    if (this.status & VirtioStatus.DRIVER_OK) {
      this.status |= VirtioStatus.NEEDS_RESET;
      this.isr |= ISR_CONFIG;
      this.irq.set(true);
    }
  }

  /** Device reset (status 0 or QueuePFN 0 on legacy). */
  reset(): void {
    this.device?.reset();
    for (const q of this.queues) q.reset();
    this.status = 0;
    this.isr = 0;
    this.guestFeatures = 0n;
    this.hostFeaturesSel = 0;
    this.guestFeaturesSel = 0;
    this.queueSel = 0;
    this.irq.lower();
  }

  saveState(): VirtioMmioState {
    return {
      guestFeatures: this.guestFeatures.toString(),
      hostFeaturesSel: this.hostFeaturesSel,
      guestFeaturesSel: this.guestFeaturesSel,
      guestPageShift: this.guestPageShift,
      queueSel: this.queueSel,
      status: this.status,
      isr: this.isr,
      irq: this.irq.level,
      queues: this.queues.map((q) => q.saveState()),
    };
  }

  /** Restores the transport (the device behind it restores its own state). */
  restoreState(s: VirtioMmioState): void {
    assert(s.queues.length === this.queues.length, () => `${this.path}: snapshot has ${s.queues.length} queues, the device ${this.queues.length}`);
    assert(typeof s.guestFeatures === 'string' && /^[0-9]{1,20}$/.test(s.guestFeatures), () => `${this.path}: bad restored features`);
    for (const key of ['hostFeaturesSel', 'guestFeaturesSel', 'queueSel'] as const) assert(Number.isInteger(s[key]) && s[key] >= 0 && s[key] <= 0xffffffff, () => `${this.path}: bad restored ${key}`);
    assert(Number.isInteger(s.guestPageShift) && s.guestPageShift >= 0 && s.guestPageShift < 32, () => `${this.path}: bad restored page shift`);
    assert(Number.isInteger(s.status) && s.status >= 0 && s.status <= 0xff && Number.isInteger(s.isr) && s.isr >= 0 && s.isr <= 3, () => `${this.path}: bad restored status or ISR`);
    this.guestFeatures = BigInt(s.guestFeatures);
    this.hostFeaturesSel = s.hostFeaturesSel;
    this.guestFeaturesSel = s.guestFeaturesSel;
    this.guestPageShift = s.guestPageShift;
    this.queueSel = s.queueSel;
    this.status = s.status;
    this.isr = s.isr;
    this.queues.forEach((q, i) => q.restoreState(s.queues[i]!));
    this.irq.restoreLevel(s.irq);
  }

  /** State for digests (replay checkpoints). */
  snapshotState(): number[] {
    const out = [this.status, this.isr, this.queueSel, this.guestPageShift, Number(this.guestFeatures >> 32n), Number(this.guestFeatures & 0xffffffffn)];
    for (const q of this.queues) out.push(q.num, q.desc, q.avail, q.used, q.ready ? 1 : 0, q.lastAvailIdx, q.usedIdx);
    return out;
  }

  private read(offset: number, size: number): number {
    const dev = this.device;
    if (dev === null) {
      if (offset === VirtioMmioReg.MagicValue) return VIRTIO_MMIO_MAGIC;
      if (offset === VirtioMmioReg.Version) return this.legacy ? 1 : 2;
      if (offset === VirtioMmioReg.VendorId) return VIRTIO_MMIO_VENDOR;
      return 0;
    }
    if (offset >= VirtioMmioReg.Config) return dev.readConfig(offset - VirtioMmioReg.Config, size as 1 | 2 | 4);
    if (size !== 4) return 0;
    const q = this.queues[this.queueSel];
    switch (offset) {
      case VirtioMmioReg.MagicValue:
        return VIRTIO_MMIO_MAGIC;
      case VirtioMmioReg.Version:
        return this.legacy ? 1 : 2;
      case VirtioMmioReg.DeviceId:
        return dev.deviceId;
      case VirtioMmioReg.VendorId:
        return VIRTIO_MMIO_VENDOR;
      case VirtioMmioReg.DeviceFeatures:
        if (this.hostFeaturesSel > 1) return 0;
        return Number((this.hostFeatures() >> BigInt(32 * this.hostFeaturesSel)) & 0xffffffffn);
      case VirtioMmioReg.QueueNumMax:
        return q === undefined ? 0 : VIRTQUEUE_MAX_SIZE;
      case VirtioMmioReg.QueuePfn:
        return this.legacy && q !== undefined ? q.pfn : 0;
      case VirtioMmioReg.QueueReady:
        return !this.legacy && q !== undefined && q.ready ? 1 : 0;
      case VirtioMmioReg.InterruptStatus:
        return this.isr;
      case VirtioMmioReg.Status:
        return this.status;
      case VirtioMmioReg.QueueDescLow:
        return this.legacy || q === undefined ? 0 : q.desc >>> 0;
      case VirtioMmioReg.QueueDescHigh:
        return this.legacy || q === undefined ? 0 : Math.floor(q.desc / 0x1_0000_0000);
      case VirtioMmioReg.QueueDriverLow:
        return this.legacy || q === undefined ? 0 : q.avail >>> 0;
      case VirtioMmioReg.QueueDriverHigh:
        return this.legacy || q === undefined ? 0 : Math.floor(q.avail / 0x1_0000_0000);
      case VirtioMmioReg.QueueDeviceLow:
        return this.legacy || q === undefined ? 0 : q.used >>> 0;
      case VirtioMmioReg.QueueDeviceHigh:
        return this.legacy || q === undefined ? 0 : Math.floor(q.used / 0x1_0000_0000);
      case VirtioMmioReg.ConfigGeneration:
        return 0;
      default:
        return 0; // write-only or reserved
    }
  }

  /** Sets the low or high half of a 64-bit guest address (kept below 2^53: higher is unmappable anyway). */
  private static half(old: number, value: number, high: boolean): number {
    const lo = high ? old % 0x1_0000_0000 : value;
    const hi = high ? value : Math.floor(old / 0x1_0000_0000);
    return Math.min(hi, 0x1fffff) * 0x1_0000_0000 + lo;
  }

  private write(offset: number, size: number, value: number): void {
    const dev = this.device;
    if (dev === null) return;
    if (offset >= VirtioMmioReg.Config) {
      dev.writeConfig(offset - VirtioMmioReg.Config, size as 1 | 2 | 4, value);
      return;
    }
    if (size !== 4) return;
    const q = this.queues[this.queueSel];
    switch (offset) {
      case VirtioMmioReg.DeviceFeaturesSel:
        this.hostFeaturesSel = value;
        return;
      case VirtioMmioReg.DriverFeatures:
        if (this.guestFeaturesSel <= 1) {
          const shift = BigInt(32 * this.guestFeaturesSel);
          const cleared = this.guestFeatures & ~(0xffffffffn << shift);
          this.guestFeatures = (cleared | (BigInt(value) << shift)) & this.hostFeatures();
          const has = (bit: bigint): boolean => (this.guestFeatures & (1n << bit)) !== 0n;
          for (const q of this.queues) {
            q.indirect = has(VIRTIO_RING_F_INDIRECT_DESC);
            q.eventIdx = has(VIRTIO_RING_F_EVENT_IDX);
            q.notifyOnEmpty = has(VIRTIO_F_NOTIFY_ON_EMPTY);
          }
        }
        return;
      case VirtioMmioReg.DriverFeaturesSel:
        this.guestFeaturesSel = value;
        return;
      case VirtioMmioReg.GuestPageSize:
        if (this.legacy) this.guestPageShift = value === 0 ? 0 : 31 - Math.clz32(value & -value);
        return;
      case VirtioMmioReg.QueueSel:
        this.queueSel = value;
        return;
      case VirtioMmioReg.QueueNum:
        if (q === undefined || value > VIRTQUEUE_MAX_SIZE) return;
        // A ring size must be a power of two; anything else disables the queue.
        q.num = value !== 0 && (value & (value - 1)) === 0 ? value : 0;
        if (this.legacy && q.pfn !== 0) q.setLegacyLayout(q.pfn * 2 ** this.guestPageShift);
        return;
      case VirtioMmioReg.QueueAlign:
        if (this.legacy && q !== undefined && value !== 0 && (value & (value - 1)) === 0) {
          q.align = value;
          if (q.pfn !== 0) q.setLegacyLayout(q.pfn * 2 ** this.guestPageShift);
        }
        return;
      case VirtioMmioReg.QueuePfn:
        if (!this.legacy || q === undefined) return;
        if (value === 0) {
          this.reset();
          return;
        }
        q.pfn = value;
        q.setLegacyLayout(value * 2 ** this.guestPageShift);
        return;
      case VirtioMmioReg.QueueReady:
        if (this.legacy || q === undefined) return;
        q.ready = (value & 1) === 1;
        return;
      case VirtioMmioReg.QueueNotify: {
        const target = this.queues[value];
        if (target === undefined || !target.enabled || (!this.legacy && !target.ready)) return;
        if (this.status & VirtioStatus.NEEDS_RESET) return;
        dev.handleQueue(target);
        return;
      }
      case VirtioMmioReg.InterruptAck:
        this.isr &= ~value;
        this.irq.set(this.isr !== 0);
        return;
      case VirtioMmioReg.Status:
        if ((value & 0xff) === 0) {
          this.reset();
          return;
        }
        // Modern devices require VIRTIO_F_VERSION_1: without it FEATURES_OK does not stick, and
        // the driver, reading Status back, gives up (virtio spec 3.1.1).
        if (!this.legacy && value & VirtioStatus.FEATURES_OK && !(this.guestFeatures & (1n << VIRTIO_F_VERSION_1))) value &= ~VirtioStatus.FEATURES_OK;
        this.status = value & 0xff;
        return;
      case VirtioMmioReg.QueueDescLow:
      case VirtioMmioReg.QueueDescHigh:
        if (!this.legacy && q !== undefined) q.desc = VirtioMmio.half(q.desc, value, offset === VirtioMmioReg.QueueDescHigh);
        return;
      case VirtioMmioReg.QueueDriverLow:
      case VirtioMmioReg.QueueDriverHigh:
        if (!this.legacy && q !== undefined) q.avail = VirtioMmio.half(q.avail, value, offset === VirtioMmioReg.QueueDriverHigh);
        return;
      case VirtioMmioReg.QueueDeviceLow:
      case VirtioMmioReg.QueueDeviceHigh:
        if (!this.legacy && q !== undefined) q.used = VirtioMmio.half(q.used, value, offset === VirtioMmioReg.QueueDeviceHigh);
        return;
      default:
        return; // read-only or reserved
    }
  }
}
