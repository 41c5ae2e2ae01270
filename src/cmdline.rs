//! The hypervisor's command line.
//!
//! Read from `/chosen` in the device tree: `armature,bootargs`, else
//! `xen,xen-bootargs` (so boot scripts written for Xen work unchanged), else
//! `bootargs`. Options are space-separated `name` or `name=value` words.
//! Unknown options and bad values are reported, never fatal.

use log::LevelFilter;

/// What the crash test option asks for (only honoured in `crashtest` builds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashTest {
    /// Read from an unmapped/faulting address: a data abort at EL2.
    DataAbort,
    /// Execute an undefined instruction.
    Undefined,
    /// Call `panic!`.
    Panic,
    /// Allocate 1 MiB from the heap (must work), then far more than it has.
    OutOfMemory,
}

/// Parsed options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// `loglvl=`: how much to log.
    pub log_level: LevelFilter,
    /// `crashtest=`: fault on purpose after the banner (test builds only).
    pub crash_test: Option<CrashTest>,
    /// `noreboot`/`poweroff`: what to do when there is nothing left to run.
    pub power_off_when_done: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { log_level: LevelFilter::Info, crash_test: None, power_off_when_done: true }
    }
}

/// A problem with one word of the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionError<'a> {
    /// The option name is not known.
    Unknown(&'a str),
    /// The option is known but its value is not valid.
    BadValue {
        /// The option.
        name: &'a str,
        /// The value given.
        value: &'a str,
    },
}

/// Parses `args`, calling `report` for every word that is not understood.
pub fn parse<'a>(args: &'a str, mut report: impl FnMut(OptionError<'a>)) -> Options {
    let mut o = Options::default();
    for word in args.split_ascii_whitespace() {
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (word, None),
        };
        match (name, value) {
            ("loglvl", Some(v)) => match crate::logger::parse_level(v) {
                Some(l) => o.log_level = l,
                None => report(OptionError::BadValue { name, value: v }),
            },
            ("crashtest", Some(v)) => {
                o.crash_test = match v {
                    "abort" => Some(CrashTest::DataAbort),
                    "undef" => Some(CrashTest::Undefined),
                    "panic" => Some(CrashTest::Panic),
                    "oom" => Some(CrashTest::OutOfMemory),
                    _ => {
                        report(OptionError::BadValue { name, value: v });
                        None
                    }
                }
            }
            ("halt", None) => o.power_off_when_done = false,
            ("poweroff", None) => o.power_off_when_done = true,
            // Options that belong to later stages or to Xen-only features:
            // accepted silently so that Xen boot scripts work unchanged.
            ("console" | "dtuart" | "dom0_mem" | "dom0_max_vcpus" | "bootscrub" | "guest_loglvl"
            | "vwfi" | "sync_console" | "noreboot", _) => {}
            _ => report(OptionError::Unknown(word)),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    #[test]
    fn defaults_when_empty() {
        let o = parse("", |_| panic!("no errors expected"));
        assert_eq!(o, Options::default());
    }

    #[test]
    fn parses_known_options() {
        let o = parse("loglvl=debug  crashtest=abort halt", |e| panic!("{e:?}"));
        assert_eq!(o.log_level, LevelFilter::Debug);
        assert_eq!(o.crash_test, Some(CrashTest::DataAbort));
        assert!(!o.power_off_when_done);
    }

    #[test]
    fn xen_options_are_accepted() {
        let o = parse(
            "console=dtuart dtuart=/pl011@9000000 dom0_mem=512M dom0_max_vcpus=4 loglvl=all",
            |e| panic!("{e:?}"),
        );
        assert_eq!(o.log_level, LevelFilter::Trace);
    }

    #[test]
    fn reports_bad_words_and_keeps_going() {
        let mut errs = Vec::new();
        let o = parse("frobnicate loglvl=loud crashtest=maybe loglvl=error", |e| errs.push(e));
        assert_eq!(o.log_level, LevelFilter::Error);
        assert_eq!(o.crash_test, None);
        assert_eq!(
            errs,
            [
                OptionError::Unknown("frobnicate"),
                OptionError::BadValue { name: "loglvl", value: "loud" },
                OptionError::BadValue { name: "crashtest", value: "maybe" },
            ]
        );
    }
}
