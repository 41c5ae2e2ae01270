//! Running the host tools the harness needs (`mkfs.vfat`, `mcopy`,
//! `mkimage`, `fdtput`, …): finding them, and running them with their
//! standard error in the failure.

use crate::paths::find_program;
use crate::{Context, Error, Result};
use std::process::{Command, Output, Stdio};

/// A command for the program `name`, found in `PATH` or the sbin
/// directories; if it is missing, an error saying to install `package`.
pub fn tool(name: &str, package: &str) -> Result<Command> {
    find_program(name)
        .map(Command::new)
        .ok_or_else(|| Error::new(format!("{name} not found: install {package} (`./x setup` does)")))
}

/// Runs `cmd` (without standard input) to completion: its output if it
/// succeeds, else an error naming `what`, the exit status and its standard
/// error.
pub fn run_checked(cmd: &mut Command, what: &str) -> Result<Output> {
    let out = cmd.stdin(Stdio::null()).output().context(|| what.to_string())?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(Error::new(format!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim())))
    }
}
