//! Arm PrimeCell UART (PL011) driver: polled transmit, polled or
//! interrupt-driven receive.
//!
//! The firmware (or QEMU) has already programmed the baud rate; the console
//! only needs to send and receive bytes, so this driver never reprograms
//! the line.
//!
//! **Receive interrupt.** [`Pl011::enable_rx_interrupt`] unmasks the
//! receive and receive-timeout interrupts (`UARTIMSC.RXIM | RTIM`): the
//! UART's SPI (QEMU `virt`: SPI 1, INTID 33, level) then fires when input
//! waits. Routing that SPI to a CPU and enabling it in the GIC is the
//! interrupt code's job. Its handler reads with [`Pl011::get`] until it
//! returns `None` — draining the FIFO is what clears both interrupts — and
//! then calls [`Pl011::clear_rx_interrupt`] for the error bits.

use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_bitfields! [u32,
    /// Flag register.
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// UART busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    /// Interrupt bits (IMSC, RIS, MIS, ICR).
    INT [
        /// Overrun error.
        OE OFFSET(10) NUMBITS(1) [],
        /// Break error.
        BE OFFSET(9) NUMBITS(1) [],
        /// Parity error.
        PE OFFSET(8) NUMBITS(1) [],
        /// Framing error.
        FE OFFSET(7) NUMBITS(1) [],
        /// Receive timeout.
        RT OFFSET(6) NUMBITS(1) [],
        /// Receive.
        RX OFFSET(4) NUMBITS(1) []
    ]
];

register_structs! {
    /// PL011 register block (only the registers the console uses).
    Pl011Regs {
        (0x00 => dr: ReadWrite<u32>),
        (0x04 => _reserved0),
        (0x18 => fr: ReadOnly<u32, FR::Register>),
        (0x1c => _reserved1),
        (0x38 => imsc: ReadWrite<u32, INT::Register>),
        (0x3c => _ris),
        (0x40 => mis: ReadOnly<u32, INT::Register>),
        (0x44 => icr: WriteOnly<u32, INT::Register>),
        (0x48 => @END),
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

    /// Returns a received byte, if one is waiting (never waits).
    pub fn get(&self) -> Option<u8> {
        let regs = self.regs();
        if regs.fr.is_set(FR::RXFE) {
            None
        } else {
            Some(regs.dr.get() as u8)
        }
    }

    /// Unmasks the receive and receive-timeout interrupts, clearing any
    /// stale ones first.
    pub fn enable_rx_interrupt(&self) {
        let regs = self.regs();
        regs.icr.write(INT::RX::SET + INT::RT::SET);
        regs.imsc.modify(INT::RX::SET + INT::RT::SET);
    }

    /// Unmasks the receive and receive-timeout interrupts as they are
    /// (after [`disable_rx_interrupt`](Self::disable_rx_interrupt) for flow
    /// control: bytes left in the FIFO raise the interrupt again).
    pub fn unmask_rx_interrupt(&self) {
        self.regs().imsc.modify(INT::RX::SET + INT::RT::SET);
    }

    /// Masks the receive and receive-timeout interrupts.
    pub fn disable_rx_interrupt(&self) {
        self.regs().imsc.modify(INT::RX::CLEAR + INT::RT::CLEAR);
    }

    /// True if an unmasked receive or receive-timeout interrupt is pending.
    pub fn rx_interrupt_pending(&self) -> bool {
        self.regs().mis.matches_any(&[INT::RX::SET, INT::RT::SET])
    }

    /// Clears the receive interrupts and the receive errors (overrun,
    /// break, parity, framing). Call it *before* draining the FIFO: a byte
    /// that arrives during the drain then raises the interrupt again (a
    /// PL011 raises RX only when data arrives; cleared after the drain, a
    /// late byte's interrupt would be lost, and input with it).
    pub fn clear_rx_interrupt(&self) {
        self.regs().icr.write(INT::RX::SET + INT::RT::SET + INT::OE::SET + INT::BE::SET + INT::PE::SET + INT::FE::SET);
    }

    /// Waits until every queued byte has left the UART.
    pub fn flush(&self) {
        while self.regs().fr.is_set(FR::BUSY) {
            core::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

    /// A register block in ordinary memory (atomics, so that the test may
    /// change registers behind the driver's pointer).
    fn fake() -> (std::boxed::Box<[AtomicU32; 0x12]>, Pl011) {
        let regs = std::boxed::Box::new([const { AtomicU32::new(0) }; 0x12]);
        // SAFETY: the block is a live, aligned 0x48-byte allocation with
        // interior mutability, and it outlives every use of the `Pl011` (the
        // box is returned with it and dropped after it).
        let uart = unsafe { Pl011::new(regs.as_ptr() as usize) };
        (regs, uart)
    }

    fn set(regs: &[AtomicU32; 0x12], offset: usize, value: u32) {
        regs[offset / 4].store(value, Relaxed);
    }

    fn get(regs: &[AtomicU32; 0x12], offset: usize) -> u32 {
        regs[offset / 4].load(Relaxed)
    }

    #[test]
    fn receive_polls_the_flag_register() {
        let (regs, uart) = fake();
        set(&regs, 0x18, 1 << 4); // RXFE
        assert_eq!(uart.get(), None);
        set(&regs, 0x18, 0);
        set(&regs, 0x00, 0x100 | u32::from(b'k')); // a framing error flag above the byte
        assert_eq!(uart.get(), Some(b'k'));
    }

    #[test]
    fn rx_interrupt_enable_mask_and_clear() {
        let (regs, uart) = fake();
        set(&regs, 0x38, 1 << 5); // TXIM already set: kept
        uart.enable_rx_interrupt();
        assert_eq!(get(&regs, 0x38), (1 << 5) | (1 << 4) | (1 << 6));
        assert_eq!(get(&regs, 0x44), (1 << 4) | (1 << 6), "stale RX/RT cleared first");
        set(&regs, 0x40, 1 << 5);
        assert!(!uart.rx_interrupt_pending(), "TX only");
        set(&regs, 0x40, 1 << 6);
        assert!(uart.rx_interrupt_pending());
        uart.clear_rx_interrupt();
        assert_eq!(get(&regs, 0x44), 0x7d0, "RX, RT and the four errors");
        uart.disable_rx_interrupt();
        assert_eq!(get(&regs, 0x38), 1 << 5);
    }
}
