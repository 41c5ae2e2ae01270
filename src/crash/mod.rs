//! Crash handling: what the hypervisor prints when something goes wrong in
//! itself, and how it stops.
//!
//! The architecture code catches the exception or panic and fills in the
//! registers; this module owns the parts shared by both architectures:
//! decoding the exception syndrome ([`esr`]), walking frame-pointer chains
//! ([`backtrace`]), the text of the dump ([`report`]), and the guard that
//! stops a second crash (on another CPU, or inside the crash path itself)
//! from garbling the first one's report.

pub mod backtrace;
pub mod esr;
pub mod report;

use core::sync::atomic::{AtomicBool, Ordering};

static CRASHING: AtomicBool = AtomicBool::new(false);

/// Claims the crash report. Returns `false` if another crash is already being
/// reported, in which case the caller must stop without printing a full dump.
pub fn begin() -> bool {
    let first = !CRASHING.swap(true, Ordering::AcqRel);
    // Idle CPUs wait in `wfe` and stop when they see a crash in progress.
    #[cfg(target_os = "none")]
    crate::arch::wake_all();
    first
}

/// Whether a crash is being reported.
pub fn in_progress() -> bool {
    CRASHING.load(Ordering::Acquire)
}

/// Immediate of the instruction the panic handler uses to enter the exception
/// path (AArch64 `brk`, ARMv7 `udf`), so a panic dumps the registers at the
/// panic site like any other crash.
pub const PANIC_BRK_IMM: u16 = 0x0a55;

/// Faults on purpose (the `crashtest=` option, for tests of the crash path).
/// The abort reads `arch::CRASH_ADDRESS`, where nothing answers on the
/// supported machines (see each architecture's comment on it).
#[cfg(target_os = "none")]
pub fn trigger(kind: crate::cmdline::CrashTest) -> ! {
    use crate::cmdline::CrashTest;
    match kind {
        CrashTest::DataAbort => {
            let addr = crate::arch::CRASH_ADDRESS;
            // SAFETY: not safe at all, on purpose: the read faults and the
            // exception handler reports it and halts.
            let v = unsafe { core::ptr::read_volatile(addr as usize as *const usize) };
            panic!("read of {addr:#x} did not fault (got {v:#x})");
        }
        CrashTest::Undefined => crate::arch::undefined_instruction(),
        CrashTest::Panic => panic!("crash test requested on the command line"),
        CrashTest::OutOfMemory => {
            let small: alloc::vec::Vec<u8> = alloc::vec![0x5a; 1 << 20];
            log::warn!("crashtest: 1 MiB heap allocation at {:p} worked; now asking for 1 GiB", small.as_ptr());
            let huge: alloc::vec::Vec<u8> = alloc::vec::Vec::with_capacity(1 << 30);
            panic!("1 GiB heap allocation did not fail (got {:p})", huge.as_ptr());
        }
    }
}

/// The panic handler: prints the message, then enters the architecture's
/// crash path so the registers and backtrace at the panic site are dumped.
#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::fmt::Write;
    if in_progress() {
        // Panicked while reporting a crash: the first report is what matters.
        crate::arch::halt();
    }
    let mut c = crate::console::emergency();
    let _ = write!(c, "\nPANIC: {}", info.message());
    if let Some(loc) = info.location() {
        let _ = write!(c, " at {}:{}", loc.file(), loc.line());
    }
    let _ = writeln!(c);
    crate::arch::panic_trap()
}
