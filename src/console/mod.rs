//! The hypervisor console: the UART the log is written to.
//!
//! Boot starts on the platform's early UART (`platform::EARLY_UART`); once
//! the device tree is read, `boot` switches to the UART named by
//! `/chosen/stdout-path`. Output is serialised by a lock held for a whole
//! line, so lines from different CPUs never mix. The crash path bypasses the
//! lock ([`emergency`]) so that a CPU that died holding it can still report.
//!
//! Input: [`try_getc`] reads the console UART without waiting and without
//! the lock; [`input`] decides whether a key is for the hypervisor or for
//! dom0; [`rx`] carries dom0's input from the physical UART to its
//! emulated one; [`line`](mod@line) turns a guest's output into log lines.

pub mod input;
pub mod line;
pub mod pl011;
pub mod rx;

pub use line::{LineBuf, Printable};

use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};
use pl011::Pl011;

/// The console device.
#[derive(Clone, Copy, Debug, Default)]
pub struct Console {
    uart: Option<Pl011>,
    /// A guest's output stopped mid-line: the next hypervisor line starts
    /// on a new line, so the two never mix within a line.
    guest_mid_line: bool,
}

impl Console {
    /// Writes raw bytes, turning `\n` into `\r\n`.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        if let Some(uart) = self.uart {
            for &b in bytes {
                if b == b'\n' {
                    uart.put(b'\r');
                }
                uart.put(b);
            }
        }
    }

    /// Writes a guest's console output as it comes, unchanged (so prompts
    /// and echo show at once; the guest sends its own carriage returns),
    /// remembering whether it stopped mid-line.
    pub fn write_guest(&mut self, bytes: &[u8]) {
        if let (Some(uart), Some(&last)) = (self.uart, bytes.last()) {
            bytes.iter().for_each(|&b| uart.put(b));
            self.guest_mid_line = last != b'\n';
        }
    }

    /// Ends a guest's unfinished line before a line of the hypervisor's.
    pub fn end_guest_line(&mut self) {
        if core::mem::take(&mut self.guest_mid_line) {
            self.write_bytes(b"\n");
        }
    }

    /// The UART behind the console, if any.
    pub fn uart(&self) -> Option<Pl011> {
        self.uart
    }
}

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

static CONSOLE: spin::Mutex<Console> = spin::Mutex::new(Console { uart: None, guest_mid_line: false });

/// Directs the console to `uart`.
pub fn set_uart(uart: Pl011) {
    CONSOLE.lock().uart = Some(uart);
    EMERGENCY_BASE.store(uart.base(), Ordering::Relaxed);
}

/// The UART the console currently writes to.
pub fn current_uart() -> Option<Pl011> {
    CONSOLE.lock().uart
}

/// Runs `f` with the console locked (use it to write one whole line).
pub fn with<R>(f: impl FnOnce(&mut Console) -> R) -> R {
    f(&mut CONSOLE.lock())
}

/// Writes `s` under the console lock.
pub fn write_str(s: &str) {
    with(|c| c.write_bytes(s.as_bytes()));
}

/// A console handle that ignores the lock, for the crash path only: the
/// crashing CPU may be the one holding it.
pub fn emergency() -> Console {
    match CONSOLE.try_lock() {
        Some(c) => *c,
        None => {
            let base = EMERGENCY_BASE.load(Ordering::Relaxed);
            // SAFETY: EMERGENCY_BASE only ever holds the base of a UART that
            // `set_uart` was given, which is a valid PL011.
            Console { uart: (base != 0).then(|| unsafe { Pl011::new(base) }), guest_mid_line: false }
        }
    }
}

/// A byte typed on the console, if one is waiting. Takes no lock, so it
/// may be called from an interrupt handler (one CPU at a time: bytes are
/// popped from the UART's FIFO).
pub fn try_getc() -> Option<u8> {
    let base = EMERGENCY_BASE.load(Ordering::Relaxed);
    // SAFETY: EMERGENCY_BASE is 0 or the base of a UART `set_uart` was
    // given, which is a valid PL011.
    (base != 0).then(|| unsafe { Pl011::new(base) }).and_then(|uart| uart.get())
}

/// The base address of the console UART, readable without the lock.
static EMERGENCY_BASE: AtomicUsize = AtomicUsize::new(0);
