//! Architecture support. Everything that touches architectural state —
//! system registers, exception entry, `smc`/`hvc`, barriers — lives in the
//! submodule for the architecture being built, and nowhere else.
//!
//! Each architecture module provides the same interface:
//! - `NAME`: the architecture's name for the log;
//! - `privilege()`: the privilege level the CPU is running at now;
//! - `init_cpu(cpu)`: a CPU's baseline hypervisor register state, and its
//!   logical number (read back by `cpu_number()`);
//! - `wake_all()`: send an event to every CPU (a crash uses it to stop them);
//! - `counter()`, `counter_frequency()`: the generic timer's physical count;
//! - `firmware_call()`: an SMC Calling Convention call over `smc` or `hvc`;
//! - `halt()`: stop this CPU for good;
//! - `panic_trap()`: enter the crash path from a panic;
//! - `undefined_instruction()`, `CRASH_ADDRESS`: faults on purpose for the
//!   crash-path tests (`crash::trigger`).
//!
//! Shared by both: `image_bounds()` and `boot_stack()`, from the symbols
//! every linker script and boot stub define.

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use aarch64::*;

#[cfg(target_arch = "arm")]
mod armv7;
#[cfg(target_arch = "arm")]
pub use armv7::*;

/// The privilege level the boot CPU was found in.
#[derive(Clone, Copy, Debug)]
pub struct Privilege {
    /// True at the hypervisor level (AArch64 EL2, ARMv7 HYP mode).
    pub is_hyp: bool,
    /// How the architecture names it, for the log (`CurrentEL=2 (EL2)`).
    pub text: &'static str,
}

unsafe extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __idmap_start: u8;
    static __image_end: u8;
    static boot_stack_bottom: u8;
    static boot_stack_top: u8;
}

/// Where the image lies now: [start, end), including BSS.
pub fn image_bounds() -> (usize, usize) {
    (&raw const __image_start as usize, &raw const __image_end as usize)
}

/// The boot CPU's stack: [bottom, top).
pub fn boot_stack() -> (usize, usize) {
    (&raw const boot_stack_bottom as usize, &raw const boot_stack_top as usize)
}

/// The image's section boundaries, as offsets from its start: end of text,
/// end of rodata (start of data), end of the image including BSS.
pub fn image_sections() -> (usize, usize, usize) {
    let start = &raw const __image_start as usize;
    (
        &raw const __text_end as usize - start,
        &raw const __rodata_end as usize - start,
        &raw const __image_end as usize - start,
    )
}

/// Where the identity-mapped page (the MMU switch code) is now.
pub fn idmap_start() -> usize {
    &raw const __idmap_start as usize
}
