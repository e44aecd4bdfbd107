import { MemTx } from '../../memory.js';
import type { AddressSpace } from '../address-space.js';

export const VRING_DESC_F_NEXT = 1;
export const VRING_DESC_F_WRITE = 2;
export const VRING_DESC_F_INDIRECT = 4;
export const VRING_AVAIL_F_NO_INTERRUPT = 1;
/** Largest queue a transport offers (QEMU's VIRTQUEUE_MAX_SIZE). */
export const VIRTQUEUE_MAX_SIZE = 1024;
/** Bound on the entries of one indirect descriptor table. */
export const MAX_INDIRECT_DESCRIPTORS = 4096;
/** Bound on the bytes one request may carry, so a guest cannot make the host allocate gigabytes. */
export const MAX_ELEMENT_BYTES = 64 * 1024 * 1024;

/** One guest buffer of a descriptor chain. */
export interface Segment {
  readonly addr: number;
  readonly len: number;
}

/** A popped descriptor chain (QEMU's VirtQueueElement): device-readable then device-writable buffers. */
export interface VirtqElement {
  readonly head: number;
  readonly out: readonly Segment[];
  readonly in: readonly Segment[];
  readonly outBytes: number;
  readonly inBytes: number;
}

/** A malformed ring: QEMU's virtio_error, after which the device needs a reset. */
export class VirtioRingError extends Error {
  override readonly name = 'VirtioRingError';
}

/** A virtqueue's device-side state for machine snapshots (the rings themselves live in guest RAM). */
export interface VirtqueueState {
  readonly num: number;
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  readonly ready: boolean;
  readonly align: number;
  readonly pfn: number;
  readonly lastAvailIdx: number;
  readonly usedIdx: number;
  readonly indirect: boolean;
  readonly eventIdx: boolean;
  readonly notifyOnEmpty: boolean;
  readonly signalled: number;
  readonly signalledUsed: number;
  readonly signalledUsedValid: boolean;
}

/**
 * A split virtqueue in guest memory: descriptor table, available ring (driver area) and used ring
 * (device area). Every guest-supplied index and length is checked; a bad ring throws
 * `VirtioRingError`, which the transport turns into the NEEDS_RESET state.
 */
export class Virtqueue {
  num = 0;
  desc = 0;
  avail = 0;
  used = 0;
  /** Modern transport: the driver has set QueueReady. */
  ready = false;
  /** Legacy transport: alignment of the used ring and the page frame number. */
  align = 4096;
  pfn = 0;
  lastAvailIdx = 0;
  usedIdx = 0;
  /** Negotiated VIRTIO_RING_F_INDIRECT_DESC. */
  indirect = false;
  /** Negotiated VIRTIO_RING_F_EVENT_IDX. */
  eventIdx = false;
  /** Negotiated VIRTIO_F_NOTIFY_ON_EMPTY (legacy). */
  notifyOnEmpty = false;
  /** Completions since the last interrupt decision. */
  private signalled = 0;
  /** Used index at the last interrupt (EVENT_IDX), and whether it is meaningful yet. */
  private signalledUsed = 0;
  private signalledUsedValid = false;

  constructor(
    private readonly as: AddressSpace,
    readonly index: number,
    readonly maxSize: number,
  ) {}

  reset(): void {
    this.num = 0;
    this.desc = 0;
    this.avail = 0;
    this.used = 0;
    this.ready = false;
    this.align = 4096;
    this.pfn = 0;
    this.lastAvailIdx = 0;
    this.usedIdx = 0;
    this.signalled = 0;
    this.signalledUsed = 0;
    this.signalledUsedValid = false;
    this.indirect = false;
    this.eventIdx = false;
    this.notifyOnEmpty = false;
  }

  saveState(): VirtqueueState {
    return {
      num: this.num, desc: this.desc, avail: this.avail, used: this.used, ready: this.ready, align: this.align, pfn: this.pfn,
      lastAvailIdx: this.lastAvailIdx, usedIdx: this.usedIdx, indirect: this.indirect, eventIdx: this.eventIdx, notifyOnEmpty: this.notifyOnEmpty,
      signalled: this.signalled, signalledUsed: this.signalledUsed, signalledUsedValid: this.signalledUsedValid,
    };
  }

  restoreState(s: VirtqueueState): void {
    const u16 = (v: number): boolean => Number.isInteger(v) && v >= 0 && v <= 0xffff;
    const addr = (v: number): boolean => Number.isSafeInteger(v) && v >= 0;
    if (!(u16(s.lastAvailIdx) && u16(s.usedIdx) && u16(s.signalledUsed) && s.num >= 0 && s.num <= VIRTQUEUE_MAX_SIZE && addr(s.desc) && addr(s.avail) && addr(s.used) && addr(s.pfn) && addr(s.align) && Number.isSafeInteger(s.signalled) && s.signalled >= 0)) {
      throw new VirtioRingError(`virtqueue ${this.index}: malformed snapshot state`);
    }
    this.num = s.num;
    this.desc = s.desc;
    this.avail = s.avail;
    this.used = s.used;
    this.ready = s.ready === true;
    this.align = s.align;
    this.pfn = s.pfn;
    this.lastAvailIdx = s.lastAvailIdx;
    this.usedIdx = s.usedIdx;
    this.indirect = s.indirect === true;
    this.eventIdx = s.eventIdx === true;
    this.notifyOnEmpty = s.notifyOnEmpty === true;
    this.signalled = s.signalled;
    this.signalledUsed = s.signalledUsed;
    this.signalledUsedValid = s.signalledUsedValid === true;
  }

  /** True when the queue has rings the device may use. */
  get enabled(): boolean {
    return this.num > 0 && this.desc !== 0;
  }

  /** Legacy layout: avail follows the descriptors, used starts at the next `align` boundary. */
  setLegacyLayout(baseAddr: number): void {
    this.desc = baseAddr;
    this.avail = baseAddr + 16 * this.num;
    const availEnd = this.avail + 4 + 2 * this.num + 2;
    this.used = Math.ceil(availEnd / this.align) * this.align;
  }

  private load(addr: number, size: 1 | 2 | 4): number {
    const r = this.as.load(addr, size);
    if (r.status !== MemTx.Ok) throw new VirtioRingError(`ring access at 0x${addr.toString(16)} failed`);
    return r.value;
  }

  private store(addr: number, size: 1 | 2 | 4, value: number): void {
    if (this.as.store(addr, size, value) !== MemTx.Ok) throw new VirtioRingError(`ring write at 0x${addr.toString(16)} failed`);
  }

  availIdx(): number {
    return this.load(this.avail + 2, 2);
  }

  /** True when the driver has published buffers the device has not taken. */
  hasWork(): boolean {
    return this.enabled && this.availIdx() !== this.lastAvailIdx;
  }

  /** Takes the next available chain, or null when none. */
  pop(): VirtqElement | null {
    if (!this.enabled) return null;
    const availIdx = this.availIdx();
    if (availIdx === this.lastAvailIdx) return null;
    if (((availIdx - this.lastAvailIdx) & 0xffff) > this.num) {
      throw new VirtioRingError(`avail index moved by ${(availIdx - this.lastAvailIdx) & 0xffff} in a queue of ${this.num}`);
    }
    const head = this.load(this.avail + 4 + 2 * (this.lastAvailIdx % this.num), 2);
    this.lastAvailIdx = (this.lastAvailIdx + 1) & 0xffff;
    if (head >= this.num) throw new VirtioRingError(`descriptor head ${head} out of range (queue size ${this.num})`);
    const out: Segment[] = [];
    const inn: Segment[] = [];
    let outBytes = 0;
    let inBytes = 0;
    let table = this.desc;
    let size = this.num;
    let inIndirect = false;
    let i = head;
    for (let count = 0; ; count++) {
      if (count >= size) throw new VirtioRingError('descriptor chain loops');
      const d = table + 16 * i;
      const lo = this.load(d, 4);
      const hi = this.load(d + 4, 4);
      const addr = hi * 0x1_0000_0000 + lo;
      const len = this.load(d + 8, 4);
      const flags = this.load(d + 12, 2);
      const next = this.load(d + 14, 2);
      if (flags & VRING_DESC_F_INDIRECT) {
        if (!this.indirect) throw new VirtioRingError('indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC');
        if (inIndirect) throw new VirtioRingError('indirect descriptor in an indirect table');
        if (flags & VRING_DESC_F_NEXT) throw new VirtioRingError('indirect descriptor with NEXT set');
        if (len === 0 || len % 16 !== 0 || len / 16 > MAX_INDIRECT_DESCRIPTORS) throw new VirtioRingError(`invalid size ${len} for an indirect table`);
        table = addr;
        size = len / 16;
        inIndirect = true;
        i = 0;
        count = -1;
        continue;
      }
      if (flags & VRING_DESC_F_WRITE) {
        inn.push({ addr, len });
        inBytes += len;
      } else {
        if (inn.length > 0) throw new VirtioRingError('device-readable descriptor after a writable one');
        out.push({ addr, len });
        outBytes += len;
      }
      if (outBytes + inBytes > MAX_ELEMENT_BYTES) throw new VirtioRingError(`request of more than ${MAX_ELEMENT_BYTES} bytes`);
      if (!(flags & VRING_DESC_F_NEXT)) break;
      if (next >= size) throw new VirtioRingError(`descriptor next ${next} out of range`);
      i = next;
    }
    // EVENT_IDX: tell the driver the next kick is wanted once it passes what we have taken.
    if (this.eventIdx) this.store(this.used + 4 + 8 * this.num, 2, this.lastAvailIdx);
    return { head, out, in: inn, outBytes, inBytes };
  }

  /** Returns a chain to the driver, saying how many bytes the device wrote into it. */
  push(elem: VirtqElement, writtenBytes: number): void {
    const slot = this.used + 4 + 8 * (this.usedIdx % this.num);
    this.store(slot, 4, elem.head);
    this.store(slot + 4, 4, writtenBytes);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    this.store(this.used + 2, 2, this.usedIdx);
    this.signalled++;
  }

  /** virtio_should_notify: EVENT_IDX's used_event, else the NO_INTERRUPT flag (and NOTIFY_ON_EMPTY). */
  shouldNotify(): boolean {
    if (this.signalled === 0) return false;
    this.signalled = 0;
    if (this.eventIdx) {
      const old = this.signalledUsed;
      const now = this.usedIdx;
      const valid = this.signalledUsedValid;
      this.signalledUsed = now;
      this.signalledUsedValid = true;
      if (!valid) return true;
      const usedEvent = this.load(this.avail + 4 + 2 * this.num, 2);
      // vring_need_event(event, new, old)
      return ((now - usedEvent - 1) & 0xffff) < ((now - old) & 0xffff);
    }
    if (this.notifyOnEmpty && this.availIdx() === this.lastAvailIdx) return true;
    const flags = this.load(this.avail, 2);
    return (flags & VRING_AVAIL_F_NO_INTERRUPT) === 0;
  }
}

/** Gathers the bytes of segments (skipping `skip` bytes), bounded by `length`. */
export function gather(as: AddressSpace, segs: readonly Segment[], skip: number, length: number): { bytes: Uint8Array; ok: boolean } {
  const out = new Uint8Array(length);
  let pos = 0;
  let toSkip = skip;
  let ok = true;
  for (const s of segs) {
    if (pos >= length) break;
    if (toSkip >= s.len) {
      toSkip -= s.len;
      continue;
    }
    const n = Math.min(s.len - toSkip, length - pos);
    if (!inRam(as, s.addr + toSkip, n)) ok = false;
    else as.readInto(s.addr + toSkip, out.subarray(pos, pos + n));
    pos += n;
    toSkip = 0;
  }
  return { bytes: out, ok };
}

/** Scatters `data` into segments starting `skip` bytes in; returns false if a buffer is not RAM. */
export function scatter(as: AddressSpace, segs: readonly Segment[], skip: number, data: Uint8Array): boolean {
  let pos = 0;
  let toSkip = skip;
  let ok = true;
  for (const s of segs) {
    if (pos >= data.length) break;
    if (toSkip >= s.len) {
      toSkip -= s.len;
      continue;
    }
    const n = Math.min(s.len - toSkip, data.length - pos);
    if (!inRam(as, s.addr + toSkip, n)) ok = false;
    else as.writeBytes(s.addr + toSkip, data.subarray(pos, pos + n));
    pos += n;
    toSkip = 0;
  }
  return ok;
}

/** DMA goes to RAM only (QEMU's dma_memory_map of MMIO fails). */
function inRam(as: AddressSpace, addr: number, len: number): boolean {
  if (len === 0) return true;
  const block = as.ramAt(addr);
  return block !== undefined && !block.readonly && addr + len <= block.base + block.sizeBytes;
}
