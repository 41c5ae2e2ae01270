//! Where things live: the workspace, cargo's target directory, Armature's
//! own output tree (`target/armature/`), and atomic file output.
//!
//! Everything the tools write goes under `target/armature/`:
//! - `<variant>/armature.{bin,elf}`: published images (see [`crate::build`]);
//! - `cargo/`: cargo's target directory for image builds;
//! - `logs/<name>.log`: console logs of QEMU runs;
//! - `work/<pid>/<name>/`: scratch files of one run (disks, DTB dumps,
//!   scripts), per process.
//!
//! Downloads (Debian's arm64 Linux, busybox and Xen for dom0 runs, see
//! [`crate::debian`]) go to [`cache_dir`] instead, outside the tree, so that
//! `cargo clean` and other worktrees do not download them again.

use crate::{Context, Result};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    // xtask/ is a direct child of the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives inside the workspace").to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` if set, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => workspace_root().join(d),
        _ => workspace_root().join("target"),
    }
}

/// `target/armature`: the root of everything the tools produce.
pub fn armature_dir() -> PathBuf {
    target_dir().join("armature")
}

/// The cargo target directory of image builds (`target/armature/cargo`),
/// separate from the workspace's so that nothing else writes there.
pub fn image_cargo_dir() -> PathBuf {
    armature_dir().join("cargo")
}

/// Environment variable that moves [`cache_dir`].
pub const CACHE_ENV: &str = "ARMATURE_CACHE";

/// Where downloaded files are kept: `$ARMATURE_CACHE` if set, else
/// `$XDG_CACHE_HOME/armature`, else `$HOME/.cache/armature`, else (no home
/// directory) `target/armature/cache`. Shared by every worktree and process
/// of the user; writers take locks and publish atomically.
pub fn cache_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var(CACHE_ENV) {
        return workspace_root().join(dir);
    }
    if let Some(xdg) = var("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return xdg.join("armature");
    }
    match var("HOME") {
        Some(home) => home.join(".cache").join("armature"),
        None => armature_dir().join("cache"),
    }
}

/// Where the console log of the run called `name` is kept.
pub fn log_path(name: &str) -> PathBuf {
    armature_dir().join("logs").join(format!("{}.log", sanitize(name)))
}

/// A fresh, empty scratch directory for the run called `name`:
/// `target/armature/work/<pid>/<name>`, private to this process so that
/// several test runs on one tree never share files. Names must be unique
/// within the process. The directories of processes that have exited are
/// removed the first time a process asks for one.
pub fn scratch_dir(name: &str) -> Result<PathBuf> {
    static CLEANED: std::sync::Once = std::sync::Once::new();
    let work = armature_dir().join("work");
    CLEANED.call_once(|| remove_stale_scratch(&work));
    let dir = work.join(std::process::id().to_string()).join(sanitize(name));
    if dir.exists() {
        fs::remove_dir_all(&dir).context(|| format!("emptying {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Removes the scratch directories of processes that no longer exist.
fn remove_stale_scratch(work: &Path) {
    let Ok(entries) = fs::read_dir(work) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Makes `name` safe as a single path component.
pub fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.+".contains(c) { c } else { '_' }).collect()
}

/// Writes `data` to `path` atomically: readers see the old file or the new
/// one, never a partial write, even when several processes publish the same
/// file at once (each writes its own temporary file, then renames it).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().expect("output paths have a parent directory");
    fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.context(|| format!("writing {}", path.display()))
}

/// Creates `dir` and takes the exclusive lock on its `.build.lock`, for a
/// build whose output goes there (test processes run side by side). The
/// lock is held until the returned file is dropped.
pub fn build_lock(dir: &Path) -> Result<fs::File> {
    fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let lock_path = dir.join(".build.lock");
    let lock = fs::File::create(&lock_path).context(|| format!("creating {}", lock_path.display()))?;
    lock.lock().context(|| format!("locking {}", lock_path.display()))?;
    Ok(lock)
}

/// Finds a program in `PATH` or in the sbin directories, which are not in
/// every user's `PATH` but hold `mkfs.vfat`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Reads a whole file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("xtask").is_dir());
    }

    #[test]
    fn sanitize_keeps_one_component() {
        assert_eq!(sanitize("boot gicv3/smp4"), "boot_gicv3_smp4");
        assert_eq!(sanitize("aarch64-crashtest+x.1"), "aarch64-crashtest+x.1");
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = scratch_dir("paths-unit-test").unwrap();
        let f = dir.join("out.bin");
        write_atomic(&f, b"one").unwrap();
        write_atomic(&f, b"two").unwrap();
        assert_eq!(read(&f).unwrap(), b"two");
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    }
}
