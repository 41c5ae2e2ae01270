//! Armature's early boot code: everything that runs before the MMU is on.
//!
//! The boot stub (`boot/aarch64/head.S`) calls in here with the MMU and the
//! D-cache off, at whatever physical address the loader chose. This crate
//! builds the **boot page tables** — static, inside the image — that let the
//! stub turn the MMU on and continue at the image's link-time virtual
//! address, then removes the scaffolding (identity page, temporary alias)
//! once it is no longer used. See `docs/memory-layout.md`.
//!
//! # Rules for this crate
//!
//! It runs at an address it was not linked for, so it must only use
//! PC-relative addressing: no `core::fmt`, no trait objects or function
//! pointers, no statics that hold pointers, nothing that can panic (a panic
//! carries a `Location` with absolute pointers). Only its own code may be
//! called. `cargo xtask build` enforces this on the compiled objects of this
//! crate (like Linux's arm64 `pi/` check): an absolute relocation, or a call
//! to anything outside the crate, fails the build.
//!
//! The pure logic ([`layout`], [`tables`]) is host-tested; the AArch64 entry
//! points are in `aarch64.rs`.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod layout;
pub mod tables;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod aarch64;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use aarch64::{boot_map, boot_unmap, info};

/// Elsewhere (host, ARMv7 for now) the early MMU code does not run.
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
pub fn info() -> EarlyInfo {
    EarlyInfo::default()
}

/// What the early code did, for the boot log. Only integers: this lives in
/// BSS and is written with the MMU off.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EarlyInfo {
    /// 0 when the MMU-on path was taken and finished; an [`Error`] code otherwise.
    pub error: u64,
    /// [`layout::Plan`] as a number: 1 identity only, 2 temporary alias.
    pub plan: u64,
    /// Physical address the image was loaded at.
    pub load_pa: u64,
    /// Virtual address the image runs at.
    pub image_va: u64,
    /// Virtual address of the temporary alias (0 when not used).
    pub alias_va: u64,
    /// Physical address of the identity-mapped page (the MMU switch code).
    pub idmap_pa: u64,
    /// Virtual address of the DTB in the fixmap.
    pub dtb_va: u64,
    /// Physical address of the DTB.
    pub dtb_pa: u64,
    /// Virtual address of the early UART in the fixmap (0: none).
    pub uart_va: u64,
    /// Physical address of the early UART (0: none).
    pub uart_pa: u64,
    /// Physical address of the root table (TTBR0_EL2).
    pub root_pa: u64,
    /// Table pages used out of the static pool.
    pub tables_used: u64,
    /// Identity entries removed after the switch (pages).
    pub idmap_removed: u64,
    /// Alias entries removed after the switch (pages).
    pub alias_removed: u64,
}

/// Why the early code could not turn the MMU on. The numbers are stable:
/// the stub passes them to Rust, which prints the name.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The static table pool is exhausted.
    OutOfTables = 1,
    /// A virtual address is already mapped to something else.
    Overlap = 2,
    /// An address is not page aligned or outside the 48-bit range.
    BadAddress = 3,
    /// The image is larger than the runtime image window.
    ImageTooLarge = 4,
    /// The DTB is larger than the fixmap window or has no valid header.
    BadDtb = 5,
    /// The CPU's physical address range is smaller than an address in use.
    PaRangeTooSmall = 6,
    /// Removing a mapping found no mapping there.
    NotMapped = 7,
}

impl Error {
    /// The error whose code is `code` (as recorded in [`EarlyInfo::error`]).
    pub const fn from_code(code: u64) -> Option<Error> {
        Some(match code {
            1 => Error::OutOfTables,
            2 => Error::Overlap,
            3 => Error::BadAddress,
            4 => Error::ImageTooLarge,
            5 => Error::BadDtb,
            6 => Error::PaRangeTooSmall,
            7 => Error::NotMapped,
            _ => return None,
        })
    }
}
