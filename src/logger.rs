//! The `log` crate backend: every `log::info!` and friends end up on the console.
//!
//! Each line is `(armature) [seconds.micros] LEVEL message` (the prefix
//! tells it apart from a guest's console output), stamped with the Arm
//! generic counter (time since the counter started, normally reset), and
//! written under the console lock so lines never interleave. The level is set
//! by the `loglvl=` option (Xen's names: `none`, `error`, `warning`, `info`,
//! `debug`, `all`).

use core::fmt::{self, Write};
use log::{LevelFilter, Log, Metadata, Record};

/// Parses a `loglvl=` value. Accepts Xen's names and the `log` crate's.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    Some(match s {
        "none" | "off" => LevelFilter::Off,
        "error" | "err" => LevelFilter::Error,
        "warning" | "warn" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "all" | "trace" => LevelFilter::Trace,
        _ => return None,
    })
}

/// Writes a `[seconds.micros] ` timestamp for `ticks` of a counter running at
/// `freq` Hz (no floating point: the hypervisor never touches FP registers).
pub fn write_timestamp(w: &mut impl Write, ticks: u64, freq: u64) -> fmt::Result {
    if freq == 0 {
        return write!(w, "[{ticks:>12}] ");
    }
    let secs = ticks / freq;
    let micros = ((ticks % freq) as u128 * 1_000_000 / freq as u128) as u64;
    write!(w, "[{secs:>5}.{micros:06}] ")
}

/// What every hypervisor log line starts with, so that it is told apart
/// from a guest's console output on the same UART (Linux's printk lines
/// have the same timestamp shape); Xen's lines start with `(XEN) `.
pub const LINE_PREFIX: &str = "(armature) ";

/// Writes one complete log line (without the trailing newline).
pub fn write_line(
    w: &mut impl Write,
    ticks: u64,
    freq: u64,
    level: log::Level,
    args: &fmt::Arguments<'_>,
) -> fmt::Result {
    w.write_str(LINE_PREFIX)?;
    write_timestamp(w, ticks, freq)?;
    let tag = match level {
        log::Level::Error => "ERROR ",
        log::Level::Warn => "WARN  ",
        log::Level::Info => "",
        log::Level::Debug => "DEBUG ",
        log::Level::Trace => "TRACE ",
    };
    w.write_str(tag)?;
    w.write_fmt(*args)
}

struct ConsoleLogger;

impl Log for ConsoleLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let (ticks, freq) = now();
        crate::console::with(|c| {
            c.end_guest_line();
            let _ = write_line(c, ticks, freq, record.level(), record.args());
            let _ = c.write_str("\n");
        });
    }

    fn flush(&self) {}
}

#[cfg(target_os = "none")]
fn now() -> (u64, u64) {
    (crate::arch::counter(), crate::arch::counter_frequency())
}

#[cfg(not(target_os = "none"))]
fn now() -> (u64, u64) {
    (0, 0)
}

static LOGGER: ConsoleLogger = ConsoleLogger;

/// Installs the console logger at `level`. Safe to call more than once.
pub fn init(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Changes the level (after the command line has been read).
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::String;

    #[test]
    fn levels_follow_xen_names() {
        assert_eq!(parse_level("all"), Some(LevelFilter::Trace));
        assert_eq!(parse_level("warning"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("none"), Some(LevelFilter::Off));
        assert_eq!(parse_level("debug"), Some(LevelFilter::Debug));
        assert_eq!(parse_level("loud"), None);
    }

    #[test]
    fn timestamp_is_exact_without_floats() {
        let mut s = String::new();
        // 62.5 MHz (QEMU's counter): 1.5 s + 2 ticks = 1.500000032 s -> truncated.
        write_timestamp(&mut s, 62_500_000 + 31_250_002, 62_500_000).unwrap();
        assert_eq!(s, "[    1.500000] ");
        s.clear();
        write_timestamp(&mut s, 24_000_000 * 3 + 24, 24_000_000).unwrap();
        assert_eq!(s, "[    3.000001] ");
        s.clear();
        write_timestamp(&mut s, 7, 0).unwrap();
        assert_eq!(s, "[           7] ");
    }

    #[test]
    fn line_has_level_tag_except_info() {
        let mut s = String::new();
        write_line(&mut s, 0, 1, log::Level::Warn, &format_args!("x={}", 5)).unwrap();
        assert_eq!(s, "(armature) [    0.000000] WARN  x=5");
        s.clear();
        write_line(&mut s, 0, 1, log::Level::Info, &format_args!("hello")).unwrap();
        assert_eq!(s, "(armature) [    0.000000] hello");
    }
}
