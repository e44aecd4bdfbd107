import { type Co, YIELD } from '../../engine/coroutine.js';
import { type BlkdebugEvent, BLKDEBUG_EVENTS, isBlkdebugEvent } from '../blkdebug-events.js';
import type { BlockDriver, BlockStatusOut, OpenContext } from '../driver.js';
import { BlockStatus, ChildRole } from '../driver.js';
import { Errno } from '../errno.js';
import { BlockError } from '../error.js';
import { bdrvCoPdiscard, bdrvCoPreadv, bdrvCoPwriteZeroes, bdrvCoPwritev } from '../io.js';
import type { BlockDriverState } from '../node.js';
import { type BlockdevOptions, OptionReader } from '../options.js';
import { defaultChildPerms } from '../perms.js';

declare module '../../engine/trace.js' {
  interface TraceEventMap {
    'blkdebug.event': { node: string; event: string; state: number; newState: number };
    'blkdebug.inject': { node: string; iotype: string; offset: number; bytes: number; errno: number };
  }
}

/** BlkdebugIOType, in QEMU's order (bit positions of a rule's iotype mask). */
export const BLKDEBUG_IO_TYPES = ['read', 'write', 'write-zeroes', 'discard', 'flush', 'block-status'] as const;
export type BlkdebugIoType = (typeof BLKDEBUG_IO_TYPES)[number];

/** Without `iotype`, a rule matches every type but block-status. */
const DEFAULT_IOTYPE_MASK = 0b011111;

interface InjectRule {
  readonly kind: 'inject';
  readonly event: BlkdebugEvent;
  /** 0 = any state. */
  readonly state: number;
  readonly errno: number;
  /** Byte offset a request must cover (sector * 512), or -1 for any request. */
  readonly offset: number;
  readonly once: boolean;
  readonly immediately: boolean;
  readonly iotypeMask: number;
}

interface SetStateRule {
  readonly kind: 'set-state';
  readonly event: BlkdebugEvent;
  readonly state: number;
  readonly newState: number;
}

type Rule = InjectRule | SetStateRule;

interface BlkdebugState {
  /** Current state; starts at 1. */
  state: number;
  /** Rules by event. */
  readonly rules: Map<BlkdebugEvent, Rule[]>;
  /** Inject rules armed by the last event that had any, most recent first. */
  active: InjectRule[];
}

function state(bs: BlockDriverState): BlkdebugState {
  return bs.opaque as BlkdebugState;
}

/** Most rules one blkdebug node takes. */
const MAX_RULES = 4096;

// QEMU checks the rule members through QAPI (messages carry the path, "set-state[0].new_state")
// but parses the enums itself (messages name the bare key, "event").
function parseEvent(reader: OptionReader): BlkdebugEvent {
  const name = reader.str('event', true);
  if (!isBlkdebugEvent(name)) throw new BlockError(`Parameter 'event' does not accept value '${name}'`);
  return name;
}

function parseRules(opts: OptionReader): Rule[] {
  const rules: Rule[] = [];
  opts.list('inject-error').forEach((item: BlockdevOptions, index) => {
    const r = new OptionReader(item, `${opts.prefix}inject-error[${index}].`);
    const event = parseEvent(r);
    const ruleState = r.int('state', 0, 0);
    const iotypeName = r.raw('iotype');
    let iotypeMask = DEFAULT_IOTYPE_MASK;
    if (iotypeName !== undefined) {
      const index = typeof iotypeName === 'string' ? BLKDEBUG_IO_TYPES.indexOf(iotypeName as BlkdebugIoType) : -1;
      if (index < 0) throw new BlockError(`Parameter 'iotype' does not accept value '${String(iotypeName)}'`);
      iotypeMask = 1 << index;
    }
    const errno = r.int('errno', Errno.EIO, 0, 4095);
    const sector = r.int('sector', -1, -1);
    const once = r.bool('once', false);
    const immediately = r.bool('immediately', false);
    r.finish();
    rules.push({ kind: 'inject', event, state: ruleState, errno, offset: sector >= 0 ? sector * 512 : -1, once, immediately, iotypeMask });
  });
  opts.list('set-state').forEach((item: BlockdevOptions, index) => {
    const r = new OptionReader(item, `${opts.prefix}set-state[${index}].`);
    const event = parseEvent(r);
    const ruleState = r.int('state', 0, 0);
    if (!r.has('new_state')) throw r.missing('new_state');
    const newState = r.int('new_state', 0, 1);
    r.finish();
    rules.push({ kind: 'set-state', event, state: ruleState, newState });
  });
  if (rules.length > MAX_RULES) throw new BlockError(`Too many blkdebug rules (at most ${MAX_RULES})`);
  return rules;
}

/**
 * rule_check: the first armed inject rule matching the request's type and range fails it with
 * its errno; a `once` rule is used up. Without `immediately` the error completes
 * asynchronously (after a yield), as QEMU's does.
 */
function* ruleCheck(bs: BlockDriverState, offset: number, bytes: number, iotype: BlkdebugIoType): Co<number> {
  const s = state(bs);
  const bit = 1 << BLKDEBUG_IO_TYPES.indexOf(iotype);
  const rule = s.active.find((r) => (r.offset === -1 || (bytes > 0 && r.offset >= offset && r.offset < offset + bytes)) && (r.iotypeMask & bit) !== 0);
  if (rule === undefined || rule.errno === 0) return 0;
  if (rule.once) {
    s.active = s.active.filter((r) => r !== rule);
    const list = s.rules.get(rule.event);
    if (list !== undefined) list.splice(list.indexOf(rule), 1);
  }
  bs.loop.trace.emit('blkdebug.inject', { node: bs.nodeName, iotype, offset, bytes, errno: rule.errno });
  if (!rule.immediately) yield YIELD;
  return -rule.errno;
}

/**
 * `blkdebug`: a filter over `image` that injects errors. Rules react to events raised by the
 * format driver above (read_aio, write_aio, l2_load, flush_to_os, ...): an inject-error rule
 * whose `state` matches (0 = any) is armed; a set-state rule moves the state (checked against the
 * state before the event). Armed rules then fail matching requests. The state starts at 1.
 * `align` and `max-transfer` set the node's request limits (to exercise read-modify-write).
 */
export const blkdebugDriver: BlockDriver = {
  formatName: 'blkdebug',
  isFilter: true,
  supportedWriteFlags: 0x7ff,
  supportedZeroFlags: 0x7ff,

  *open(bs: BlockDriverState, opts: OptionReader, ctx: OpenContext): Co<void> {
    if (opts.has('config')) throw new BlockError('blkdebug config files are not supported; use inject-error and set-state');
    const rules = parseRules(opts);
    const align = opts.int('align', 0, 0);
    const maxTransfer = opts.int('max-transfer', 0, 0);
    for (const key of ['opt-write-zero', 'max-write-zero', 'opt-discard', 'max-discard']) opts.int(key, 0, 0);
    opts.str('take-child-perms');
    opts.str('unshare-child-perms');
    if (align !== 0 && (align & (align - 1)) !== 0) throw new BlockError(`Cannot meet constraints with align ${align}`);
    if (maxTransfer !== 0 && align !== 0 && maxTransfer % align !== 0) throw new BlockError(`Cannot meet constraints with max-transfer ${maxTransfer}`);
    const child = yield* ctx.openChild(bs, opts, 'image', ChildRole.FILTERED | ChildRole.PRIMARY, { required: true });
    bs.file = child;
    const byEvent = new Map<BlkdebugEvent, Rule[]>();
    for (const rule of rules) {
      const list = byEvent.get(rule.event) ?? [];
      // QEMU inserts at the head of the event's list.
      list.unshift(rule);
      byEvent.set(rule.event, list);
    }
    bs.opaque = { state: 1, rules: byEvent, active: [] } satisfies BlkdebugState;
    bs.totalBytes = child!.bs.getLength();
    bs.requestAlignment = align !== 0 ? align : child!.bs.requestAlignment;
    bs.maxTransferBytes = maxTransfer;
  },

  refreshLimits(bs: BlockDriverState): void {
    // Keep the alignment set at open (the generic default would be 1).
    if (bs.requestAlignment < 1) bs.requestAlignment = 1;
  },

  getLength(bs: BlockDriverState): number {
    return bs.file === null ? -Errno.ENOMEDIUM : bs.file.bs.getLength();
  },

  debugEvent(bs: BlockDriverState, event: BlkdebugEvent): void {
    const s = state(bs);
    const rules = s.rules.get(event);
    let newState = s.state;
    if (rules !== undefined) {
      let injects = 0;
      for (const rule of rules) {
        if (rule.state !== 0 && rule.state !== s.state) continue;
        if (rule.kind === 'inject') {
          if (injects === 0) s.active = [];
          s.active.unshift(rule);
          injects++;
        } else {
          newState = rule.newState;
        }
      }
    }
    bs.loop.trace.emit('blkdebug.event', { node: bs.nodeName, event, state: s.state, newState });
    s.state = newState;
  },

  *preadv(bs: BlockDriverState, offset: number, bytes: number, buf: Uint8Array, flags: number): Co<number> {
    const err = yield* ruleCheck(bs, offset, bytes, 'read');
    if (err < 0) return err;
    return yield* bdrvCoPreadv(bs.file!, offset, bytes, buf, flags);
  },

  *pwritev(bs: BlockDriverState, offset: number, bytes: number, buf: Uint8Array, flags: number): Co<number> {
    const err = yield* ruleCheck(bs, offset, bytes, 'write');
    if (err < 0) return err;
    return yield* bdrvCoPwritev(bs.file!, offset, bytes, buf, flags);
  },

  *pwriteZeroes(bs: BlockDriverState, offset: number, bytes: number, flags: number): Co<number> {
    const err = yield* ruleCheck(bs, offset, bytes, 'write-zeroes');
    if (err < 0) return err;
    return yield* bdrvCoPwriteZeroes(bs.file!, offset, bytes, flags);
  },

  *pdiscard(bs: BlockDriverState, offset: number, bytes: number): Co<number> {
    const err = yield* ruleCheck(bs, offset, bytes, 'discard');
    if (err < 0) return err;
    return yield* bdrvCoPdiscard(bs.file!, offset, bytes);
  },

  *flush(bs: BlockDriverState): Co<number> {
    // The generic layer flushes the image child afterwards.
    return yield* ruleCheck(bs, 0, 0, 'flush');
  },

  *blockStatus(bs: BlockDriverState, _wantZero: boolean, offset: number, bytes: number, out: BlockStatusOut): Co<number> {
    const err = yield* ruleCheck(bs, offset, bytes, 'block-status');
    if (err < 0) return err;
    out.pnum = bytes;
    out.map = offset;
    out.file = bs.file!.bs;
    return BlockStatus.RAW | BlockStatus.OFFSET_VALID;
  },

  getInfo(bs: BlockDriverState) {
    const below = bs.file?.bs;
    return below?.drv.getInfo?.(below) ?? null;
  },

  childPerms(bs, _child, role, parentPerm, parentShared) {
    return defaultChildPerms(bs, role, parentPerm, parentShared);
  },
};

/** The current state of a blkdebug node (tests, iotests). */
export function blkdebugState(bs: BlockDriverState): number {
  return state(bs).state;
}

export { BLKDEBUG_EVENTS };
