//! Reading Armature's own lines out of a console log shared with dom0.
//!
//! Armature writes its log and dom0's console (the emulated PL011) to the
//! same UART. Its log lines are `(armature) [sssss.uuuuuu] LEVEL message`
//! (`LEVEL` is `ERROR `, `WARN  `, `DEBUG ` or `TRACE `, nothing for info:
//! see `src/logger.rs`): after the [`LINE_PREFIX`], the very shape of
//! Linux's printk lines, whose timestamps count from Linux's own start. A
//! line is Armature's if it starts with the prefix; messages only Armature
//! prints ([`HYPERVISOR_PREFIXES`]: `d0: `, `d0v1: `, `timing: `, the
//! console input switch, the debug keys' output) must only appear there.
//!
//! - [`mixed_lines`]: lines where the hypervisor's output and a guest's
//!   share a line (the console ends a guest's unfinished line before each
//!   of its own: `src/console/mod.rs`, `write_guest`/`end_guest_line`);
//! - [`Timings`]: the boot stage timings (`src/timing.rs`): one
//!   `timing: <stage> at counter N (x.yyy ms since reset)` line per stage
//!   and the `timing: stages (ms):` summary.

/// What each of Armature's log lines starts with (`src/logger.rs`).
pub const LINE_PREFIX: &str = "(armature) ";

/// The log levels' tags after the timestamp (info has none).
pub const LEVEL_TAGS: [&str; 4] = ["ERROR ", "WARN  ", "DEBUG ", "TRACE "];

/// Messages only the hypervisor prints (besides `d0v<N>: `, see
/// [`hypervisor_token_at`]): seeing one anywhere but at the start of a log
/// line's message means a line was mixed.
pub const HYPERVISOR_PREFIXES: [&str; 9] = [
    "d0: ",
    "timing: ",
    "*** Console input now goes to ",
    "cmdline: ",
    "'h': list the debug keys",
    "'d': dump the vCPUs",
    "'q': dump the domains",
    "'i': dump the virtual interrupt state",
    "'R': reset the machine",
];

/// Boot stages, in order, as `src/timing.rs` names them.
pub const STAGES: [&str; 6] = ["MMU on", "banner", "relocated", "CPUs online", "dom0 built", "dom0 entered"];

/// The length of the `[sssss.uuuuuu] ` timestamp `s` starts with (the
/// shape Armature's log and Linux's printk share), if it does.
pub fn timestamp_len(s: &str) -> Option<usize> {
    let rest = s.strip_prefix('[')?;
    let close = rest.find("] ")?;
    let (secs, micros) = rest[..close].split_once('.')?;
    let digits = secs.trim_start_matches(' ');
    let ok = secs.len() >= 5
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && micros.len() == 6
        && micros.bytes().all(|b| b.is_ascii_digit());
    ok.then_some(close + 3)
}

/// How many timestamps `line` holds (anywhere in it).
pub fn timestamps_in(line: &str) -> usize {
    line.match_indices('[').filter(|&(i, _)| timestamp_len(&line[i..]).is_some()).count()
}

/// The message of a log-shaped line (Armature's, with its prefix, or a
/// printk line): after the timestamp and the level tag.
pub fn message(line: &str) -> Option<&str> {
    let line = line.strip_prefix(LINE_PREFIX).unwrap_or(line);
    let rest = &line[timestamp_len(line)?..];
    Some(LEVEL_TAGS.iter().find_map(|t| rest.strip_prefix(t)).unwrap_or(rest))
}

/// The length of the hypervisor-only token `s` starts with: one of
/// [`HYPERVISOR_PREFIXES`] or `d0v<N>: `.
pub fn hypervisor_token_at(s: &str) -> Option<usize> {
    if let Some(p) = HYPERVISOR_PREFIXES.iter().find(|p| s.starts_with(*p)) {
        return Some(p.len());
    }
    let rest = s.strip_prefix("d0v")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    (digits > 0 && rest[digits..].starts_with(": ")).then_some(3 + digits + 2)
}

/// Whether `line` is one of the hypervisor's log lines.
pub fn is_hypervisor_line(line: &str) -> bool {
    line.starts_with(LINE_PREFIX) && message(line).is_some()
}

/// Every line (1-based number, text) where the hypervisor's output shares
/// a line with something else: a hypervisor token that does not start the
/// line's message, or two timestamps in one line. Empty when all is well.
pub fn mixed_lines(log: &str) -> Vec<(usize, &str)> {
    let mut mixed = Vec::new();
    for (n, line) in log.lines().enumerate() {
        let start = message(line).map(|m| line.len() - m.len());
        let stray = line.char_indices().any(|(i, _)| Some(i) != start && hypervisor_token_at(&line[i..]).is_some());
        let late_prefix = line.match_indices(LINE_PREFIX).any(|(i, _)| i != 0);
        let unprefixed = start.is_some() && !line.starts_with(LINE_PREFIX) && message(line).and_then(hypervisor_token_at).is_some();
        if stray || late_prefix || unprefixed || timestamps_in(line) > 1 {
            mixed.push((n + 1, line));
        }
    }
    mixed
}

/// One stage's timing line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageTime {
    /// The stage's name.
    pub name: String,
    /// The generic counter when it ended.
    pub counter: u64,
    /// Microseconds since reset, as printed (milliseconds with 3 decimals).
    pub micros: u64,
}

/// The stage timings of a boot log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    /// The `timing: <stage> at counter …` lines, in log order.
    pub stages: Vec<StageTime>,
    /// Each `timing: stages (ms):` summary: (stage, microseconds since
    /// the stage before), in order.
    pub summaries: Vec<Vec<(String, u64)>>,
    /// Whether a summary came before the last stage line.
    pub summary_early: bool,
}

/// `12.345` (milliseconds, 3 decimals) in microseconds.
fn parse_millis(s: &str) -> Option<u64> {
    let (ms, frac) = s.split_once('.')?;
    (frac.len() == 3).then_some(())?;
    Some(ms.parse::<u64>().ok()? * 1000 + frac.parse::<u64>().ok()?)
}

impl Timings {
    /// Reads the timing lines of the hypervisor's log in `log`.
    pub fn parse(log: &str) -> Timings {
        let mut t = Timings::default();
        for line in log.lines() {
            let Some(rest) = message(line).and_then(|m| m.strip_prefix("timing: ")) else { continue };
            if let Some(list) = rest.strip_prefix("stages (ms):") {
                let (mut entries, mut name) = (Vec::new(), Vec::new());
                for word in list.split_whitespace() {
                    match word.strip_prefix('+').and_then(parse_millis) {
                        Some(us) => entries.push((std::mem::take(&mut name).join(" "), us)),
                        None => name.push(word),
                    }
                }
                t.summaries.push(entries);
            } else if let Some((name, tail)) = rest.split_once(" at counter ") {
                let parsed = tail.split_once(" (").and_then(|(counter, ms)| {
                    Some((counter.parse().ok()?, parse_millis(ms.strip_suffix(" ms since reset)")?)?))
                });
                if let Some((counter, micros)) = parsed {
                    t.summary_early |= !t.summaries.is_empty();
                    t.stages.push(StageTime { name: name.to_string(), counter, micros });
                }
            }
        }
        t
    }

    /// Every problem with the timings: each of [`STAGES`] once and in
    /// order, counter values increasing, one summary after the last stage
    /// naming every stage, its steps matching the stage lines. Empty when
    /// all is well.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let names: Vec<&str> = self.stages.iter().map(|s| s.name.as_str()).collect();
        if names != STAGES {
            p.push(format!("stage lines {names:?}, expected {STAGES:?}"));
        }
        for w in self.stages.windows(2) {
            if w[1].counter <= w[0].counter || w[1].micros < w[0].micros {
                p.push(format!(
                    "{:?} at counter {} ({} us) does not follow {:?} at counter {} ({} us)",
                    w[1].name, w[1].counter, w[1].micros, w[0].name, w[0].counter, w[0].micros
                ));
            }
        }
        if self.stages.first().is_some_and(|s| s.counter == 0) {
            p.push("the first stage is at counter 0".into());
        }
        match self.summaries.as_slice() {
            [] => p.push("no \"timing: stages (ms):\" summary".into()),
            [summary] => {
                let names: Vec<&str> = summary.iter().map(|(n, _)| n.as_str()).collect();
                if names != STAGES {
                    p.push(format!("the summary lists {names:?}, expected {STAGES:?}"));
                }
                // Each step is the difference of the stage lines' times
                // (each rounded down to a microsecond: 1 us either way).
                let mut prev = 0;
                for ((name, step), stage) in summary.iter().zip(&self.stages) {
                    let expected = stage.micros.saturating_sub(prev);
                    if step.abs_diff(expected) > 1 {
                        p.push(format!("the summary's {name:?} step is {step} us, the stage lines say {expected} us"));
                    }
                    prev = stage.micros;
                }
            }
            many => p.push(format!("{} summaries, expected one", many.len())),
        }
        if self.summary_early {
            p.push("the summary came before the last stage line".into());
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From a real boot (direct, GICv3, 4 CPUs), shortened.
    const LOG: &str = "\
Armature 0.1.0 (aarch64, platform qemu-virt)
(armature) [    0.007160] timing: MMU on at counter 310629 (4.970 ms since reset)
(armature) [    0.007324] timing: banner at counter 457198 (7.315 ms since reset)
(armature) [    0.020833] Command line: \"dom0_mem=lots\"
(armature) [    0.020900] WARN  cmdline: bad value \"lots\" for dom0_mem= ignored
(armature) [    0.039065] timing: relocated at counter 2436799 (38.988 ms since reset)
(armature) [    0.073984] timing: CPUs online at counter 4623935 (73.982 ms since reset)
(armature) [    0.092044] d0: 512 MiB RAM at 0x00009fc00000-0x0000bfbfffff (1:1)
(armature) [    0.120000] DEBUG d0: MMIO 0x000009010000-0x000009010fff passed through
(armature) [    0.363323] *** Console input now goes to dom0 (press Ctrl-A three times to switch)
(armature) [    0.363491] timing: dom0 built at counter 22717250 (363.476 ms since reset)
(armature) [    0.365041] d0v0: entering at 0x9fc00000 (EL1, MMU off), x0 = 0xbfa00000
(armature) [    0.366854] timing: dom0 entered at counter 22927879 (366.846 ms since reset)
(armature) [    0.368803] timing: stages (ms): MMU on +4.970 banner +2.345 relocated +31.673 CPUs online +34.994 dom0 built +289.493 dom0 entered +3.370
[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x411fd070]
[    0.093000] smp: Bringing up secondary CPUs ...
(armature) [    1.939119] d0v0: PSCI CPU_ON vCPU1 at 0xa08f02c8 (context 0x0)
[    0.269822] CPU1: Booted secondary processor 0x0000000001 [0x411fd070]
ARMATURE-DOM0-USERSPACE-OK
dom0: cpus 4
dom0:/# echo typed-$((6*7))
typed-42
dom0:/# 
(armature) [   12.000001] *** Console input now goes to the hypervisor (press Ctrl-A three times to switch; 'h' lists the debug keys)
(armature) [   12.100000] 'h': list the debug keys
(armature) [   12.200000] d0: VMID 1, 512 MiB RAM at 0x00009fc00000-0x0000bfbfffff, 4 vCPU(s), stage-2 root PA 0xbfffe000
";

    #[test]
    fn timestamps_and_messages() {
        assert_eq!(timestamp_len("[    0.007160] timing: x"), Some(15));
        assert_eq!(timestamp_len("[12345.000001] x"), Some(15));
        assert_eq!(timestamp_len("[123456.000001] x"), Some(16));
        assert_eq!(timestamp_len("[    0.00716] x"), None);
        assert_eq!(timestamp_len("[0x411fd070]"), None);
        assert_eq!(timestamp_len("[    .000001] x"), None);
        assert_eq!(message("[    0.1] x"), None);
        assert_eq!(message("[    0.000001] WARN  d0v1: y"), Some("d0v1: y"));
        assert_eq!(message("[    0.000001] Booting Linux"), Some("Booting Linux"));
        assert_eq!(timestamps_in("[    0.000001] a [    0.000002] b"), 2);
        assert_eq!(hypervisor_token_at("d0v12: PSCI"), Some(7));
        assert_eq!(hypervisor_token_at("d0v: x"), None);
        assert_eq!(hypervisor_token_at("d0: 512 MiB"), Some(4));
        assert!(is_hypervisor_line("(armature) [    0.120000] DEBUG d0: MMIO"));
        assert!(!is_hypervisor_line("[    0.120000] DEBUG d0: MMIO"), "no prefix: not the hypervisor's");
        assert_eq!(message("(armature) [    0.000001] WARN  d0v1: y"), Some("d0v1: y"));
        assert!(!is_hypervisor_line("[    0.093000] smp: Bringing up secondary CPUs ..."));
        assert!(!is_hypervisor_line("dom0: cpus 4"));
    }

    #[test]
    fn a_clean_log_has_no_mixed_lines() {
        assert_eq!(mixed_lines(LOG), Vec::<(usize, &str)>::new());
    }

    #[test]
    fn mixed_lines_are_found() {
        // The prompt not ended before the switch message (no end_guest_line).
        let glued = LOG.replace("dom0:/# \n(armature) [   12.000001]", "dom0:/# (armature) [   12.000001]");
        let m = mixed_lines(&glued);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].1.starts_with("dom0:/# (armature) [   12.000001] *** Console input"), "{m:?}");
        // A vCPU's line in the middle of a Linux line.
        let glued = LOG.replace("Bringing up secondary CPUs ...\n", "Bringing up secondary ");
        let m = mixed_lines(&glued);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].1.contains("secondary (armature) [    1.939119] d0v0: PSCI CPU_ON"), "{m:?}");
        // A guest's text after the hypervisor's (two timestamps on one line).
        let glued = LOG.replace("(context 0x0)\n", "(context 0x0)");
        assert_eq!(mixed_lines(&glued).len(), 1);
        // Guest text with no timestamp before a hypervisor token.
        assert_eq!(mixed_lines("typed-42d0v1: PSCI CPU_OFF\n").len(), 1);
        // A hypervisor message without the prefix (printed as a guest's).
        assert_eq!(mixed_lines("[    1.000000] d0v1: PSCI CPU_OFF\n").len(), 1);
    }

    #[test]
    fn timings_are_read_and_checked() {
        let t = Timings::parse(LOG);
        assert_eq!(t.stages.len(), 6);
        assert_eq!(t.stages[0], StageTime { name: "MMU on".into(), counter: 310_629, micros: 4_970 });
        assert_eq!(t.summaries.len(), 1);
        assert_eq!(t.summaries[0][3], ("CPUs online".to_string(), 34_994));
        assert_eq!(t.problems(), Vec::<String>::new());
    }

    #[test]
    fn timing_problems_are_named() {
        let p = Timings::parse(&LOG.replace("timing: relocated", "timing: relocation")).problems();
        assert!(p.iter().any(|l| l.starts_with("stage lines")), "{p:?}");
        let p = Timings::parse(&LOG.replace("counter 4623935", "counter 2436799")).problems();
        assert!(p.iter().any(|l| l.contains("does not follow \"relocated\"")), "{p:?}");
        let p = Timings::parse(&LOG.replace("dom0 built +289.493", "dom0 built +280.000")).problems();
        assert!(p.iter().any(|l| l.contains("\"dom0 built\" step is 280000 us")), "{p:?}");
        let no_summary: String = LOG.lines().filter(|l| !l.contains("stages (ms)")).map(|l| format!("{l}\n")).collect();
        assert!(Timings::parse(&no_summary).problems().iter().any(|l| l.contains("no \"timing: stages")));
        let p = Timings::parse("").problems();
        assert!(p.len() >= 2, "{p:?}");
    }
}
