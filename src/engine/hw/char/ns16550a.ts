import { assert } from '../../assert.js';
import { ClockType } from '../../clock.js';
import { IrqPin } from '../../irq.js';
import type { MainLoop } from '../../main-loop.js';
import type { MmioOps } from '../../memory.js';
import type { Timer } from '../../timer.js';
import type { GateInput, InputSink, StampedInput } from '../../host/input-gate.js';
import { ByteFifo } from './byte-fifo.js';

/** Where a UART's transmitted bytes go (a host chardev backend, a test's capture buffer). */
export interface CharOutput {
  write(bytes: Uint8Array): void;
}

// Register bits, as QEMU's hw/char/serial.c names them.
const IER_RDI = 0x01;
const IER_THRI = 0x02;
const IER_RLSI = 0x04;
const IER_MSI = 0x08;
const IIR_NO_INT = 0x01;
const IIR_ID = 0x06;
const IIR_MSI = 0x00;
const IIR_THRI = 0x02;
const IIR_RDI = 0x04;
const IIR_RLSI = 0x06;
const IIR_CTI = 0x0c;
const IIR_FE = 0xc0;
const LCR_DLAB = 0x80;
const MCR_LOOP = 0x10;
const MCR_OUT2 = 0x08;
const LSR_DR = 0x01;
const LSR_OE = 0x02;
const LSR_BI = 0x10;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const LSR_INT_ANY = 0x1e;
const MSR_DCD = 0x80;
const MSR_DSR = 0x20;
const MSR_CTS = 0x10;
const MSR_ANY_DELTA = 0x0f;
const FCR_FE = 0x01;
const FCR_RFR = 0x02;
const FCR_XFR = 0x04;

/** FIFO depth of the 16550A. */
export const UART_FIFO_LENGTH = 16;
/** Receive trigger levels selected by FCR bits 7:6. */
const TRIGGER_LEVELS = [1, 4, 8, 14] as const;
/** The virt board's UART input clock divided by 16 (QEMU: 3686400 / 16 ≈ 399193 baud base on virt is 399193). */
export const VIRT_UART_BAUDBASE = 399_193;
/** The clock-frequency property QEMU puts in the device tree for this UART (3.6864 MHz). */
export const VIRT_UART_CLOCK_HZ = 3_686_400;

declare module '../../trace.js' {
  interface TraceEventMap {
    'serial.irq': { dev: string; level: boolean };
  }
}

/** A UART's registers, FIFOs and interrupt line for machine snapshots (its timer is the kernel's). */
export interface Ns16550aState {
  readonly divider: number;
  readonly rbr: number;
  readonly ier: number;
  readonly iir: number;
  readonly lcr: number;
  readonly mcr: number;
  readonly lsr: number;
  readonly msr: number;
  readonly scr: number;
  readonly fcr: number;
  readonly thrIpending: boolean;
  readonly timeoutIpending: boolean;
  readonly recvFifoItl: number;
  readonly charTransmitNs: number;
  readonly recvFifo: readonly number[];
  readonly xmitFifo: readonly number[];
  readonly irq: boolean;
}

const isByte = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xff;

/**
 * A National Semiconductor 16550A UART (QEMU's `serial`, regshift 0, byte registers), with 16-byte
 * receive and transmit FIFOs, the receive-timeout interrupt on the virtual clock, loopback, and
 * interrupt priority RLS > timeout > RDA > THRE > MSI. Transmission is instantaneous, as in QEMU
 * when the backend takes every byte. Received bytes enter only from the input gate: `room()` is the
 * free space QEMU's `serial_can_receive` reports, so input waits in the gate instead of being lost.
 */
export class Ns16550a implements InputSink {
  /** Interrupt output (to the PLIC). */
  readonly irq: IrqPin;
  readonly mmio: MmioOps;
  output: CharOutput | null = null;

  private divider = 0;
  private rbr = 0;
  private ier = 0;
  private iir = IIR_NO_INT;
  private lcr = 0;
  private mcr = MCR_OUT2;
  private lsr = LSR_TEMT | LSR_THRE;
  private msr = MSR_DCD | MSR_DSR | MSR_CTS;
  private scr = 0;
  private fcr = 0;
  private thrIpending = false;
  private timeoutIpending = false;
  private recvFifoItl = 1;
  private charTransmitNs = 0;
  private readonly recvFifo = new ByteFifo(UART_FIFO_LENGTH);
  private readonly xmitFifo = new ByteFifo(UART_FIFO_LENGTH);
  private readonly fifoTimeout: Timer;

  constructor(
    private readonly loop: MainLoop,
    /** QOM-like path, e.g. `/machine/soc/serial@10000000`. */
    readonly path: string,
    private readonly baudbase = VIRT_UART_BAUDBASE,
  ) {
    this.irq = new IrqPin(`${path}/irq`);
    this.fifoTimeout = loop.newTimer(ClockType.Virtual, `${path}:fifo-timeout`, () => this.fifoTimeoutFired());
    // QEMU's serial_mm: any access width reaches one register (impl.max_access_size 8); writes
    // keep the low byte.
    this.mmio = {
      read: (offset) => this.readReg(offset),
      write: (offset, _size, value) => this.writeReg(offset, value),
      read64: (offset) => BigInt(this.readReg(offset)),
      write64: (offset, value) => this.writeReg(offset, Number(value & 0xffn)),
    };
    this.reset();
  }

  /** serial_reset. */
  reset(): void {
    this.rbr = 0;
    this.ier = 0;
    this.iir = IIR_NO_INT;
    this.lcr = 0;
    this.lsr = LSR_TEMT | LSR_THRE;
    this.msr = MSR_DCD | MSR_DSR | MSR_CTS;
    this.mcr = MCR_OUT2;
    this.scr = 0;
    this.divider = 0x0c;
    this.fcr = 0;
    this.recvFifoItl = 1;
    this.thrIpending = false;
    this.timeoutIpending = false;
    this.recvFifo.reset();
    this.xmitFifo.reset();
    this.fifoTimeout.del();
    this.updateParameters();
    this.irq.lower();
  }

  // ---- input gate side -----------------------------------------------------------------------

  /** serial_can_receive: how many bytes the UART takes now. */
  room(_input?: GateInput): number {
    if (this.fcr & FCR_FE) {
      const n = this.recvFifo.length;
      if (n >= UART_FIFO_LENGTH) return 0;
      return n <= this.recvFifoItl ? this.recvFifoItl - n : 1;
    }
    return this.lsr & LSR_DR ? 0 : 1;
  }

  deliver(input: StampedInput): void {
    const data = input.data;
    if (data instanceof Uint8Array) this.receive(data);
    else if (typeof data === 'string') this.receive(new TextEncoder().encode(data));
  }

  /** serial_receive1: bytes from the line (the gate, or our own transmitter in loopback). */
  private receive(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    if (this.fcr & FCR_FE) {
      for (const byte of bytes) {
        if (this.recvFifo.full) this.lsr |= LSR_OE;
        else this.recvFifo.push(byte);
      }
      this.lsr |= LSR_DR;
      this.fifoTimeout.mod(this.loop.clocks.virtualNs + this.charTransmitNs * 4);
    } else {
      if (this.lsr & LSR_DR) this.lsr |= LSR_OE;
      this.rbr = bytes[bytes.length - 1]!;
      this.lsr |= LSR_DR;
    }
    this.updateIrq();
  }

  private fifoTimeoutFired(): void {
    if (this.recvFifo.length > 0) {
      this.timeoutIpending = true;
      this.updateIrq();
    }
  }

  // ---- registers -----------------------------------------------------------------------------

  private readReg(offset: number): number {
    switch (offset & 7) {
      case 0: {
        if (this.lcr & LCR_DLAB) return this.divider & 0xff;
        let ret: number;
        if (this.fcr & FCR_FE) {
          ret = this.recvFifo.empty ? 0 : this.recvFifo.pop();
          if (this.recvFifo.empty) this.lsr &= ~(LSR_DR | LSR_BI);
          else this.fifoTimeout.mod(this.loop.clocks.virtualNs + this.charTransmitNs * 4);
          this.timeoutIpending = false;
        } else {
          ret = this.rbr;
          this.lsr &= ~(LSR_DR | LSR_BI);
        }
        this.updateIrq();
        return ret;
      }
      case 1:
        return this.lcr & LCR_DLAB ? (this.divider >> 8) & 0xff : this.ier;
      case 2: {
        const ret = this.iir;
        if ((ret & IIR_ID) === IIR_THRI) {
          this.thrIpending = false;
          this.updateIrq();
        }
        return ret;
      }
      case 3:
        return this.lcr;
      case 4:
        return this.mcr;
      case 5: {
        const ret = this.lsr;
        if (this.lsr & (LSR_BI | LSR_OE)) {
          this.lsr &= ~(LSR_BI | LSR_OE);
          this.updateIrq();
        }
        return ret;
      }
      case 6: {
        if (this.mcr & MCR_LOOP) {
          // In loopback the modem inputs are wired to the modem outputs.
          return ((this.mcr & 0x0c) << 4) | ((this.mcr & 0x02) << 3) | ((this.mcr & 0x01) << 5);
        }
        const ret = this.msr;
        if (this.msr & MSR_ANY_DELTA) {
          this.msr &= 0xf0;
          this.updateIrq();
        }
        return ret;
      }
      default:
        return this.scr;
    }
  }

  private writeReg(offset: number, raw: number): void {
    const value = raw & 0xff;
    switch (offset & 7) {
      case 0:
        if (this.lcr & LCR_DLAB) {
          this.divider = (this.divider & 0xff00) | value;
          this.updateParameters();
          return;
        }
        if (this.fcr & FCR_FE) {
          if (this.xmitFifo.full) this.xmitFifo.pop();
          this.xmitFifo.push(value);
        } else {
          this.xmitFifo.reset();
          this.xmitFifo.push(value);
        }
        this.thrIpending = false;
        this.lsr &= ~(LSR_TEMT | LSR_THRE);
        this.updateIrq();
        this.transmit();
        return;
      case 1: {
        if (this.lcr & LCR_DLAB) {
          this.divider = (this.divider & 0x00ff) | (value << 8);
          this.updateParameters();
          return;
        }
        const changed = (this.ier ^ value) & 0x0f;
        this.ier = value & 0x0f;
        if (changed & IER_THRI) this.thrIpending = (this.ier & IER_THRI) !== 0 && (this.lsr & LSR_THRE) !== 0;
        if (changed) this.updateIrq();
        return;
      }
      case 2: {
        // No early return on an unchanged value: QEMU 7.2 runs serial_update_irq on every FCR
        // write, so a pending THRE/RDA cause raises the line (and re-pends its PLIC source) again.
        let fcr = value;
        // Toggling the enable bit flushes both FIFOs.
        if ((fcr ^ this.fcr) & FCR_FE) fcr |= FCR_XFR | FCR_RFR;
        if (fcr & FCR_RFR) {
          this.timeoutIpending = false;
          this.fifoTimeout.del();
          this.recvFifo.reset();
          this.lsr &= ~(LSR_DR | LSR_BI);
        }
        if (fcr & FCR_XFR) {
          this.xmitFifo.reset();
          this.lsr |= LSR_THRE;
          this.thrIpending = true;
        }
        this.fcr = fcr & 0xc9;
        if (this.fcr & FCR_FE) {
          this.iir |= IIR_FE;
          this.recvFifoItl = TRIGGER_LEVELS[(fcr >> 6) & 3]!;
        } else {
          this.iir &= ~IIR_FE;
        }
        this.updateIrq();
        return;
      }
      case 3:
        this.lcr = value;
        this.updateParameters();
        return;
      case 4:
        this.mcr = value & 0x1f;
        return;
      case 5:
      case 6:
        return; // read-only
      default:
        this.scr = value;
    }
  }

  /** serial_xmit: the backend takes everything at once, so the FIFO drains now. */
  private transmit(): void {
    for (let guard = 0; guard <= UART_FIFO_LENGTH && !this.xmitFifo.empty; guard++) {
      const byte = this.xmitFifo.pop();
      if (this.xmitFifo.empty) this.lsr |= LSR_THRE;
      if (this.mcr & MCR_LOOP) this.receive(Uint8Array.of(byte));
      else this.output?.write(Uint8Array.of(byte));
    }
    if (this.lsr & LSR_THRE) {
      this.lsr |= LSR_TEMT;
      this.thrIpending = true;
      this.updateIrq();
    }
  }

  /** Character time from the divisor and frame format (start + data + parity + stop bits). */
  private updateParameters(): void {
    if (this.divider === 0 || this.divider > this.baudbase) return;
    const dataBits = (this.lcr & 0x03) + 5;
    const parityBits = this.lcr & 0x08 ? 1 : 0;
    const stopBits = this.lcr & 0x04 ? 2 : 1;
    const frameBits = 1 + dataBits + parityBits + stopBits;
    const speed = this.baudbase / this.divider;
    this.charTransmitNs = Math.floor(1_000_000_000 / speed) * frameBits;
  }

  /** serial_update_irq: the highest-priority pending cause goes into IIR. */
  private updateIrq(): void {
    let id = IIR_NO_INT;
    if (this.ier & IER_RLSI && this.lsr & LSR_INT_ANY) id = IIR_RLSI;
    else if (this.ier & IER_RDI && this.timeoutIpending) id = IIR_CTI;
    else if (this.ier & IER_RDI && this.lsr & LSR_DR && (!(this.fcr & FCR_FE) || this.recvFifo.length >= this.recvFifoItl)) id = IIR_RDI;
    else if (this.ier & IER_THRI && this.thrIpending) id = IIR_THRI;
    else if (this.ier & IER_MSI && this.msr & MSR_ANY_DELTA) id = IIR_MSI;
    this.iir = id | (this.iir & 0xf0);
    const level = id !== IIR_NO_INT;
    if (level !== this.irq.level) this.loop.trace.emit('serial.irq', { dev: this.path, level });
    this.irq.set(level);
  }

  saveState(): Ns16550aState {
    return {
      divider: this.divider, rbr: this.rbr, ier: this.ier, iir: this.iir, lcr: this.lcr, mcr: this.mcr, lsr: this.lsr, msr: this.msr, scr: this.scr, fcr: this.fcr,
      thrIpending: this.thrIpending, timeoutIpending: this.timeoutIpending, recvFifoItl: this.recvFifoItl, charTransmitNs: this.charTransmitNs,
      recvFifo: this.recvFifo.contents(), xmitFifo: this.xmitFifo.contents(), irq: this.irq.level,
    };
  }

  /** Restores registers and FIFOs as saved; the line level goes back without a sink call (see IrqPin.restoreLevel). */
  restoreState(s: Ns16550aState): void {
    for (const key of ['rbr', 'ier', 'iir', 'lcr', 'mcr', 'lsr', 'msr', 'scr', 'fcr'] as const) assert(isByte(s[key]), () => `${this.path}: bad restored ${key} ${String(s[key])}`);
    assert(Number.isInteger(s.divider) && s.divider >= 0 && s.divider <= 0xffff, () => `${this.path}: bad restored divider`);
    assert(TRIGGER_LEVELS.includes(s.recvFifoItl as 1 | 4 | 8 | 14), () => `${this.path}: bad restored trigger level ${s.recvFifoItl}`);
    assert(Number.isSafeInteger(s.charTransmitNs) && s.charTransmitNs >= 0, () => `${this.path}: bad restored character time`);
    this.divider = s.divider;
    this.rbr = s.rbr;
    this.ier = s.ier;
    this.iir = s.iir;
    this.lcr = s.lcr;
    this.mcr = s.mcr;
    this.lsr = s.lsr;
    this.msr = s.msr;
    this.scr = s.scr;
    this.fcr = s.fcr;
    this.thrIpending = s.thrIpending === true;
    this.timeoutIpending = s.timeoutIpending === true;
    this.recvFifoItl = s.recvFifoItl;
    this.charTransmitNs = s.charTransmitNs;
    this.recvFifo.restore(s.recvFifo);
    this.xmitFifo.restore(s.xmitFifo);
    this.irq.restoreLevel(s.irq);
  }

  /** A digest of the device state (replay checkpoints). */
  snapshotState(): number[] {
    return [this.divider, this.rbr, this.ier, this.iir, this.lcr, this.mcr, this.lsr, this.msr, this.scr, this.fcr, this.thrIpending ? 1 : 0, this.timeoutIpending ? 1 : 0, ...this.recvFifo.contents(), -1, ...this.xmitFifo.contents()];
  }
}
