//! `cargo xtask`: build Armature, run it under QEMU, run the tests.
//!
//! A thin command line over the `xtask` library; see `cargo xtask help`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use xtask::bench::{self, Icount, Stack};
use xtask::build::{self, CargoOutput};
use xtask::dom0::{self, Dom0, Hypervisor};
use xtask::runner::{Ending, Expect, Outcome, RunOptions};
use xtask::shim::ShimBoot;
use xtask::toolchain::Toolchain;
use xtask::uboot::{self, BootScript, Environment};
use xtask::{Arch, Error, Qemu, Result, Variant, fuzz, paths};

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  build   build the boot image
            --arch aarch64|armv7   (default aarch64)
            --release              release profile
            --features f1,f2       extra cargo features
          output: target/armature/<arch>[-<features>][-release]/armature.{bin,elf}
  run     build, then boot on QEMU virt through U-Boot (booti/bootz from a
          virtio disk), streaming the console; ends when QEMU exits.
          On aarch64 Armature boots Debian's arm64 Linux as dom0 (fetched with
          apt into the download cache, see below) with a busybox initramfs,
          and dom0 starts a shell on the console: Ctrl-A three times switches
          the input to Armature's debug keys and back, Ctrl-] x quits QEMU
          (QEMU's escape key moved off Ctrl-A with -echr)
            --arch, --release, --features as for build
            --gic 2|3              GIC version (default 3 on aarch64, 2 on armv7)
            --smp N                CPUs (default 4 on aarch64, 2 on armv7)
            --memory SIZE          RAM, e.g. 512M, 2G (default 2G with dom0, else 1G)
            --direct               load the image with QEMU -kernel instead of U-Boot
                                   (dom0's kernel and initramfs with -device loader)
            --load ADDR            aarch64: load the image at ADDR (QEMU's generic
                                   loader) and enter it through the shim (-kernel);
                                   no dom0
            --bootargs \"...\"       the hypervisor's command line
            --no-dom0              boot Armature alone (no Linux)
            --poweroff             dom0 prints its report and powers off (no shell);
                                   QEMU's exit status is the result. The default
                                   when stdin is not a terminal
            --dom0-bootargs \"...\"  dom0's command line (default
                                   \"console=ttyAMA0 earlycon=pl011,0x9000000 rdinit=/init panic=-1\")
            --hv armature|xen      the hypervisor under dom0 (xen: Debian's Xen 4.17,
                                   to check the recipes; default armature)
            --timeout SECONDS      kill QEMU after this long (default 300; not
                                   for the interactive shell)
            --slow-env             keep U-Boot's default environment (2 s countdown)
  bench   boot time to dom0 userspace of bare Linux, Xen + Linux dom0 and
          Armature + Linux dom0 (virt, GICv3, cortex-a57, 4 CPUs, 2G, direct
          loading); writes a markdown table (default docs/performance.md)
            --runs N               boots per stack (default 3; median, min, max)
            --stacks linux,xen,armature   which stacks (default all three)
            --icount off|auto|0..10  QEMU -icount shift=…,sleep=off (default off)
            --gic 2|3, --smp N, --memory SIZE   the machine
            --timeout SECONDS      per boot (default 120)
            --debug                Armature's debug build (default release)
            --out FILE             where the table goes (default docs/performance.md)
  test    cargo test --workspace --no-fail-fast (host unit tests and the
          QEMU tests), then a smoke run of every fuzz target (about a minute;
          installs the nightly toolchain and cargo-fuzz if missing);
          arguments after `--` go to cargo test
            --no-fuzz              skip the fuzz smoke run
  fuzz    run fuzz targets (fuzz/, cargo-fuzz on nightly), one after the
          other; logs in target/armature/fuzz-logs/
            [TARGET]               dt_plan, dom0_dt, mmio_decode, vgic or cmdline
                                   (default: all)
            --runs N               executions per target (default 10000000)
            --seconds S            run for S seconds instead
            --smoke                only the smoke run of `test` (every target 12 s)
  help    this text

environment:
  ARMATURE_TOOLCHAIN=rustup|debian|auto   toolchain that builds the image (default auto)
  ARMATURE_CACHE=DIR     download cache (default $XDG_CACHE_HOME/armature or
                         ~/.cache/armature): Debian's arm64 kernel, busybox, Xen
";

/// Options of `build` and `run`.
#[derive(Debug)]
struct Options {
    arch: Arch,
    release: bool,
    features: Vec<String>,
    gic: Option<u8>,
    smp: Option<u32>,
    memory: Option<String>,
    direct: bool,
    load: Option<u64>,
    bootargs: Option<String>,
    timeout: Duration,
    fast_env: bool,
    no_dom0: bool,
    poweroff: bool,
    dom0_bootargs: Option<String>,
    hv: Hypervisor,
}

fn parse_options(args: &[String], allow_run: bool) -> Result<Options> {
    let mut o = Options {
        arch: Arch::Aarch64,
        release: false,
        features: Vec::new(),
        gic: None,
        smp: None,
        memory: None,
        direct: false,
        load: None,
        bootargs: None,
        timeout: Duration::from_secs(300),
        fast_env: true,
        no_dom0: false,
        poweroff: false,
        dom0_bootargs: None,
        hv: Hypervisor::Armature,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String> {
            inline.clone().or_else(|| it.next().cloned()).ok_or_else(|| Error::new(format!("{flag} needs a value")))
        };
        let bad = |what: &str, v: &str| Error::new(format!("{flag}: {what}, not `{v}`"));
        match flag {
            "--arch" => o.arch = value()?.parse()?,
            "--release" => o.release = true,
            "--features" => o.features.extend(value()?.split([',', ' ']).map(str::to_string)),
            "--gic" if allow_run => {
                let v = value()?;
                o.gic = Some(v.parse().ok().filter(|g| matches!(g, 2 | 3)).ok_or_else(|| bad("expected 2 or 3", &v))?);
            }
            "--smp" if allow_run => {
                let v = value()?;
                o.smp = Some(v.parse().ok().filter(|&n| n > 0).ok_or_else(|| bad("expected a CPU count", &v))?);
            }
            "--memory" | "-m" if allow_run => o.memory = Some(value()?),
            "--direct" if allow_run => o.direct = true,
            "--load" if allow_run => {
                let v = value()?;
                let hex = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X"));
                let addr = match hex {
                    Some(h) => u64::from_str_radix(&h.replace('_', ""), 16).ok(),
                    None => v.parse().ok(),
                };
                o.load = Some(addr.ok_or_else(|| bad("expected an address such as 0x40001000", &v))?);
            }
            "--bootargs" | "--append" if allow_run => o.bootargs = Some(value()?),
            "--timeout" if allow_run => {
                let v = value()?;
                o.timeout = Duration::from_secs(v.parse().map_err(|_| bad("expected seconds", &v))?);
            }
            "--slow-env" if allow_run => o.fast_env = false,
            "--no-dom0" if allow_run => o.no_dom0 = true,
            "--poweroff" if allow_run => o.poweroff = true,
            "--dom0-bootargs" if allow_run => o.dom0_bootargs = Some(value()?),
            "--hv" if allow_run => o.hv = value()?.parse()?,
            _ => return Err(Error::new(format!("unknown option `{arg}`\n\n{USAGE}"))),
        }
    }
    Ok(o)
}

fn variant(o: &Options) -> Variant {
    Variant::new(o.arch).release(o.release).features(&o.features)
}

fn cmd_build(args: &[String]) -> Result<ExitCode> {
    let o = parse_options(args, false)?;
    let v = variant(&o);
    eprintln!("Building {} with {}", v.name(), Toolchain::current()?.name());
    let image = build::build(&v, CargoOutput::Inherit)?;
    let rel = |p: &PathBuf| p.strip_prefix(paths::workspace_root()).unwrap_or(p).display().to_string();
    eprintln!(
        "Built {}: {} ({} bytes, {:#x} bytes in memory, {} relative relocations)\n       ELF: {}",
        v.name(),
        rel(&image.bin),
        image.size,
        image.image_end,
        image.relocations,
        rel(&image.elf)
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether `run` boots Linux as dom0 with these options, or says why not.
fn wants_dom0(o: &Options) -> Result<bool> {
    let why_not = if o.no_dom0 {
        Some("--no-dom0")
    } else if o.arch != Arch::Aarch64 {
        Some("dom0 Linux is AArch64 only")
    } else if o.load.is_some() {
        Some("--load")
    } else {
        None
    };
    match why_not {
        Some(why) if o.hv != Hypervisor::Armature => Err(Error::new(format!("--hv {}: not with {why}", o.hv))),
        Some(_) => Ok(false),
        None => Ok(true),
    }
}

fn cmd_run(args: &[String]) -> Result<ExitCode> {
    let o = parse_options(args, true)?;
    if wants_dom0(&o)? {
        return run_dom0(&o);
    }
    let v = variant(&o);
    eprintln!("Building {} with {}", v.name(), Toolchain::current()?.name());
    let image = build::build(&v, CargoOutput::Inherit)?;
    let mut qemu = Qemu::new(o.arch);
    if let Some(g) = o.gic {
        qemu = qemu.gic(g);
    }
    if let Some(n) = o.smp {
        qemu = qemu.smp(n);
    }
    if let Some(m) = &o.memory {
        qemu = qemu.memory(m.clone());
    }
    if let Some(load) = o.load {
        // Like --direct, but the image goes to `load` and the shim jumps there.
        let dir = paths::scratch_dir(&format!("run-{}", v.name()))?;
        let dt = qemu.dump_dtb(&dir.join("virt.dtb"))?;
        let &(base, size) = dt.memory_banks().first().ok_or_else(|| Error::new("QEMU's device tree has no memory"))?;
        qemu = ShimBoot::prepare(&dir, &image, load, base, size)?.apply(qemu);
        if let Some(b) = &o.bootargs {
            qemu = qemu.append(b.clone());
        }
    } else if o.direct {
        qemu = qemu.kernel(&image.bin);
        if let Some(b) = &o.bootargs {
            qemu = qemu.append(b.clone());
        }
    } else {
        let dir = paths::scratch_dir(&format!("run-{}", v.name()))?;
        let mut script = BootScript::new(o.arch);
        if let Some(b) = &o.bootargs {
            script = script.bootargs(b.clone());
        }
        let env = if o.fast_env { Environment::Fast } else { Environment::BuiltIn };
        qemu = uboot::prepare(&dir, &image.bin, &script, env)?.apply(qemu);
    }
    let log = paths::log_path(&format!("run-{}", v.name()));
    eprintln!("$ {}", qemu.command_line());
    let expect = Expect::new().clean_exit(true).timeout(o.timeout);
    let outcome = qemu.run(&expect, &RunOptions::default().echo(true).log_to(&log))?;
    eprintln!("\n[xtask] QEMU {}; console log in {}", outcome.summary(), log.display());
    exit_code(&outcome)
}

fn exit_code(outcome: &Outcome) -> Result<ExitCode> {
    match outcome.verdict() {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(f) => {
            for r in &f.reasons {
                eprintln!("[xtask] FAILED: {r}");
            }
            if let Ending::TimedOut = outcome.ending {
                eprintln!("[xtask] (use --timeout to allow longer runs)");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `run` with Linux as dom0 of Armature (or Xen, `--hv xen`).
fn run_dom0(o: &Options) -> Result<ExitCode> {
    let interactive = !o.poweroff && std::io::stdin().is_terminal();
    if !o.poweroff && !interactive {
        eprintln!("[xtask] stdin is not a terminal: dom0 prints its report and powers off (as with --poweroff)");
    }
    eprintln!("[xtask] fetching Debian's arm64 Linux and busybox (cache: {})", paths::cache_dir().display());
    let kernel = xtask::debian::kernel()?;
    let (busybox, bb) = xtask::debian::busybox()?;
    let initrd = xtask::initramfs::dom0_initramfs(&bb, &kernel.modules)?;
    eprintln!("[xtask] dom0: {} ({}), {}", kernel.package.describe(), kernel.image.display(), busybox.describe());
    let (hv_image, image_file) = match o.hv {
        Hypervisor::Armature => {
            let v = variant(o);
            eprintln!("Building {} with {}", v.name(), Toolchain::current()?.name());
            (build::build(&v, CargoOutput::Inherit)?.bin, xtask::uboot::IMAGE_FILE)
        }
        Hypervisor::Xen => {
            let (p, xen) = xtask::debian::xen()?;
            eprintln!("[xtask] hypervisor: {}", p.describe());
            (xen, "xen")
        }
    };
    let mut qemu = Qemu::new(Arch::Aarch64).memory(o.memory.clone().unwrap_or_else(|| "2G".into()));
    if let Some(g) = o.gic {
        qemu = qemu.gic(g);
    }
    if let Some(n) = o.smp {
        qemu = qemu.smp(n);
    }
    let mut d = Dom0::new(o.hv, &kernel.image, &initrd, qemu.cpus());
    if let Some(b) = &o.bootargs {
        d.hv_args = match o.hv {
            Hypervisor::Armature => b.clone(),
            Hypervisor::Xen => format!("{} {b}", d.hv_args),
        };
    }
    if let Some(b) = &o.dom0_bootargs {
        d.dom0_args = b.clone();
    }
    let path = if o.direct { "direct" } else { "uboot" };
    let name = format!("run-dom0-{}-{path}", o.hv);
    let env = if o.fast_env { Environment::Fast } else { Environment::BuiltIn };
    let machine = dom0::RunMachine { hv_image: &hv_image, image_file, direct: o.direct, env, interactive, name: &name };
    let (qemu, log) = dom0::run_machine(qemu, d, &machine)?;
    eprintln!("$ {}", qemu.command_line());
    if interactive {
        return run_interactive(&qemu, &log);
    }
    let outcome = qemu.run(&dom0::expect(o.timeout), &RunOptions::default().echo(true).log_to(&log))?;
    eprintln!("\n[xtask] QEMU {}; console log in {}", outcome.summary(), log.display());
    let report = dom0::Report::parse(&outcome.log);
    let mut problems = report.problems(qemu.cpus());
    problems.extend(report.device_problems(dom0::DATA_DISK_MD5));
    for p in &problems {
        eprintln!("[xtask] FAILED: dom0's report: {p}");
    }
    match exit_code(&outcome)? {
        code if problems.is_empty() => Ok(code),
        _ => Ok(ExitCode::FAILURE),
    }
}

/// What `run` says before an interactive session: the keys.
fn interactive_banner() -> String {
    let esc = xtask::qemu::ESCAPE.name;
    format!(
        "[xtask] interactive: dom0 starts a shell on the console; `poweroff -f` there, or {esc} x, ends QEMU.\n\
         [xtask] Ctrl-A three times switches the input to Armature's debug keys ('h' lists them) and back; \
         {esc} is QEMU's escape key ({esc} h: its keys)"
    )
}

/// Runs QEMU in the foreground with the terminal as its console.
fn run_interactive(qemu: &Qemu, log: &Path) -> Result<ExitCode> {
    eprintln!("{}", interactive_banner());
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::new(format!("creating {}: {e}", dir.display())))?;
    }
    let mut cmd = std::process::Command::new(qemu.program());
    cmd.args(qemu.arguments());
    let status = cmd.status().map_err(|e| Error::new(format!("starting {}: {e}", qemu.program())))?;
    eprintln!("\n[xtask] QEMU exited with {status}; console log in {}", log.display());
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn cmd_bench(args: &[String]) -> Result<ExitCode> {
    let mut opts = bench::Options::default();
    let mut out = paths::workspace_root().join("docs/performance.md");
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String> {
            inline.clone().or_else(|| it.next().cloned()).ok_or_else(|| Error::new(format!("{flag} needs a value")))
        };
        let bad = |what: &str, v: &str| Error::new(format!("{flag}: {what}, not `{v}`"));
        match flag {
            "--runs" => {
                let v = value()?;
                opts.runs = v.parse().ok().filter(|&n| n > 0).ok_or_else(|| bad("expected a count", &v))?;
            }
            "--stacks" => opts.stacks = value()?.split(',').map(Stack::parse).collect::<Result<_>>()?,
            "--icount" => opts.icount = Icount::parse(&value()?)?,
            "--gic" => {
                let v = value()?;
                opts.gic = v.parse().ok().filter(|g| matches!(g, 2 | 3)).ok_or_else(|| bad("expected 2 or 3", &v))?;
            }
            "--smp" => {
                let v = value()?;
                opts.smp = v.parse().ok().filter(|&n| n > 0).ok_or_else(|| bad("expected a CPU count", &v))?;
            }
            "--memory" | "-m" => opts.memory = value()?,
            "--timeout" => {
                let v = value()?;
                opts.timeout = Duration::from_secs(v.parse().map_err(|_| bad("expected seconds", &v))?);
            }
            "--debug" => opts.release = false,
            "--out" => out = PathBuf::from(value()?),
            _ => return Err(Error::new(format!("unknown option `{arg}`\n\n{USAGE}"))),
        }
    }
    eprintln!("[xtask] bench: fetching and building (cache: {})", paths::cache_dir().display());
    let inputs = bench::prepare(&opts)?;
    let results = bench::run(&opts, &inputs, &mut |line| eprintln!("[xtask] bench: {line}"))?;
    let facts = bench::facts(&opts, &inputs);
    let text = bench::markdown(&opts, &facts, &results);
    bench::write_report(&out, &text)?;
    eprintln!("[xtask] bench: wrote {}", out.display());
    for r in &results {
        match (r.stats(), &r.failure) {
            (Some((med, min, max)), None) => eprintln!(
                "[xtask] bench: {:<9} median {:.2} s (min {:.2}, max {:.2})",
                r.stack.name(),
                med.as_secs_f64(),
                min.as_secs_f64(),
                max.as_secs_f64()
            ),
            (_, f) => eprintln!("[xtask] bench: {:<9} failed: {}", r.stack.name(), f.as_deref().unwrap_or("no run")),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_test(args: &[String]) -> Result<ExitCode> {
    let (fuzz, args) = match args.first().map(String::as_str) {
        Some("--no-fuzz") => (false, &args[1..]),
        _ => (true, args),
    };
    let rest = match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        None => args,
        Some(_) => return Err(Error::new(format!("test: put cargo test arguments after `--`\n\n{USAGE}"))),
    };
    let toolchain = Toolchain::current()?;
    let mut cmd = toolchain.cargo();
    // --no-fail-fast: one failing test binary must not hide the others' results.
    cmd.args(["test", "--workspace", "--no-fail-fast"]).args(rest);
    eprintln!("Running cargo test --workspace --no-fail-fast {} ({})", rest.join(" "), toolchain.name());
    let status = cmd.status().map_err(|e| Error::new(format!("running cargo test: {e}")))?;
    let fuzz_ok = if fuzz {
        eprintln!("Running the fuzz smoke run ({} s per target; --no-fuzz skips it)", fuzz::SMOKE_SECONDS);
        match fuzz::smoke() {
            Ok(ok) => ok,
            Err(e) => {
                eprintln!("error: fuzz smoke run: {e}");
                false
            }
        }
    } else {
        true
    };
    Ok(if status.success() && fuzz_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn cmd_fuzz(args: &[String]) -> Result<ExitCode> {
    let mut targets: Vec<&'static str> = Vec::new();
    let mut limit = fuzz::Limit::Runs(10_000_000);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut number = |what: &str| -> Result<u64> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Error::new(format!("fuzz: {what} needs a number\n\n{USAGE}")))
        };
        match a.as_str() {
            "--smoke" => {
                return Ok(if fuzz::smoke()? { ExitCode::SUCCESS } else { ExitCode::FAILURE });
            }
            "--runs" => limit = fuzz::Limit::Runs(number("--runs")?),
            "--seconds" => limit = fuzz::Limit::Seconds(number("--seconds")?),
            t => match fuzz::TARGETS.iter().find(|n| **n == t) {
                Some(n) => targets.push(n),
                None => {
                    return Err(Error::new(format!("fuzz: no target `{t}` (targets: {})", fuzz::TARGETS.join(", "))));
                }
            },
        }
    }
    if targets.is_empty() {
        targets = fuzz::TARGETS.to_vec();
    }
    let tools = fuzz::ensure_tools()?;
    fuzz::build(&tools)?;
    let mut results = Vec::new();
    for t in targets {
        let log = paths::target_dir().join("armature/fuzz-logs").join(format!("{t}.log"));
        eprintln!("[xtask] fuzz: {t} ({limit:?}), log {}", log.display());
        results.push(fuzz::run(&tools, t, limit, &log, true)?);
    }
    for r in &results {
        eprintln!("[xtask] fuzz: {}", fuzz::summary(r));
    }
    Ok(if results.iter().all(|r| r.ok) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => ("help", &[][..]),
    };
    let result = match cmd {
        "build" => cmd_build(rest),
        "run" => cmd_run(rest),
        "test" => cmd_test(rest),
        "bench" => cmd_bench(rest),
        "fuzz" => cmd_fuzz(rest),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(Error::new(format!("unknown command `{other}`\n\n{USAGE}"))),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn build_options() {
        let o = parse_options(&args("--arch armv7 --release --features=crashtest,platform-fvp"), false).unwrap();
        assert_eq!(variant(&o).name(), "armv7-crashtest+platform-fvp-release");
        assert!(parse_options(&args("--smp 2"), false).unwrap_err().message().contains("unknown option `--smp`"));
        assert!(parse_options(&args("--arch"), false).unwrap_err().message().contains("--arch needs a value"));
    }

    #[test]
    fn run_options() {
        let o = parse_options(&args("--gic=2 --smp 1 -m 2G --direct --timeout 9 --slow-env"), true).unwrap();
        assert_eq!((o.gic, o.smp, o.memory.as_deref()), (Some(2), Some(1), Some("2G")));
        assert!(o.direct && !o.fast_env);
        assert_eq!(o.timeout, Duration::from_secs(9));
        assert!(parse_options(&args("--gic 4"), true).unwrap_err().message().contains("expected 2 or 3"));
        assert!(parse_options(&args("--smp 0"), true).is_err());
        assert_eq!(parse_options(&args("--load 0x4000_1000"), true).unwrap().load, Some(0x4000_1000));
        assert_eq!(parse_options(&args("--load=1073745920"), true).unwrap().load, Some(0x4000_1000));
        assert!(parse_options(&args("--load 0xzz"), true).unwrap_err().message().contains("expected an address"));
        assert!(parse_options(&args("--load 0x40001000"), false).is_err());
    }

    #[test]
    fn dom0_options() {
        let o = parse_options(&args("--poweroff --hv xen --dom0-bootargs=console=hvc0"), true).unwrap();
        assert!(o.poweroff && !o.no_dom0);
        assert_eq!((o.hv, o.dom0_bootargs.as_deref()), (Hypervisor::Xen, Some("console=hvc0")));
        assert!(wants_dom0(&o).unwrap());
        assert!(!wants_dom0(&parse_options(&args("--no-dom0"), true).unwrap()).unwrap());
        assert!(!wants_dom0(&parse_options(&args("--arch armv7"), true).unwrap()).unwrap());
        assert!(!wants_dom0(&parse_options(&args("--load 0x40001000"), true).unwrap()).unwrap());
        assert!(wants_dom0(&parse_options(&args("--no-dom0 --hv xen"), true).unwrap()).is_err());
        assert!(parse_options(&args("--hv kvm"), true).is_err());
        assert!(parse_options(&args("--no-dom0"), false).is_err());
    }
}
