//! dtschema's `dt-validate`, the device tree schema checker, installed with
//! pip into a virtual environment under `target/armature/dtschema` on first
//! use (PyPI; `python3-venv`, which `./x setup` installs). Its core schemas
//! (the root node, `/chosen`, `/memory`, `/cpus` and each CPU) check the
//! nodes dom0's generated device tree carries; the bindings of Linux's tree
//! (the timer's, PSCI's) are not part of it and are checked by the
//! project's own `src/dt/binding_check.rs`.

use crate::paths::{self, write_atomic};
use crate::process::{run_checked, tool};
use crate::{Context, Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The dtschema release installed (pinned: its schemas decide what passes).
pub const VERSION: &str = "2026.9";

/// The core schemas dom0's tree is checked against (`dt-validate -l`):
/// those of the nodes Armature generates.
pub const DOM0_SCHEMAS: [&str; 5] = ["root-node.yaml", "chosen.yaml", "memory.yaml", "cpus.yaml", "cpu.yaml"];

/// `dt-validate`, installed on first use (once per process; a file lock
/// keeps test processes from installing it side by side).
pub fn dt_validate() -> Result<PathBuf> {
    static INSTALLED: OnceLock<Result<PathBuf>> = OnceLock::new();
    INSTALLED.get_or_init(install).clone()
}

fn install() -> Result<PathBuf> {
    let dir = paths::armature_dir().join("dtschema");
    let _lock = paths::build_lock(&dir)?;
    let venv = dir.join("venv");
    let bin = venv.join("bin").join("dt-validate");
    let stamp = dir.join(format!("installed-{VERSION}"));
    if bin.exists() && stamp.exists() {
        return Ok(bin);
    }
    if venv.exists() {
        std::fs::remove_dir_all(&venv).context(|| format!("removing {}", venv.display()))?;
    }
    run_checked(
        tool("python3", "python3-venv")?.args(["-m", "venv"]).arg(&venv),
        "creating a Python virtual environment for dtschema (python3 -m venv; Debian package python3-venv)",
    )?;
    let spec = format!("dtschema=={VERSION}");
    run_checked(
        Command::new(venv.join("bin").join("pip")).args(["install", "--quiet", "--disable-pip-version-check", &spec]),
        &format!("pip install {spec} (from PyPI)"),
    )?;
    if !bin.exists() {
        return Err(Error::new(format!("pip installed {spec} but there is no {}", bin.display())));
    }
    write_atomic(&stamp, VERSION.as_bytes())?;
    Ok(bin)
}

/// Checks `dtbs` against the core schemas whose `$id` contains one of
/// `schemas`: the problems `dt-validate` reports, one per line, each
/// naming the file and the node (empty: they conform).
pub fn validate(dtbs: &[&Path], schemas: &[&str]) -> Result<Vec<String>> {
    let mut cmd = Command::new(dt_validate()?);
    cmd.arg("-l").arg(schemas.join(":")).args(dtbs);
    let out = cmd.stdin(std::process::Stdio::null()).output().context(|| "running dt-validate")?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let problems: Vec<String> =
        text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('\t')).map(str::to_owned).collect();
    if !out.status.success() && problems.is_empty() {
        return Err(Error::new(format!("dt-validate failed ({}) without saying why", out.status)));
    }
    Ok(problems)
}
