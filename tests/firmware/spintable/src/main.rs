//! The spin-table test firmware: all of it is the assembly in `firmware.S`
//! (EL3 set-up, a minimal PSCI over SMC, the spin table, semihosting exit).
//! Rust only provides the crate around it and a panic handler that nothing
//! calls.
//!
//! Built for `aarch64-unknown-none-softfloat` only (`xtask::firmware::build`).

#![no_std]
#![no_main]

// `raw`: the file is plain assembly, not a format string (it holds no
// operands, and braces must not be interpreted).
core::arch::global_asm!(include_str!("firmware.S"), options(raw));

/// Never called: the firmware has no Rust code that could panic.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
