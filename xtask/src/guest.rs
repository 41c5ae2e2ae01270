//! Test guests (`tests/guests/asm/<name>.S`): tiny EL1 programs Armature boots as
//! dom0, each checking a few behaviours and printing PASS/FAIL lines through
//! Armature's console hypercall. This module builds them and sets QEMU up so
//! that Armature finds one as its dom0 kernel: loaded with `-device loader`
//! and described by a `/chosen/module@…` node (`multiboot,kernel`), the
//! binding Xen uses.

use crate::build::OncePerKey;
use crate::paths::{self, write_atomic};
use crate::{Context, Qemu, Result};
use std::path::{Path, PathBuf};

/// The crate holding every test guest (one binary each).
const MANIFEST: &str = "tests/guests/Cargo.toml";

/// Where the harness puts the guest image in RAM (QEMU virt: clear of the
/// image at RAM + 2 MiB and of QEMU's DTB at RAM + 128 MiB).
pub const MODULE_ADDR: u64 = 0x4a00_0000;

/// The test guest `name`, built at most once per process however many
/// tests ask for it; returns its flat image.
pub fn build(name: &str) -> Result<PathBuf> {
    static BUILT: OncePerKey<String, Result<PathBuf>> = OncePerKey::new();
    BUILT.get_or_init(name.to_string(), || build_now(name))
}

/// Builds the test guest `name` now, under a file lock (test processes run
/// side by side).
fn build_now(name: &str) -> Result<PathBuf> {
    let dir = paths::armature_dir().join("guests").join(name);
    let _lock = paths::build_lock(&dir)?;
    let bin = format!("guest-{name}");
    let cargo_dir = paths::armature_dir().join("guests").join("cargo");
    let (_, flat) = crate::payload::build(MANIFEST, &bin, &cargo_dir, &format!("the {name} test guest"))?;
    let out = dir.join(format!("{bin}.bin"));
    write_atomic(&out, &flat.bytes)?;
    Ok(out)
}

/// `qemu` with `guest` as dom0's kernel module: QEMU's own DTB for the
/// machine, dumped into `dir`, with the module node added; the guest loaded
/// at [`MODULE_ADDR`]. The caller adds `-kernel` (Armature).
pub fn as_dom0(qemu: Qemu, guest: &Path, dir: &Path) -> Result<Qemu> {
    let dtb = dir.join("dom0.dtb");
    qemu.dump_dtb(&dtb)?;
    let size = std::fs::metadata(guest).context(|| format!("reading {}", guest.display()))?.len();
    crate::fdt::add_chosen_module(&dtb, MODULE_ADDR, size, &["multiboot,kernel"])?;
    Ok(qemu.dtb(&dtb).load_at(guest, MODULE_ADDR))
}
