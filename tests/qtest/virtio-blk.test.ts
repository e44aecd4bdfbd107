import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import '../../src/block/builtin-drivers.js';
import { BlockBackend, devicePerms } from '../../src/block/block-backend.js';
import { BlockGraph } from '../../src/block/graph.js';
import { MainLoop } from '../../src/engine/main-loop.js';
import { inProcessVirt } from '../../src/qtest/virt.js';
import { GuestAllocator } from '../../src/qtest/libqos/guest-alloc.js';
import { VirtioBlkType, VirtioMmioDevice, virtioBlkRequest } from '../../src/qtest/libqos/virtio-mmio.js';
import { RAM, VIRTIO0 } from './virt-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'qtest-vblk-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A 64 KiB raw disk whose byte i is (i * 7 + (i >> 9)) & 0xff: every sector differs. */
function diskImage(): { path: string; bytes: Uint8Array } {
  const bytes = new Uint8Array(64 * 1024);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + (i >> 9)) & 0xff;
  const path = join(dir, 'disk.raw');
  writeFileSync(path, bytes);
  return { path, bytes };
}

const REG = { magic: 0x0, version: 0x4, deviceId: 0x8, vendor: 0xc, hostFeatures: 0x10, hostFeaturesSel: 0x14, guestFeatures: 0x20, guestFeaturesSel: 0x24, guestPageSize: 0x28, queueSel: 0x30, queueNumMax: 0x34, queueNum: 0x38, queueAlign: 0x3c, queuePfn: 0x40, queueNotify: 0x50, isr: 0x60, ack: 0x64, status: 0x70, config: 0x100 };
/** -device order fills virtio-mmio slots from the top: the first drive is slot 7 (IRQ 8). */
const SLOT = VIRTIO0 + 7 * 0x1000;
const SLOT_PATH = '/machine/soc/virtio_mmio@10008000';

function le(bytes: number[], value: number | bigint, size: number): void {
  let v = BigInt(value);
  for (let i = 0; i < size; i++) {
    bytes.push(Number(v & 0xffn));
    v >>= 8n;
  }
}

describe('virtio-mmio / virtio-blk over qtest', () => {
  it('empty slots answer magic, legacy version 1 and device id 0', async () => {
    const loop = new MainLoop();
    const { client: qt } = inProcessVirt(loop);
    for (let i = 0; i < 8; i++) {
      const base = VIRTIO0 + i * 0x1000;
      expect(await qt.readl(base + REG.magic)).toBe(0x74726976);
      expect(await qt.readl(base + REG.version)).toBe(1);
      expect(await qt.readl(base + REG.deviceId)).toBe(0);
    }
  });

  it('negotiates features, runs a hand-made queue and reads the disk\'s bytes', async () => {
    const disk = diskImage();
    const loop = new MainLoop();
    const graph = new BlockGraph(loop);
    const node = graph.blockdevAdd({ driver: 'file', filename: disk.path, 'node-name': 'disk0' });
    const backend = BlockBackend.withNode(graph, node, { name: 'drive0', ...devicePerms(false) });
    const { client: qt } = inProcessVirt(loop, { drives: [{ backend }] });

    expect(await qt.readl(SLOT + REG.magic)).toBe(0x74726976);
    expect(await qt.readl(SLOT + REG.deviceId)).toBe(2);
    expect(await qt.readl(SLOT + REG.vendor)).toBe(0x554d4551);
    // capacity in 512-byte sectors, in the device config space
    expect(await qt.readq(SLOT + REG.config)).toBe(BigInt(disk.bytes.length / 512));

    await qt.writel(SLOT + REG.status, 1); // ACKNOWLEDGE
    await qt.writel(SLOT + REG.status, 3); // DRIVER
    await qt.writel(SLOT + REG.hostFeaturesSel, 0);
    const features = await qt.readl(SLOT + REG.hostFeatures);
    expect(features & (1 << 9)).toBe(1 << 9); // VIRTIO_BLK_F_FLUSH
    // the driver takes only what the device offers: ask for everything, keep the intersection
    await qt.writel(SLOT + REG.guestFeaturesSel, 0);
    await qt.writel(SLOT + REG.guestFeatures, 0xffffffff & features);
    await qt.writel(SLOT + REG.guestPageSize, 4096);

    const num = 8;
    const ring = RAM + 0x10000; // page-aligned
    await qt.writel(SLOT + REG.queueSel, 0);
    expect(await qt.readl(SLOT + REG.queueNumMax)).toBeGreaterThanOrEqual(num);
    await qt.writel(SLOT + REG.queueNum, num);
    await qt.writel(SLOT + REG.queueAlign, 4096);
    await qt.writel(SLOT + REG.queuePfn, ring / 4096);
    expect(await qt.readl(SLOT + REG.queuePfn)).toBe(ring / 4096);
    await qt.writel(SLOT + REG.status, 7); // DRIVER_OK
    await qt.irqInterceptOut(SLOT_PATH);

    const header = RAM + 0x20000, data = RAM + 0x21000, status = RAM + 0x22000;
    const sector = 3;
    const hdr: number[] = [];
    le(hdr, 0, 4); // VIRTIO_BLK_T_IN
    le(hdr, 0, 4);
    le(hdr, sector, 8);
    await qt.memwrite(header, new Uint8Array(hdr));
    await qt.memset(status, 1, 0xff);
    const desc: number[] = [];
    const d = (addr: number, len: number, flags: number, next: number) => { le(desc, addr, 8); le(desc, len, 4); le(desc, flags, 2); le(desc, next, 2); };
    d(header, 16, 1, 1); // NEXT
    d(data, 1024, 1 | 2, 2); // NEXT | WRITE: two sectors
    d(status, 1, 2, 0); // WRITE
    await qt.memwrite(ring, new Uint8Array(desc));
    const avail = ring + 16 * num;
    await qt.memwrite(avail, new Uint8Array([0, 0, 1, 0, 0, 0])); // flags 0, idx 1, ring[0] = 0
    const used = ring + 4096; // avail ends below one page; used is aligned to QueueAlign

    await qt.writel(SLOT + REG.queueNotify, 0);
    for (let i = 0; i < 100 && (await qt.readw(used + 2)) === 0; i++) await qt.clockStep();
    expect(await qt.readw(used + 2)).toBe(1);
    expect(await qt.readl(used + 4)).toBe(0); // id of the head descriptor
    expect(await qt.readl(used + 8)).toBe(1025); // bytes written into the driver's buffers
    expect(await qt.readb(status)).toBe(0); // VIRTIO_BLK_S_OK
    expect(await qt.memread(data, 1024)).toEqual(disk.bytes.subarray(sector * 512, sector * 512 + 1024));
    expect(await qt.readl(SLOT + REG.isr)).toBe(1);
    expect(qt.getIrq(0)).toBe(true);
    await qt.writel(SLOT + REG.ack, 1);
    expect(qt.getIrq(0)).toBe(false);
  });

  it('libqos-style helpers: writes reach the image file, reads return them, GET_ID and FLUSH, a ring that wraps', async () => {
    const disk = diskImage();
    const loop = new MainLoop();
    const graph = new BlockGraph(loop);
    const node = graph.blockdevAdd({ driver: 'file', filename: disk.path, 'node-name': 'disk0' });
    const backend = BlockBackend.withNode(graph, node, { name: 'drive0', ...devicePerms(false) });
    const { client: qt } = inProcessVirt(loop, { drives: [{ backend, serial: 'QTEST-SERIAL' }] });
    const dev = new VirtioMmioDevice(qt, SLOT);
    const alloc = new GuestAllocator(RAM + 0x100000, RAM + 0x800000);
    expect((await dev.negotiate(0xffff_ffffn)) & (1n << 9n)).toBe(1n << 9n); // FLUSH accepted
    const vq = await dev.setupQueue(0, 4, alloc);
    await dev.driverOk();

    const pattern = new Uint8Array(1024).map((_, i) => (0xa0 + i) & 0xff);
    const wrote = await virtioBlkRequest(dev, vq, alloc, { type: VirtioBlkType.OUT, sector: 10, data: pattern });
    expect(wrote.status).toBe(0);
    expect(wrote.usedLen).toBe(1); // only the status byte was written by the device
    const read = await virtioBlkRequest(dev, vq, alloc, { type: VirtioBlkType.IN, sector: 10, length: 1024 });
    expect(read.status).toBe(0);
    expect(Buffer.compare(read.data, pattern)).toBe(0);
    expect((await virtioBlkRequest(dev, vq, alloc, { type: VirtioBlkType.FLUSH, sector: 0 })).status).toBe(0);
    const id = await virtioBlkRequest(dev, vq, alloc, { type: VirtioBlkType.GET_ID, sector: 0, length: 20 });
    expect(Buffer.from(id.data).toString('latin1').replace(/\0+$/, '')).toBe('QTEST-SERIAL');
    // more requests than ring entries: the ring wraps; sector 11 still holds the second half
    for (let i = 0; i < 6; i++) {
      const r = await virtioBlkRequest(dev, vq, alloc, { type: VirtioBlkType.IN, sector: 11, length: 512 });
      expect(Buffer.compare(r.data, pattern.subarray(512))).toBe(0);
    }
    // past the end of the disk: an I/O error status, not a crash
    expect((await virtioBlkRequest(dev, vq, alloc, { type: VirtioBlkType.IN, sector: 1 << 20, length: 512 })).status).toBe(1);
    expect(await dev.ackInterrupt()).toBe(1);
    // the host file really changed
    const onDisk = readFileSync(disk.path);
    expect(Buffer.compare(onDisk.subarray(10 * 512, 12 * 512), pattern)).toBe(0);
    expect(onDisk[9 * 512]).toBe(disk.bytes[9 * 512]);
  });
});
