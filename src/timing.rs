//! Boot stage timings: the generic counter's value when each boot stage
//! ends, logged as it happens and summed up when dom0 is entered, so that
//! the cost of each stage is visible in every boot log. The counter starts
//! at reset on the platforms supported, so each value is time since reset.

use core::sync::atomic::{AtomicU64, Ordering};
use log::info;

/// A boot stage, in boot order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Rust code is entered with the MMU on (reset, firmware, the loader
    /// and the early MMU code before it).
    MmuOn = 0,
    /// The banner is printed.
    Banner,
    /// The image runs from its relocated copy.
    Relocated,
    /// Every secondary CPU is online (or given up).
    CpusOnline,
    /// Dom0's memory, vCPUs and device tree are ready.
    Dom0Built,
    /// Dom0's first vCPU is entered.
    Dom0Entered,
}

const STAGES: usize = 6;
const NAMES: [&str; STAGES] = ["MMU on", "banner", "relocated", "CPUs online", "dom0 built", "dom0 entered"];

/// The counter at each stage (0 = not reached).
static STAMPS: [AtomicU64; STAGES] = [const { AtomicU64::new(0) }; STAGES];

/// Milliseconds (with three decimals, as thousandths) for `ticks` at `freq` Hz.
pub fn millis(ticks: u64, freq: u64) -> (u64, u64) {
    if freq == 0 {
        return (0, 0);
    }
    let micros = u64::try_from(u128::from(ticks) * 1_000_000 / u128::from(freq)).unwrap_or(u64::MAX);
    (micros / 1000, micros % 1000)
}

/// Records that `stage` is over now, and logs it.
#[cfg(target_os = "none")]
pub fn stamp(stage: Stage) {
    stamp_at(stage, crate::arch::counter(), crate::arch::counter_frequency());
}

/// Records that `stage` ended at counter value `now` (running at `freq`
/// Hz), and logs it; at [`Stage::Dom0Entered`], also logs a summary of
/// every stage.
pub fn stamp_at(stage: Stage, now: u64, freq: u64) {
    STAMPS[stage as usize].store(now.max(1), Ordering::Relaxed);
    let (ms, frac) = millis(now, freq);
    info!("timing: {} at counter {now} ({ms}.{frac:03} ms since reset)", NAMES[stage as usize]);
    if stage == Stage::Dom0Entered {
        let mut line = alloc::string::String::from("timing: stages (ms):");
        let mut prev = 0;
        for (name, s) in NAMES.iter().zip(&STAMPS) {
            let t = s.load(Ordering::Relaxed);
            if t == 0 {
                continue;
            }
            let (ms, frac) = millis(t.saturating_sub(prev), freq);
            line.push_str(&alloc::format!(" {name} +{ms}.{frac:03}"));
            prev = t;
        }
        info!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_at_common_frequencies() {
        assert_eq!(millis(62_500_000, 62_500_000), (1000, 0));
        assert_eq!(millis(24_000, 24_000_000), (1, 0));
        assert_eq!(millis(1_234_567, 1_000_000_000), (1, 234));
        assert_eq!(millis(u64::MAX, 1_000_000), (u64::MAX / 1000, u64::MAX % 1000));
        assert_eq!(millis(u64::MAX, 1), (u64::MAX / 1000, u64::MAX % 1000), "saturates rather than wraps");
        assert_eq!(millis(5, 0), (0, 0), "no frequency: no time rather than a division by zero");
    }
}
