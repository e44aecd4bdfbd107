import { describe, expect, it } from 'vitest';
import { DEFAULT_HOST_BASE_SECONDS } from '../../../src/engine/clock.js';
import { MachineConfigError } from '../../../src/engine/hw/virt/machine.js';
import { parseIcountShift, parseRtcBase, parseSmp, resolveBios, rtcFollowsHost } from '../../../src/engine/hw/virt/virt-options.js';

describe('virt command-line spellings', () => {
  it('parses -smp, -icount, -rtc and -bios', () => {
    expect([parseSmp(null), parseSmp('2'), parseSmp('cpus=4,sockets=1')]).toEqual([1, 2, 4]);
    expect(() => parseSmp('cpus=0')).toThrow(MachineConfigError);
    expect([parseIcountShift(null), parseIcountShift('3'), parseIcountShift('shift=5,rr=record'), parseIcountShift('shift=auto')]).toEqual([0, 3, 5, 0]);
    expect(() => parseIcountShift('shift=11')).toThrow(MachineConfigError);
    expect(parseRtcBase(null)).toBe(DEFAULT_HOST_BASE_SECONDS);
    expect(parseRtcBase('base=utc')).toBe(DEFAULT_HOST_BASE_SECONDS);
    expect(parseRtcBase('base=2026-01-01')).toBe(DEFAULT_HOST_BASE_SECONDS);
    expect(parseRtcBase('base=2006-06-17T16:01:21')).toBe(1150560081);
    expect(() => parseRtcBase('base=yesterday')).toThrow(MachineConfigError);
    expect(rtcFollowsHost('base=utc,clock=host')).toBe(true);
    expect(resolveBios('none')).toBe('none');
    expect(resolveBios('/x/fw.bin')).toBe('/x/fw.bin');
    expect(resolveBios(null, (p) => p.endsWith('fw_dynamic.bin'))).toMatch(/fw_dynamic\.bin$/);
    expect(() => resolveBios(null, () => false)).toThrow(MachineConfigError);
  });
});
