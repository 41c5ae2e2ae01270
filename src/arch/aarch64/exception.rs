//! EL2 exception entry (AArch64): the frame the vectors in
//! `boot/aarch64/head.S` save, and the handler they call.
//!
//! Until domains exist every exception taken at EL2 is unexpected, so the
//! handler prints a crash dump — exception class, syndrome, fault address,
//! return state, all general registers and a backtrace — and halts.

use crate::console;
use crate::crash::{self, backtrace, esr::Syndrome, report};
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

/// Register names for the dump, in frame order (x0..x30, then sp).
const REG_NAMES: [&str; 32] = [
    "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14", "x15",
    "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28", "x29",
    "x30", "sp",
];

/// Hex digits of a 64-bit register in the dump.
const DIGITS: usize = 16;

/// Called by the vectors with the saved frame and the vector number (0-15).
/// Returns after handling a synchronous trap, an interrupt or an SError
/// from a guest (the stub then resumes the guest from `frame`); anything
/// taken at EL2 itself is a crash.
#[unsafe(no_mangle)]
extern "C" fn armature_exception(frame: &mut ExceptionFrame, vector: u64) {
    match vector {
        8 => return crate::domain::guest_sync(frame),
        9 => return crate::domain::guest_irq(frame),
        11 => return crate::domain::guest_serror(frame),
        // A guarded access (`probe`) that faulted: it returns a failure.
        4 if super::probe::fixup(frame) => return,
        _ => {}
    }
    crash(frame, vector)
}

fn crash(frame: &mut ExceptionFrame, vector: u64) -> ! {
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
    let (img_start, img_end) = crate::arch::image_bounds();
    let image = report::Image { start: img_start as u64, end: img_end as u64 };
    let _ = report::header(&mut c, super::NAME);
    let _ = report::cause(&mut c, is_panic, VECTOR_NAMES[vector]);
    let _ = report::syndrome(&mut c, "ESR_EL2", &syn, DIGITS);
    let _ = writeln!(c, "FAR_EL2: {:#018x}", frame.far);
    let _ = report::code_address_line(&mut c, "ELR_EL2", frame.elr, DIGITS, &image);
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
    let _ = report::registers(&mut c, &REG_NAMES, |i| if i < 31 { frame.x[i] } else { frame.sp }, 3, DIGITS);
    let (stack_bottom, stack_top) = crate::arch::boot_stack();
    let _ = report::backtrace(
        &mut c,
        "armature-aarch64.elf",
        &image,
        frame.elr,
        frame.x[29],
        backtrace::StackBounds { bottom: stack_bottom as u64, top: stack_top as u64 },
        8,
        // SAFETY: `walk` only reads addresses inside the boot stack bounds.
        |a| unsafe { core::ptr::read_volatile(a as *const u64) },
        DIGITS,
    );
    let _ = report::footer(&mut c);
    super::halt();
}
