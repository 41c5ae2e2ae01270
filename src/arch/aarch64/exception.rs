//! EL2 exception entry (AArch64): the frame the vectors in
//! `boot/aarch64/head.S` save, and the handler they call.
//!
//! Until domains exist every exception taken at EL2 is unexpected, so the
//! handler prints a crash dump — exception class, syndrome, fault address,
//! return state, all general registers and a backtrace — and halts.

use crate::console;
use crate::crash::{self, backtrace, esr::Syndrome};
use core::fmt::Write;

/// Register state saved by the vectors. The layout is shared with `head.S`
/// (`FRAME_*` offsets) and checked below.
#[repr(C)]
#[derive(Debug)]
pub struct ExceptionFrame {
    /// x0..x30.
    pub x: [u64; 31],
    /// The stack pointer at the time of the exception.
    pub sp: u64,
    /// ELR_EL2: where the exception was taken.
    pub elr: u64,
    /// SPSR_EL2: PSTATE at the time of the exception.
    pub spsr: u64,
    /// ESR_EL2: the syndrome.
    pub esr: u64,
    /// FAR_EL2: the faulting virtual address (for aborts).
    pub far: u64,
}

const _: () = assert!(core::mem::size_of::<ExceptionFrame>() == 36 * 8);
const _: () = assert!(core::mem::offset_of!(ExceptionFrame, elr) == 32 * 8);
const _: () = assert!(core::mem::offset_of!(ExceptionFrame, esr) == 34 * 8);

const VECTOR_NAMES: [&str; 16] = [
    "Synchronous, current EL with SP_EL0",
    "IRQ, current EL with SP_EL0",
    "FIQ, current EL with SP_EL0",
    "SError, current EL with SP_EL0",
    "Synchronous, current EL with SP_EL2",
    "IRQ, current EL with SP_EL2",
    "FIQ, current EL with SP_EL2",
    "SError, current EL with SP_EL2",
    "Synchronous, lower EL (AArch64)",
    "IRQ, lower EL (AArch64)",
    "FIQ, lower EL (AArch64)",
    "SError, lower EL (AArch64)",
    "Synchronous, lower EL (AArch32)",
    "IRQ, lower EL (AArch32)",
    "FIQ, lower EL (AArch32)",
    "SError, lower EL (AArch32)",
];

fn spsr_mode(spsr: u64) -> &'static str {
    if spsr & 0x10 != 0 {
        return "AArch32";
    }
    match spsr & 0xf {
        0b0000 => "EL0t",
        0b0100 => "EL1t",
        0b0101 => "EL1h",
        0b1000 => "EL2t",
        0b1001 => "EL2h",
        _ => "illegal",
    }
}

/// Called by the vectors with the saved frame and the vector number (0-15).
#[unsafe(no_mangle)]
extern "C" fn armature_exception(frame: &mut ExceptionFrame, vector: u64) -> ! {
    let syn = Syndrome::new(frame.esr);
    let vector = (vector & 0xf) as usize;
    let is_panic = vector == 4 && syn.ec == 0x3c && syn.imm16() == crash::PANIC_BRK_IMM;
    if !crash::begin() && !is_panic {
        // A crash inside the crash path (or on a second CPU): keep the first report.
        let mut c = console::emergency();
        let _ = writeln!(c, "\n(nested exception ESR={:#x} ELR={:#x} during a crash dump)", frame.esr, frame.elr);
        super::halt();
    }
    let mut c = console::emergency();
    let (img_start, img_end) = super::image_bounds();
    let sym = |a: u64| -> (u64, bool) {
        let inside = a >= img_start as u64 && a < img_end as u64;
        (a.wrapping_sub(img_start as u64), inside)
    };
    let _ = writeln!(c, "\n----[ Armature {} {} crash on CPU0 ]----", crate::VERSION, super::NAME);
    if is_panic {
        let _ = writeln!(c, "Panic (see the message above); registers at the panic site:");
    } else {
        let _ = writeln!(c, "Unexpected exception: {}", VECTOR_NAMES[vector]);
    }
    let _ = writeln!(
        c,
        "ESR_EL2: {:#018x}  EC={:#04x} {} (IL={}, ISS={:#09x})",
        syn.raw,
        syn.ec,
        syn.class_name(),
        syn.il as u8,
        syn.iss
    );
    if syn.is_abort() {
        let fsc = syn.fault_status();
        let _ = write!(c, "  {} {}, FSC={:#04x} {}", if syn.is_data_abort() { "data abort:" } else { "instruction abort:" },
            if syn.is_data_abort() { if syn.is_write() { "write" } else { "read" } } else { "fetch" },
            fsc, crate::crash::esr::fault_status_name(fsc));
        if let Some(l) = crate::crash::esr::fault_level(fsc) {
            let _ = write!(c, " at level {l}");
        }
        let _ = writeln!(c);
    }
    let _ = writeln!(c, "FAR_EL2: {:#018x}", frame.far);
    let (off, inside) = sym(frame.elr);
    if inside {
        let _ = writeln!(c, "ELR_EL2: {:#018x} (armature+{off:#x})", frame.elr);
    } else {
        let _ = writeln!(c, "ELR_EL2: {:#018x}", frame.elr);
    }
    let _ = writeln!(
        c,
        "SPSR_EL2: {:#010x} ({}, DAIF={}{}{}{})",
        frame.spsr,
        spsr_mode(frame.spsr),
        if frame.spsr & (1 << 9) != 0 { 'D' } else { '-' },
        if frame.spsr & (1 << 8) != 0 { 'A' } else { '-' },
        if frame.spsr & (1 << 7) != 0 { 'I' } else { '-' },
        if frame.spsr & (1 << 6) != 0 { 'F' } else { '-' },
    );
    for row in 0..11 {
        let mut line = heapless_line::Line::new();
        for col in 0..3 {
            let i = row * 3 + col;
            if i < 31 {
                let _ = write!(line, "   x{:<2}: {:#018x}", i, frame.x[i]);
            } else if i == 31 {
                let _ = write!(line, "   sp : {:#018x}", frame.sp);
            }
        }
        let _ = writeln!(c, "{}", line.as_str());
    }
    let _ = writeln!(c, "Backtrace (image at {img_start:#x}; addr2line -e armature-aarch64.elf <offset>):");
    let _ = writeln!(c, "  [ 0] {:#018x} (armature+{:#x}) <- faulting PC", frame.elr, sym(frame.elr).0);
    let (stack_bottom, stack_top) = super::boot_stack();
    let bounds = backtrace::StackBounds { bottom: stack_bottom as u64, top: stack_top as u64 };
    let mut n = 1;
    let stop = backtrace::walk(
        frame.x[29],
        bounds,
        8,
        // SAFETY: `walk` only reads addresses inside the boot stack bounds.
        |a| unsafe { core::ptr::read_volatile(a as *const u64) },
        |ret| {
            let (off, inside) = sym(ret);
            if inside {
                let _ = writeln!(c, "  [{n:2}] {ret:#018x} (armature+{off:#x})");
            } else {
                let _ = writeln!(c, "  [{n:2}] {ret:#018x}");
            }
            n += 1;
        },
    );
    if let backtrace::Stop::BadFrame(fp) | backtrace::Stop::Loop(fp) = stop {
        let _ = writeln!(c, "  (backtrace stopped at bad frame pointer {fp:#x})");
    }
    let _ = writeln!(c, "----[ end of crash dump ]----");
    let _ = writeln!(c, "System halted: all CPUs stopped (CPU0 was the only one online).");
    super::halt();
}

/// A small fixed-size line buffer, so a register row is written in one go.
mod heapless_line {
    pub struct Line {
        buf: [u8; 128],
        len: usize,
    }
    impl Line {
        pub fn new() -> Self {
            Self { buf: [0; 128], len: 0 }
        }
        pub fn as_str(&self) -> &str {
            core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
        }
    }
    impl core::fmt::Write for Line {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let n = s.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }
}
