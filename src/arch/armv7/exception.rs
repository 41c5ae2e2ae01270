//! HYP-mode exception entry (ARMv7): the frame the vectors in
//! `boot/armv7/head.S` save, and the handler they call.
//!
//! Until domains exist every exception taken to HYP mode is unexpected, so
//! the handler prints a crash dump — vector, syndrome (HSR uses the same
//! exception-class encoding as AArch64's ESR), fault addresses, return state,
//! all general registers and a backtrace — and halts. The text is shared with
//! AArch64 through [`crate::crash::report`].

use crate::console;
use crate::crash::{self, backtrace, esr::Syndrome, report};
use core::fmt::Write;

/// Register state saved by the vectors. The layout is shared with `head.S`
/// (`FRAME_*` offsets) and checked below.
#[repr(C)]
#[derive(Debug)]
pub struct ExceptionFrame {
    /// r0..r12.
    pub r: [u32; 13],
    /// SP_hyp before the exception (for exceptions from HYP mode, the
    /// interrupted code's stack pointer).
    pub sp: u32,
    /// LR_hyp: exception entry to HYP mode leaves it alone.
    pub lr: u32,
    /// ELR_hyp: where the exception was taken (the faulting instruction for
    /// undefined instructions and aborts taken from HYP mode).
    pub elr: u32,
    /// SPSR_hyp: CPSR at the time of the exception.
    pub spsr: u32,
    /// HSR: the syndrome.
    pub hsr: u32,
    /// HDFAR: the faulting address of a data abort.
    pub hdfar: u32,
    /// HIFAR: the faulting address of a prefetch abort.
    pub hifar: u32,
}

const _: () = assert!(core::mem::size_of::<ExceptionFrame>() == 20 * 4);
const _: () = assert!(core::mem::offset_of!(ExceptionFrame, sp) == 13 * 4);
const _: () = assert!(core::mem::offset_of!(ExceptionFrame, lr) == 14 * 4);
const _: () = assert!(core::mem::offset_of!(ExceptionFrame, elr) == 15 * 4);
const _: () = assert!(core::mem::offset_of!(ExceptionFrame, hifar) == 19 * 4);

/// Vector index (HVBAR offset / 4) of the undefined-instruction vector.
const VECTOR_UNDEF: usize = 1;

const VECTOR_NAMES: [&str; 8] = [
    "unused vector (HVBAR+0x00)",
    "Undefined Instruction (HVBAR+0x04)",
    "Hypervisor Call (HVBAR+0x08)",
    "Prefetch Abort (HVBAR+0x0c)",
    "Data Abort (HVBAR+0x10)",
    "Hyp Trap (HVBAR+0x14)",
    "IRQ (HVBAR+0x18)",
    "FIQ (HVBAR+0x1c)",
];

/// Register names for the dump, in frame order (r0..r12, sp, lr).
const REG_NAMES: [&str; 15] =
    ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "sp", "lr"];

/// Hex digits of a 32-bit register in the dump.
const DIGITS: usize = 8;

/// PSR bits.
mod psr {
    /// T: Thumb state.
    pub const T: u32 = 1 << 5;
    /// F, I, A: FIQ, IRQ, asynchronous abort masked.
    pub const F: u32 = 1 << 6;
    pub const I: u32 = 1 << 7;
    pub const A: u32 = 1 << 8;
    /// J: Jazelle state.
    pub const J: u32 = 1 << 24;
}

fn psr_mode(spsr: u32) -> &'static str {
    match spsr & 0x1f {
        0x10 => "USR",
        0x11 => "FIQ",
        0x12 => "IRQ",
        0x13 => "SVC",
        0x16 => "MON",
        0x17 => "ABT",
        0x1a => "HYP",
        0x1b => "UND",
        0x1f => "SYS",
        _ => "illegal",
    }
}

fn psr_state(spsr: u32) -> &'static str {
    match (spsr & psr::J != 0, spsr & psr::T != 0) {
        (false, false) => "A32",
        (false, true) => "T32",
        (true, false) => "Jazelle",
        (true, true) => "T32EE",
    }
}

/// Whether the exception is the panic handler's `udf`: an undefined
/// instruction in A32 state whose encoding, read back at ELR_hyp, is
/// `udf #PANIC_BRK_IMM`. (HSR has no immediate for undefined instructions.)
fn is_panic_udf(frame: &ExceptionFrame, vector: usize) -> bool {
    if vector != VECTOR_UNDEF || frame.spsr & psr::T != 0 || !frame.elr.is_multiple_of(4) {
        return false;
    }
    let (start, end) = crate::arch::image_bounds();
    let pc = frame.elr as usize;
    if pc < start || pc >= end {
        return false;
    }
    // SAFETY: `pc` is word aligned and inside the image, which is mapped
    // (the MMU is off, and later maps the whole image).
    let insn = unsafe { core::ptr::read_volatile(pc as *const u32) };
    insn == super::udf_a32(crash::PANIC_BRK_IMM)
}

/// Called by the vectors with the saved frame and the vector index (0-7).
#[unsafe(no_mangle)]
extern "C" fn armature_exception(frame: &mut ExceptionFrame, vector: u32) -> ! {
    let syn = Syndrome::new(frame.hsr as u64);
    let vector = (vector & 7) as usize;
    let is_panic = is_panic_udf(frame, vector);
    if !crash::begin() && !is_panic {
        // A crash inside the crash path (or on a second CPU): keep the first report.
        let mut c = console::emergency();
        let _ = writeln!(c, "\n(nested exception HSR={:#x} ELR_hyp={:#x} during a crash dump)", frame.hsr, frame.elr);
        super::halt();
    }
    let mut c = console::emergency();
    let (img_start, img_end) = crate::arch::image_bounds();
    let image = report::Image { start: img_start as u64, end: img_end as u64 };
    let _ = report::header(&mut c, super::NAME);
    let _ = report::cause(&mut c, is_panic, VECTOR_NAMES[vector]);
    let _ = report::syndrome(&mut c, "HSR", &syn, DIGITS);
    let _ = writeln!(c, "HDFAR: {:#010x}  HIFAR: {:#010x}", frame.hdfar, frame.hifar);
    let _ = report::code_address_line(&mut c, "ELR_hyp", frame.elr as u64, DIGITS, &image);
    let _ = writeln!(
        c,
        "SPSR_hyp: {:#010x} ({}, {}, AIF={}{}{})",
        frame.spsr,
        psr_mode(frame.spsr),
        psr_state(frame.spsr),
        if frame.spsr & psr::A != 0 { 'A' } else { '-' },
        if frame.spsr & psr::I != 0 { 'I' } else { '-' },
        if frame.spsr & psr::F != 0 { 'F' } else { '-' },
    );
    let reg = |i: usize| -> u64 {
        match i {
            0..=12 => frame.r[i] as u64,
            13 => frame.sp as u64,
            _ => frame.lr as u64,
        }
    };
    let _ = report::registers(&mut c, &REG_NAMES, reg, 4, DIGITS);
    let (stack_bottom, stack_top) = crate::arch::boot_stack();
    // A32 frame records (LLVM, -C force-frame-pointers): `push {..., r11, lr}`
    // then r11 = the address of the saved r11, so [r11] = caller's r11 and
    // [r11 + 4] = return address.
    let _ = report::backtrace(
        &mut c,
        "armature-armv7.elf",
        &image,
        frame.elr as u64,
        frame.r[11] as u64,
        backtrace::StackBounds { bottom: stack_bottom as u64, top: stack_top as u64 },
        4,
        // SAFETY: `walk` only reads word-aligned addresses inside the boot stack bounds.
        |a| unsafe { core::ptr::read_volatile(a as usize as *const u32) } as u64,
        DIGITS,
    );
    let _ = report::footer(&mut c);
    super::halt();
}
