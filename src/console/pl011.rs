//! Arm PrimeCell UART (PL011) driver: polled transmit and receive.
//!
//! The firmware (or QEMU) has already programmed the baud rate; the console
//! only needs to send bytes, so this driver never reprograms the line.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::registers::{ReadOnly, ReadWrite};
use tock_registers::register_structs;

register_bitfields! [u32,
    /// Flag register.
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// UART busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) []
    ]
];

register_structs! {
    /// PL011 register block (only the registers the console uses).
    Pl011Regs {
        (0x00 => dr: ReadWrite<u32>),
        (0x04 => _reserved0),
        (0x18 => fr: ReadOnly<u32, FR::Register>),
        (0x1c => @END),
    }
}

/// A PL011 at a physical address that is mapped 1:1 (or the MMU is off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pl011 {
    base: usize,
}

impl Pl011 {
    /// Describes the PL011 at `base`.
    ///
    /// # Safety
    /// `base` must be the address of a PL011 register block that is accessible
    /// (device memory) for as long as the value is used.
    pub const unsafe fn new(base: usize) -> Self {
        Self { base }
    }

    /// Physical address of the register block.
    pub fn base(&self) -> usize {
        self.base
    }

    fn regs(&self) -> &Pl011Regs {
        // SAFETY: `new` requires `base` to be a live PL011 register block.
        unsafe { &*(self.base as *const Pl011Regs) }
    }

    /// Sends one byte, waiting while the transmit FIFO is full.
    pub fn put(&self, byte: u8) {
        let regs = self.regs();
        while regs.fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        regs.dr.set(byte as u32);
    }

    /// Returns a received byte, if one is waiting.
    pub fn get(&self) -> Option<u8> {
        let regs = self.regs();
        if regs.fr.is_set(FR::RXFE) {
            None
        } else {
            Some(regs.dr.get() as u8)
        }
    }

    /// Waits until every queued byte has left the UART.
    pub fn flush(&self) {
        while self.regs().fr.is_set(FR::BUSY) {
            core::hint::spin_loop();
        }
    }
}
