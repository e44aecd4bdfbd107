import { describe, expect, it } from 'vitest';
import { ReplayOptionError, commandLineForDigest, parseRrOption } from '../../../src/replay/rr-option.js';

describe('-icount rr= option', () => {
  it('reads QEMU spelling and refuses incomplete or unknown modes', () => {
    expect(parseRrOption(null)).toBeNull();
    expect(parseRrOption('shift=3')).toBeNull();
    expect(parseRrOption('shift=0,rr=off')).toBeNull();
    expect(parseRrOption('shift=0,rr=record,rrfile=a.log')).toEqual({ mode: 'record', file: 'a.log' });
    expect(parseRrOption('rrfile=b,rr=replay,shift=auto')).toEqual({ mode: 'replay', file: 'b' });
    expect(() => parseRrOption('rr=record')).toThrow(ReplayOptionError);
    expect(() => parseRrOption('rr=rewind,rrfile=x')).toThrow(/expected record, replay or off/);
  });

  it('the machine digest ignores the rr options, so record and replay command lines match', () => {
    const rec = commandLineForDigest(['-M', 'virt', '-icount', 'shift=0,rr=record,rrfile=x']);
    const play = commandLineForDigest(['-M', 'virt', '-icount', 'shift=0,rr=replay,rrfile=y']);
    expect(rec).toEqual(play);
    expect(rec).toEqual(['-M', 'virt', '-icount', 'shift=0']);
  });
});
