//! An emulated Arm PrimeCell UART (PL011 r1p5) for a domain: dom0's
//! `ttyAMA0` at the host UART's address, while the hypervisor keeps the
//! real PL011 for its own log.
//!
//! This module owns the *register model* only — pure logic, no hardware:
//! trapped accesses come in through [`MmioDevice`] (the domain decodes an
//! access to its [`SIZE`]-byte page and calls the device), bytes the
//! guest transmits go out through the sink given to [`Vpl011::new`], input
//! comes in through [`Vpl011::push_rx`], and the interrupt output
//! (`UARTINTR` = `(RIS & IMSC) != 0`) is read with [`Vpl011::irq_level`] or,
//! race-free, forwarded with [`Vpl011::sync_irq`].
//!
//! # Wiring (the caller's job)
//!
//! - **MMIO.** At the host UART's base (QEMU `virt`: `0x0900_0000`;
//!   `emulate_uart` in `src/domain/mod.rs`); stage 2 leaves the
//!   page unmapped so that every access traps. An `Err` from the device
//!   (64-bit access, reserved offset, a write not starting at a register's
//!   first byte) is a guest mistake: inject an abort, as for any MMIO error.
//! - **Interrupt.** After every emulated access to the region, and after
//!   every [`push_rx`](Vpl011::push_rx), call
//!   `uart.sync_irq(|level| vgic.set_level(Virq::Spi(intid), level))` and
//!   act on the [`Outcome`](crate::vgic::Outcome) (kick vCPUs). The vGIC
//!   interrupt is the one the guest's device tree names (QEMU `virt`: SPI 1,
//!   INTID 33), level-triggered, *not* linked to a physical interrupt: the
//!   physical UART's own SPI belongs to the hypervisor.
//! - **Output.** The sink is called with each byte, in order, with the
//!   device's lock held: it must be quick and must not call back into the
//!   device. Dom0's sink writes each byte through to the console as it
//!   comes (`Console::write_guest`): the hypervisor's own lines end an
//!   unfinished guest line first, so the two never share a line.
//! - **Input.** Bytes the console input switch gives to dom0
//!   ([`crate::console::input`]) go to [`push_rx`](Vpl011::push_rx).
//!
//! **Locking.** One spin lock per device; every method takes it once. The
//! `sync_irq` callback runs under it, so the order is device → vGIC; never
//! call the device with the vGIC lock held.
//!
//! # What the model does
//!
//! Transmission is immediate: a byte written to `UARTDR` has left by the
//! time the write completes, so the TX FIFO is always empty (`FR.TXFE` = 1,
//! `TXFF` = `BUSY` = 0). Bytes written while the UART or its transmitter is
//! disabled (`CR.UARTEN`/`TXE` clear) are still sent: Linux's earlycon
//! writes without looking at `UARTCR`, and losing console output is worse
//! than being lenient. In loopback (`CR.LBE`) a written byte goes to the RX
//! FIFO instead of the sink (and external input is ignored, as on the
//! hardware); Linux kernels before 4.4 wrote such a dummy byte at startup.
//!
//! Interrupts (`RIS` bits; `MIS = RIS & IMSC`; `ICR` clears):
//! - **TXRIS** is set by every `UARTDR` write (the FIFO has drained through
//!   any trigger level) and when the transmitter becomes enabled
//!   (`UARTEN` and `TXE` both set, one of them newly); only `ICR` clears it.
//!   Linux (4.4 and later, including 6.1) writes bytes while `FR.TXFF` is
//!   clear and unmasks `TXIM` only if bytes remain, then expects an
//!   interrupt; it masks `TXIM` again when its buffer is empty
//!   (`pl011_stop_tx`), so the line never stays up for an idle transmitter.
//! - **RXRIS** is set when input brings the RX FIFO up to the trigger level
//!   (`IFLS.RXIFLSEL`: 4, 8, 16, 24 or 28 of 32; 1 with the FIFO disabled),
//!   and cleared when reads take it below.
//! - **RTRIS**, the receive timeout, is modelled as already expired: set
//!   whenever input arrives or a read leaves data in the FIFO, cleared when
//!   the FIFO becomes empty. So data never waits in the FIFO without an
//!   interrupt (Linux unmasks `RXIM | RTIM` and drains the FIFO on either).
//! - **OERIS** and `RSR.OE` are set when input arrives with the FIFO full
//!   (the byte is lost and counted, [`Vpl011::rx_overruns`]); the newest
//!   byte in the FIFO then reads with `DR.OE`, marking where data was lost.
//! - Modem lines are fixed: `CTS`, `DSR` and `DCD` asserted, `RI` not; no
//!   modem-status interrupts. Framing, parity and break errors never occur.
//!
//! The FIFO holds 32 bytes with `LCR_H.FEN` set, 1 without (as the
//! hardware); changing `FEN` keeps what is in it. Baud-rate, line-control
//! and IrDA registers are stored and read back, and have no effect.
//! `UARTDMACR` reads as zero and ignores writes (no DMA).
//!
//! **Reset state** (what the guest finds, as firmware would leave the
//! console UART): `CR` = `UARTEN | TXE | RXE`, `LCR_H` = 8 bits + FIFOs,
//! `IBRD`/`FBRD` = 13/1 (115200 baud from a 24 MHz clock, so that Linux's
//! `console=ttyAMA0` without options, which derives the speed from them,
//! gets a sane value), `IFLS` = 1/2 and 1/2, all interrupts masked.
//!
//! **Accesses.** 8-, 16- and 32-bit, naturally aligned, to every register.
//! Linux's `amba-pl011` driver for Arm's PL011 uses 16-bit accesses
//! (`UPIO_MEM`), the AMBA bus reads the ID registers with 32-bit ones, and
//! earlycon writes `UARTDR` with 8-bit (`pl011,<addr>`) or 32-bit
//! (`pl011,mmio32,<addr>`) stores. A narrower read returns those bytes of
//! the register (with the register's side effects); a narrower write must
//! start at the register's first byte and writes the value zero-extended.
//! Writes to read-only registers (`FR`, `RIS`, `MIS`, the IDs) are ignored
//! and `ICR` reads as zero, as the hardware does; 64-bit accesses and
//! reserved offsets are errors.

use crate::mmio::{AccessSize, MmioDevice, MmioError};

/// Size of the register frame (the PL011's 4 KiB).
pub const SIZE: u64 = 0x1000;

/// Depth of the receive FIFO (PL011 r1p5: 32; Linux reads the revision from
/// the peripheral ID to decide).
pub const FIFO_DEPTH: usize = 32;

/// `UARTPeriphID0-3` as one value: part 0x011, designer 0x41 (Arm),
/// revision 3 (r1p5, 32-byte FIFOs), configuration 0. Linux's AMBA bus
/// matches the `amba-pl011` driver on `0x00041011` under mask `0x000fffff`
/// and takes the FIFO size from the revision.
pub const PERIPH_ID: u32 = 0x0034_1011;

/// `UARTPCellID0-3` as one value: the PrimeCell signature.
pub const PCELL_ID: u32 = 0xb105_f00d;

/// Register offsets (PL011 TRM, "Summary of registers").
mod reg {
    pub const DR: u64 = 0x000;
    pub const RSR_ECR: u64 = 0x004;
    pub const FR: u64 = 0x018;
    pub const ILPR: u64 = 0x020;
    pub const IBRD: u64 = 0x024;
    pub const FBRD: u64 = 0x028;
    pub const LCR_H: u64 = 0x02c;
    pub const CR: u64 = 0x030;
    pub const IFLS: u64 = 0x034;
    pub const IMSC: u64 = 0x038;
    pub const RIS: u64 = 0x03c;
    pub const MIS: u64 = 0x040;
    pub const ICR: u64 = 0x044;
    pub const DMACR: u64 = 0x048;
    pub const PERIPH_ID0: u64 = 0xfe0;
    pub const PCELL_ID0: u64 = 0xff0;
}

/// `UARTDR` bits above the data byte.
mod dr {
    pub const OE: u32 = 1 << 11;
    /// FE, PE, BE, OE: the byte's error flags.
    pub const ERRORS: u32 = 0xf00;
}

/// `UARTRSR` bits.
mod rsr {
    pub const OE: u32 = 1 << 3;
}

/// `UARTFR` bits.
mod fr {
    pub const CTS: u32 = 1 << 0;
    pub const DSR: u32 = 1 << 1;
    pub const DCD: u32 = 1 << 2;
    pub const RXFE: u32 = 1 << 4;
    pub const RXFF: u32 = 1 << 6;
    pub const TXFE: u32 = 1 << 7;
}

/// `UARTLCR_H` bits.
mod lcr {
    pub const FEN: u32 = 1 << 4;
    pub const WLEN_8: u32 = 3 << 5;
}

/// `UARTCR` bits.
mod cr {
    pub const UARTEN: u32 = 1 << 0;
    pub const LBE: u32 = 1 << 7;
    pub const TXE: u32 = 1 << 8;
    pub const RXE: u32 = 1 << 9;
    /// Implemented bits: 15:7 and 2:0 (6:3 are reserved).
    pub const MASK: u32 = 0xff87;
}

/// Interrupt bits, shared by `IMSC`, `RIS`, `MIS` and `ICR`.
pub mod int {
    /// Receive.
    pub const RX: u32 = 1 << 4;
    /// Transmit.
    pub const TX: u32 = 1 << 5;
    /// Receive timeout.
    pub const RT: u32 = 1 << 6;
    /// Overrun error.
    pub const OE: u32 = 1 << 10;
    /// All eleven interrupt bits (modem, RX, TX, RT, FE, PE, BE, OE).
    pub const ALL: u32 = 0x7ff;
}

/// A receive FIFO entry: the byte in bits 7:0, its error flags (`UARTDR`
/// bits 11:8) above.
#[derive(Clone, Copy, Debug, Default)]
struct Fifo {
    slots: [u16; FIFO_DEPTH],
    head: usize,
    len: usize,
}

impl Fifo {
    fn push(&mut self, v: u16) {
        if self.len < FIFO_DEPTH {
            self.slots[(self.head + self.len) % FIFO_DEPTH] = v;
            self.len += 1;
        }
    }

    fn pop(&mut self) -> Option<u16> {
        if self.len == 0 {
            return None;
        }
        let v = self.slots[self.head];
        self.head = (self.head + 1) % FIFO_DEPTH;
        self.len -= 1;
        Some(v)
    }

    /// The most recently pushed entry.
    fn newest_mut(&mut self) -> Option<&mut u16> {
        let last = self.len.checked_sub(1)?;
        self.slots.get_mut((self.head + last) % FIFO_DEPTH)
    }
}

/// What became of a byte given to [`Vpl011::push_rx`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxStatus {
    /// It is in the RX FIFO.
    Accepted,
    /// The FIFO was full: the byte is lost, `OE` is signalled to the guest.
    Overrun,
    /// The receiver is off (`CR.UARTEN` or `RXE` clear) or in loopback: the
    /// byte is dropped, as the line would be ignored.
    Ignored,
}

/// The device state, behind the lock.
struct State<S> {
    sink: S,
    rx: Fifo,
    /// `UARTRSR`: OE is sticky until an `UARTECR` write.
    rsr: u32,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    ris: u32,
    /// The level last given to a `sync_irq` callback.
    reported: Option<bool>,
    overruns: u64,
    ignored: u64,
}

impl<S: FnMut(u8)> State<S> {
    fn level(&self) -> bool {
        self.ris & self.imsc != 0
    }

    fn fifo_capacity(&self) -> usize {
        if self.lcr_h & lcr::FEN != 0 { FIFO_DEPTH } else { 1 }
    }

    /// The RX FIFO level at which RXRIS is raised.
    fn rx_trigger(&self) -> usize {
        if self.lcr_h & lcr::FEN == 0 {
            return 1;
        }
        // RXIFLSEL, bits 5:3: 1/8, 1/4, 1/2, 3/4, 7/8; 5-7 are reserved
        // (taken as 7/8).
        match (self.ifls >> 3) & 7 {
            0 => FIFO_DEPTH / 8,
            1 => FIFO_DEPTH / 4,
            2 => FIFO_DEPTH / 2,
            3 => FIFO_DEPTH * 3 / 4,
            _ => FIFO_DEPTH * 7 / 8,
        }
    }

    fn tx_enabled(cr: u32) -> bool {
        cr & (cr::UARTEN | cr::TXE) == cr::UARTEN | cr::TXE
    }

    /// A byte arrives at the receiver (from outside or by loopback).
    fn receive(&mut self, byte: u8) -> RxStatus {
        if self.rx.len >= self.fifo_capacity() {
            self.overruns += 1;
            self.rsr |= rsr::OE;
            self.ris |= int::OE;
            if let Some(newest) = self.rx.newest_mut() {
                *newest |= dr::OE as u16;
            }
            return RxStatus::Overrun;
        }
        let before = self.rx.len;
        self.rx.push(u16::from(byte));
        let trigger = self.rx_trigger();
        if before < trigger && self.rx.len >= trigger {
            self.ris |= int::RX;
        }
        self.ris |= int::RT;
        RxStatus::Accepted
    }

    fn read_dr(&mut self) -> u32 {
        let Some(v) = self.rx.pop() else { return 0 };
        let v = u32::from(v);
        // FE/PE/BE describe the byte just read; OE stays until cleared.
        self.rsr = (self.rsr & rsr::OE) | (((v & dr::ERRORS) >> 8) & 0x7);
        if self.rx.len < self.rx_trigger() {
            self.ris &= !int::RX;
        }
        if self.rx.len == 0 {
            self.ris &= !int::RT;
        } else {
            self.ris |= int::RT;
        }
        v
    }

    fn write_dr(&mut self, value: u32) {
        let byte = value as u8;
        if self.cr & cr::LBE != 0 {
            self.receive(byte);
        } else {
            (self.sink)(byte);
        }
        self.ris |= int::TX;
    }

    fn flags(&self) -> u32 {
        let mut f = fr::TXFE | fr::CTS | fr::DSR | fr::DCD;
        if self.rx.len == 0 {
            f |= fr::RXFE;
        }
        if self.rx.len >= self.fifo_capacity() {
            f |= fr::RXFF;
        }
        f
    }

    /// The 32-bit register at `word` (a multiple of 4), with a read's side
    /// effects.
    fn read(&mut self, word: u64) -> Result<u32, MmioError> {
        Ok(match word {
            reg::DR => self.read_dr(),
            reg::RSR_ECR => self.rsr,
            reg::FR => self.flags(),
            reg::ILPR => self.ilpr,
            reg::IBRD => self.ibrd,
            reg::FBRD => self.fbrd,
            reg::LCR_H => self.lcr_h,
            reg::CR => self.cr,
            reg::IFLS => self.ifls,
            reg::IMSC => self.imsc,
            reg::RIS => self.ris,
            reg::MIS => self.ris & self.imsc,
            reg::ICR | reg::DMACR => 0,
            0xfe0..=0xfec => id_byte(PERIPH_ID, word - reg::PERIPH_ID0),
            0xff0..=0xffc => id_byte(PCELL_ID, word - reg::PCELL_ID0),
            _ => return Err(MmioError::NoRegister),
        })
    }

    fn write(&mut self, word: u64, value: u32) -> Result<(), MmioError> {
        match word {
            reg::DR => self.write_dr(value),
            reg::RSR_ECR => self.rsr = 0,
            reg::ILPR => self.ilpr = value & 0xff,
            reg::IBRD => self.ibrd = value & 0xffff,
            reg::FBRD => self.fbrd = value & 0x3f,
            reg::LCR_H => self.lcr_h = value & 0xff,
            reg::CR => {
                let old = self.cr;
                self.cr = value & cr::MASK;
                if !Self::tx_enabled(old) && Self::tx_enabled(self.cr) {
                    self.ris |= int::TX;
                }
            }
            reg::IFLS => self.ifls = value & 0x3f,
            reg::IMSC => self.imsc = value & int::ALL,
            reg::ICR => self.ris &= !value,
            reg::FR | reg::RIS | reg::MIS | reg::DMACR | 0xfe0..=0xffc => {}
            _ => return Err(MmioError::NoRegister),
        }
        Ok(())
    }
}

/// Byte `offset / 4` of an ID register set, as the register's value.
fn id_byte(id: u32, offset: u64) -> u32 {
    (id >> (8 * (offset / 4))) & 0xff
}

/// An emulated PL011. `S` is the transmit sink, called with each byte the
/// guest sends.
pub struct Vpl011<S> {
    state: spin::Mutex<State<S>>,
}

impl<S: FnMut(u8) + Send> Vpl011<S> {
    /// A PL011 in the reset state the module doc describes, sending to
    /// `sink`.
    pub fn new(sink: S) -> Self {
        Vpl011 {
            state: spin::Mutex::new(State {
                sink,
                rx: Fifo::default(),
                rsr: 0,
                ilpr: 0,
                ibrd: 13,
                fbrd: 1,
                lcr_h: lcr::WLEN_8 | lcr::FEN,
                cr: cr::UARTEN | cr::TXE | cr::RXE,
                ifls: 0x12,
                imsc: 0,
                ris: 0,
                reported: None,
                overruns: 0,
                ignored: 0,
            }),
        }
    }

    /// Input for the guest: one byte arriving on the line.
    pub fn push_rx(&self, byte: u8) -> RxStatus {
        let mut st = self.state.lock();
        if st.cr & (cr::UARTEN | cr::RXE) != cr::UARTEN | cr::RXE || st.cr & cr::LBE != 0 {
            st.ignored += 1;
            return RxStatus::Ignored;
        }
        st.receive(byte)
    }

    /// Free space in the RX FIFO (a caller may hold input back rather than
    /// overrun it).
    pub fn rx_space(&self) -> usize {
        let st = self.state.lock();
        st.fifo_capacity().saturating_sub(st.rx.len)
    }

    /// The interrupt output: `(UARTRIS & UARTIMSC) != 0`.
    pub fn irq_level(&self) -> bool {
        self.state.lock().level()
    }

    /// If the interrupt output changed since the last call (or this is the
    /// first), calls `forward` with the new level, holding the device's
    /// lock, and returns its result. Holding the lock keeps levels from
    /// concurrent accesses on several CPUs from reaching the vGIC out of
    /// order. `forward` must not call this device.
    pub fn sync_irq<R>(&self, forward: impl FnOnce(bool) -> R) -> Option<R> {
        let mut st = self.state.lock();
        let level = st.level();
        if st.reported == Some(level) {
            return None;
        }
        st.reported = Some(level);
        Some(forward(level))
    }

    /// Bytes lost because the RX FIFO was full.
    pub fn rx_overruns(&self) -> u64 {
        self.state.lock().overruns
    }

    /// Bytes dropped because the receiver was off.
    pub fn rx_ignored(&self) -> u64 {
        self.state.lock().ignored
    }
}

impl<S: FnMut(u8) + Send> crate::console::rx::GuestRx for Vpl011<S> {
    fn rx_space(&self) -> usize {
        Vpl011::rx_space(self)
    }

    fn push_rx(&self, byte: u8) {
        // Overruns cannot happen (the caller checks the room) and bytes
        // for a receiver that is off are dropped, as on the line.
        let _ = Vpl011::push_rx(self, byte);
    }
}

/// The 32-bit register an access falls in, and the access's bit position in
/// it; 64-bit accesses are refused.
fn locate(offset: u64, size: AccessSize) -> Result<(u64, u32), MmioError> {
    if size == AccessSize::Double {
        return Err(MmioError::BadSize);
    }
    if !offset.is_multiple_of(size.bytes()) {
        return Err(MmioError::Unaligned);
    }
    Ok((offset & !3, 8 * (offset & 3) as u32))
}

impl<S: FnMut(u8) + Send> MmioDevice for Vpl011<S> {
    fn read(&self, _vcpu: usize, offset: u64, size: AccessSize) -> Result<u64, MmioError> {
        let (word, shift) = locate(offset, size)?;
        let value = self.state.lock().read(word)?;
        Ok(u64::from(value >> shift) & size.mask())
    }

    fn write(&self, _vcpu: usize, offset: u64, size: AccessSize, value: u64) -> Result<(), MmioError> {
        let (word, shift) = locate(offset, size)?;
        if shift != 0 {
            return Err(MmioError::Device("PL011 registers are written from their first byte"));
        }
        self.state.lock().write(word, (value & size.mask()) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AccessSize::{Byte, Double, Half, Word};
    use std::sync::{Arc, Mutex};
    use std::vec::Vec;

    /// What the sink received.
    type Output = Arc<Mutex<Vec<u8>>>;

    /// A device whose output is collected in a shared vector.
    fn device() -> (Vpl011<impl FnMut(u8) + Send>, Output) {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        (Vpl011::new(move |b| sink.lock().unwrap().push(b)), out)
    }

    fn r<D: MmioDevice + ?Sized>(d: &D, offset: u64, size: AccessSize) -> u64 {
        d.read(0, offset, size).unwrap_or_else(|e| panic!("read {size} at {offset:#x}: {e}"))
    }

    fn w<D: MmioDevice + ?Sized>(d: &D, offset: u64, size: AccessSize, value: u64) {
        d.write(0, offset, size, value).unwrap_or_else(|e| panic!("write {size} at {offset:#x}: {e}"))
    }

    const FR: u64 = reg::FR;

    #[test]
    fn identification_registers_are_an_r1p5_pl011() {
        let (d, _) = device();
        // Linux's AMBA bus: readl of the eight registers, low byte each.
        let byte = |o: u64| r(&d, o, Word) as u32;
        let pid = (0..4).fold(0, |acc, i| acc | (byte(0xfe0 + 4 * i) & 0xff) << (8 * i));
        let cid = (0..4).fold(0, |acc, i| acc | (byte(0xff0 + 4 * i) & 0xff) << (8 * i));
        assert_eq!(pid, 0x0034_1011);
        assert_eq!(cid, 0xb105_f00d);
        assert_eq!(pid & 0x000f_ffff, 0x0004_1011, "matches amba-pl011's vendor_arm entry");
        assert_eq!((pid >> 20) & 0xf, 3, "revision 3: Linux uses a 32-byte FIFO");
        assert_eq!(
            [0xfe0, 0xfe4, 0xfe8, 0xfec, 0xff0, 0xff4, 0xff8, 0xffc].map(|o| r(&d, o, Word)),
            [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1]
        );
        // Byte reads too, and writes are ignored.
        assert_eq!(r(&d, 0xfe8, Byte), 0x34);
        w(&d, 0xfe0, Word, 0xff);
        assert_eq!(r(&d, 0xfe0, Word), 0x11);
    }

    #[test]
    fn reset_state_is_a_firmware_initialised_uart() {
        let (d, _) = device();
        assert_eq!(r(&d, reg::CR, Half), 0x301, "UARTEN | TXE | RXE");
        assert_eq!(r(&d, reg::LCR_H, Half), 0x70, "8 bits, FIFOs on");
        assert_eq!((r(&d, reg::IBRD, Half), r(&d, reg::FBRD, Half)), (13, 1));
        assert_eq!(r(&d, reg::IFLS, Half), 0x12);
        assert_eq!(r(&d, reg::IMSC, Half), 0);
        assert_eq!(r(&d, FR, Word), 0x97, "TXFE | RXFE | DCD | DSR | CTS");
        assert!(!d.irq_level());
    }

    #[test]
    fn dr_writes_reach_the_sink_in_every_width() {
        let (d, out) = device();
        w(&d, reg::DR, Byte, b'a'.into());
        w(&d, reg::DR, Half, 0x0062);
        w(&d, reg::DR, Word, 0x0063);
        // Only the data byte is sent.
        w(&d, reg::DR, Word, 0xf00 | u64::from(b'd'));
        assert_eq!(*out.lock().unwrap(), b"abcd");
        // TX never fills or gets busy.
        assert_eq!(r(&d, FR, Word) & 0xa8, 0x80, "TXFE set, TXFF and BUSY clear");
    }

    #[test]
    fn output_with_the_transmitter_disabled_still_goes_out() {
        let (d, out) = device();
        w(&d, reg::CR, Half, 0);
        w(&d, reg::DR, Byte, b'x'.into());
        assert_eq!(*out.lock().unwrap(), b"x");
    }

    #[test]
    fn flag_register_follows_the_rx_fifo() {
        let (d, _) = device();
        assert_eq!(d.rx_space(), 32);
        assert_ne!(r(&d, FR, Half) & fr::RXFE as u64, 0);
        assert_eq!(d.push_rx(b'1'), RxStatus::Accepted);
        let f = r(&d, FR, Half);
        assert_eq!(f & (fr::RXFE | fr::RXFF) as u64, 0, "neither empty nor full");
        for i in 1..32 {
            assert_eq!(d.push_rx(b'0' + i as u8 % 10), RxStatus::Accepted);
        }
        assert_eq!(d.rx_space(), 0);
        assert_eq!(r(&d, FR, Half) & (fr::RXFE | fr::RXFF) as u64, fr::RXFF as u64);
        // Reading drains it in order.
        let got: Vec<u8> = (0..32).map(|_| r(&d, reg::DR, Half) as u8).collect();
        assert_eq!(&got[..4], b"1123");
        assert_eq!(r(&d, FR, Half) & (fr::RXFE | fr::RXFF) as u64, fr::RXFE as u64);
        // A read of an empty FIFO gives 0 and changes nothing.
        assert_eq!(r(&d, reg::DR, Half), 0);
        assert_eq!(r(&d, FR, Half) & fr::RXFE as u64, fr::RXFE as u64);
    }

    #[test]
    fn fifo_disabled_holds_one_byte() {
        let (d, _) = device();
        w(&d, reg::LCR_H, Half, 0x60);
        assert_eq!(d.push_rx(b'a'), RxStatus::Accepted);
        assert_ne!(r(&d, FR, Half) & fr::RXFF as u64, 0);
        assert_eq!(d.push_rx(b'b'), RxStatus::Overrun);
        assert_eq!(r(&d, reg::DR, Half), u64::from(b'a') | dr::OE as u64);
    }

    #[test]
    fn overflow_sets_oe_in_rsr_dr_and_ris() {
        let (d, _) = device();
        for i in 0..32 {
            d.push_rx(i);
        }
        assert_eq!(r(&d, reg::RSR_ECR, Half), 0);
        assert_eq!(d.push_rx(0xaa), RxStatus::Overrun);
        assert_eq!(d.push_rx(0xbb), RxStatus::Overrun);
        assert_eq!(d.rx_overruns(), 2);
        assert_eq!(r(&d, reg::RSR_ECR, Half), rsr::OE as u64);
        assert_ne!(r(&d, reg::RIS, Half) & int::OE as u64, 0);
        // The first 31 bytes are clean; the 32nd, after which data was
        // lost, carries OE; the lost bytes never appear.
        for i in 0..31 {
            assert_eq!(r(&d, reg::DR, Half), i);
        }
        assert_eq!(r(&d, reg::DR, Half), 31 | dr::OE as u64);
        assert_eq!(r(&d, FR, Half) & fr::RXFE as u64, fr::RXFE as u64);
        // OE in RSR stays until ECR is written; OEIS until ICR.
        assert_eq!(r(&d, reg::RSR_ECR, Half), rsr::OE as u64);
        w(&d, reg::RSR_ECR, Half, 0);
        assert_eq!(r(&d, reg::RSR_ECR, Half), 0);
        w(&d, reg::ICR, Half, int::OE.into());
        assert_eq!(r(&d, reg::RIS, Half) & int::OE as u64, 0);
        // An OE interrupt reaches the line when unmasked.
        w(&d, reg::IMSC, Half, int::OE.into());
        for i in 0..33 {
            d.push_rx(i);
        }
        assert!(d.irq_level());
    }

    #[test]
    fn imsc_ris_mis_icr() {
        let (d, _) = device();
        w(&d, reg::IMSC, Word, 0xffff_ffff);
        assert_eq!(r(&d, reg::IMSC, Word), 0x7ff, "eleven mask bits");
        w(&d, reg::IMSC, Word, 0);
        w(&d, reg::DR, Word, b'x'.into());
        d.push_rx(b'y');
        let ris = r(&d, reg::RIS, Word);
        assert_eq!(ris, (int::TX | int::RT) as u64, "TX after a write, RT with data below the trigger level");
        assert_eq!(r(&d, reg::MIS, Word), 0, "all masked");
        assert!(!d.irq_level());
        w(&d, reg::IMSC, Word, int::RT.into());
        assert_eq!(r(&d, reg::MIS, Word), int::RT as u64);
        assert!(d.irq_level());
        // ICR clears only the bits written; RIS and MIS ignore writes.
        w(&d, reg::RIS, Word, 0);
        w(&d, reg::MIS, Word, 0);
        w(&d, reg::ICR, Word, int::TX.into());
        assert_eq!(r(&d, reg::RIS, Word), int::RT as u64);
        assert!(d.irq_level());
        w(&d, reg::ICR, Word, int::RT.into());
        assert_eq!(r(&d, reg::RIS, Word), 0);
        assert!(!d.irq_level());
        assert_eq!(r(&d, reg::ICR, Word), 0, "ICR reads as zero");
        // DMACR: RAZ/WI.
        w(&d, reg::DMACR, Word, 7);
        assert_eq!(r(&d, reg::DMACR, Word), 0);
    }

    #[test]
    fn tx_interrupt_after_a_write_cleared_by_icr() {
        let (d, _) = device();
        w(&d, reg::IMSC, Half, int::TX.into());
        assert!(!d.irq_level(), "no TX interrupt out of reset");
        w(&d, reg::DR, Half, b'a'.into());
        assert!(d.irq_level());
        assert_eq!(r(&d, reg::MIS, Half), int::TX as u64);
        w(&d, reg::ICR, Half, int::TX.into());
        assert!(!d.irq_level());
        w(&d, reg::DR, Half, b'b'.into());
        assert!(d.irq_level());
        // Masking takes the line down; RIS keeps the bit.
        w(&d, reg::IMSC, Half, 0);
        assert!(!d.irq_level());
        assert_eq!(r(&d, reg::RIS, Half), int::TX as u64);
    }

    #[test]
    fn enabling_the_transmitter_raises_txris() {
        let (d, _) = device();
        w(&d, reg::ICR, Half, int::ALL.into());
        w(&d, reg::CR, Half, (cr::UARTEN | cr::RXE).into());
        assert_eq!(r(&d, reg::RIS, Half), 0);
        w(&d, reg::CR, Half, (cr::UARTEN | cr::RXE | cr::TXE).into());
        assert_eq!(r(&d, reg::RIS, Half), int::TX as u64);
        // Rewriting an enabled CR is not an enable.
        w(&d, reg::ICR, Half, int::TX.into());
        w(&d, reg::CR, Half, (cr::UARTEN | cr::RXE | cr::TXE).into());
        assert_eq!(r(&d, reg::RIS, Half), 0);
    }

    #[test]
    fn rx_interrupt_on_input_cleared_when_drained() {
        let (d, _) = device();
        w(&d, reg::IMSC, Half, int::RX.into());
        // Trigger level 1/2: 16 bytes. RX rises at the 16th.
        for i in 0..15 {
            d.push_rx(i);
            assert!(!d.irq_level(), "below the trigger level after {} bytes", i + 1);
        }
        d.push_rx(15);
        assert!(d.irq_level());
        assert_eq!(r(&d, reg::MIS, Half), int::RX as u64);
        d.push_rx(16);
        // Reading below the trigger level clears it.
        r(&d, reg::DR, Half);
        assert!(d.irq_level(), "16 left");
        r(&d, reg::DR, Half);
        assert!(!d.irq_level(), "15 left");
        // The timeout is still pending until the FIFO empties.
        assert_eq!(r(&d, reg::RIS, Half), int::RT as u64);
        while r(&d, FR, Half) & fr::RXFE as u64 == 0 {
            r(&d, reg::DR, Half);
        }
        assert_eq!(r(&d, reg::RIS, Half), 0);
        // Another trigger level: 1/8 = 4 bytes.
        w(&d, reg::IFLS, Half, 0);
        for i in 0..4 {
            assert!(!d.irq_level());
            d.push_rx(i);
        }
        assert!(d.irq_level());
    }

    #[test]
    fn receive_timeout_signals_data_below_the_trigger_level() {
        let (d, _) = device();
        w(&d, reg::IMSC, Half, (int::RX | int::RT).into());
        d.push_rx(b'a');
        d.push_rx(b'b');
        assert_eq!(r(&d, reg::MIS, Half), int::RT as u64);
        // Cleared by ICR; a read that leaves data re-arms it (the timeout
        // restarts), the read that empties the FIFO clears it.
        w(&d, reg::ICR, Half, int::RT.into());
        assert!(!d.irq_level());
        assert_eq!(r(&d, reg::DR, Half), u64::from(b'a'));
        assert!(d.irq_level());
        assert_eq!(r(&d, reg::DR, Half), u64::from(b'b'));
        assert!(!d.irq_level());
    }

    #[test]
    fn input_is_ignored_with_the_receiver_off_or_in_loopback() {
        let (d, out) = device();
        w(&d, reg::CR, Half, (cr::UARTEN | cr::TXE).into());
        assert_eq!(d.push_rx(b'a'), RxStatus::Ignored);
        w(&d, reg::CR, Half, (cr::TXE | cr::RXE).into());
        assert_eq!(d.push_rx(b'b'), RxStatus::Ignored);
        assert_eq!(d.rx_ignored(), 2);
        assert_ne!(r(&d, FR, Half) & fr::RXFE as u64, 0);
        // Loopback: written bytes come back on the receiver, not the sink.
        w(&d, reg::CR, Half, (cr::UARTEN | cr::TXE | cr::RXE | cr::LBE).into());
        assert_eq!(d.push_rx(b'c'), RxStatus::Ignored);
        w(&d, reg::DR, Half, b'L'.into());
        assert!(out.lock().unwrap().is_empty());
        assert_eq!(r(&d, reg::DR, Half), u64::from(b'L'));
    }

    #[test]
    fn access_sizes_and_errors() {
        let (d, _) = device();
        w(&d, reg::IMSC, Word, 0x0123);
        assert_eq!(r(&d, reg::IMSC, Byte), 0x23);
        assert_eq!(r(&d, reg::IMSC + 1, Byte), 0x01);
        assert_eq!(r(&d, reg::IMSC + 2, Half), 0);
        assert_eq!(r(&d, reg::IMSC, Half), 0x123);
        // A narrow write replaces the register, zero-extended.
        w(&d, reg::IMSC, Byte, 0x40);
        assert_eq!(r(&d, reg::IMSC, Word), 0x40);
        // A byte read of DR pops; bits 15:8 of the same entry are its flags.
        d.push_rx(b'q');
        assert_eq!(r(&d, reg::DR, Byte), u64::from(b'q'));

        let err = |o: u64, s: AccessSize| d.read(0, o, s).unwrap_err();
        assert_eq!(err(reg::DR, Double), MmioError::BadSize);
        assert_eq!(d.write(0, reg::DR, Double, 0), Err(MmioError::BadSize));
        assert_eq!(err(0x02, Word), MmioError::Unaligned);
        assert_eq!(err(0x01, Half), MmioError::Unaligned);
        for o in [0x008, 0x00c, 0x010, 0x014, 0x01c, 0x04c, 0x080, 0xfdc] {
            assert_eq!(err(o, Word), MmioError::NoRegister, "{o:#x}");
            assert_eq!(d.write(0, o, Word, 0), Err(MmioError::NoRegister), "{o:#x}");
        }
        assert!(matches!(d.write(0, reg::IMSC + 1, Byte, 1), Err(MmioError::Device(_))));
        assert_eq!(r(&d, reg::IMSC, Word), 0x40, "failed writes change nothing");
    }

    #[test]
    fn sync_irq_reports_changes_only() {
        let (d, _) = device();
        assert_eq!(d.sync_irq(|l| l), Some(false), "the first call reports");
        assert_eq!(d.sync_irq(|l| l), None);
        w(&d, reg::IMSC, Half, int::RT.into());
        d.push_rx(b'z');
        assert_eq!(d.sync_irq(|l| l), Some(true));
        assert_eq!(d.sync_irq(|l| l), None);
        r(&d, reg::DR, Half);
        assert_eq!(d.sync_irq(|l| l), Some(false));
    }

    /// Linux 6.1's `amba-pl011` driver (vendor_arm: 16-bit accesses,
    /// `fifosize` 32 from the revision), replayed access by access.
    struct Linux<'a, D: MmioDevice> {
        d: &'a D,
        /// `uap->im`.
        im: u16,
        /// The tty's transmit buffer.
        xmit: std::collections::VecDeque<u8>,
        /// Bytes handed to the tty layer.
        received: Vec<u8>,
    }

    impl<D: MmioDevice> Linux<'_, D> {
        fn rd(&self, o: u64) -> u16 {
            r(self.d, o, Half) as u16
        }

        fn wr(&self, o: u64, v: u16) {
            w(self.d, o, Half, v.into())
        }

        /// `pl011_probe` → `pl011_register_port`.
        fn probe(&mut self) {
            self.wr(reg::IMSC, 0);
            self.wr(reg::ICR, 0xffff);
        }

        /// `pl011_console_setup` with no options: `pl011_console_get_options`
        /// then `uart_set_options` → `pl011_set_termios`.
        fn console_setup(&mut self, uartclk: u32) -> u32 {
            let mut baud = 38400;
            if self.rd(reg::CR) & cr::UARTEN as u16 != 0 {
                let _lcr_h = self.rd(reg::LCR_H);
                let (ibrd, fbrd) = (u32::from(self.rd(reg::IBRD)), u32::from(self.rd(reg::FBRD)));
                baud = uartclk * 4 / (64 * ibrd + fbrd);
            }
            self.set_termios(uartclk, 115200);
            baud
        }

        fn set_termios(&mut self, uartclk: u32, baud: u32) {
            let quot = (uartclk * 4 + baud / 2) / baud;
            let old_cr = self.rd(reg::CR) & !(0xc000); // ~(CTSEN | RTSEN)
            self.wr(reg::FBRD, (quot & 0x3f) as u16);
            self.wr(reg::IBRD, (quot >> 6) as u16);
            self.wr(reg::LCR_H, 0x70);
            self.wr(reg::CR, old_cr);
        }

        /// `pl011_console_write` (`uart_console_write` adds `\r`).
        fn console_write(&mut self, s: &[u8]) {
            let old_cr = self.rd(reg::CR);
            self.wr(reg::CR, (old_cr & !0x8000) | (cr::UARTEN | cr::TXE) as u16);
            for &c in s {
                if c == b'\n' {
                    self.putchar(b'\r');
                }
                self.putchar(c);
            }
            let mut spins = 0;
            while self.rd(reg::FR) & 0x8 != 0 {
                spins += 1;
                assert!(spins < 100, "BUSY never clears");
            }
            self.wr(reg::CR, old_cr);
        }

        fn putchar(&mut self, c: u8) {
            let mut spins = 0;
            while self.rd(reg::FR) & 0x20 != 0 {
                spins += 1;
                assert!(spins < 100, "TXFF never clears");
            }
            self.wr(reg::DR, c.into());
        }

        /// `pl011_startup`: `pl011_hwinit`, `pl011_allocate_irq`, IFLS, CR,
        /// `pl011_enable_interrupts`.
        fn startup(&mut self) {
            self.wr(reg::ICR, (int::OE | 0x380 | int::RT | int::RX) as u16);
            self.im = self.rd(reg::IMSC);
            self.wr(reg::IMSC, (int::RT | int::RX) as u16);
            self.wr(reg::IMSC, self.im);
            self.wr(reg::IFLS, 0x10 | 0x02);
            let cr = self.rd(reg::CR) & 0x0c00; // RTS | DTR
            self.wr(reg::CR, cr | (cr::UARTEN | cr::RXE | cr::TXE) as u16);
            let _old_status = self.rd(reg::FR) & 0x1ff;
            self.wr(reg::ICR, (int::RT | int::RX) as u16);
            for _ in 0..64 {
                if self.rd(reg::FR) & fr::RXFE as u16 != 0 {
                    break;
                }
                self.rd(reg::DR);
            }
            self.im = (int::RT | int::RX) as u16;
            self.wr(reg::IMSC, self.im);
        }

        fn stop_tx(&mut self) {
            self.im &= !(int::TX as u16);
            self.wr(reg::IMSC, self.im);
        }

        /// `pl011_tx_chars`: true if TX interrupts stay enabled.
        fn tx_chars(&mut self, from_irq: bool) -> bool {
            let mut count = 32 >> 1;
            if self.xmit.is_empty() {
                self.stop_tx();
                return false;
            }
            while let Some(&c) = self.xmit.front() {
                if from_irq {
                    if count == 0 {
                        break;
                    }
                    count -= 1;
                }
                if !from_irq && self.rd(reg::FR) & 0x20 != 0 {
                    break;
                }
                self.wr(reg::DR, c.into());
                self.xmit.pop_front();
            }
            if self.xmit.is_empty() {
                self.stop_tx();
                return false;
            }
            true
        }

        /// `uart_write` → `pl011_start_tx` → `pl011_start_tx_pio`.
        fn write(&mut self, s: &[u8]) {
            self.xmit.extend(s);
            if self.tx_chars(false) {
                self.im |= int::TX as u16;
                self.wr(reg::IMSC, self.im);
            }
        }

        /// `pl011_int`; returns whether it handled anything.
        fn interrupt(&mut self) -> bool {
            let mut status = self.rd(reg::RIS) & self.im;
            if status == 0 {
                return false;
            }
            let mut passes = 256;
            while status != 0 {
                self.wr(reg::ICR, status & !((int::TX | int::RT | int::RX) as u16));
                if status & (int::RT | int::RX) as u16 != 0 {
                    // pl011_fifo_to_tty
                    for _ in 0..256 {
                        if self.rd(reg::FR) & fr::RXFE as u16 != 0 {
                            break;
                        }
                        self.received.push(self.rd(reg::DR) as u8);
                    }
                }
                if status & int::TX as u16 != 0 {
                    self.tx_chars(true);
                }
                passes -= 1;
                assert!(passes > 0, "interrupt storm: RIS {:#x} IMSC {:#x}", self.rd(reg::RIS), self.im);
                status = self.rd(reg::RIS) & self.im;
            }
            true
        }

        /// `pl011_shutdown`: `pl011_disable_interrupts`, `pl011_disable_uart`.
        fn shutdown(&mut self) {
            self.im = 0;
            self.wr(reg::IMSC, 0);
            self.wr(reg::ICR, 0xffff);
            let cr = self.rd(reg::CR) & 0x0c00;
            self.wr(reg::CR, cr | (cr::UARTEN | cr::TXE) as u16);
            let lcr_h = self.rd(reg::LCR_H) & !(0x01 | 0x10); // ~(BRK | FEN)
            self.wr(reg::LCR_H, lcr_h);
        }
    }

    #[test]
    fn linux_6_1_driver_replay() {
        let (d, out) = device();
        // Earlycon (`earlycon=pl011,0x9000000`): 8-bit DR writes, 32-bit FR
        // reads, whatever CR holds.
        for &c in b"early\r\n" {
            while r(&d, FR, Word) & 0x20 != 0 {}
            w(&d, reg::DR, Byte, c.into());
            while r(&d, FR, Word) & 0x8 != 0 {}
        }
        // AMBA bus probe: the ID registers, 32-bit.
        let pid = (0..4).fold(0u32, |a, i| a | ((r(&d, 0xfe0 + 4 * i, Word) as u32 & 0xff) << (8 * i)));
        assert_eq!(pid & 0xfffff, 0x41011);
        let mut linux = Linux { d: &d, im: 0, xmit: Default::default(), received: Vec::new() };
        linux.probe();
        let baud = linux.console_setup(24_000_000);
        assert!((115_000..=115_300).contains(&baud), "console speed from IBRD/FBRD: {baud}");
        linux.console_write(b"Booting Linux\n");
        assert!(!d.irq_level(), "nothing unmasked yet");

        // getty opens ttyAMA0 and prints its prompt (no newline).
        linux.startup();
        assert_eq!(r(&d, reg::IMSC, Half), (int::RT | int::RX) as u64);
        linux.write(b"login: ");
        assert_eq!(linux.im, (int::RT | int::RX) as u16, "all written at once: TXIM stays masked");
        assert_ne!(r(&d, reg::RIS, Half) & int::TX as u64, 0, "TXRIS is up after the writes…");
        assert!(!d.irq_level(), "…but masked: no interrupt for an idle transmitter");
        assert!(!linux.interrupt(), "and a spurious call finds nothing");

        // The user types a name: one interrupt takes it all, then the line drops.
        for &c in b"root\r" {
            assert_eq!(d.push_rx(c), RxStatus::Accepted);
        }
        assert!(d.irq_level());
        assert!(linux.interrupt());
        assert_eq!(linux.received, b"root\r");
        assert!(!d.irq_level());

        // A transmission that does not fit at once (as when TXFF stops the
        // driver): it unmasks TXIM and relies on the TX interrupt.
        linux.xmit.extend(b"Password: ".iter());
        linux.im |= int::TX as u16;
        linux.wr(reg::IMSC, linux.im);
        assert!(d.irq_level(), "TX interrupt arrives after the earlier writes");
        assert!(linux.interrupt());
        assert!(linux.xmit.is_empty());
        assert_eq!(linux.im & int::TX as u16, 0, "stop_tx masked TXIM");
        assert!(!d.irq_level(), "TXIS is not left asserted");

        // A long write from the interrupt handler, 16 bytes per pass.
        linux.xmit.extend(std::iter::repeat_n(b'.', 100));
        linux.im |= int::TX as u16;
        linux.wr(reg::IMSC, linux.im);
        assert!(linux.interrupt());
        assert!(!d.irq_level());

        linux.shutdown();
        assert!(!d.irq_level());
        assert_eq!(d.push_rx(b'x'), RxStatus::Ignored, "receiver off after close");
        assert_eq!(r(&d, reg::LCR_H, Half) & lcr::FEN as u64, 0);

        let mut expected = b"early\r\nBooting Linux\r\nlogin: Password: ".to_vec();
        expected.extend(std::iter::repeat_n(b'.', 100));
        assert_eq!(*out.lock().unwrap(), expected);
    }

    #[test]
    fn concurrent_writers_and_input() {
        let (d, out) = device();
        let d = Arc::new(d);
        w(&*d, reg::IMSC, Half, (int::RX | int::RT).into());
        let writers: Vec<_> = (0..2u8)
            .map(|t| {
                let d = d.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        w(&*d, reg::DR, Byte, u64::from(b'a' + t));
                    }
                })
            })
            .collect();
        let reader = {
            let d = d.clone();
            std::thread::spawn(move || {
                let mut got = 0;
                while got < 500 {
                    if r(&*d, FR, Half) & fr::RXFE as u64 == 0 {
                        r(&*d, reg::DR, Half);
                        got += 1;
                    }
                }
            })
        };
        let mut pushed = 0;
        while pushed < 500 {
            if d.push_rx(b'k') == RxStatus::Accepted {
                pushed += 1;
            }
        }
        for t in writers {
            t.join().unwrap();
        }
        reader.join().unwrap();
        let out = out.lock().unwrap();
        assert_eq!(out.len(), 2000);
        assert_eq!(out.iter().filter(|&&b| b == b'a').count(), 1000);
        assert!(!d.irq_level(), "FIFO drained, interrupts clear");
    }
}
