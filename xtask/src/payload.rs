//! Building small bare-metal programs that are not Armature itself: the
//! spin-table test firmware and the test guests. Each is its own crate
//! (outside the workspace, since a `no_std`/`no_main` binary cannot be built
//! for the host), linked at a fixed address with its own linker script,
//! built for AArch64 with the same toolchain settings as the image.

use crate::image::FlatImage;
use crate::toolchain::Toolchain;
use crate::{Arch, Context, Error, Result, paths};
use std::path::Path;
use std::process::{Command, Stdio};

/// Builds the binary `bin` of the crate at `manifest` (relative to the
/// workspace root) into the cargo target dir `cargo_dir`, and returns its
/// ELF and flat image. `what` names it in errors.
pub fn build(manifest: &str, bin: &str, cargo_dir: &Path, what: &str) -> Result<(Vec<u8>, FlatImage)> {
    let toolchain = Toolchain::current()?;
    let mut cmd = cargo_command(toolchain)?;
    cmd.arg("--manifest-path")
        .arg(paths::workspace_root().join(manifest))
        .arg("--target-dir")
        .arg(cargo_dir)
        .arg("--release")
        // Not the image's position-independent flags (.cargo/config.toml):
        // these programs are linked where they run, with no relocations.
        .env("CARGO_ENCODED_RUSTFLAGS", "-Crelocation-model=static")
        .stdin(Stdio::null());
    let what = format!("cargo build of {what} ({manifest}) with {}", toolchain.name());
    let out = cmd.output().context(|| format!("running {what}"))?;
    if !out.status.success() {
        return Err(Error::new(format!(
            "{what} failed ({})\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let built = cargo_dir.join(Arch::Aarch64.triple()).join("release").join(bin);
    let elf = paths::read(&built)?;
    let flat = crate::image::flatten(&elf, Arch::Aarch64).context(|| format!("{what}: {}", built.display()))?;
    Ok((elf, flat))
}

/// `cargo build --target aarch64-unknown-none-softfloat` with the same
/// toolchain settings as the image ([`Toolchain::cargo_build`]: the
/// environment, and `-Zbuild-std` with Debian's toolchain).
fn cargo_command(toolchain: Toolchain) -> Result<Command> {
    let image_build = toolchain.cargo_build(Arch::Aarch64)?;
    let mut cmd = Command::new(image_build.get_program());
    if let Some(dir) = image_build.get_current_dir() {
        cmd.current_dir(dir);
    }
    for (key, value) in image_build.get_envs() {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd.args(["build", "--target", Arch::Aarch64.triple()]);
    cmd.args(image_build.get_args().filter(|a| a.to_string_lossy().starts_with("-Z")));
    Ok(cmd)
}
