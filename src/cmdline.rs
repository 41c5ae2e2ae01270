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
    /// `halt`/`poweroff`: what to do when there is nothing left to run
    /// (power off by default; Xen's `noreboot` is accepted and ignored).
    pub power_off_when_done: bool,
    /// `dom0_mem=`: dom0's RAM in bytes (Xen syntax: `512M`, `1G`; of
    /// Xen's `512M,max:1G` form only the first size is used).
    pub dom0_mem: Option<u64>,
    /// `dom0_max_vcpus=`: most vCPUs for dom0 (Xen's `N` or `min-max`:
    /// the max is used); never more than the online physical CPUs.
    pub dom0_max_vcpus: Option<usize>,
    /// `console=`: where the hypervisor's log goes (`dtuart`, the default:
    /// the device tree's stdout-path; `none`: nowhere after the banner).
    pub console: ConsoleChoice,
    /// `on_fatal=`: what the machine does after a fatal error (power off
    /// by default; `halt`; `reset` or `reset:<seconds>`).
    pub on_fatal: crate::bootcheck::OnFatal,
}

/// The `console=` option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleChoice {
    /// The UART of the device tree's `stdout-path` (Xen's `dtuart`).
    DtUart,
    /// Only errors are logged after the command line is read.
    None,
}

/// Parses a size in bytes with an optional binary suffix (`K`, `M`, `G`,
/// `T`, either case).
pub fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        b'g' | b'G' => (&s[..s.len() - 1], 30),
        b't' | b'T' => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1u64 << shift)
}

/// `dom0_mem=` as Xen reads it: `<size>` or `<size>,max:<size>` (a bare
/// number is KiB, as in Xen); zero is refused.
pub fn parse_dom0_mem(v: &str) -> Option<u64> {
    let first = v.split(',').next()?;
    let first = first.strip_prefix("min:").unwrap_or(first);
    let bytes = if first.bytes().all(|b| b.is_ascii_digit()) { first.parse::<u64>().ok()?.checked_mul(1024)? } else { parse_size(first)? };
    (bytes > 0).then_some(bytes)
}

/// `dom0_max_vcpus=`: `N` or `min-max` (the max); zero is refused.
pub fn parse_vcpus(v: &str) -> Option<usize> {
    let max = v.rsplit('-').next()?;
    max.parse::<usize>().ok().filter(|&n| n > 0)
}

impl Default for Options {
    fn default() -> Self {
        Self {
            log_level: LevelFilter::Info,
            crash_test: None,
            power_off_when_done: true,
            dom0_mem: None,
            dom0_max_vcpus: None,
            console: ConsoleChoice::DtUart,
            on_fatal: crate::bootcheck::OnFatal::PowerOff,
        }
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
            ("dom0_mem", Some(v)) => match parse_dom0_mem(v) {
                Some(m) => o.dom0_mem = Some(m),
                None => report(OptionError::BadValue { name, value: v }),
            },
            ("dom0_max_vcpus", Some(v)) => match parse_vcpus(v) {
                Some(n) => o.dom0_max_vcpus = Some(n),
                None => report(OptionError::BadValue { name, value: v }),
            },
            ("console", Some(v)) => match v {
                "dtuart" => o.console = ConsoleChoice::DtUart,
                "none" => o.console = ConsoleChoice::None,
                _ => report(OptionError::BadValue { name, value: v }),
            },
            ("on_fatal", Some(v)) => match crate::bootcheck::OnFatal::parse(v) {
                Some(a) => o.on_fatal = a,
                None => report(OptionError::BadValue { name, value: v }),
            },
            // Options of Xen features Armature has no equivalent for (or
            // whose behaviour is already Armature's): accepted silently so
            // that Xen boot scripts work unchanged.
            ("dtuart" | "bootscrub" | "guest_loglvl" | "vwfi" | "sync_console" | "noreboot" | "sched"
            | "conswitch", _) => {}
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
        assert_eq!(o.dom0_mem, Some(512 << 20));
        assert_eq!(o.dom0_max_vcpus, Some(4));
        assert_eq!(o.console, ConsoleChoice::DtUart);
    }

    #[test]
    fn dom0_options_in_xen_syntax() {
        assert_eq!(parse_dom0_mem("1G"), Some(1 << 30));
        assert_eq!(parse_dom0_mem("768m"), Some(768 << 20));
        assert_eq!(parse_dom0_mem("512M,max:1G"), Some(512 << 20));
        assert_eq!(parse_dom0_mem("131072"), Some(128 << 20), "a bare number is KiB, as in Xen");
        assert_eq!(parse_dom0_mem("0"), None);
        assert_eq!(parse_dom0_mem("lots"), None);
        assert_eq!(parse_dom0_mem("99999999999T"), None, "overflow is refused");
        assert_eq!(parse_vcpus("2"), Some(2));
        assert_eq!(parse_vcpus("1-4"), Some(4));
        assert_eq!(parse_vcpus("0"), None);
        let mut errs = Vec::new();
        let o = parse("dom0_mem=abc dom0_max_vcpus=x console=vga", |e| errs.push(e));
        assert_eq!((o.dom0_mem, o.dom0_max_vcpus), (None, None));
        assert_eq!(errs.len(), 3);
        assert_eq!(parse("console=none", |e| panic!("{e:?}")).console, ConsoleChoice::None);
    }

    #[test]
    fn on_fatal_option() {
        use crate::bootcheck::OnFatal;
        assert_eq!(parse("", |e| panic!("{e:?}")).on_fatal, OnFatal::PowerOff);
        assert_eq!(parse("on_fatal=halt", |e| panic!("{e:?}")).on_fatal, OnFatal::Halt);
        assert_eq!(parse("on_fatal=reset:3", |e| panic!("{e:?}")).on_fatal, OnFatal::Reset(3));
        let mut errs = Vec::new();
        assert_eq!(parse("on_fatal=explode", |e| errs.push(e)).on_fatal, OnFatal::PowerOff);
        assert_eq!(errs, [OptionError::BadValue { name: "on_fatal", value: "explode" }]);
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
