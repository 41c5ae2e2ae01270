//! Fuzzing: `cargo xtask fuzz` (long runs) and the smoke run of `cargo xtask
//! test`, over the cargo-fuzz targets in `fuzz/` (libFuzzer).
//!
//! The fuzz crate is a workspace of its own, built with a nightly toolchain
//! (cargo-fuzz needs one) that nothing else uses: the main workspace stays on
//! the pinned stable toolchain. What is missing is installed on first use:
//! rustup's `nightly` toolchain (`rustup toolchain install nightly`) and
//! cargo-fuzz (`cargo install --locked cargo-fuzz`); builds are cached in
//! `fuzz/target/`. Targets run without a sanitizer (`-s none`) and without
//! comparison tracing (`--no-trace-compares`): the code under test is safe
//! Rust, so what the fuzzer looks for is panics, overflows (overflow checks
//! and debug assertions are on in the fuzz profile) and broken invariants,
//! and the runs are several times faster (comparison tracing took 70% of
//! `dt_plan`'s time).
//!
//! Each target runs on a working corpus `fuzz/target/corpus/<target>/`
//! (where libFuzzer saves what it finds) with the committed seeds of
//! `fuzz/corpus/<target>/` as a second, read-only, corpus directory. Crash
//! inputs go to `fuzz/artifacts/<target>/`.

use crate::paths::{find_program, workspace_root};
use crate::{Context, Error, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The fuzz targets, in the order they run.
pub const TARGETS: [&str; 5] = ["dt_plan", "dom0_dt", "mmio_decode", "vgic", "cmdline"];

/// Seconds each target runs in the smoke run of `cargo xtask test`.
pub const SMOKE_SECONDS: u64 = 12;

/// The rustup toolchain the fuzz targets build with.
const NIGHTLY: &str = "nightly";

/// The fuzz crate's directory.
pub fn fuzz_dir() -> PathBuf {
    workspace_root().join("fuzz")
}

fn rustup() -> Result<PathBuf> {
    find_program("rustup")
        .or_else(|| home_cargo_bin("rustup"))
        .ok_or_else(|| Error::new("fuzzing needs rustup (for a nightly toolchain): install it from https://rustup.rs"))
}

fn home_cargo_bin(name: &str) -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
    let p = cargo_home.join("bin").join(name);
    p.is_file().then_some(p)
}

/// The toolchain the fuzz targets are built with: rustup's nightly, or, where
/// nightly can neither be found nor installed (a machine that reaches only
/// the package registries), the pinned toolchain of `rust-toolchain.toml`
/// with `RUSTC_BOOTSTRAP=1`, which accepts the `-Z` flags cargo-fuzz passes.
pub struct Tools {
    rustup: PathBuf,
    toolchain: String,
    bootstrap: bool,
}

/// The `channel` of `rust-toolchain.toml`.
fn pinned_channel() -> Option<String> {
    let text = std::fs::read_to_string(workspace_root().join("rust-toolchain.toml")).ok()?;
    text.lines().find_map(|l| {
        let v = l.trim().strip_prefix("channel")?.trim().strip_prefix('=')?;
        Some(v.trim().trim_matches('"').to_string())
    })
}

/// Whether rustup has `toolchain` installed.
fn has_toolchain(rustup: &Path, toolchain: &str) -> bool {
    Command::new(rustup)
        .args(["run", toolchain, "rustc", "--version"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A command that runs under the fuzz toolchain, without the environment a
/// `cargo xtask` run inherits from the stable toolchain.
fn nightly(tools: &Tools, program: &str) -> Command {
    let mut cmd = Command::new(&tools.rustup);
    cmd.args(["run", &tools.toolchain, program]);
    for var in [
        "RUSTUP_TOOLCHAIN",
        "CARGO",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_BOOTSTRAP",
        "CARGO_MANIFEST_DIR",
    ] {
        cmd.env_remove(var);
    }
    if tools.bootstrap {
        cmd.env("RUSTC_BOOTSTRAP", "1");
    }
    cmd
}

fn status(cmd: &mut Command, what: &str) -> Result<ExitStatus> {
    cmd.status().context(|| format!("running {what}"))
}

/// Installs what fuzzing needs if it is missing: the nightly toolchain (or,
/// when it cannot be installed, the pinned one in bootstrap mode) and
/// cargo-fuzz.
pub fn ensure_tools() -> Result<Tools> {
    let rustup = rustup()?;
    let mut tools = Tools { rustup, toolchain: NIGHTLY.to_string(), bootstrap: false };
    if !has_toolchain(&tools.rustup, NIGHTLY) {
        eprintln!("[xtask] fuzz: installing the nightly toolchain (rustup toolchain install nightly)");
        let s = status(
            Command::new(&tools.rustup).args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]),
            "rustup toolchain install nightly",
        )?;
        if !s.success() || !has_toolchain(&tools.rustup, NIGHTLY) {
            let pinned = pinned_channel().filter(|p| has_toolchain(&tools.rustup, p)).ok_or_else(|| {
                Error::new(format!(
                    "rustup toolchain install {NIGHTLY} failed ({s}) and the pinned toolchain is not installed either"
                ))
            })?;
            eprintln!(
                "[xtask] fuzz: no nightly toolchain ({s}); building the fuzz targets with {pinned} and RUSTC_BOOTSTRAP=1"
            );
            tools.toolchain = pinned;
            tools.bootstrap = true;
        }
    }
    if find_program("cargo-fuzz").or_else(|| home_cargo_bin("cargo-fuzz")).is_none() {
        eprintln!("[xtask] fuzz: installing cargo-fuzz (cargo install --locked cargo-fuzz; a few minutes)");
        let s =
            status(nightly(&tools, "cargo").args(["install", "--locked", "cargo-fuzz"]), "cargo install cargo-fuzz")?;
        if !s.success() {
            return Err(Error::new(format!("cargo install --locked cargo-fuzz failed ({s})")));
        }
    }
    Ok(tools)
}

/// `cargo fuzz` with the options every build and run shares (the same
/// flags, so that builds are reused).
fn cargo_fuzz(tools: &Tools, sub: &str) -> Command {
    let mut cmd = nightly(tools, "cargo");
    cmd.current_dir(fuzz_dir()).args(["fuzz", sub, "--sanitizer", "none", "--no-trace-compares"]);
    // cargo-fuzz finds `cargo-fuzz` through PATH: make sure ~/.cargo/bin is there.
    if let Some(bin) = home_cargo_bin("cargo-fuzz").and_then(|p| p.parent().map(Path::to_path_buf)) {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
        dirs.push(bin);
        if let Ok(p) = std::env::join_paths(dirs) {
            cmd.env("PATH", p);
        }
    }
    cmd
}

/// Builds every fuzz target (cached in `fuzz/target/`).
pub fn build(tools: &Tools) -> Result<()> {
    let s = status(&mut cargo_fuzz(tools, "build"), "cargo fuzz build")?;
    if !s.success() {
        return Err(Error::new(format!("cargo fuzz build failed ({s})")));
    }
    Ok(())
}

/// How long a run goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// This many executions (`-runs=N`).
    Runs(u64),
    /// This many seconds (`-max_total_time=S`).
    Seconds(u64),
}

/// The largest input libFuzzer makes for `target`, where its default (the
/// largest seed, at least 4 KiB) does not suit: device trees are kept to
/// 12 KiB (QEMU's are 8 KiB, FVP's 10 KiB), as a run's speed is in
/// proportion to the tree's size; the 27 KiB Juno and 46 KiB Arndale trees
/// are exercised by the unit tests.
pub fn max_len(target: &str) -> Option<usize> {
    match target {
        "dt_plan" | "dom0_dt" => Some(12 << 10),
        _ => None,
    }
}

/// What a finished run printed: libFuzzer's final statistics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Executions.
    pub runs: u64,
    /// Average executions per second.
    pub exec_per_sec: u64,
    /// Coverage (edges) at the end.
    pub cov: u64,
    /// Features at the end.
    pub ft: u64,
    /// Inputs in the corpus at the end.
    pub corpus: u64,
    /// Peak memory, MiB.
    pub rss_mb: u64,
}

/// The number after `key` in `line` (`cov: 123`), if any.
fn field(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest.trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

impl Stats {
    /// Reads libFuzzer's output: the last status line (`#N DONE cov: …
    /// ft: … corp: N/…`) and the `-print_final_stats=1` lines.
    pub fn parse(out: &str) -> Stats {
        let mut s = Stats::default();
        for line in out.lines() {
            if line.starts_with('#') && line.contains("cov:") {
                s.cov = field(line, "cov:").unwrap_or(s.cov);
                s.ft = field(line, "ft:").unwrap_or(s.ft);
                s.corpus = field(line, "corp:").unwrap_or(s.corpus);
            }
            if let Some(v) = field(line, "stat::number_of_executed_units:") {
                s.runs = v;
            }
            if let Some(v) = field(line, "stat::average_exec_per_sec:") {
                s.exec_per_sec = v;
            }
            if let Some(v) = field(line, "stat::peak_rss_mb:") {
                s.rss_mb = v;
            }
        }
        s
    }
}

/// The outcome of running one target.
#[derive(Debug)]
pub struct RunResult {
    /// The target.
    pub target: &'static str,
    /// Whether libFuzzer finished without finding a crash.
    pub ok: bool,
    /// Its statistics.
    pub stats: Stats,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// Where its whole output is.
    pub log: PathBuf,
}

/// Runs one (built) target until `limit`; its output goes to `log` (and,
/// with `echo`, to the terminal as it comes).
pub fn run(tools: &Tools, target: &'static str, limit: Limit, log: &Path, echo: bool) -> Result<RunResult> {
    let work = fuzz_dir().join("target/corpus").join(target);
    std::fs::create_dir_all(&work).context(|| format!("creating {}", work.display()))?;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    }
    let seeds = fuzz_dir().join("corpus").join(target);
    let mut cmd = cargo_fuzz(tools, "run");
    cmd.arg(target).arg(&work).arg(&seeds).arg("--");
    match limit {
        Limit::Runs(n) => cmd.arg(format!("-runs={n}")),
        Limit::Seconds(s) => cmd.arg(format!("-max_total_time={s}")),
    };
    cmd.args(["-print_final_stats=1", "-timeout=20", "-rss_limit_mb=2048"]);
    if let Some(len) = max_len(target) {
        cmd.arg(format!("-max_len={len}"));
    }
    let file = std::fs::File::create(log).context(|| format!("creating {}", log.display()))?;
    let err = file.try_clone().context(|| "log file".to_string())?;
    let start = Instant::now();
    let ok = if echo {
        // Both streams to the log; libFuzzer's status lines go to stderr.
        let mut child = cmd.stdout(file).stderr(Stdio::piped()).spawn().context(|| "cargo fuzz run".to_string())?;
        let mut pipe = child.stderr.take().expect("piped");
        let mut log_err = err;
        let mut buf = [0u8; 4096];
        loop {
            use std::io::{Read, Write};
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = log_err.write_all(&buf[..n]);
                    let _ = std::io::stderr().write_all(&buf[..n]);
                }
            }
        }
        child.wait().context(|| "cargo fuzz run".to_string())?.success()
    } else {
        status(cmd.stdout(file).stderr(err), "cargo fuzz run")?.success()
    };
    let out = std::fs::read_to_string(log).unwrap_or_default();
    Ok(RunResult { target, ok, stats: Stats::parse(&out), elapsed: start.elapsed(), log: log.to_path_buf() })
}

/// One line describing a run, for the terminal and `docs/testing.md`.
pub fn summary(r: &RunResult) -> String {
    format!(
        "{}: {} — {} runs in {} s ({} exec/s), cov {}, ft {}, corpus {}, peak RSS {} MiB (log: {})",
        r.target,
        if r.ok { "no crash" } else { "FAILED" },
        r.stats.runs,
        r.elapsed.as_secs(),
        r.stats.exec_per_sec,
        r.stats.cov,
        r.stats.ft,
        r.stats.corpus,
        r.stats.rss_mb,
        r.log.display()
    )
}

/// The smoke run of `cargo xtask test`: builds every target, runs each for
/// [`SMOKE_SECONDS`]. True when none crashed.
pub fn smoke() -> Result<bool> {
    let tools = ensure_tools()?;
    eprintln!("[xtask] fuzz smoke: building the fuzz targets ({}, cached in fuzz/target/)", tools.toolchain);
    build(&tools)?;
    let mut all_ok = true;
    for t in TARGETS {
        let log = crate::paths::target_dir().join("armature/fuzz-logs").join(format!("smoke-{t}.log"));
        let r = run(&tools, t, Limit::Seconds(SMOKE_SECONDS), &log, false)?;
        eprintln!("[xtask] fuzz smoke: {}", summary(&r));
        all_ok &= r.ok;
    }
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_statistics() {
        let out = "\
INFO: Seed: 1234
#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb
#1048576\tpulse  cov: 812 ft: 3010 corp: 411/20Kb lim: 4096 exec/s: 52428 rss: 410Mb
#10000000\tDONE   cov: 820 ft: 3100 corp: 420/21Kb lim: 4096 exec/s: 51234 rss: 415Mb
Done 10000000 runs in 195 second(s)
stat::number_of_executed_units: 10000000
stat::average_exec_per_sec:     51234
stat::new_units_added:          500
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              415
";
        assert_eq!(
            Stats::parse(out),
            Stats { runs: 10_000_000, exec_per_sec: 51234, cov: 820, ft: 3100, corpus: 420, rss_mb: 415 }
        );
        assert_eq!(Stats::parse(""), Stats::default());
    }

    #[test]
    fn every_target_has_seeds_and_a_source() {
        for t in TARGETS {
            let seeds = fuzz_dir().join("corpus").join(t);
            let n = std::fs::read_dir(&seeds).map(|d| d.count()).unwrap_or(0);
            assert!(n > 0, "no seeds in {}", seeds.display());
            assert!(fuzz_dir().join("fuzz_targets").join(format!("{t}.rs")).is_file(), "no source for {t}");
            let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
            assert!(manifest.contains(&format!("name = \"{t}\"")), "{t} not in fuzz/Cargo.toml");
        }
    }
}
