//! Building image variants.
//!
//! A [`Variant`] is an architecture, a profile and a set of cargo features.
//! [`build`] runs cargo for it, converts the ELF ([`crate::image`]) and
//! publishes `armature.bin` and `armature.elf` in the variant's own directory
//! `target/armature/<arch>[-<features>][-release]/`, so variants never
//! overwrite each other. [`image()`] does the same at most once per variant
//! per process, which is what tests use.
//!
//! Cargo builds into its own target directory, `target/armature/cargo`, so
//! that plain `cargo build`s in the workspace (which write
//! `target/<triple>/<profile>/armature`) can never replace the ELF between
//! the build and the copy. Builds are serialised across threads and
//! processes by a lock file: different feature sets of one profile share the
//! output path `<triple>/<profile>/armature`, so the cargo run and the copy
//! out of that path happen under one lock.

use crate::image::{self, FlatImage};
use crate::paths::{self, write_atomic};
use crate::toolchain::Toolchain;
use crate::{Arch, Context, Error, Result};
use std::collections::HashMap;
use std::hash::Hash;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};

/// What to build: architecture, profile, features.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    arch: Arch,
    release: bool,
    features: Vec<String>,
}

impl Variant {
    /// The default variant of `arch`: debug profile, default features.
    pub fn new(arch: Arch) -> Self {
        Variant { arch, release: false, features: Vec::new() }
    }

    /// Selects the release profile.
    pub fn release(mut self, release: bool) -> Self {
        self.release = release;
        self
    }

    /// Adds cargo features (on top of the default ones).
    pub fn features<S: AsRef<str>>(mut self, features: impl IntoIterator<Item = S>) -> Self {
        for f in features {
            let f = f.as_ref().trim();
            if !f.is_empty() {
                self.features.push(f.to_string());
            }
        }
        self.features.sort();
        self.features.dedup();
        self
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Whether this is a release build.
    pub fn is_release(&self) -> bool {
        self.release
    }

    /// The extra features, sorted.
    pub fn feature_list(&self) -> &[String] {
        &self.features
    }

    /// `<arch>[-<f1>+<f2>][-release]`: the name of the variant's output directory.
    pub fn name(&self) -> String {
        let mut name = self.arch.name().to_string();
        if !self.features.is_empty() {
            name.push('-');
            name.push_str(&self.features.join("+"));
        }
        if self.release {
            name.push_str("-release");
        }
        name
    }

    /// `target/armature/<name>`.
    pub fn out_dir(&self) -> PathBuf {
        paths::armature_dir().join(self.name())
    }

    fn profile_dir(&self) -> &'static str {
        if self.release { "release" } else { "debug" }
    }
}

/// A built image variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// What was built.
    pub variant: Variant,
    /// The flat boot image (`-kernel`, `booti`, `bootz`).
    pub bin: PathBuf,
    /// The ELF, with symbols, for `addr2line` and debuggers.
    pub elf: PathBuf,
    /// Size of the flat image in bytes.
    pub size: usize,
    /// Size in memory including BSS (`__image_end`; the Image header's image_size).
    pub image_end: u64,
    /// Number of relative relocations the boot stub applies.
    pub relocations: usize,
}

/// Where cargo's output goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CargoOutput {
    /// Straight to the terminal (interactive builds).
    Inherit,
    /// Captured and shown only if the build fails (tests).
    Capture,
}

/// Builds `variant` now (cargo decides what is out of date) and publishes it.
pub fn build(variant: &Variant, output: CargoOutput) -> Result<Image> {
    let toolchain = Toolchain::current()?;
    let lock = paths::build_lock(&paths::armature_dir())?;

    let mut cmd = toolchain.cargo_build(variant.arch)?;
    cmd.arg("--target-dir").arg(paths::image_cargo_dir());
    if variant.release {
        cmd.arg("--release");
    }
    if !variant.features.is_empty() {
        cmd.arg("--features").arg(variant.features.join(","));
    }
    let what = format!("cargo build of {} with {}", variant.name(), toolchain.name());
    let (status, log) = match output {
        CargoOutput::Inherit => (cmd.status().context(|| format!("running {what}"))?, String::new()),
        CargoOutput::Capture => {
            let out = cmd.stdin(Stdio::null()).output().context(|| format!("running {what}"))?;
            let mut log = String::from_utf8_lossy(&out.stdout).into_owned();
            log.push_str(&String::from_utf8_lossy(&out.stderr));
            (out.status, log)
        }
    };
    if !status.success() {
        return Err(Error::new(format!("{what} failed ({status})\n{log}")));
    }

    // The early boot code may only use PC-relative addressing: refuse the
    // build otherwise (xtask/src/early_check.rs).
    let early_relocs = crate::early_check::run(variant)?;
    if matches!(output, CargoOutput::Inherit) && early_relocs > 0 {
        eprintln!("Early code (boot/early): {early_relocs} relocations checked, all PC-relative");
    }

    let built = paths::image_cargo_dir().join(variant.arch.triple()).join(variant.profile_dir()).join("armature");
    let elf = paths::read(&built)?;
    let flat = image::flatten(&elf, variant.arch).context(|| format!("{}: {}", variant.name(), built.display()))?;
    let out = variant.out_dir();
    let (bin_path, elf_path) = (out.join("armature.bin"), out.join("armature.elf"));
    write_atomic(&elf_path, &elf)?;
    write_atomic(&bin_path, &flat.bytes)?;
    drop(lock);
    let FlatImage { bytes, image_end, relocations } = flat;
    Ok(Image { variant: variant.clone(), bin: bin_path, elf: elf_path, size: bytes.len(), image_end, relocations })
}

/// The image of `variant`, built at most once per process however many
/// threads ask for it (a failed build is reported to every caller).
pub fn image(variant: &Variant) -> Result<Image> {
    static BUILT: OncePerKey<Variant, Result<Image>> = OncePerKey::new();
    BUILT.get_or_init(variant.clone(), || build(variant, CargoOutput::Capture))
}

/// A value per key, computed at most once per process however many threads
/// ask for it at once (the others wait for it), e.g. a build per variant.
pub(crate) struct OncePerKey<K, V>(OnceLock<Mutex<HashMap<K, Arc<OnceLock<V>>>>>);

impl<K: Eq + Hash, V: Clone> OncePerKey<K, V> {
    /// An empty map, for a `static`.
    pub(crate) const fn new() -> Self {
        OncePerKey(OnceLock::new())
    }

    /// The value for `key`: computed by `init` on the first call for that
    /// key, then a clone of it. Calls for different keys do not wait for
    /// each other.
    pub(crate) fn get_or_init(&self, key: K, init: impl FnOnce() -> V) -> V {
        let cell = {
            let mut map = self.0.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key).or_default().clone()
        };
        cell.get_or_init(init).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_are_distinct() {
        let base = Variant::new(Arch::Aarch64);
        assert_eq!(base.name(), "aarch64");
        assert_eq!(base.clone().release(true).name(), "aarch64-release");
        let ct = Variant::new(Arch::Armv7).features(["crashtest", "platform-fvp", "crashtest", " "]);
        assert_eq!(ct.name(), "armv7-crashtest+platform-fvp");
        assert_eq!(ct.clone().release(true).name(), "armv7-crashtest+platform-fvp-release");
        assert_eq!(ct, Variant::new(Arch::Armv7).features(["platform-fvp", "crashtest"]));
        assert!(base.out_dir().ends_with("target/armature/aarch64") || base.out_dir().ends_with("armature/aarch64"));
    }
}
