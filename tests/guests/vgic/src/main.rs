//! The vGIC test guest: all of it is the assembly in `guest.S`. Rust only
//! provides the crate around it and a panic handler nothing calls.

#![no_std]
#![no_main]

core::arch::global_asm!(include_str!("guest.S"), options(raw));

/// Never called: the guest has no Rust code that could panic.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
