import { assert } from '../assert.js';

export const FDT_MAGIC = 0xd00dfeed;
export const FDT_VERSION = 17;
export const FDT_LAST_COMP_VERSION = 16;
const FDT_BEGIN_NODE = 1;
const FDT_END_NODE = 2;
const FDT_PROP = 3;
const FDT_END = 9;
const HEADER_BYTES = 40;
/** Bound on nesting, so a builder bug cannot recurse without end. */
export const FDT_MAX_DEPTH = 16;

/** A property value: a string, a list of strings, 32-bit cells, raw bytes, or nothing (a flag). */
export type FdtValue = string | readonly string[] | { readonly cells: readonly number[] } | { readonly u64: readonly (number | bigint)[] } | Uint8Array | null;

/** One node of a device tree being built. Properties and children keep insertion order. */
export class FdtNode {
  readonly props: [string, Uint8Array][] = [];
  readonly children: FdtNode[] = [];

  constructor(
    readonly name: string,
    readonly depth = 0,
  ) {
    assert(depth <= FDT_MAX_DEPTH, 'device tree too deep');
    assert(name === '' || /^[A-Za-z0-9,._+-]+(@[A-Za-z0-9,._+-]+)?$/.test(name), `bad node name '${name}'`);
  }

  /** Adds (or finds) a child node. */
  node(name: string): FdtNode {
    const existing = this.children.find((c) => c.name === name);
    if (existing !== undefined) return existing;
    const child = new FdtNode(name, this.depth + 1);
    this.children.push(child);
    return child;
  }

  child(name: string): FdtNode | undefined {
    return this.children.find((c) => c.name === name);
  }

  /** Sets a property (replacing an earlier value of the same name). */
  set(name: string, value: FdtValue): this {
    assert(/^[A-Za-z0-9,._+#?-]+$/.test(name), `bad property name '${name}'`);
    const bytes = encodeValue(value);
    const index = this.props.findIndex(([n]) => n === name);
    if (index >= 0) this.props[index] = [name, bytes];
    else this.props.push([name, bytes]);
    return this;
  }

  cells(name: string, ...values: number[]): this {
    return this.set(name, { cells: values });
  }

  prop(name: string): Uint8Array | undefined {
    return this.props.find(([n]) => n === name)?.[1];
  }
}

function encodeValue(value: FdtValue): Uint8Array {
  if (value === null) return new Uint8Array(0);
  if (value instanceof Uint8Array) return value.slice();
  const enc = new TextEncoder();
  if (typeof value === 'string') return concat([enc.encode(value), new Uint8Array(1)]);
  if (Array.isArray(value)) return concat((value as readonly string[]).flatMap((s) => [enc.encode(s), new Uint8Array(1)]));
  if ('cells' in value) {
    const out = new Uint8Array(4 * value.cells.length);
    const v = new DataView(out.buffer);
    value.cells.forEach((c, i) => {
      assert(Number.isInteger(c) && c >= 0 && c <= 0xffffffff, `cell ${c} is not a u32`);
      v.setUint32(4 * i, c, false);
    });
    return out;
  }
  const u64 = (value as { u64: readonly (number | bigint)[] }).u64;
  const out = new Uint8Array(8 * u64.length);
  const v = new DataView(out.buffer);
  u64.forEach((c, i) => v.setBigUint64(8 * i, BigInt(c), false));
  return out;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

/** Splits a 64-bit number into the two cells of an #address-cells/#size-cells = 2 value. */
export function cells64(value: number): [number, number] {
  assert(Number.isSafeInteger(value) && value >= 0, `bad 64-bit cell value ${value}`);
  return [Math.floor(value / 0x1_0000_0000), value >>> 0];
}

/** A memory reservation entry (address, size). */
export interface FdtReservation {
  readonly address: number;
  readonly size: number;
}

/**
 * Writes a flattened device tree blob, version 17 (devicetree spec §5): header, memory
 * reservation block, structure block, strings block (each property name stored once).
 */
export class FdtBuilder {
  readonly root = new FdtNode('');
  readonly reservations: FdtReservation[] = [];
  bootCpuidPhys = 0;
  private nextPhandle = 1;

  /** Allocates a phandle and sets it on `node`. */
  phandle(node: FdtNode): number {
    const existing = node.prop('phandle');
    if (existing !== undefined) return new DataView(existing.buffer, existing.byteOffset).getUint32(0, false);
    const handle = this.nextPhandle++;
    node.cells('phandle', handle);
    return handle;
  }

  /** The blob, padded to `minSizeBytes` if given. */
  toBlob(minSizeBytes = 0): Uint8Array {
    const strings: number[] = [];
    const stringOffsets = new Map<string, number>();
    const enc = new TextEncoder();
    const stringOffset = (name: string): number => {
      let off = stringOffsets.get(name);
      if (off === undefined) {
        off = strings.length;
        stringOffsets.set(name, off);
        for (const b of enc.encode(name)) strings.push(b);
        strings.push(0);
      }
      return off;
    };
    const struct: number[] = [];
    const u32 = (v: number): void => {
      struct.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
    };
    const pad = (): void => {
      while (struct.length % 4 !== 0) struct.push(0);
    };
    // Iterative walk (no recursion): a stack of (node, next child index).
    const stack: { node: FdtNode; next: number }[] = [];
    const open = (node: FdtNode): void => {
      u32(FDT_BEGIN_NODE);
      for (const b of enc.encode(node.name)) struct.push(b);
      struct.push(0);
      pad();
      for (const [name, value] of node.props) {
        u32(FDT_PROP);
        u32(value.length);
        u32(stringOffset(name));
        for (const b of value) struct.push(b);
        pad();
      }
      stack.push({ node, next: 0 });
    };
    open(this.root);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const child = top.node.children[top.next];
      if (child !== undefined) {
        top.next++;
        open(child);
      } else {
        u32(FDT_END_NODE);
        stack.pop();
      }
    }
    u32(FDT_END);

    const rsvBytes = 16 * (this.reservations.length + 1);
    const offRsv = HEADER_BYTES;
    const offStruct = offRsv + rsvBytes;
    const offStrings = offStruct + struct.length;
    const total = offStrings + strings.length;
    const size = Math.max(total, minSizeBytes);
    const blob = new Uint8Array(size);
    const v = new DataView(blob.buffer);
    v.setUint32(0, FDT_MAGIC);
    v.setUint32(4, size);
    v.setUint32(8, offStruct);
    v.setUint32(12, offStrings);
    v.setUint32(16, offRsv);
    v.setUint32(20, FDT_VERSION);
    v.setUint32(24, FDT_LAST_COMP_VERSION);
    v.setUint32(28, this.bootCpuidPhys);
    v.setUint32(32, strings.length);
    v.setUint32(36, struct.length);
    this.reservations.forEach((r, i) => {
      v.setBigUint64(offRsv + 16 * i, BigInt(r.address));
      v.setBigUint64(offRsv + 16 * i + 8, BigInt(r.size));
    });
    blob.set(struct, offStruct);
    blob.set(strings, offStrings);
    return blob;
  }
}
