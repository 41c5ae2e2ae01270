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
//!    (`dpkg-deb --fsys-tarfile | tar -x`) into
//!    `debian/<name>_<version>_arm64/`, published by a rename once complete;
//!    the `.deb` is deleted. Of the kernel package's modules only those of
//!    [`DOM0_MODULES`] and the other virtio modules (where their
//!    dependencies are) are kept: a second extraction ([`extract_more`],
//!    marked by its own `.complete-modules`) adds them under `lib/modules/`
//!    of the same directory, so a copy cached before they were needed gets
//!    them without being replaced. Debian 12 ships no `modules.dep` (depmod
//!    makes it on installation): the load order comes from each module's
//!    `.modinfo` `depends=` ([`kernel_modules`]). Compressed modules
//!    (`.ko.xz`, as in newer Debian releases) are decompressed with the host's
//!    `xz`: busybox's `insmod` does not pass the kernel
//!    `MODULE_INIT_COMPRESSED_FILE`. Debian 12's are not compressed.
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

/// The Linux kernel: the package, its `Image` and dom0's modules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// The package.
    pub package: Fetched,
    /// `/boot/vmlinuz-<abi>-arm64` inside it: an uncompressed arm64 Image.
    pub image: PathBuf,
    /// [`DOM0_MODULES`] and what they depend on, in load order.
    pub modules: Vec<KernelModule>,
}

/// The kernel modules dom0's initramfs loads (paths under
/// `lib/modules/<abi>/`, without a compression suffix): the virtio-mmio and
/// virtio-pci transports, the block driver and the entropy source. Debian's
/// kernel has the virtio core built in, these as modules.
pub const DOM0_MODULES: [&str; 4] = [
    "kernel/drivers/virtio/virtio_mmio.ko",
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/drivers/block/virtio_blk.ko",
    "kernel/drivers/char/hw_random/virtio-rng.ko",
];

/// Where the modules other than [`DOM0_MODULES`] may be: their
/// dependencies must be found here.
const MODULE_DIRS: [&str; 1] = ["kernel/drivers/virtio"];

/// One kernel module, ready for `insmod`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelModule {
    /// The module's name (`virtio_rng`: `-` become `_`).
    pub name: String,
    /// Its path under `lib/modules/<abi>/` (`kernel/drivers/char/hw_random/virtio-rng.ko`).
    pub path: String,
    /// The uncompressed module (an ELF relocatable object).
    pub data: Vec<u8>,
    /// The modules it needs loaded first (`depends=` of its `.modinfo`).
    pub depends: Vec<String>,
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
        let members: Vec<String> = std::iter::once("./lib/modules/*/modules.builtin".to_string())
            .chain(MODULE_DIRS.iter().map(|d| format!("./lib/modules/*/{d}/*.ko*")))
            // (tar reports a member two patterns match as missing for the second)
            .chain(
                DOM0_MODULES
                    .iter()
                    .filter(|m| !MODULE_DIRS.iter().any(|d| m.rsplit_once('/').is_some_and(|(dir, _)| dir == *d)))
                    .map(|m| format!("./lib/modules/*/{m}*")),
            )
            .collect();
        extract_more(&package, "modules", &members)?;
        let modules = kernel_modules(&package.root, &DOM0_MODULES)?;
        Ok(Kernel { package, image, modules })
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

/// The modules `wanted` (paths under `lib/modules/<abi>/` of `root`, as in
/// [`DOM0_MODULES`]) and those they depend on, dependencies first; modules
/// the kernel has built in (`modules.builtin`) are left out.
pub fn kernel_modules(root: &Path, wanted: &[&str]) -> Result<Vec<KernelModule>> {
    let base = root.join("lib/modules");
    let abi = std::fs::read_dir(&base)
        .context(|| format!("reading {}", base.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("modules.builtin").is_file())
        .min()
        .ok_or_else(|| Error::new(format!("no lib/modules/<abi>/modules.builtin in {}", root.display())))?;
    let builtin = paths::read(&abi.join("modules.builtin"))?;
    let builtin: Vec<String> = String::from_utf8_lossy(&builtin).lines().map(module_name).collect();
    // Every module extracted, by name.
    let mut files = Vec::new();
    let mut stack = vec![abi.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).context(|| format!("reading {}", dir.display()))?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some((path, _)) =
                p.strip_prefix(&abi).ok().and_then(|r| r.to_str()).and_then(split_compression)
            {
                files.push((module_name(path), path.to_string(), p.clone()));
            }
        }
    }
    files.sort();
    let mut out: Vec<KernelModule> = Vec::new();
    // Depth-first, dependencies first; `visiting` catches cycles.
    fn visit(
        name: &str,
        wanted_by: &str,
        files: &[(String, String, PathBuf)],
        builtin: &[String],
        visiting: &mut Vec<String>,
        out: &mut Vec<KernelModule>,
    ) -> Result<()> {
        if out.iter().any(|m| m.name == name) || builtin.iter().any(|b| b == name) {
            return Ok(());
        }
        if visiting.iter().any(|v| v == name) {
            return Err(Error::new(format!("kernel modules depend on each other in a cycle: {visiting:?}")));
        }
        let Some((_, path, file)) = files.iter().find(|(n, _, _)| n == name) else {
            return Err(Error::new(format!(
                "kernel module {name} (needed by {wanted_by}) is neither extracted nor built in; \
                 add its directory to debian::MODULE_DIRS"
            )));
        };
        let data = read_module(file)?;
        let depends = module_depends(&data).context(|| format!("reading the .modinfo of {}", file.display()))?;
        visiting.push(name.to_string());
        for d in &depends {
            visit(d, name, files, builtin, visiting, out)?;
        }
        visiting.pop();
        out.push(KernelModule { name: name.to_string(), path: path.clone(), data, depends });
        Ok(())
    }
    for w in wanted {
        visit(&module_name(w), "dom0", &files, &builtin, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

/// `kernel/drivers/char/hw_random/virtio-rng.ko` → `virtio_rng`.
pub fn module_name(path: &str) -> String {
    let path = split_compression(path).map_or(path, |(p, _)| p);
    let file = path.rsplit('/').next().unwrap_or(path);
    file.strip_suffix(".ko").unwrap_or(file).replace('-', "_")
}

/// A module's path without its compression suffix, and the suffix
/// (`""` when uncompressed); None for what is not a module.
fn split_compression(path: &str) -> Option<(&str, &str)> {
    ["", ".xz", ".zst", ".gz"].into_iter().find_map(|ext| {
        let p = path.strip_suffix(ext)?;
        p.ends_with(".ko").then_some((p, ext))
    })
}

/// A module file's contents, decompressed (`.ko.xz` with the host's `xz`).
fn read_module(file: &Path) -> Result<Vec<u8>> {
    let name = file.to_str().unwrap_or_default();
    match split_compression(name).map(|(_, ext)| ext) {
        Some("") => paths::read(file),
        Some(".xz") => Ok(run_checked(tool("xz", "xz-utils")?.arg("-dc").arg(file), &format!("xz -dc {name}"))?.stdout),
        _ => Err(Error::new(format!("{name}: unsupported module compression (busybox's insmod needs plain .ko)"))),
    }
}

/// The `depends=` of a module's `.modinfo` section (module names).
pub fn module_depends(module: &[u8]) -> Result<Vec<String>> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(module).map_err(|e| Error::new(format!("not an ELF object: {e}")))?;
    let section = file.section_by_name(".modinfo").ok_or_else(|| Error::new("no .modinfo section"))?;
    let data = section.data().map_err(|e| Error::new(format!("unreadable .modinfo: {e}")))?;
    Ok(data
        .split(|&b| b == 0)
        .filter_map(|s| std::str::from_utf8(s).ok()?.strip_prefix("depends="))
        .flat_map(|d| d.split(','))
        .filter(|d| !d.is_empty())
        .map(|d| d.replace('-', "_"))
        .collect())
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
        let deb = download_deb(&tmp, name, version)?;
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

/// Downloads package `name` at `version` into the empty directory `dir`
/// with `apt-get download`; returns the `.deb`.
fn download_deb(dir: &Path, name: &str, version: &str) -> Result<PathBuf> {
    // apt drops to the _apt user for downloads when it can write there.
    let _ = Command::new("chown").arg("_apt").arg(dir).stderr(Stdio::null()).status();
    run_checked(
        tool("apt-get", "apt")?.current_dir(dir).arg("download").arg(format!("{name}:{ARCH}={version}")),
        &format!("apt-get download {name}:{ARCH}={version}"),
    )?;
    std::fs::read_dir(dir)
        .context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| Error::new(format!("apt-get download of {name} left no .deb in {}", dir.display())))
}

/// Adds the files matching `members` of the package to its extracted copy
/// `p`, once (marked by `.complete-<tag>`): the package is downloaded again,
/// its matching files extracted aside and moved into `p.root` (what is
/// there already stays, so processes using it are not disturbed).
pub fn extract_more(p: &Fetched, tag: &str, members: &[String]) -> Result<()> {
    let marker = p.root.join(format!("{COMPLETE}-{tag}"));
    if marker.is_file() {
        return Ok(());
    }
    let cache = cache();
    let _lock = paths::build_lock(&cache)?;
    if marker.is_file() {
        return Ok(());
    }
    let (name, version) = (&p.name, &p.version);
    let tmp = cache.join(format!(".fetch-{}-{name}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).context(|| format!("creating {}", tmp.display()))?;
    let result = (|| {
        eprintln!("[xtask] downloading {name}:{ARCH} {version} again for its {tag}");
        let deb = download_deb(&tmp, name, version)?;
        let out = tmp.join("root");
        std::fs::create_dir_all(&out).context(|| format!("creating {}", out.display()))?;
        extract(&deb, &out, members)?;
        merge_into(&out, &p.root)?;
        std::fs::write(&marker, members.join("\n") + "\n").context(|| format!("writing {}", marker.display()))
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// Moves everything of `from` into `to`, keeping what `to` has.
fn merge_into(from: &Path, to: &Path) -> Result<()> {
    for e in std::fs::read_dir(from).context(|| format!("reading {}", from.display()))?.flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() && dst.is_dir() {
            merge_into(&src, &dst)?;
        } else if !dst.exists() {
            std::fs::rename(&src, &dst).context(|| format!("moving {} to {}", src.display(), dst.display()))?;
        }
    }
    Ok(())
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
    fn module_names_and_compression() {
        assert_eq!(module_name("kernel/drivers/char/hw_random/virtio-rng.ko"), "virtio_rng");
        assert_eq!(module_name("kernel/drivers/virtio/virtio_pci.ko.xz"), "virtio_pci");
        assert_eq!(module_name("virtio_blk"), "virtio_blk");
        assert_eq!(split_compression("a/b.ko.xz"), Some(("a/b.ko", ".xz")));
        assert_eq!(split_compression("a/b.ko"), Some(("a/b.ko", "")));
        assert_eq!(split_compression("modules.builtin"), None);
        assert!(module_depends(b"not an ELF").is_err());
    }

    #[test]
    fn xen_image_names() {
        assert!(is_xen_image("xen-4.17-arm64"));
        assert!(!is_xen_image("xen-4.17-arm64.efi"));
        assert!(!is_xen_image("xen-4.17-arm64.config"));
    }
}
