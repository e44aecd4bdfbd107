import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BlockBackend, devicePerms } from '../../../src/block/block-backend.js';
import { BlockGraph } from '../../../src/block/graph.js';
import { MainLoop } from '../../../src/engine/main-loop.js';
import { buildVirtMachine, type VirtMachine } from '../../../src/engine/hw/virt/machine.js';
import { VirtioBlkStatus, VirtioBlkType, type VirtioBlkBackend } from '../../../src/engine/hw/virtio/virtio-blk.js';

const dir = mkdtempSync(join(tmpdir(), 'vblk-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SLOT = 0x1000_8000; // first drive: highest slot
const RAM = 0x8000_0000;
const R = { status: 0x70, features: 0x10, featuresSel: 0x14, drvFeatures: 0x20, drvFeaturesSel: 0x24, pageSize: 0x28, qsel: 0x30, qnum: 0x38, qalign: 0x3c, qpfn: 0x40, qready: 0x44, notify: 0x50, isr: 0x60, ack: 0x64, descLo: 0x80, descHi: 0x84, drvLo: 0x90, drvHi: 0x94, devLo: 0xa0, devHi: 0xa4 };

function setup(modern: boolean, readOnly = false) {
  const bytes = new Uint8Array(64 * 1024);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 13 + (i >> 9)) & 0xff;
  const path = join(dir, `disk-${modern}-${readOnly}.raw`);
  writeFileSync(path, bytes);
  const loop = new MainLoop();
  const graph = new BlockGraph(loop);
  const node = graph.blockdevAdd({ driver: 'raw', 'node-name': 'disk0', file: { driver: 'file', filename: path } });
  const backend = BlockBackend.withNode(graph, node, { name: 'drive0', ...devicePerms(readOnly) });
  const typed: VirtioBlkBackend = backend; // BlockBackend satisfies the device's contract as is
  const m = buildVirtMachine(loop, { drives: [{ backend: typed, serial: 'tsqemu-serial-0123456789' }], virtioModern: modern });
  return { loop, m, path, bytes, backend };
}

/** A minimal driver: one 8-entry split queue at RAM+0x10000, requests built in RAM+0x20000. */
class Driver {
  readonly num = 8;
  readonly ring = RAM + 0x10000;
  private avail = 0;
  private used = 0;
  constructor(
    private readonly m: VirtMachine,
    private readonly modern: boolean,
  ) {}
  r(off: number) {
    return this.m.as.load(SLOT + off, 4).value;
  }
  w(off: number, v: number) {
    this.m.as.store(SLOT + off, 4, v);
  }
  init(): number {
    this.w(R.status, 0);
    this.w(R.status, 1);
    this.w(R.status, 3);
    this.w(R.featuresSel, 0);
    const lo = this.r(R.features);
    this.w(R.featuresSel, 1);
    const hi = this.r(R.features);
    this.w(R.drvFeaturesSel, 0);
    this.w(R.drvFeatures, lo);
    this.w(R.drvFeaturesSel, 1);
    this.w(R.drvFeatures, hi);
    this.w(R.qsel, 0);
    this.w(R.qnum, this.num);
    if (this.modern) {
      this.w(R.status, 11);
      this.w(R.descLo, this.ring);
      this.w(R.descHi, 0);
      this.w(R.drvLo, this.ring + 16 * this.num);
      this.w(R.drvHi, 0);
      this.w(R.devLo, this.ring + 0x1000);
      this.w(R.devHi, 0);
      this.w(R.qready, 1);
    } else {
      this.w(R.pageSize, 4096);
      this.w(R.qalign, 4096);
      this.w(R.qpfn, this.ring / 4096);
    }
    this.w(R.status, this.modern ? 15 : 7);
    return lo;
  }
  /** Submits one request (header, optional out data, in buffer of inLen bytes incl. status). */
  submit(type: number, sector: number, out: Uint8Array | null, inLen: number): { head: number; inAddr: number } {
    const as = this.m.as;
    const hdr = RAM + 0x20000;
    const data = RAM + 0x21000;
    const inAddr = RAM + 0x40000;
    const h = new DataView(new ArrayBuffer(16));
    h.setUint32(0, type, true);
    h.setBigUint64(8, BigInt(sector), true);
    as.writeBytes(hdr, new Uint8Array(h.buffer));
    const descs: [number, number, number][] = [[hdr, 16, 0]];
    if (out !== null) {
      as.writeBytes(data, out);
      descs.push([data, out.length, 0]);
    }
    descs.push([inAddr, inLen, 2]);
    as.writeBytes(inAddr, new Uint8Array(inLen).fill(0xee));
    descs.forEach(([addr, len, flags], i) => {
      const d = this.ring + 16 * i;
      as.store64(d, BigInt(addr));
      as.store(d + 8, 4, len);
      as.store(d + 12, 2, flags | (i + 1 < descs.length ? 1 : 0));
      as.store(d + 14, 2, i + 1);
    });
    const availBase = this.ring + 16 * this.num;
    as.store(availBase + 4 + 2 * (this.avail % this.num), 2, 0);
    this.avail++;
    as.store(availBase + 2, 2, this.avail);
    this.w(R.notify, 0);
    return { head: 0, inAddr };
  }
  usedRing(): number {
    if (this.modern) return this.ring + 0x1000;
    const availEnd = this.ring + 16 * this.num + 4 + 2 * this.num + 2;
    return Math.ceil(availEnd / 4096) * 4096;
  }
  /** Runs the loop until the device returns the request; gives the used length and the in bytes. */
  complete(loop: MainLoop, inAddr: number, inLen: number): { len: number; data: Uint8Array; status: number } {
    const used = this.usedRing();
    const done = loop.runUntil(() => this.m.as.load(used + 2, 2).value !== this.used, { untilNs: loop.nowNs + 1e9 });
    expect(done).toBe(true);
    const len = this.m.as.load(used + 4 + 8 * (this.used % this.num) + 4, 4).value;
    this.used++;
    const data = this.m.as.readBytes(inAddr, inLen);
    return { len, data: data.subarray(0, inLen - 1), status: data[inLen - 1]! };
  }
}

describe.each([false, true])('virtio-blk (modern=%s)', (modern) => {
  it('reads, writes, flushes, gets the id, discards and writes zeroes through the block layer', () => {
    const { loop, m, path, bytes } = setup(modern);
    expect(m.as.load(SLOT + 4, 4).value).toBe(modern ? 2 : 1);
    expect(m.as.load(SLOT + 8, 4).value).toBe(2);
    expect(m.as.load64(SLOT + 0x100).value).toBe(128n); // capacity in sectors
    const drv = new Driver(m, modern);
    const features = drv.init();
    expect(features & (1 << 9)).not.toBe(0); // FLUSH
    expect(features & (1 << 13)).not.toBe(0); // DISCARD
    const irq = m.virtio[7]!.irq;

    // Read sectors 2..3.
    let req = drv.submit(VirtioBlkType.IN, 2, null, 1024 + 1);
    const startNs = loop.nowNs;
    let res = drv.complete(loop, req.inAddr, 1025);
    expect(loop.nowNs).toBeGreaterThanOrEqual(startNs); // completes in virtual time
    expect(res.status).toBe(VirtioBlkStatus.OK);
    expect(res.len).toBe(1025);
    expect(Buffer.from(res.data).equals(Buffer.from(bytes.subarray(1024, 2048)))).toBe(true);
    expect(irq.level).toBe(true);
    expect(m.as.load(SLOT + R.isr, 4).value).toBe(1);
    m.as.store(SLOT + R.ack, 4, 1);
    expect(irq.level).toBe(false);

    // Write sector 5.
    const payload = new Uint8Array(512).fill(0x5a);
    req = drv.submit(VirtioBlkType.OUT, 5, payload, 1);
    res = drv.complete(loop, req.inAddr, 1);
    expect(res.status).toBe(VirtioBlkStatus.OK);
    req = drv.submit(VirtioBlkType.FLUSH, 0, null, 1);
    expect(drv.complete(loop, req.inAddr, 1).status).toBe(VirtioBlkStatus.OK);
    expect(readFileSync(path).subarray(5 * 512, 6 * 512).every((b) => b === 0x5a)).toBe(true);

    // GET_ID: 20 bytes of the serial.
    req = drv.submit(VirtioBlkType.GET_ID, 0, null, 21);
    res = drv.complete(loop, req.inAddr, 21);
    expect(res.status).toBe(VirtioBlkStatus.OK);
    expect(Buffer.from(res.data).toString('latin1')).toBe('tsqemu-serial-012345');

    // WRITE_ZEROES sector 8 (one segment), then read it back.
    const seg = new DataView(new ArrayBuffer(16));
    seg.setBigUint64(0, 8n, true);
    seg.setUint32(8, 1, true);
    req = drv.submit(VirtioBlkType.WRITE_ZEROES, 0, new Uint8Array(seg.buffer), 1);
    expect(drv.complete(loop, req.inAddr, 1).status).toBe(VirtioBlkStatus.OK);
    req = drv.submit(VirtioBlkType.IN, 8, null, 513);
    res = drv.complete(loop, req.inAddr, 513);
    expect(res.data.every((b) => b === 0)).toBe(true);
    seg.setBigUint64(0, 9n, true);
    req = drv.submit(VirtioBlkType.DISCARD, 0, new Uint8Array(seg.buffer), 1);
    expect(drv.complete(loop, req.inAddr, 1).status).toBe(VirtioBlkStatus.OK);

    // Out of range, unaligned and unknown requests fail cleanly.
    req = drv.submit(VirtioBlkType.IN, 128, null, 513);
    expect(drv.complete(loop, req.inAddr, 513).status).toBe(VirtioBlkStatus.IOERR);
    req = drv.submit(VirtioBlkType.OUT, 0, new Uint8Array(100), 1);
    expect(drv.complete(loop, req.inAddr, 1).status).toBe(VirtioBlkStatus.IOERR);
    req = drv.submit(99, 0, null, 1);
    expect(drv.complete(loop, req.inAddr, 1).status).toBe(VirtioBlkStatus.UNSUPP);
    req = drv.submit(VirtioBlkType.IN, 2 ** 60, null, 513);
    expect(drv.complete(loop, req.inAddr, 513).status).toBe(VirtioBlkStatus.IOERR);
  });

  it('survives a malformed ring: NEEDS_RESET, no host exception', () => {
    const { loop, m } = setup(modern);
    const drv = new Driver(m, modern);
    drv.init();
    const as = m.as;
    const availBase = drv.ring + 16 * drv.num;
    as.store(availBase + 4, 2, 200); // head out of range
    as.store(availBase + 2, 2, 1);
    as.store(SLOT + R.notify, 4, 0);
    loop.runUntilIdle({ untilNs: loop.nowNs + 1e6 });
    expect(as.load(SLOT + R.status, 4).value & 0x40).toBe(0x40);
    expect(m.virtio[7]!.irq.level).toBe(true);
    // A descriptor pointing at unassigned memory: the request fails, the device does not throw.
    as.store(SLOT + R.status, 4, 0);
    const d2 = new Driver(m, modern);
    d2.init();
    as.store64(d2.ring, 0xdead_0000_0000n);
    as.store(d2.ring + 8, 4, 16);
    as.store(d2.ring + 12, 2, 0);
    as.store(availBase + 4, 2, 0);
    as.store(availBase + 2, 2, 1);
    as.store(SLOT + R.notify, 4, 0);
    loop.runUntilIdle({ untilNs: loop.nowNs + 1e6 });
    expect(as.load(SLOT + R.status, 4).value & 0x40).toBe(0x40);
  });

  it('offers exactly QEMU 7.2\'s feature words', () => {
    const { m } = setup(modern);
    m.as.store(SLOT + R.featuresSel, 4, 0);
    const lo = m.as.load(SLOT + R.features, 4).value;
    m.as.store(SLOT + R.featuresSel, 4, 1);
    const hi = m.as.load(SLOT + R.features, 4).value;
    // qemu-system-riscv64 7.2 -M virt -device virtio-blk-device (force-legacy on/off), read over qtest.
    // Modern QEMU also offers VIRTIO_F_RING_RESET (bit 40), which tsqemu does not implement.
    expect([lo, hi]).toEqual(modern ? [0x30006e54, 0x1] : [0x31006ed4, 0]);
  });

  it('follows indirect tables, suppresses interrupts with EVENT_IDX, and answers SCSI commands UNSUPP', () => {
    const { loop, m, bytes } = setup(modern);
    const drv = new Driver(m, modern);
    drv.init();
    const as = m.as;
    // An indirect table at RAM+0x30000: header, 512-byte data buffer, status.
    const table = RAM + 0x30000;
    const hdr = RAM + 0x31000;
    const data = RAM + 0x32000;
    const status = RAM + 0x33000;
    const h = new DataView(new ArrayBuffer(16));
    h.setUint32(0, VirtioBlkType.IN, true);
    h.setBigUint64(8, 3n, true);
    as.writeBytes(hdr, new Uint8Array(h.buffer));
    const entries: [number, number, number, number][] = [[hdr, 16, 1, 1], [data, 512, 3, 2], [status, 1, 2, 0]];
    entries.forEach(([addr, len, flags, next], i) => {
      as.store64(table + 16 * i, BigInt(addr));
      as.store(table + 16 * i + 8, 4, len);
      as.store(table + 16 * i + 12, 2, flags);
      as.store(table + 16 * i + 14, 2, next);
    });
    as.store64(drv.ring, BigInt(table));
    as.store(drv.ring + 8, 4, 48);
    as.store(drv.ring + 12, 2, 4); // VRING_DESC_F_INDIRECT
    const availBase = drv.ring + 16 * drv.num;
    as.store(availBase + 4, 2, 0);
    as.store(availBase + 4 + 2 * drv.num, 2, 5); // used_event: interrupt only when used idx passes 5
    as.store(availBase + 2, 2, 1);
    as.store(SLOT + R.notify, 4, 0);
    const used = drv.usedRing();
    loop.runUntil(() => as.load(used + 2, 2).value === 1, { untilNs: loop.nowNs + 1e9 });
    expect(as.load(status, 1).value).toBe(VirtioBlkStatus.OK);
    expect(Buffer.from(as.readBytes(data, 512)).equals(Buffer.from(bytes.subarray(1536, 2048)))).toBe(true);
    expect(as.load(used + 4 + 8 * drv.num, 2).value).toBe(1); // avail_event written after the pop
    expect(m.virtio[7]!.irq.level).toBe(true); // the first completion always interrupts
    m.as.store(SLOT + R.ack, 4, 1);
    // Second request (a SCSI command): used idx 2 has not passed used_event 5, so no interrupt.
    h.setUint32(0, 2, true);
    as.writeBytes(hdr, new Uint8Array(h.buffer));
    as.store(availBase + 4 + 2, 2, 0);
    as.store(availBase + 2, 2, 2);
    as.store(SLOT + R.notify, 4, 0);
    loop.runUntil(() => as.load(used + 2, 2).value === 2, { untilNs: loop.nowNs + 1e9 });
    expect(as.load(status, 1).value).toBe(VirtioBlkStatus.UNSUPP);
    expect(m.virtio[7]!.irq.level).toBe(false);
  });

  it('lets the driver switch the write cache off with CONFIG_WCE (writethrough)', () => {
    const { m } = setup(modern);
    const drv = new Driver(m, modern);
    drv.init();
    expect(m.as.load(SLOT + 0x100 + 32, 1).value).toBe(1);
    m.as.store(SLOT + 0x100 + 32, 1, 0);
    expect(m.as.load(SLOT + 0x100 + 32, 1).value).toBe(0);
    m.as.store(SLOT + R.status, 4, 0); // reset: writeback again
    expect(m.as.load(SLOT + 0x100 + 32, 1).value).toBe(1);
  });

  it.runIf(modern)('does not accept FEATURES_OK without VERSION_1 on the modern transport', () => {
    const { m } = setup(modern);
    m.as.store(SLOT + R.status, 4, 3);
    m.as.store(SLOT + R.drvFeaturesSel, 4, 1);
    m.as.store(SLOT + R.drvFeatures, 4, 0);
    m.as.store(SLOT + R.status, 4, 11);
    expect(m.as.load(SLOT + R.status, 4).value).toBe(3);
  });

  it('refuses writes on a read-only drive', () => {
    const { loop, m } = setup(modern, true);
    const drv = new Driver(m, modern);
    const features = drv.init();
    expect(features & (1 << 5)).not.toBe(0); // RO
    const req = drv.submit(VirtioBlkType.OUT, 0, new Uint8Array(512), 1);
    expect(drv.complete(loop, req.inAddr, 1).status).toBe(VirtioBlkStatus.IOERR);
  });
});
