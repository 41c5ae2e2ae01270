//! Host tools for Armature: building the boot image, booting it under QEMU
//! (directly or through U-Boot) and checking what it prints.
//!
//! The `cargo xtask` binary (`src/main.rs`) is a thin command line over this
//! library; the QEMU tests in the workspace's `tests/` use the library
//! directly. Module map:
//! - [`build`]: building an image variant with cargo, once per process, and
//!   publishing `armature.bin`/`armature.elf` under `target/armature/`;
//! - [`image`]: turning the linked ELF into the flat boot image and checking
//!   what the boot stub relies on (relocation types, Image/zImage header);
//! - [`toolchain`]: which Rust toolchain builds the image (rustup's pinned
//!   one, or Debian's `rustc-web` with `-Zbuild-std`);
//! - [`qemu`]: the QEMU command line for the machines Armature runs on;
//! - [`runner`]: running QEMU with a timeout and checking the console against
//!   markers;
//! - [`shim`]: a tiny arm64 Image that jumps to an image QEMU's generic
//!   loader put at any load address, to test load addresses `-kernel` and
//!   `booti` never use;
//! - [`uboot`]: the boot script, environment and disk that make U-Boot boot
//!   the image by itself;
//! - [`disk`]: MBR + FAT disk images;
//! - [`fdt`]: a small device tree reader, so tests can derive what Armature
//!   should print from the DTB QEMU really generates;
//! - [`firmware`]: the spin-table test firmware (`tests/firmware/spintable/`,
//!   EL3, `secure=on`): building it, its device tree and QEMU configuration,
//!   so Armature's spin-table CPU bring-up runs on QEMU;
//! - [`debian`]: fetching Debian's arm64 Linux, busybox and Xen into the
//!   download cache ([`paths::cache_dir`]);
//! - [`initramfs`]: the dom0 initramfs (a `newc` cpio written here: busybox
//!   and an `/init` that reports what Linux found);
//! - [`dom0`]: Linux as dom0 of Armature or Xen, through U-Boot or QEMU's
//!   loader, with Xen's `/chosen` bindings; reading dom0's report back;
//! - [`fuzz`]: the cargo-fuzz targets of `fuzz/`: installing nightly and
//!   cargo-fuzz, long runs (`cargo xtask fuzz`) and the smoke run of `test`;
//! - [`hvlog`]: Armature's own lines in a console log shared with dom0:
//!   lines where the two mixed, the boot stage timings;
//! - [`bench`]: `cargo xtask bench`, boot times of bare Linux, Xen and
//!   Armature with the same dom0, written to `docs/performance.md`;
//! - [`paths`]: where everything lives, build locks, and atomic file output;
//! - [`process`]: finding the host tools and running them.

pub mod bench;
pub mod build;
pub mod debian;
pub mod disk;
pub mod dom0;
pub mod dtschema;
pub mod early_check;
pub mod fdt;
pub mod firmware;
pub mod fuzz;
pub mod guest;
pub mod hvlog;
pub mod image;
pub mod initramfs;
pub mod paths;
pub mod payload;
pub mod process;
pub mod qemu;
pub mod runner;
pub mod shim;
pub mod toolchain;
pub mod uboot;

use std::fmt;
use std::str::FromStr;

pub use build::{Image, Variant};
pub use qemu::Qemu;
pub use runner::{Expect, Outcome, RunFailure};

/// An error from the host tools: a message meant for a human, with context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    /// An error with this message.
    pub fn new(msg: impl Into<String>) -> Self {
        Error(msg.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Result type of the host tools.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds context to errors: `io_result.context(|| format!("reading {path}"))`.
pub trait Context<T> {
    /// Prefixes the error with `what()` (evaluated only on error).
    fn context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error(format!("{}: {e}", what().into())))
    }
}

/// The architectures Armature is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    /// AArch64, EL2 (`aarch64-unknown-none-softfloat`).
    Aarch64,
    /// ARMv7-A with the virtualization extensions, HYP mode (`armv7a-none-eabi`).
    Armv7,
}

impl Arch {
    /// Every architecture.
    pub const ALL: [Arch; 2] = [Arch::Aarch64, Arch::Armv7];

    /// Short name, as used on the command line and in output paths.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64",
            Arch::Armv7 => "armv7",
        }
    }

    /// The Rust target triple the image is built for.
    pub fn triple(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64-unknown-none-softfloat",
            Arch::Armv7 => "armv7a-none-eabi",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            "armv7" | "arm" | "arm32" => Ok(Arch::Armv7),
            _ => Err(Error::new(format!("unknown architecture `{s}` (expected aarch64 or armv7)"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names_round_trip() {
        for a in Arch::ALL {
            assert_eq!(a.name().parse::<Arch>(), Ok(a));
        }
        assert_eq!("arm64".parse::<Arch>(), Ok(Arch::Aarch64));
        assert!("x86".parse::<Arch>().unwrap_err().message().contains("x86"));
    }

    #[test]
    fn context_prefixes_the_error() {
        let r: std::result::Result<(), &str> = Err("boom");
        assert_eq!(r.context(|| "doing it").unwrap_err().message(), "doing it: boom");
    }
}
