//! Armature: a bare-metal type-1 hypervisor for Arm.
//!
//! The crate is the whole hypervisor. On a bare-metal target
//! (`aarch64-unknown-none-softfloat`, `armv7a-none-eabi`) it is linked into
//! the boot image by `src/main.rs`; on the host only the pure-logic modules
//! are built, so that `cargo test` runs their unit tests.
//!
//! Module map (each module's own doc says what it owns):
//! - [`arch`]: everything that touches architectural state, one submodule per
//!   architecture (`aarch64`, `armv7`). Nothing outside it uses `asm!`.
//! - [`boot`]: the architecture-independent boot flow of the boot CPU.
//! - [`console`]: UART drivers and the console the log writes to.
//! - [`cpu`]: this CPU's logical number and the online mask.
//! - [`logger`]: the `log` crate backend and log levels.
//! - [`cmdline`]: the hypervisor's command-line options.
//! - `domain`: guests: stage-2 memory, vCPUs, trap handling (AArch64 so far).
//! - `gic`: the physical interrupt controller as guests' delivery uses it.
//! - [`dt`]: reading the firmware's flattened device tree.
//! - [`crash`]: crash dumps (exception syndrome decoding, backtraces) and halting.
//! - [`psci`]: calls to the firmware's PSCI implementation.
//! - `smp`: starting the secondary CPUs from the boot plan (AArch64 so far).
//! - [`platform`]: per-platform build-time constants (early UART).
//! - [`mm`]: typed addresses and the LPAE translation-table library (pure logic).
//! - [`vgic`]: the virtual GIC model: per-domain interrupt state, emulated
//!   GICv2/GICv3 distributor and redistributors, list-register selection (pure logic).
//! - [`vpsci`]: guest-facing SMCCC and PSCI 1.1, and the vCPU power states.
//! - [`vpl011`]: the emulated PL011 UART for dom0's console (pure logic).
//! - [`mmio`]: decoding a guest's trapped MMIO access and dispatching it to an
//!   emulated device.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

extern crate alloc;

#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
pub mod boot;
pub mod bootcheck;
pub mod cmdline;
pub mod console;
pub mod cpu;
pub mod crash;
#[cfg(all(target_os = "none", target_arch = "aarch64"))]
pub mod domain;
pub mod dt;
#[cfg(target_os = "none")]
pub mod gic;
pub mod logger;
pub mod mm;
pub mod mmio;
pub mod platform;
pub mod psci;
#[cfg(test)]
mod testutil;
#[cfg(all(target_os = "none", target_arch = "aarch64"))]
pub mod smp;
pub mod timing;
pub mod vgic;
pub mod vpl011;
pub mod vpsci;

/// The Armature version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
