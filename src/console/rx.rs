//! Console input on its way to dom0: the physical UART's receive FIFO,
//! drained into a queue, the queue into dom0's emulated UART as room frees
//! up, with flow control on the physical UART when the queue is full.
//!
//! Pure logic over two traits, so that the whole path can be replayed on
//! the host against models of the real devices: [`PhysicalRx`] is the
//! hypervisor's UART (`crate::console::pl011::Pl011` in the hypervisor),
//! [`GuestRx`] dom0's emulated one (`crate::vpl011::Vpl011`). The caller
//! keeps one [`ConsoleRx`] behind a lock and calls
//! [`on_interrupt`](ConsoleRx::on_interrupt) from the physical UART's
//! receive interrupt and [`on_guest_read`](ConsoleRx::on_guest_read) after
//! each read dom0 makes from its UART, then forwards the emulated UART's
//! interrupt line to the vGIC.
//!
//! # Why a queue, and why the physical UART is drained by software
//!
//! A paste arrives faster than dom0 reads: its FIFO holds 32 bytes, the
//! physical UART's 16 or 32. Bytes that fit in neither must wait somewhere
//! without being lost or reordered, whatever dom0's interrupt handling does.
//! They wait in the queue ([`QUEUE_SIZE`] bytes), so the physical UART is
//! always drained at once (a real UART's FIFO would otherwise overrun at
//! line speed while dom0 is slow). Only when the queue itself is full is the
//! physical receive interrupt masked; the rest then waits in the physical
//! UART (QEMU holds its chardev back; real hardware, with no flow control,
//! would eventually overrun).
//!
//! A PL011's receive interrupt is not a level that follows "data in the
//! FIFO": `RXRIS` rises when the FIFO *reaches* its trigger level (QEMU: 1
//! byte, only as a byte arrives) and stays down after an `ICR` write until
//! the FIFO goes below the level and back up; `RTRIS` needs a timeout that
//! QEMU does not model. The handler clears the interrupt *before* draining
//! (so a byte arriving during the drain raises it again); if it then stops
//! with bytes left in the FIFO, nothing will ever raise it again. So
//! unmasking after flow control is not enough: whoever resumes drains the
//! FIFO itself ([`ConsoleRx::on_guest_read`]) until it is empty, and only
//! then unmasks. Before this, a 50-byte paste into dom0's shell stopped
//! input for good after about 30 bytes.
//!
//! The input switch ([`InputSwitch`], Ctrl-A three times) sees every byte
//! as it leaves the physical UART, so it works even while dom0 reads
//! nothing; bytes queued for dom0 before a switch still go to dom0.

use super::input::{Event, Focus, InputSwitch, SWITCH_COUNT};

/// Bytes held for dom0 beyond its UART's FIFO: more than a screenful of
/// pasted text.
pub const QUEUE_SIZE: usize = 4096;

/// Flow control resumes (the physical UART is drained again) once the
/// queue has this much room.
pub const RESUME_ROOM: usize = QUEUE_SIZE / 2;

/// The receive side of the hypervisor's physical UART.
pub trait PhysicalRx {
    /// A received byte, if one waits (never blocks).
    fn get(&mut self) -> Option<u8>;
    /// Clears the receive interrupts (and receive errors).
    fn clear_rx_interrupt(&mut self);
    /// Masks the receive interrupts (flow control).
    fn mask_rx_interrupt(&mut self);
    /// Unmasks the receive interrupts.
    fn unmask_rx_interrupt(&mut self);
}

/// The receive side of dom0's emulated UART.
pub trait GuestRx {
    /// Room in its receive FIFO.
    fn rx_space(&self) -> usize;
    /// One byte arriving on its line.
    fn push_rx(&self, byte: u8);
}

/// Something the caller carries out (with the [`ConsoleRx`] lock held).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The input switched: log [`Focus::switch_message`].
    Switched(Focus),
    /// A byte typed for the hypervisor: a debug key.
    DebugKey(u8),
}

/// A byte ring.
struct Queue {
    bytes: [u8; QUEUE_SIZE],
    head: usize,
    len: usize,
}

impl Queue {
    fn room(&self) -> usize {
        QUEUE_SIZE - self.len
    }

    fn push(&mut self, b: u8) {
        // Callers check the room first (see `ConsoleRx::pull`).
        if self.len < QUEUE_SIZE {
            self.bytes[(self.head + self.len) % QUEUE_SIZE] = b;
            self.len += 1;
        }
    }

    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let b = self.bytes[self.head];
        self.head = (self.head + 1) % QUEUE_SIZE;
        self.len -= 1;
        Some(b)
    }
}

/// The state of console input: the switch, the queue for dom0, flow
/// control.
pub struct ConsoleRx {
    switch: InputSwitch,
    queue: Queue,
    /// The physical receive interrupt is masked because the queue is full.
    throttled: bool,
    /// How many times flow control held input back.
    throttles: u64,
}

impl Default for ConsoleRx {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsoleRx {
    /// Input with the hypervisor, nothing queued.
    pub const fn new() -> Self {
        ConsoleRx {
            switch: InputSwitch::new(),
            queue: Queue { bytes: [0; QUEUE_SIZE], head: 0, len: 0 },
            throttled: false,
            throttles: 0,
        }
    }

    /// Who has the input.
    pub fn focus(&self) -> Focus {
        self.switch.focus()
    }

    /// Gives the input to `focus`; true if that changed it.
    pub fn set_focus(&mut self, focus: Focus) -> bool {
        self.switch.set_focus(focus)
    }

    /// Bytes waiting for room in dom0's FIFO.
    pub fn queued(&self) -> usize {
        self.queue.len
    }

    /// Whether the physical receive interrupt is masked for flow control.
    pub fn throttled(&self) -> bool {
        self.throttled
    }

    /// How many times flow control held input back.
    pub fn throttles(&self) -> u64 {
        self.throttles
    }

    /// The physical UART's receive interrupt: drain it.
    pub fn on_interrupt(&mut self, uart: &mut impl PhysicalRx, guest: &impl GuestRx, act: impl FnMut(Action)) {
        // Before draining: a byte arriving during the drain raises it again.
        uart.clear_rx_interrupt();
        self.pull(uart, guest, act);
    }

    /// Dom0 read from its UART: move queued bytes into the room it made,
    /// and if input was held back and there is room again, drain the
    /// physical UART (its interrupt will not come by itself, see the
    /// module doc) and unmask it.
    pub fn on_guest_read(&mut self, uart: &mut impl PhysicalRx, guest: &impl GuestRx, act: impl FnMut(Action)) {
        self.fill_guest(guest);
        if self.throttled && self.queue.room() >= RESUME_ROOM {
            uart.clear_rx_interrupt();
            self.pull(uart, guest, act);
        }
    }

    /// Fills dom0's FIFO from the queue.
    fn fill_guest(&mut self, guest: &impl GuestRx) {
        let mut space = guest.rx_space();
        while space > 0 {
            let Some(b) = self.queue.pop() else { break };
            guest.push_rx(b);
            space -= 1;
        }
    }

    /// Drains the physical UART through the switch until it is empty (then
    /// its interrupt is unmasked) or the queue is full (then it is masked).
    fn pull(&mut self, uart: &mut impl PhysicalRx, guest: &impl GuestRx, mut act: impl FnMut(Action)) {
        loop {
            self.fill_guest(guest);
            // One byte can release up to SWITCH_COUNT (held Ctrl-As).
            if self.queue.room() < usize::from(SWITCH_COUNT) {
                if !self.throttled {
                    uart.mask_rx_interrupt();
                    self.throttled = true;
                    self.throttles += 1;
                }
                return;
            }
            let Some(b) = uart.get() else { break };
            match self.switch.feed(b) {
                Event::Held => {}
                Event::Switched(focus) => act(Action::Switched(focus)),
                Event::Dom0(bytes) => bytes.as_slice().iter().for_each(|&b| self.queue.push(b)),
                Event::Hypervisor(bytes) => bytes.as_slice().iter().for_each(|&b| act(Action::DebugKey(b))),
            }
        }
        self.fill_guest(guest);
        if core::mem::take(&mut self.throttled) {
            uart.unmask_rx_interrupt();
        }
    }
}

#[cfg(test)]
#[path = "rx_tests.rs"]
mod tests;
