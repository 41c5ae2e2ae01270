//! The hostile-guest suite: the `hostile` test guest (tests/guests/src/
//! hostile/) booted as dom0 misbehaves on purpose, case by case: aborts on
//! IPAs with nothing behind them, emulated-device accesses without a
//! syndrome, the vGIC at every width, out of range and on other vCPUs'
//! redistributors, SMC/HVC calls of every owning entity, PSCI misuse,
//! system registers, WFI/WFE storms, a million SGIs, a vCPU spinning with
//! interrupts masked. The guest checks each architectural outcome itself
//! and prints `PASS hostile/<case>` or `FAIL hostile/<case>: …`, then a
//! summary; the test asserts the summary, that nothing failed, that there
//! are at least 50 cases, that the hypervisor never crashed, and that the
//! last vCPU's CPU_OFF ends the run cleanly. While a vCPU spins with its
//! interrupts masked, the hypervisor's `d` debug key still reaches it.

mod common;

use common::{BOOT_TIMEOUT, image, scratch};
use std::time::Duration;
use xtask::{Arch, Expect, Qemu};

/// Ctrl-A three times: the console input switch.
const SWITCH: &[u8] = b"\x01\x01\x01";

/// Cases the suite must have run, at least.
const MIN_CASES: u32 = 50;

/// Boots the hostile guest as dom0 on `gic` with `smp` CPUs and checks
/// its verdict.
fn hostile(gic: u8, smp: u32) {
    let test = format!("aarch64-dom0-hostile-gicv{gic}-smp{smp}");
    let guest = xtask::guest::build("hostile").unwrap_or_else(|e| panic!("{e}"));
    let qemu = Qemu::aarch64().gic(gic).smp(smp).memory("1G");
    let qemu = xtask::guest::as_dom0(qemu, &guest, &scratch(&test))
        .unwrap_or_else(|e| panic!("{e}"))
        .kernel(&image(Arch::Aarch64, &[]).bin);
    let spinning = "d0v0: hostile: vCPU 1 spins with interrupts masked for 3 s";
    let expect = Expect::new()
        .markers([
            format!("d0v0: hostile guest: {smp} vCPU(s) online"),
            "d0v0: PASS hostile/abort/read-unmapped".to_string(),
            "d0v0: storm: 1000000 SGIs sent in".to_string(),
            spinning.to_string(),
            // The debug key's kick reaches the CPU of the masked vCPU.
            "d0v1: PC 0x".to_string(),
            "d0v0: hostile: ".to_string() + "vCPU 0 turns itself off, the last one",
            "d0: every vCPU is off: the domain has nothing left to run".to_string(),
        ])
        .input_after(spinning, [SWITCH, b"d"].concat())
        .failure_markers([
            "FAIL hostile/",
            "PANIC",
            "----[ Armature",
            "FATAL",
            "crashed",
            "CPU_OFF of the last vCPU returned",
        ])
        .clean_exit(true)
        .timeout(BOOT_TIMEOUT * 4)
        .idle_timeout(Duration::from_secs(60));
    let outcome = common::boot(&test, &qemu, &expect);
    let summary = outcome.log.lines().find(|l| l.contains("hostile: ") && l.contains(" passed, ")).map(str::to_string);
    let summary = summary.unwrap_or_else(|| panic!("no summary line\n{}", outcome.log));
    let count = |what: &str| -> u32 {
        let before = summary.split(what).next().unwrap_or_default();
        before
            .rsplit(' ')
            .find(|w| !w.is_empty())
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("cannot read {summary:?}"))
    };
    let (passed, failed) = (count(" passed"), count(" failed"));
    // The `d` key's dump of vCPU 1, taken while it spun: interrupts masked
    // (PSTATE.I), yet the kick reached its CPU.
    let dump =
        outcome.log.lines().find(|l| l.contains("d0v1: PC 0x")).unwrap_or_else(|| panic!("no dump\n{}", outcome.log));
    let pstate = common::parse_hex_after(dump, "PSTATE ").unwrap_or_else(|| panic!("no PSTATE in {dump:?}"));
    assert_ne!(pstate & 0x80, 0, "vCPU 1 was not spinning with IRQs masked when dumped: {dump}");
    assert_eq!(failed, 0, "{summary}\n{}", outcome.log);
    let pass_lines = outcome.log.lines().filter(|l| l.contains("PASS hostile/")).count() as u32;
    assert_eq!(passed, pass_lines, "the summary disagrees with the PASS lines\n{}", outcome.log);
    assert!(passed >= MIN_CASES, "only {passed} cases ran, at least {MIN_CASES} expected\n{}", outcome.log);
}

#[test]
fn hostile_guest_gicv3() {
    hostile(3, 2);
}

#[test]
fn hostile_guest_gicv2() {
    hostile(2, 2);
}
