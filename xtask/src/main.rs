//! `cargo xtask`: build Armature, run it under QEMU, run the tests.
//!
//! A thin command line over the `xtask` library; see `cargo xtask help`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use xtask::build::{self, CargoOutput};
use xtask::runner::{Ending, Expect, RunOptions};
use xtask::shim::ShimBoot;
use xtask::toolchain::Toolchain;
use xtask::uboot::{self, BootScript, Environment};
use xtask::{Arch, Error, Qemu, Result, Variant, paths};

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  build   build the boot image
            --arch aarch64|armv7   (default aarch64)
            --release              release profile
            --features f1,f2       extra cargo features
          output: target/armature/<arch>[-<features>][-release]/armature.{bin,elf}
  run     build, then boot on QEMU virt through U-Boot (booti/bootz from a
          virtio disk), streaming the console; ends when QEMU exits
            --arch, --release, --features as for build
            --gic 2|3              GIC version (default 3 on aarch64, 2 on armv7)
            --smp N                CPUs (default 4 on aarch64, 2 on armv7)
            --memory SIZE          RAM, e.g. 512M, 2G (default 1G)
            --direct               load the image with QEMU -kernel instead of U-Boot
            --load ADDR            aarch64: load the image at ADDR (QEMU's generic
                                   loader) and enter it through the shim (-kernel)
            --bootargs \"...\"       Armature's command line
            --timeout SECONDS      kill QEMU after this long (default 300)
            --slow-env             keep U-Boot's default environment (2 s countdown)
  test    cargo test --workspace --no-fail-fast (host unit tests and the
          QEMU tests); arguments after `--` go to cargo test
  help    this text

environment:
  ARMATURE_TOOLCHAIN=rustup|debian|auto   toolchain that builds the image (default auto)
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

fn cmd_run(args: &[String]) -> Result<ExitCode> {
    let o = parse_options(args, true)?;
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

fn cmd_test(args: &[String]) -> Result<ExitCode> {
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
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
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
}
