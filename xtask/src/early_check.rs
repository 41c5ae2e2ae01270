//! The build-time check that the early boot code (`boot/early`) uses only
//! PC-relative addressing, like Linux's check on its arm64 `pi/` objects.
//!
//! That code runs with the MMU off at the load address, before the image's
//! relocations are applied, so any absolute address in it is wrong at run
//! time. The check compiles the crate to one object, exactly as the image
//! does (same target, profile, features and flags), and refuses:
//! - any relocation in a loaded section whose type is not PC-relative
//!   (an absolute address, or a GOT entry, which holds one);
//! - any reference to a symbol outside the crate, except the linker-script
//!   symbols the code reads with `adrp`/`add` and the `mem*` routines of
//!   compiler-builtins (plain code, PC-relative themselves). This catches
//!   calls into `core`'s panic and formatting machinery.

use crate::build::Variant;
use crate::{Arch, Context, Error, Result, paths, toolchain::Toolchain};
use object::{Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget, SectionFlags};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// AArch64 ELF relocation types that are position independent: PC-relative
/// data and branches, and the low-12-bit halves of `adrp` pairs.
const PC_RELATIVE: &[(u32, &str)] = &[
    (0, "R_AARCH64_NONE"),
    (260, "R_AARCH64_PREL64"),
    (261, "R_AARCH64_PREL32"),
    (262, "R_AARCH64_PREL16"),
    (273, "R_AARCH64_LD_PREL_LO19"),
    (274, "R_AARCH64_ADR_PREL_LO21"),
    (275, "R_AARCH64_ADR_PREL_PG_HI21"),
    (276, "R_AARCH64_ADR_PREL_PG_HI21_NC"),
    (277, "R_AARCH64_ADD_ABS_LO12_NC"),
    (278, "R_AARCH64_LDST8_ABS_LO12_NC"),
    (279, "R_AARCH64_TSTBR14"),
    (280, "R_AARCH64_CONDBR19"),
    (282, "R_AARCH64_JUMP26"),
    (283, "R_AARCH64_CALL26"),
    (284, "R_AARCH64_LDST16_ABS_LO12_NC"),
    (285, "R_AARCH64_LDST32_ABS_LO12_NC"),
    (286, "R_AARCH64_LDST64_ABS_LO12_NC"),
    (299, "R_AARCH64_LDST128_ABS_LO12_NC"),
];

/// Symbols outside the crate that the early code may reference.
const ALLOWED_EXTERNAL: &[&str] = &[
    "__image_start",
    "__text_end",
    "__rodata_end",
    "__image_end",
    "__idmap_start",
    "__early_tables_start",
    "memcpy",
    "memmove",
    "memset",
    "memcmp",
    "bcmp",
];

fn reloc_name(r_type: u32) -> String {
    match r_type {
        257 => "R_AARCH64_ABS64".into(),
        258 => "R_AARCH64_ABS32".into(),
        259 => "R_AARCH64_ABS16".into(),
        263..=270 => format!("R_AARCH64_MOVW_UABS_* ({r_type})"),
        311 => "R_AARCH64_ADR_GOT_PAGE".into(),
        312 => "R_AARCH64_LD64_GOT_LO12_NC".into(),
        _ => PC_RELATIVE.iter().find(|(t, _)| *t == r_type).map_or(format!("type {r_type}"), |(_, n)| n.to_string()),
    }
}

/// Checks one relocatable object of the early crate. Returns the number of
/// relocations checked, or every violation, one per line.
pub fn check_object(bytes: &[u8]) -> std::result::Result<usize, Vec<String>> {
    let file = match object::File::parse(bytes) {
        Ok(f) => f,
        Err(e) => return Err(vec![format!("not an object file: {e}")]),
    };
    let mut bad = Vec::new();
    let mut checked = 0;
    for section in file.sections() {
        let loaded = match section.flags() {
            // SHF_ALLOC (0x2): the section is loaded.
            SectionFlags::Elf { sh_flags, .. } => sh_flags.0 & 0x2 != 0,
            _ => true,
        };
        if !loaded {
            continue; // debug information is never loaded
        }
        let sname = section.name().unwrap_or("?");
        for (offset, reloc) in section.relocations() {
            checked += 1;
            let RelocationFlags::Elf { r_type: object::elf::RelocationType(r_type) } = reloc.flags() else {
                bad.push(format!("{sname}+{offset:#x}: not an ELF relocation"));
                continue;
            };
            let target = match reloc.target() {
                RelocationTarget::Symbol(i) => file.symbol_by_index(i).ok(),
                _ => None,
            };
            // A section symbol has no name: name the section instead.
            let tname = target
                .as_ref()
                .map(|s| match s.name() {
                    Ok(n) if !n.is_empty() => n.to_string(),
                    _ => s
                        .section_index()
                        .and_then(|i| file.section_by_index(i).ok())
                        .and_then(|sec| sec.name().ok().map(str::to_string))
                        .unwrap_or_else(|| "?".into()),
                })
                .unwrap_or_else(|| "?".into());
            if !PC_RELATIVE.iter().any(|(t, _)| *t == r_type) {
                bad.push(format!("{sname}+{offset:#x}: absolute relocation {} against {tname}", reloc_name(r_type)));
            }
            if let Some(sym) = target
                && sym.is_undefined() && !ALLOWED_EXTERNAL.contains(&tname.as_str()) {
                    bad.push(format!("{sname}+{offset:#x}: reference to {tname}, outside the early code"));
                }
        }
    }
    if bad.is_empty() { Ok(checked) } else { Err(bad) }
}

/// Compiles `boot/early` for `variant` into one object and checks it.
/// Only AArch64 has early MMU code so far; other architectures pass.
pub fn run(variant: &Variant) -> Result<usize> {
    if variant.arch() != Arch::Aarch64 {
        return Ok(0);
    }
    let toolchain = Toolchain::current()?;
    // One target dir per variant: objects of other feature sets never mix in.
    let dir = paths::armature_dir().join("early-check").join(variant.name());
    let cmd = toolchain.cargo_build(variant.arch())?;
    // cargo_build gives `build -p armature --bin armature --target T`; the
    // check needs `rustc` of the early crate with the same target.
    let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    let mut c = toolchain.cargo();
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.args(["rustc", "-p", "armature-early", "--lib", "--target", variant.arch().triple()]);
    c.args(args.iter().skip_while(|a| !a.starts_with("-Z")));
    c.arg("--target-dir").arg(&dir);
    // With LTO cargo has rustc emit bitcode; the check needs machine code.
    c.env("CARGO_PROFILE_RELEASE_LTO", "false");
    if variant.is_release() {
        c.arg("--release");
    }
    let early: Vec<&str> = variant
        .feature_list()
        .iter()
        .filter(|f| matches!(f.as_str(), "clash-test" | "plant-absolute-reloc"))
        .map(String::as_str)
        .collect();
    if !early.is_empty() {
        c.arg("--features").arg(early.join(","));
    }
    c.args(["--", "--emit=obj", "-C", "codegen-units=1"]);
    let out = c.stdin(Stdio::null()).output().context(|| "running cargo rustc for the early-code check".to_string())?;
    if !out.status.success() {
        return Err(Error::new(format!(
            "early-code check: compiling boot/early failed\n{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let profile = if variant.is_release() { "release" } else { "debug" };
    let deps = dir.join(variant.arch().triple()).join(profile).join("deps");
    let obj = newest_object(&deps)?;
    let bytes = fs::read(&obj).context(|| format!("reading {}", obj.display()))?;
    check_object(&bytes).map_err(|bad| {
        Error::new(format!(
            "early-code check failed: boot/early must only use PC-relative addressing \
             (it runs before relocation, with the MMU off), but {} has:\n  {}",
            obj.display(),
            bad.join("\n  ")
        ))
    })
}

fn newest_object(deps: &Path) -> Result<PathBuf> {
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for e in fs::read_dir(deps).context(|| format!("listing {}", deps.display()))?.flatten() {
        let p = e.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("armature_early-") && name.ends_with(".o") {
            let t = e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
            if best.as_ref().is_none_or(|(bt, _)| t > *bt) {
                best = Some((t, p));
            }
        }
    }
    best.map(|(_, p)| p).ok_or_else(|| Error::new(format!("early-code check: no armature_early-*.o in {}", deps.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relocation_names_are_readable() {
        assert_eq!(reloc_name(257), "R_AARCH64_ABS64");
        assert_eq!(reloc_name(283), "R_AARCH64_CALL26");
        assert_eq!(reloc_name(311), "R_AARCH64_ADR_GOT_PAGE");
    }

    #[test]
    fn garbage_is_not_an_object() {
        assert!(check_object(b"not elf").unwrap_err()[0].contains("not an object file"));
    }
}
