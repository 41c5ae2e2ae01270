//! Per-platform constants chosen at build time.
//!
//! Only what is needed before the device tree is read lives here: the early
//! console. Everything else about a board comes from its device tree.
//! The platform is a cargo feature (`platform-qemu-virt` by default); see
//! `docs/platforms.md` for the table.

/// The UART used before the device tree is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EarlyUart {
    /// An Arm PL011 at this physical address, already configured by firmware.
    Pl011(usize),
    /// No early console: messages before the DT console is found are lost.
    None,
}

/// Name of the platform this image was built for.
pub const NAME: &str = if cfg!(feature = "platform-fvp") {
    "fvp"
} else if cfg!(feature = "platform-juno") {
    "juno"
} else if cfg!(feature = "platform-arndale") {
    "arndale"
} else {
    "qemu-virt"
};

/// The early console of the platform this image was built for.
pub const EARLY_UART: EarlyUart = if cfg!(feature = "platform-fvp") {
    // FVP Base / AEMv8 / Foundation: motherboard UART0.
    EarlyUart::Pl011(0x1c09_0000)
} else if cfg!(feature = "platform-juno") {
    EarlyUart::Pl011(0x7ff8_0000)
} else if cfg!(feature = "platform-arndale") {
    // Exynos5250 UARTs are Samsung UARTs, not PL011s; no early console yet.
    EarlyUart::None
} else {
    // QEMU virt: the only non-secure PL011.
    EarlyUart::Pl011(0x0900_0000)
};

/// The early UART's physical address for the boot stub (0: none). The stub
/// passes it to the early code, which maps it in the fixmap.
#[unsafe(no_mangle)]
pub static ARMATURE_EARLY_UART: u64 = match EARLY_UART {
    EarlyUart::Pl011(base) => base as u64,
    EarlyUart::None => 0,
};
