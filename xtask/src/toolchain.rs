//! Which Rust toolchain builds the image, and how cargo is invoked for it.
//!
//! Normally that is the toolchain pinned in `rust-toolchain.toml`, installed
//! by rustup with the bare-metal targets (`./x setup` does that). Where rustup
//! cannot fetch it, `./x setup` installs Debian's `rustc-web`, `cargo-web`,
//! `rust-web-src` and `lld-22` instead: that compiler has no pre-built
//! `core` for the bare-metal targets, so the image is built with
//! `-Zbuild-std` (allowed on a stable compiler by `RUSTC_BOOTSTRAP=1`) and
//! linked with Debian's `ld.lld`.
//!
//! The choice comes from `ARMATURE_TOOLCHAIN` (`rustup`, `debian` or `auto`,
//! the default): `auto` uses rustup's toolchain when its sysroot has the
//! target, else Debian's when it is installed. Build settings never go in
//! `.cargo/config.toml` (a workspace-wide `build.target` or `build-std` would
//! break `cargo test` on the host), only on the command line built here.

use crate::{Arch, Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Environment variable that selects the toolchain.
pub const ENV: &str = "ARMATURE_TOOLCHAIN";

/// Debian's compiler and cargo (packages `rustc-web`, `cargo-web`).
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_RUSTDOC: &str = "/usr/bin/rustdoc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
/// Debian's LLVM linker (package `lld-22`), first one found wins.
const DEBIAN_LLD: [&str; 3] = ["/usr/bin/ld.lld-22", "/usr/lib/llvm-22/bin/ld.lld", "/usr/bin/ld.lld"];

/// A toolchain that can build the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toolchain {
    /// The toolchain of `rust-toolchain.toml`, through rustup (or whatever
    /// `cargo`/`$CARGO` is), with pre-built `core` for the targets.
    Rustup,
    /// Debian's `rustc-web` with `-Zbuild-std=core,alloc`.
    Debian,
}

impl Toolchain {
    /// The toolchain selected by `ARMATURE_TOOLCHAIN`, detected once per process.
    pub fn current() -> Result<Toolchain> {
        static CURRENT: OnceLock<Result<Toolchain>> = OnceLock::new();
        CURRENT.get_or_init(Self::select).clone()
    }

    fn select() -> Result<Toolchain> {
        match std::env::var(ENV).unwrap_or_default().as_str() {
            "rustup" => Ok(Toolchain::Rustup),
            "debian" => Ok(Toolchain::Debian),
            "" | "auto" => Ok(Self::detect()),
            other => Err(Error::new(format!("{ENV}={other}: expected rustup, debian or auto"))),
        }
    }

    /// `Rustup` when the default `rustc` has the aarch64 bare-metal target in
    /// its sysroot, else `Debian` when Debian's toolchain is installed, else
    /// `Rustup` (whose error messages then say what is missing).
    pub fn detect() -> Toolchain {
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let has_target = Command::new(rustc)
            .args(["--print", "sysroot"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .is_some_and(|sysroot| {
                Path::new(&sysroot).join("lib/rustlib").join(Arch::Aarch64.triple()).join("lib").is_dir()
            });
        if !has_target && debian_available() { Toolchain::Debian } else { Toolchain::Rustup }
    }

    /// Name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Toolchain::Rustup => "rustup (rust-toolchain.toml)",
            Toolchain::Debian => "Debian rustc-web with -Zbuild-std",
        }
    }

    /// A `cargo` command for this toolchain, run from the workspace root.
    /// For Debian's toolchain it carries the environment that makes Debian's
    /// cargo use Debian's rustc (not rustup's proxy, which would look for the
    /// pinned toolchain).
    pub fn cargo(self) -> Command {
        let mut cmd = match self {
            Toolchain::Rustup => Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())),
            Toolchain::Debian => {
                let mut c = Command::new(DEBIAN_CARGO);
                c.env("RUSTC", DEBIAN_RUSTC).env("RUSTDOC", DEBIAN_RUSTDOC).env(ENV, "debian");
                c
            }
        };
        cmd.current_dir(crate::paths::workspace_root());
        cmd
    }

    /// `cargo build` of the hypervisor binary for `arch`: the command and
    /// the arguments that go before `--features`/`--release`.
    pub fn cargo_build(self, arch: Arch) -> Result<Command> {
        let mut cmd = self.cargo();
        cmd.args(["build", "-p", "armature", "--bin", "armature", "--target", arch.triple()]);
        // Image flags come from .cargo/config.toml's [target.<triple>]
        // rustflags, which RUSTFLAGS would silently replace.
        cmd.env_remove("RUSTFLAGS").env_remove("CARGO_ENCODED_RUSTFLAGS");
        if self == Toolchain::Debian {
            let lld = debian_lld().ok_or_else(|| {
                Error::new("Debian toolchain selected but ld.lld-22 is missing (apt-get install lld-22)")
            })?;
            cmd.env("RUSTC_BOOTSTRAP", "1")
                .env(format!("CARGO_TARGET_{}_LINKER", arch.triple().to_uppercase().replace('-', "_")), lld)
                .args(["-Zbuild-std=core,alloc", "-Zbuild-std-features=compiler-builtins-mem"]);
        }
        Ok(cmd)
    }
}

/// True when Debian's rustc, cargo, Rust sources and lld are all installed.
pub fn debian_available() -> bool {
    Path::new(DEBIAN_RUSTC).is_file()
        && Path::new(DEBIAN_CARGO).is_file()
        && debian_lld().is_some()
        && debian_rust_src().is_some()
}

fn debian_lld() -> Option<PathBuf> {
    DEBIAN_LLD.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// The standard library sources `-Zbuild-std` needs, in Debian rustc's sysroot.
fn debian_rust_src() -> Option<PathBuf> {
    let out = Command::new(DEBIAN_RUSTC).args(["--print", "sysroot"]).env_remove("RUSTUP_TOOLCHAIN").output().ok()?;
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let src = Path::new(&sysroot).join("lib/rustlib/src/rust/library");
    src.is_dir().then_some(src)
}
