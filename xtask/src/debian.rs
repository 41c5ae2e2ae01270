//! Debian's arm64 binaries for dom0 runs and the benchmark: the Linux
//! kernel (`linux-image-<abi>-arm64-unsigned`, whose `/boot/vmlinuz-<abi>-arm64`
//! is an uncompressed arm64 `Image`), `busybox-static` and Xen
//! (`xen-hypervisor-4.17-arm64`), fetched with apt and kept in
//! [`crate::paths::cache_dir`]`/debian/`.
//!
//! How a package is fetched:
//! 1. arm64 must be a dpkg architecture: if `dpkg --print-foreign-architectures`
//!    does not list it, `dpkg --add-architecture arm64` and `apt-get update`
//!    (as root, or through sudo);
//! 2. the kernel's package name comes from the meta-package:
//!    `apt-cache depends linux-image-arm64:arm64` names
//!    `linux-image-<abi>-arm64` (signed), whose `-unsigned` twin is taken when
//!    apt knows it (same Image, no EFI signature);
//! 3. the version is apt's candidate (`apt-cache policy`); an unknown package
//!    triggers one `apt-get update` and a second look;
//! 4. `apt-get download <name>:arm64=<version>` into a temporary directory of
//!    the cache, then only the files needed are extracted
//!    (`dpkg-deb --fsys-tarfile | tar -x`; the kernel package's modules are
//!    left out) into `debian/<name>_<version>_arm64/`, published by a rename
//!    once complete; the `.deb` is deleted.
//!
//! Everything is idempotent: a package whose directory exists is not fetched
//! again, and apt is asked only for names and versions (no root needed once
//! arm64 is set up). Fetches are serialised across processes by a lock file
//! in the cache. When apt cannot answer (no network, no arm64 index), the
//! newest copy already in the cache is used, with a warning.

use crate::build::OncePerKey;
use crate::paths;
use crate::process::{run_checked, tool};
use crate::{Context, Error, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The Debian architecture of everything fetched here.
pub const ARCH: &str = "arm64";
/// The meta-package that names the current kernel ABI.
pub const KERNEL_META: &str = "linux-image-arm64";
/// Statically linked busybox.
pub const BUSYBOX: &str = "busybox-static";
/// Xen for the benchmark.
pub const XEN: &str = "xen-hypervisor-4.17-arm64";

/// A package fetched and extracted into the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// Package name (`linux-image-6.1.0-50-arm64-unsigned`).
    pub name: String,
    /// Debian version (`6.1.176-1`).
    pub version: String,
    /// The extracted files (`<cache>/debian/<name>_<version>_arm64/`).
    pub root: PathBuf,
}

impl Fetched {
    /// `name version`, for reports.
    pub fn describe(&self) -> String {
        format!("{} {}", self.name, self.version)
    }
}

/// The Linux kernel: the package and its `Image`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// The package.
    pub package: Fetched,
    /// `/boot/vmlinuz-<abi>-arm64` inside it: an uncompressed arm64 Image.
    pub image: PathBuf,
}

/// `<cache>/debian`.
pub fn cache() -> PathBuf {
    paths::cache_dir().join("debian")
}

/// Debian's arm64 Linux kernel (fetched at most once per process).
pub fn kernel() -> Result<Kernel> {
    static K: OnceLock<Result<Kernel>> = OnceLock::new();
    K.get_or_init(|| {
        let package = fetch_resolved(
            || {
                let signed = kernel_package()?;
                let unsigned = format!("{signed}-unsigned");
                Ok(if candidate(&unsigned)?.is_some() { unsigned } else { signed })
            },
            |name| name.starts_with("linux-image-") && name.contains("-arm64"),
            &["./boot/vmlinuz-*"],
        )?;
        let image = find_vmlinuz(&package.root)?;
        Ok(Kernel { package, image })
    })
    .clone()
}

/// `busybox-static:arm64`; returns the package and `/bin/busybox`.
pub fn busybox() -> Result<(Fetched, PathBuf)> {
    let p = fetch(BUSYBOX, &["./bin/busybox"])?;
    let bin = p.root.join("bin/busybox");
    require_file(&bin, &p)?;
    Ok((p, bin))
}

/// `xen-hypervisor-4.17-arm64`; returns the package and `/boot/xen-4.17-arm64`
/// (an arm64 Image, byte-identical to the `.efi` next to it).
pub fn xen() -> Result<(Fetched, PathBuf)> {
    let p = fetch(XEN, &["./boot/xen-*"])?;
    let dir = p.root.join("boot");
    let bin = std::fs::read_dir(&dir)
        .context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_xen_image))
        .min()
        .ok_or_else(|| Error::new(format!("{} has no xen-<version>-arm64 image in /boot", p.describe())))?;
    Ok((p, bin))
}

fn is_xen_image(name: &str) -> bool {
    name.starts_with("xen-") && name.ends_with("-arm64")
}

fn require_file(path: &Path, p: &Fetched) -> Result<()> {
    if path.is_file() { Ok(()) } else { Err(Error::new(format!("{} has no {}", p.describe(), path.display()))) }
}

/// The first `vmlinuz-*` in `root/boot`.
fn find_vmlinuz(root: &Path) -> Result<PathBuf> {
    let dir = root.join("boot");
    std::fs::read_dir(&dir)
        .context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-")))
        .min()
        .ok_or_else(|| Error::new(format!("no vmlinuz-* in {}", dir.display())))
}

/// Fetches the package `name` (its `members`, tar patterns, are extracted).
pub fn fetch(name: &str, members: &[&str]) -> Result<Fetched> {
    let owned = name.to_string();
    fetch_resolved(move || Ok(owned), |n| n == name, members)
}

/// Fetches the package `resolve()` names; `same` recognises cached copies
/// of it (any version) when apt cannot be asked.
fn fetch_resolved(
    resolve: impl FnOnce() -> Result<String>,
    same: impl Fn(&str) -> bool,
    members: &[&str],
) -> Result<Fetched> {
    let resolved = resolve().and_then(|name| {
        let version = candidate(&name)?.ok_or_else(|| {
            Error::new(format!(
                "apt has no candidate for {name}:{ARCH} (after apt-get update); see `apt-cache policy {name}:{ARCH}`"
            ))
        })?;
        Ok((name, version))
    });
    let (name, version) = match resolved {
        Ok(nv) => nv,
        Err(e) => match newest_cached(&cache(), &same) {
            Some(f) => {
                eprintln!("[xtask] warning: {e}\n[xtask] using the cached {}", f.describe());
                return Ok(f);
            }
            None => return Err(e),
        },
    };
    static FETCHED: OncePerKey<String, Result<Fetched>> = OncePerKey::new();
    let members: Vec<String> = members.iter().map(|s| s.to_string()).collect();
    FETCHED.get_or_init(format!("{name}={version}"), || download(&name, &version, &members))
}

/// The cached copies of packages `same` accepts, newest version last.
fn newest_cached(cache: &Path, same: &dyn Fn(&str) -> bool) -> Option<Fetched> {
    let mut found: Vec<Fetched> = std::fs::read_dir(cache)
        .ok()?
        .flatten()
        .filter(|e| e.path().join(COMPLETE).is_file())
        .filter_map(|e| {
            let dir = e.file_name().to_str()?.to_string();
            let (name, version) = parse_dir_name(&dir)?;
            same(&name).then(|| Fetched { name, version, root: e.path() })
        })
        .collect();
    found.sort_by(|a, b| compare_versions(&a.version, &b.version));
    found.pop()
}

/// Marks a complete extraction.
const COMPLETE: &str = ".complete";

/// `<name>_<version>_arm64` with the version made safe for a path (`:` of
/// an epoch becomes `%3a`, as apt names its files).
pub fn dir_name(name: &str, version: &str) -> String {
    format!("{name}_{}_{ARCH}", version.replace(':', "%3a"))
}

/// The inverse of [`dir_name`].
pub fn parse_dir_name(dir: &str) -> Option<(String, String)> {
    let rest = dir.strip_suffix(&format!("_{ARCH}"))?;
    let (name, version) = rest.split_once('_')?;
    Some((name.to_string(), version.replace("%3a", ":")))
}

/// Orders Debian versions well enough to pick the newest cached copy
/// (numbers compare as numbers, everything else as text).
fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(v: &str) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut rest = v;
        while !rest.is_empty() {
            let text: String = rest.chars().take_while(|c| !c.is_ascii_digit()).collect();
            rest = &rest[text.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            rest = &rest[digits.len()..];
            out.push((text, digits.parse().unwrap_or(0)));
        }
        out
    }
    parts(a).cmp(&parts(b))
}

/// Downloads and extracts `name=version` unless it is in the cache.
fn download(name: &str, version: &str, members: &[String]) -> Result<Fetched> {
    let cache = cache();
    let root = cache.join(dir_name(name, version));
    let done = || Fetched { name: name.to_string(), version: version.to_string(), root: root.clone() };
    if root.join(COMPLETE).is_file() {
        return Ok(done());
    }
    let _lock = paths::build_lock(&cache)?;
    if root.join(COMPLETE).is_file() {
        return Ok(done());
    }
    let tmp = cache.join(format!(".fetch-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).context(|| format!("creating {}", tmp.display()))?;
    let result = (|| {
        eprintln!("[xtask] downloading {name}:{ARCH} {version} into {}", cache.display());
        // apt drops to the _apt user for downloads when it can write there.
        let _ = Command::new("chown").arg("_apt").arg(&tmp).stderr(Stdio::null()).status();
        run_checked(
            tool("apt-get", "apt")?.current_dir(&tmp).arg("download").arg(format!("{name}:{ARCH}={version}")),
            &format!("apt-get download {name}:{ARCH}={version}"),
        )?;
        let deb = std::fs::read_dir(&tmp)
            .context(|| format!("reading {}", tmp.display()))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .ok_or_else(|| Error::new(format!("apt-get download of {name} left no .deb in {}", tmp.display())))?;
        let out = tmp.join("root");
        std::fs::create_dir_all(&out).context(|| format!("creating {}", out.display()))?;
        extract(&deb, &out, members)?;
        std::fs::write(out.join(COMPLETE), format!("{name} {version}\n"))
            .context(|| format!("writing {}", out.display()))?;
        if root.exists() {
            std::fs::remove_dir_all(&root).context(|| format!("removing {}", root.display()))?;
        }
        std::fs::rename(&out, &root).context(|| format!("publishing {}", root.display()))
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result.map(|()| done())
}

/// Extracts the files matching `members` (tar wildcards) of `deb` into `out`.
fn extract(deb: &Path, out: &Path, members: &[String]) -> Result<()> {
    let what = format!("dpkg-deb --fsys-tarfile {} | tar -x {}", deb.display(), members.join(" "));
    let mut dpkg = tool("dpkg-deb", "dpkg")?
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(|| what.clone())?;
    let stdout = dpkg.stdout.take().expect("piped");
    let tar = tool("tar", "tar")?
        .arg("-x")
        .arg("-C")
        .arg(out)
        .arg("--wildcards")
        .args(members)
        .stdin(stdout)
        .output()
        .context(|| what.clone())?;
    let dpkg = dpkg.wait_with_output().context(|| what.clone())?;
    if !dpkg.status.success() || !tar.status.success() {
        return Err(Error::new(format!(
            "{what} failed: {} {}",
            String::from_utf8_lossy(&dpkg.stderr).trim(),
            String::from_utf8_lossy(&tar.stderr).trim()
        )));
    }
    Ok(())
}

/// The ABI package `linux-image-arm64:arm64` depends on
/// (`linux-image-6.1.0-50-arm64`).
fn kernel_package() -> Result<String> {
    ensure_arch()?;
    let query = || -> Result<Option<String>> {
        let out = apt_cache(&["depends", &format!("{KERNEL_META}:{ARCH}")])?;
        Ok(out.and_then(|o| first_depends(&o)))
    };
    match query()? {
        Some(name) => Ok(name),
        None => {
            apt_update()?;
            query()?.ok_or_else(|| {
                Error::new(format!(
                    "apt-cache depends {KERNEL_META}:{ARCH} names no kernel package (after apt-get update)"
                ))
            })
        }
    }
}

/// The first `Depends:` of `apt-cache depends` output, without the
/// architecture qualifier.
pub fn first_depends(output: &str) -> Option<String> {
    output.lines().find_map(|l| {
        let dep = l.trim().strip_prefix("Depends:")?.trim();
        let dep = dep.trim_start_matches('<').trim_end_matches('>');
        Some(dep.split(':').next()?.to_string()).filter(|d| !d.is_empty())
    })
}

/// The `Candidate:` of `apt-cache policy` output, if there is one.
pub fn policy_candidate(output: &str) -> Option<String> {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:").map(str::trim))
        .filter(|v| !v.is_empty() && *v != "(none)")
        .map(str::to_string)
}

/// apt's candidate version of `name:arm64`; an unknown package triggers one
/// `apt-get update` per process.
fn candidate(name: &str) -> Result<Option<String>> {
    ensure_arch()?;
    let query = || -> Result<Option<String>> {
        Ok(apt_cache(&["policy", &format!("{name}:{ARCH}")])?.and_then(|o| policy_candidate(&o)))
    };
    match query()? {
        Some(v) => Ok(Some(v)),
        None => {
            apt_update()?;
            query()
        }
    }
}

/// Runs `apt-cache args`: its output, or None when it fails.
fn apt_cache(args: &[&str]) -> Result<Option<String>> {
    let out = tool("apt-cache", "apt")?.args(args).stdin(Stdio::null()).output().context(|| "running apt-cache")?;
    Ok(out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Makes arm64 a dpkg architecture (then updates apt's lists), once per process.
fn ensure_arch() -> Result<()> {
    static DONE: OnceLock<Result<()>> = OnceLock::new();
    DONE.get_or_init(|| {
        let native = run_checked(tool("dpkg", "dpkg")?.arg("--print-architecture"), "dpkg --print-architecture")?;
        if String::from_utf8_lossy(&native.stdout).trim() == ARCH {
            return Ok(());
        }
        let foreign = run_checked(
            tool("dpkg", "dpkg")?.arg("--print-foreign-architectures"),
            "dpkg --print-foreign-architectures",
        )?;
        if String::from_utf8_lossy(&foreign.stdout).lines().any(|a| a.trim() == ARCH) {
            return Ok(());
        }
        eprintln!("[xtask] adding the {ARCH} architecture to dpkg (for Debian's {ARCH} kernel, busybox and Xen)");
        run_checked(&mut as_root("dpkg", &["--add-architecture", ARCH])?, &format!("dpkg --add-architecture {ARCH}"))?;
        apt_update()
    })
    .clone()
}

/// `apt-get update`, at most once per process. Errors of single indexes
/// (a mirror in sync, say) are reported, not fatal: what is needed may be
/// in the others, and the next `apt-cache` tells.
fn apt_update() -> Result<()> {
    static DONE: OnceLock<Result<()>> = OnceLock::new();
    DONE.get_or_init(|| {
        eprintln!("[xtask] apt-get update");
        let mut cmd = as_root("apt-get", &["update", "-q"])?;
        let out = cmd.env("DEBIAN_FRONTEND", "noninteractive").stdin(Stdio::null()).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "[xtask] warning: apt-get update had errors ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => return Err(Error::new(format!("running apt-get update: {e}"))),
        }
        Ok(())
    })
    .clone()
}

/// `program args` as root: directly when we are root, else through sudo.
fn as_root(program: &str, args: &[&str]) -> Result<Command> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        tool(program, "apt")?
    } else {
        let mut c = tool("sudo", "sudo").map_err(|_| {
            Error::new(format!("`{program} {}` needs root: run it as root, or install sudo", args.join(" ")))
        })?;
        c.arg("-n").arg(program);
        c
    };
    cmd.args(args);
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_names_the_abi_package() {
        let out = "linux-image-arm64:arm64\n  Depends: linux-image-6.1.0-50-arm64:arm64\n  Depends: foo\n";
        assert_eq!(first_depends(out).as_deref(), Some("linux-image-6.1.0-50-arm64"));
        assert_eq!(first_depends("x\n  Depends: <virtual-thing>\n").as_deref(), Some("virtual-thing"));
        assert_eq!(first_depends("linux-image-arm64:arm64\n"), None);
    }

    #[test]
    fn policy_candidate_or_none() {
        let out = "busybox-static:arm64:\n  Installed: (none)\n  Candidate: 1:1.35.0-4+deb12u1+b1\n  Version table:\n";
        assert_eq!(policy_candidate(out).as_deref(), Some("1:1.35.0-4+deb12u1+b1"));
        assert_eq!(policy_candidate("x:\n  Installed: (none)\n  Candidate: (none)\n"), None);
        assert_eq!(policy_candidate(""), None);
    }

    #[test]
    fn dir_names_round_trip() {
        let d = dir_name("busybox-static", "1:1.35.0-4+deb12u1+b1");
        assert_eq!(d, "busybox-static_1%3a1.35.0-4+deb12u1+b1_arm64");
        assert_eq!(parse_dir_name(&d), Some(("busybox-static".into(), "1:1.35.0-4+deb12u1+b1".into())));
        assert_eq!(parse_dir_name("busybox-static_1.0_armhf"), None);
    }

    #[test]
    fn versions_compare_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("6.1.176-1", "6.1.99-1"), Greater);
        assert_eq!(compare_versions("4.17.5+72-g01140da4e8-1", "4.17.5+72-g01140da4e8-1"), Equal);
        assert_eq!(compare_versions("1:1.35.0-4", "1:1.36.0-1"), Less);
    }

    #[test]
    fn newest_cached_copy_is_found() {
        let dir = paths::scratch_dir("debian-cache-unit-test").unwrap();
        for (n, v, complete) in [
            ("linux-image-6.1.0-9-arm64-unsigned", "6.1.27-1", true),
            ("linux-image-6.1.0-50-arm64-unsigned", "6.1.176-1", true),
            ("linux-image-6.1.0-51-arm64-unsigned", "6.1.180-1", false),
        ] {
            let d = dir.join(dir_name(n, v));
            std::fs::create_dir_all(&d).unwrap();
            if complete {
                std::fs::write(d.join(COMPLETE), "").unwrap();
            }
        }
        let f = newest_cached(&dir, &|n: &str| n.starts_with("linux-image-")).unwrap();
        assert_eq!((f.name.as_str(), f.version.as_str()), ("linux-image-6.1.0-50-arm64-unsigned", "6.1.176-1"));
        assert!(newest_cached(&dir, &|n: &str| n == "busybox-static").is_none());
    }

    #[test]
    fn xen_image_names() {
        assert!(is_xen_image("xen-4.17-arm64"));
        assert!(!is_xen_image("xen-4.17-arm64.efi"));
        assert!(!is_xen_image("xen-4.17-arm64.config"));
    }
}
