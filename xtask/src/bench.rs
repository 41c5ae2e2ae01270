//! `cargo xtask bench`: how long Linux takes to reach userspace on three
//! stacks, side by side, in one run on one machine configuration:
//!
//! - **linux**: bare Linux, QEMU's `-kernel`/`-initrd` (entered at EL2,
//!   `virtualization=on` like the others);
//! - **xen**: Debian's Xen 4.17 with the same Linux as dom0 (direct path,
//!   [`crate::dom0::direct`]);
//! - **armature**: Armature with the same Linux as dom0 (direct path).
//!
//! The time is wall-clock, from QEMU's start to dom0's
//! [`crate::initramfs::USERSPACE_MARKER`]; each stack boots `runs` times,
//! the stacks taking turns, and the table gives median, min and max. A
//! stack that does not reach the marker (or whose run fails otherwise) is
//! reported as `failed: <reason>` and not retried; the others go on.
//! [`write_report`] writes `docs/performance.md`.

use crate::dom0::{self, Dom0, Hypervisor};
use crate::initramfs::USERSPACE_MARKER;
use crate::qemu::Qemu;
use crate::runner::{Ending, Outcome, RunOptions};
use crate::{Context, Error, Result, paths};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One of the compared stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// Bare Linux.
    Linux,
    /// Xen + Linux dom0.
    Xen,
    /// Armature + Linux dom0.
    Armature,
}

impl Stack {
    /// Every stack, in table order.
    pub const ALL: [Stack; 3] = [Stack::Linux, Stack::Xen, Stack::Armature];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Stack::Linux => "linux",
            Stack::Xen => "xen",
            Stack::Armature => "armature",
        }
    }

    /// Name for the table.
    pub fn title(self) -> &'static str {
        match self {
            Stack::Linux => "bare Linux",
            Stack::Xen => "Xen 4.17 + Linux dom0",
            Stack::Armature => "Armature + Linux dom0",
        }
    }

    /// Parses a short name.
    pub fn parse(s: &str) -> Result<Stack> {
        Stack::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| Error::new(format!("unknown stack `{s}` (expected linux, xen or armature)")))
    }
}

/// QEMU's instruction counting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Icount {
    /// None: multi-threaded TCG, one host thread per vCPU.
    Off,
    /// `-icount shift=<shift>,sleep=off` (`shift` is a number or `auto`).
    Shift(String),
}

impl Icount {
    /// Parses `off`, `auto` or a shift value.
    pub fn parse(s: &str) -> Result<Icount> {
        match s {
            "off" | "none" => Ok(Icount::Off),
            "auto" => Ok(Icount::Shift("auto".into())),
            n if n.parse::<u8>().is_ok_and(|n| n <= 10) => Ok(Icount::Shift(n.into())),
            _ => Err(Error::new(format!("--icount: expected off, auto or a shift 0-10, not `{s}`"))),
        }
    }

    /// The QEMU arguments.
    pub fn args(&self) -> Vec<String> {
        match self {
            Icount::Off => Vec::new(),
            Icount::Shift(s) => vec!["-icount".into(), format!("shift={s},sleep=off")],
        }
    }

    /// For the report.
    pub fn describe(&self) -> String {
        match self {
            Icount::Off => "off (multi-threaded TCG)".into(),
            Icount::Shift(s) => format!("`-icount shift={s},sleep=off`"),
        }
    }
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct Options {
    /// Boots per stack.
    pub runs: usize,
    /// The stacks.
    pub stacks: Vec<Stack>,
    /// Instruction counting.
    pub icount: Icount,
    /// GIC version.
    pub gic: u8,
    /// CPUs.
    pub smp: u32,
    /// RAM.
    pub memory: String,
    /// Time limit of one boot.
    pub timeout: Duration,
    /// Build Armature with the release profile.
    pub release: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            runs: 3,
            stacks: Stack::ALL.to_vec(),
            icount: Icount::Off,
            gic: 3,
            smp: 4,
            memory: "2G".into(),
            timeout: Duration::from_secs(120),
            release: true,
        }
    }
}

/// What one stack did.
#[derive(Clone, Debug, PartialEq)]
pub struct StackResult {
    /// The stack.
    pub stack: Stack,
    /// Time to the marker of each successful run.
    pub times: Vec<Duration>,
    /// dom0's `/proc/uptime` at the marker, per successful run.
    pub uptimes: Vec<String>,
    /// Why the stack failed, if it did.
    pub failure: Option<String>,
    /// The QEMU command (paths shortened).
    pub command: String,
}

impl StackResult {
    /// Median, min and max of the times.
    pub fn stats(&self) -> Option<(Duration, Duration, Duration)> {
        let mut t = self.times.clone();
        t.sort();
        Some((median(&t)?, *t.first()?, *t.last()?))
    }
}

/// The median of sorted values (the lower middle one for an even count).
pub fn median(sorted: &[Duration]) -> Option<Duration> {
    if sorted.is_empty() { None } else { Some(sorted[(sorted.len() - 1) / 2]) }
}

/// The inputs shared by every stack.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// Linux package and Image.
    pub kernel: crate::debian::Kernel,
    /// busybox package.
    pub busybox: crate::debian::Fetched,
    /// The initramfs.
    pub initrd: PathBuf,
    /// Xen package and image.
    pub xen: Option<(crate::debian::Fetched, PathBuf)>,
    /// Armature's image.
    pub armature: Option<PathBuf>,
    /// Armature's build error, reported in its row.
    pub armature_error: Option<String>,
}

/// Fetches and builds what `opts` needs.
pub fn prepare(opts: &Options) -> Result<Inputs> {
    let kernel = crate::debian::kernel()?;
    let (busybox, bb) = crate::debian::busybox()?;
    let initrd = crate::initramfs::dom0_initramfs(&bb, &kernel.modules)?;
    let xen = if opts.stacks.contains(&Stack::Xen) { Some(crate::debian::xen()?) } else { None };
    let (mut armature, mut armature_error) = (None, None);
    if opts.stacks.contains(&Stack::Armature) {
        let v = crate::Variant::new(crate::Arch::Aarch64).release(opts.release);
        match crate::build::build(&v, crate::build::CargoOutput::Capture) {
            Ok(img) => armature = Some(img.bin),
            Err(e) => armature_error = Some(format!("build failed: {}", first_line(e.message()))),
        }
    }
    Ok(Inputs { kernel, busybox, initrd, xen, armature, armature_error })
}

/// The machine every stack runs on.
pub fn machine(opts: &Options) -> Qemu {
    Qemu::aarch64().gic(opts.gic).smp(opts.smp).memory(opts.memory.clone()).args(opts.icount.args())
}

/// The QEMU command of `stack` (files in `dir`).
pub fn command(stack: Stack, opts: &Options, inputs: &Inputs, dir: &Path) -> Result<Qemu> {
    let q = machine(opts);
    let kernel = &inputs.kernel.image;
    match stack {
        Stack::Linux => Ok(dom0::bare(q, kernel, &inputs.initrd, dom0::BARE_ARGS)),
        Stack::Xen => {
            let (_, xen) = inputs.xen.as_ref().ok_or_else(|| Error::new("Xen was not fetched"))?;
            let d = Dom0::new(Hypervisor::Xen, kernel, &inputs.initrd, opts.smp);
            dom0::direct(q, xen, &d, dir)
        }
        Stack::Armature => {
            let image = inputs.armature.as_ref().ok_or_else(|| {
                Error::new(inputs.armature_error.clone().unwrap_or_else(|| "Armature was not built".into()))
            })?;
            let d = Dom0::new(Hypervisor::Armature, kernel, &inputs.initrd, opts.smp);
            dom0::direct(q, image, &d, dir)
        }
    }
}

/// Runs the benchmark; `progress` gets a line per boot.
pub fn run(opts: &Options, inputs: &Inputs, progress: &mut dyn FnMut(&str)) -> Result<Vec<StackResult>> {
    let mut results: Vec<StackResult> = Vec::new();
    let mut commands = Vec::new();
    for &stack in &opts.stacks {
        let dir = paths::scratch_dir(&format!("bench-{}", stack.name()))?;
        let (cmd, failure) = match command(stack, opts, inputs, &dir) {
            Ok(q) => (Some(q), None),
            Err(e) => (None, Some(first_line(e.message()))),
        };
        let shown = cmd.as_ref().map(|q| shorten(&q.command_line())).unwrap_or_default();
        results.push(StackResult { stack, times: Vec::new(), uptimes: Vec::new(), failure, command: shown });
        commands.push(cmd);
    }
    for round in 1..=opts.runs {
        for (r, cmd) in results.iter_mut().zip(&commands) {
            let Some(qemu) = cmd else { continue };
            if r.failure.is_some() {
                continue;
            }
            let log = paths::log_path(&format!("bench-{}-run{round}", r.stack.name()));
            let outcome = qemu.run(&dom0::expect(opts.timeout), &RunOptions::default().log_to(&log))?;
            match (outcome.verdict(), outcome.time_to(USERSPACE_MARKER)) {
                (Ok(()), Some(t)) => {
                    progress(&format!(
                        "{} run {round}/{}: {:.2} s to {USERSPACE_MARKER} ({})",
                        r.stack.name(),
                        opts.runs,
                        t.as_secs_f64(),
                        log.display()
                    ));
                    r.times.push(t);
                    r.uptimes.push(uptime(&outcome.log).unwrap_or_else(|| "?".into()));
                }
                _ => {
                    let why = failure_reason(&outcome);
                    progress(&format!(
                        "{} run {round}/{}: FAILED: {why} ({})",
                        r.stack.name(),
                        opts.runs,
                        log.display()
                    ));
                    r.failure = Some(why);
                }
            }
        }
    }
    Ok(results)
}

/// dom0's uptime at the marker, from `/init`'s `dom0: uptime <s> s` line.
fn uptime(log: &str) -> Option<String> {
    log.lines().find_map(|l| l.trim().strip_prefix("dom0: uptime ")?.strip_suffix(" s").map(str::to_string))
}

/// One line saying why a run did not count.
pub fn failure_reason(o: &Outcome) -> String {
    let last = o
        .log
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(|l| {
            if l.chars().count() > 90 {
                format!("{}…", l.chars().take(90).collect::<String>())
            } else {
                l.to_string()
            }
        })
        .unwrap_or_else(|| "(no console output)".into());
    let reached = o.time_to(USERSPACE_MARKER).is_some();
    let how = match &o.ending {
        Ending::Failed(m) => format!("failure marker {m:?}"),
        Ending::TimedOut if reached => {
            format!("reached userspace but did not power off within {:.0} s", o.elapsed.as_secs_f64())
        }
        Ending::TimedOut => format!("no {USERSPACE_MARKER} within {:.0} s", o.elapsed.as_secs_f64()),
        Ending::Idle => format!("console silent, no {USERSPACE_MARKER} after {:.0} s", o.elapsed.as_secs_f64()),
        Ending::Exited | Ending::Stopped if reached => {
            format!("reached userspace, then QEMU {}", o.summary())
        }
        Ending::Exited | Ending::Stopped => format!("QEMU {} without reaching userspace", o.summary()),
    };
    format!("{how}; last line: `{}`", last.replace('`', "'"))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// A command line with the workspace and cache paths shortened.
fn shorten(line: &str) -> String {
    let root = paths::workspace_root().display().to_string();
    let cache = paths::cache_dir().display().to_string();
    line.replace(&cache, "$CACHE").replace(&format!("{root}/"), "")
}

/// The facts the report states besides the times.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// UTC date and time.
    pub date: String,
    /// Host CPU and count.
    pub host: String,
    /// QEMU's version line.
    pub qemu: String,
    /// Armature's version and commit.
    pub armature: String,
    /// Package versions: (what, version).
    pub versions: Vec<(String, String)>,
    /// Image sizes: (what, bytes).
    pub sizes: Vec<(String, u64)>,
}

/// Gathers [`Facts`].
pub fn facts(opts: &Options, inputs: &Inputs) -> Facts {
    let out = |prog: &str, args: &[&str]| -> String {
        std::process::Command::new(prog)
            .args(args)
            .current_dir(paths::workspace_root())
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mut versions = vec![
        ("Linux".to_string(), inputs.kernel.package.describe()),
        ("busybox".to_string(), inputs.busybox.describe()),
    ];
    if let Some((p, _)) = &inputs.xen {
        versions.push(("Xen".into(), p.describe()));
    }
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut sizes = Vec::new();
    if let Some(a) = &inputs.armature {
        let profile = if opts.release { "release" } else { "debug" };
        sizes.push((format!("Armature `armature.bin` ({profile})"), size(a)));
    }
    if let Some((_, x)) = &inputs.xen {
        sizes.push((format!("Xen `{}`", x.file_name().unwrap_or_default().to_string_lossy()), size(x)));
    }
    sizes.push(("Linux `Image`".into(), size(&inputs.kernel.image)));
    sizes.push(("dom0 initramfs (uncompressed cpio)".into(), size(&inputs.initrd)));
    Facts {
        date: out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        host: format!("{cpu}, {cores} host CPU(s)"),
        qemu: out("qemu-system-aarch64", &["--version"]).lines().next().unwrap_or("").to_string(),
        armature: format!("{} (commit {})", env!("CARGO_PKG_VERSION"), out("git", &["rev-parse", "--short", "HEAD"])),
        versions,
        sizes,
    }
}

/// `docs/performance.md`.
pub fn markdown(opts: &Options, facts: &Facts, results: &[StackResult]) -> String {
    let mut s = String::new();
    let secs = |d: Duration| format!("{:.2}", d.as_secs_f64());
    let _ = writeln!(s, "# Performance\n");
    let _ = writeln!(
        s,
        "Written by `./x bench` (`cargo xtask bench`, `xtask/src/bench.rs`); run it again to refresh this\n\
         page. Wall-clock time from QEMU's start to the first line of dom0's userspace\n\
         (`{USERSPACE_MARKER}`, printed by the initramfs' `/init`), {} boot(s) per stack, the\n\
         stacks taking turns. Every stack boots the same Debian kernel and initramfs on the same\n\
         machine; the hypervisors are loaded directly by QEMU (`-kernel`, `-dtb` with the\n\
         `/chosen` module nodes, `-device loader` for the kernel and the initramfs). QEMU runs\n\
         under TCG, so the numbers measure emulation on this host, not hardware: compare the\n\
         rows of one run, not numbers across runs or hosts.\n",
        opts.runs
    );
    let _ = writeln!(s, "- Date: {}", facts.date);
    let _ = writeln!(s, "- Host: {}", facts.host);
    let _ = writeln!(s, "- QEMU: {}", facts.qemu);
    let _ = writeln!(
        s,
        "- Machine: `virt`, GICv{}, `virtualization=on`, cortex-a57, {} CPUs, {} RAM; instruction counting: {}",
        opts.gic,
        opts.smp,
        opts.memory,
        opts.icount.describe()
    );
    let _ = writeln!(s, "- Armature: {}", facts.armature);
    for (what, v) in &facts.versions {
        let _ = writeln!(s, "- {what}: {v}");
    }
    let _ = writeln!(s, "\n## Time to dom0 userspace\n");
    let _ = writeln!(s, "| Stack | Median (s) | Min (s) | Max (s) | Runs (s) | Guest uptime at the marker (s) |");
    let _ = writeln!(s, "|---|---:|---:|---:|---|---|");
    for r in results {
        match (r.stats(), &r.failure) {
            (Some((med, min, max)), None) => {
                let runs: Vec<String> = r.times.iter().map(|&t| secs(t)).collect();
                let _ = writeln!(
                    s,
                    "| {} | **{}** | {} | {} | {} | {} |",
                    r.stack.title(),
                    secs(med),
                    secs(min),
                    secs(max),
                    runs.join(", "),
                    r.uptimes.join(", ")
                );
            }
            (_, failure) => {
                let why = failure.clone().unwrap_or_else(|| "no run".into()).replace('|', "\\|");
                let _ = writeln!(s, "| {} | failed: {why} | | | | |", r.stack.title());
            }
        }
    }
    let _ = writeln!(s, "\n## Image sizes\n");
    let _ = writeln!(s, "| File | Bytes | KiB |");
    let _ = writeln!(s, "|---|---:|---:|");
    for (what, bytes) in &facts.sizes {
        let _ = writeln!(s, "| {what} | {bytes} | {} |", bytes.div_ceil(1024));
    }
    let _ = writeln!(s, "\n## QEMU commands\n");
    for r in results {
        if !r.command.is_empty() {
            let _ = writeln!(s, "{}:\n\n```sh\n{}\n```\n", r.stack.title(), r.command);
        }
    }
    s.push_str(NOTES);
    s
}

/// The fixed part of the report: how the options were chosen.
const NOTES: &str = "\
## Notes

- `$CACHE` is the download cache (`$ARMATURE_CACHE`, else `$XDG_CACHE_HOME/armature`, else
  `~/.cache/armature`), where `./x` keeps Debian's packages (`xtask/src/debian.rs`); paths
  without a directory are under `target/armature/`.
- Command lines: bare Linux `console=ttyAMA0 rdinit=/init panic=-1`; Xen
  `console=dtuart dtuart=/pl011@9000000 dom0_mem=512M dom0_max_vcpus=<N> bootscrub=0 vwfi=native`
  with dom0 `console=hvc0 earlycon=xenboot rdinit=/init panic=-1`; Armature with dom0
  `console=ttyAMA0 earlycon=pl011,0x9000000 rdinit=/init panic=-1`. Xen runs with
  `vwfi=native` because its default (`vwfi=trap`) makes an SMP dom0 boot 5-20 times slower
  and erratically under TCG (wake-up latency of blocked vCPUs).
- Instruction counting: `-icount shift=0,sleep=off` (deterministic instruction time) makes
  bare Linux runs repeatable, but Xen with more than one CPU hangs under it, and
  `shift=auto` makes the hypervisor stacks about ten times slower. Measured on this host
  (one boot each, GICv3, 4 CPUs, 2G): bare Linux 3.2 s without icount, 3.2 s with
  `shift=auto`, 2.2 s with `shift=0`; Xen + dom0 3.6-4.4 s without icount, 41.4 s with
  `shift=auto`, and with `shift=0` it hangs after `(XEN) CPU 1 booted.` (as the refstack
  found). The default is therefore multi-threaded TCG without icount (`--icount off`);
  `./x bench --icount auto` or `--icount 0` measures the other modes.
- A stack that does not reach the marker is reported as `failed: <reason>` with the last
  console line; its console log is in `target/armature/logs/bench-<stack>-run<N>.log`.
";

/// Writes the report to `path`.
pub fn write_report(path: &Path, text: &str) -> Result<()> {
    paths::write_atomic(path, text.as_bytes()).context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let d = |s: f64| Duration::from_secs_f64(s);
        assert_eq!(median(&[d(1.0), d(2.0), d(9.0)]), Some(d(2.0)));
        assert_eq!(median(&[d(1.0), d(2.0)]), Some(d(1.0)));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn icount_options() {
        assert_eq!(Icount::parse("off").unwrap().args(), Vec::<String>::new());
        assert_eq!(Icount::parse("0").unwrap().args(), ["-icount", "shift=0,sleep=off"]);
        assert_eq!(Icount::parse("auto").unwrap().args(), ["-icount", "shift=auto,sleep=off"]);
        assert!(Icount::parse("fast").is_err());
        assert_eq!(Stack::parse("xen").unwrap(), Stack::Xen);
        assert!(Stack::parse("kvm").is_err());
    }

    #[test]
    fn table_has_a_row_per_stack_and_failures() {
        let d = |s: f64| Duration::from_secs_f64(s);
        let results = vec![
            StackResult {
                stack: Stack::Linux,
                times: vec![d(3.0), d(2.0), d(4.0)],
                uptimes: vec!["1.1".into()],
                failure: None,
                command: "qemu-system-aarch64 -kernel x".into(),
            },
            StackResult {
                stack: Stack::Armature,
                times: vec![],
                uptimes: vec![],
                failure: Some("no marker | within 120 s".into()),
                command: String::new(),
            },
        ];
        let facts = Facts { sizes: vec![("Armature".into(), 1_100_000)], ..Facts::default() };
        let md = markdown(&Options::default(), &facts, &results);
        assert!(md.contains("| bare Linux | **3.00** | 2.00 | 4.00 | 3.00, 2.00, 4.00 | 1.1 |"), "{md}");
        assert!(md.contains("| Armature + Linux dom0 | failed: no marker \\| within 120 s | | | | |"), "{md}");
        assert!(md.contains("| Armature | 1100000 | 1075 |"), "{md}");
        assert!(md.contains("```sh\nqemu-system-aarch64 -kernel x\n```"), "{md}");
    }
}
