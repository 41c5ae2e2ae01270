//! The test guests' shared Rust: only a panic handler nothing calls (the
//! guests are all assembly: `asm/`). Each binary in `src/bin/` assembles
//! `asm/runtime.S` followed by its own `asm/<name>.S`.

#![no_std]

/// Never called: the guests have no Rust code that could panic.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

/// Assembles the shared runtime followed by the guest `$name`'s assembly.
#[macro_export]
macro_rules! guest {
    ($name:literal) => {
        core::arch::global_asm!(
            concat!(include_str!("../../asm/runtime.S"), include_str!(concat!("../../asm/", $name, ".S"))),
            options(raw)
        );
    };
}
