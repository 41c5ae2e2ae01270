//! Spin-table CPU bring-up on QEMU, through the spin-table test firmware
//! (`tests/firmware/spintable/`, harness in `xtask::firmware`).
//!
//! QEMU virt with `secure=on` and `-bios` starts every CPU at EL3 in the
//! firmware. The boot CPU enters Armature at EL2 with the DTB in x0; the
//! secondaries wait on their release address, per CPU (one slot each) or
//! shared (one word for all, as on the FVP AEMv8). The DTB is QEMU's own
//! with every CPU switched to `enable-method = "spin-table"`, a `/psci` for
//! the firmware's SYSTEM_OFF, and the release page in `/reserved-memory`.
//!
//! Per configuration (2 and 4 CPUs, per-CPU and shared release addresses):
//! - `…`: the banner, the boot plan naming every CPU's spin table and
//!   release address, the reservation, the firmware's PSCI, and power-off
//!   through the firmware: QEMU exits with status 0 by semihosting;
//! - `…_secondaries_online`: every secondary reports
//!   `CPU i (MPIDR 0x…) online via spin-table` and the summary counts them
//!   all (Armature's spin-table bring-up).
//!
//! And the firmware on its own: unconfigured, or without EL3, it says why
//! and ends QEMU with a non-zero status instead of hanging.

mod common;

use common::{Banner, DtbAt, assert_lines_in_order};
use std::time::Duration;
use xtask::firmware::{self, ReleaseLayout, SpinTable, SpinTableBoot};
use xtask::runner::{Ending, Outcome, RunOptions};
use xtask::{Arch, Expect, paths};

/// Boots the default AArch64 image through the firmware with `smp` CPUs and
/// release addresses laid out as `layout`: the banner for the spin-table DT,
/// power-off, QEMU exiting 0 through the firmware's semihosting exit.
fn boot(test: &str, smp: u32, layout: ReleaseLayout) -> (SpinTableBoot, Outcome) {
    let image = common::image(Arch::Aarch64, &[]);
    let boot = SpinTable::new(smp, layout)
        .prepare(&common::scratch(test), &image)
        .unwrap_or_else(|e| panic!("{test}: preparing the spin-table boot: {e}"));
    let banner = Banner::new(Arch::Aarch64, &boot.dt, boot.config.entry, DtbAt::Exactly(boot.config.dtb));
    let outcome = common::boot(test, &boot.qemu, &banner.boot_expect_after(&[&boot.firmware_line()]));
    banner.check_values(&outcome);
    assert_eq!(outcome.ending, Ending::Exited, "{}", outcome.log);
    assert_eq!(
        outcome.status.and_then(|s| s.code()),
        Some(firmware::exit::SYSTEM_OFF),
        "QEMU must end through the firmware's SYSTEM_OFF"
    );
    (boot, outcome)
}

/// The boot plan describes the spin-table machine: the reserved release
/// page, every CPU with its release address, the firmware's PSCI.
fn check_plan(boot: &SpinTableBoot, outcome: &Outcome) {
    let page = boot.config.release_page;
    let n = boot.cpus.len();
    let mut lines = vec![
        format!(
            "reserved: {page:#014x}-{:#014x} ({}, no-map)",
            page + firmware::RELEASE_PAGE_SIZE - 1,
            boot.reserved_node()
        ),
        format!("cpus: {n} node(s): 0 PSCI, {n} spin-table, 0 without enable-method, 0 unknown, 0 disabled, 0 broken"),
    ];
    for c in &boot.cpus {
        lines.push(format!("cpu: {} (MPIDR {:#x}): spin table, release address {:#x}\n", c.name, c.mpidr, c.release));
    }
    lines.push("psci: /psci v1.0 via SMC".into());
    lines.push("PSCI: firmware v1.1 via SMC".into());
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_lines_in_order(outcome, &refs);
    // The release addresses are what the layout says.
    let releases: Vec<u64> = boot.cpus.iter().map(|c| c.release).collect();
    match boot.layout {
        ReleaseLayout::PerCpu => {
            let expected: Vec<u64> = (0..n as u64).map(|i| page + 8 * i).collect();
            assert_eq!(releases, expected, "one slot per CPU");
        }
        ReleaseLayout::Shared => {
            assert!(releases.iter().all(|&r| r == page + 0xff8), "one shared address: {releases:x?}")
        }
    }
}

/// Armature's spin-table bring-up: every secondary checks in, and the
/// summary counts every CPU.
fn check_online(boot: &SpinTableBoot, outcome: &Outcome) {
    let n = boot.cpus.len();
    for (i, c) in boot.cpus.iter().enumerate().skip(1) {
        let line = format!("CPU {i} (MPIDR {:#x}) online via spin-table\n", c.mpidr);
        assert!(outcome.log.contains(&line), "missing {line:?}\n--- console log ---\n{}", outcome.log);
    }
    let summary = format!("CPUs online: {n} of {n}");
    assert!(outcome.log.contains(&summary), "missing {summary:?}\n--- console log ---\n{}", outcome.log);
    assert!(!outcome.log.contains("did not come online"), "{}", outcome.log);
}

/// Two tests per configuration: the boot itself, and the secondaries.
macro_rules! configurations {
    ($($boots:ident, $online:ident: $smp:expr, $layout:ident;)*) => {$(
        #[test]
        fn $boots() {
            let (boot, outcome) = boot(concat!("spin-table-", stringify!($boots)), $smp, ReleaseLayout::$layout);
            check_plan(&boot, &outcome);
        }

        #[test]
        fn $online() {
            let (boot, outcome) = boot(concat!("spin-table-", stringify!($online)), $smp, ReleaseLayout::$layout);
            check_online(&boot, &outcome);
        }
    )*};
}

configurations! {
    smp2_per_cpu, smp2_per_cpu_secondaries_online: 2, PerCpu;
    smp2_shared, smp2_shared_secondaries_online: 2, Shared;
    smp4_per_cpu, smp4_per_cpu_secondaries_online: 4, PerCpu;
    smp4_shared, smp4_shared_secondaries_online: 4, Shared;
}

/// Runs the firmware with no payload until QEMU exits by itself; FATAL is
/// expected here, so it is no failure marker.
fn run_firmware_alone(test: &str, qemu: &xtask::Qemu) -> Outcome {
    let expect = Expect::new().failure_markers(["PANIC"]).timeout(Duration::from_secs(30));
    let outcome =
        qemu.run(&expect, &RunOptions::default().log_to(paths::log_path(test))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.ending, Ending::Exited, "QEMU did not exit by itself:\n{}", outcome.log);
    outcome
}

/// Unpatched `fw_config`: the boot CPU names the problem and the firmware
/// ends QEMU with status 2 through semihosting.
#[test]
fn unconfigured_firmware_exits_with_its_status() {
    let fw = firmware::build().unwrap_or_else(|e| panic!("{e}"));
    let qemu = SpinTable::new(2, ReleaseLayout::PerCpu).machine().bios(&fw.bin);
    let outcome = run_firmware_alone("spin-table-firmware-unconfigured", &qemu);
    assert!(outcome.log.contains("spin-table firmware: FATAL on CPU MPIDR 0x0: not configured"), "{}", outcome.log);
    assert_eq!(outcome.status.and_then(|s| s.code()), Some(firmware::exit::UNCONFIGURED), "{}", outcome.log);
}

/// Without `secure=on` there is no EL3 (QEMU starts the CPUs at EL2): the
/// firmware refuses with exit status 3 rather than misbehave.
#[test]
fn firmware_without_el3_refuses() {
    let fw = firmware::build().unwrap_or_else(|e| panic!("{e}"));
    let qemu = SpinTable::new(2, ReleaseLayout::PerCpu).machine().secure(false).bios(&fw.bin);
    let outcome = run_firmware_alone("spin-table-firmware-no-el3", &qemu);
    assert!(outcome.log.contains(": not started at EL3"), "{}", outcome.log);
    assert_eq!(outcome.status.and_then(|s| s.code()), Some(firmware::exit::PLATFORM), "{}", outcome.log);
}

/// The firmware configured for a one-CPU boot of Armature, then changed by
/// `change`: the machine to run.
fn misconfigured(test: &str, change: impl FnOnce(&mut firmware::Config)) -> xtask::Qemu {
    let image = common::image(Arch::Aarch64, &[]);
    let dir = common::scratch(test);
    let boot = SpinTable::new(1, ReleaseLayout::PerCpu).prepare(&dir, &image).unwrap_or_else(|e| panic!("{e}"));
    let mut config = boot.config;
    change(&mut config);
    let fw = firmware::build().unwrap_or_else(|e| panic!("{e}"));
    let bin = dir.join("misconfigured-fw.bin");
    std::fs::write(&bin, fw.configured(&config)).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    boot.qemu.bios(&bin)
}

/// An exception at EL3 (here a data abort: the redistributor address lies
/// beyond the CPU's physical address range) is reported with the EL3
/// syndrome registers, and QEMU ends with status 1 instead of hanging.
#[test]
fn an_exception_at_el3_is_reported_and_ends_qemu() {
    let test = "spin-table-firmware-el3-exception";
    let qemu = misconfigured(test, |c| c.gicr = 1 << 48);
    let outcome = run_firmware_alone(test, &qemu);
    assert_lines_in_order(
        &outcome,
        &[
            "spin-table firmware: FATAL on CPU MPIDR 0x0: unexpected exception at EL3, vector offset 0x200, ESR_EL3 0x96",
            ", FAR_EL3 0x1000000000008\n",
        ],
    );
    assert!(!outcome.log.contains("Armature"), "{}", outcome.log);
    assert_eq!(outcome.status.and_then(|s| s.code()), Some(firmware::exit::UNEXPECTED_EXCEPTION), "{}", outcome.log);
}

/// An exception in the firmware's own console code (an unusable UART)
/// does not recurse: QEMU ends with status 1 at once, silently.
#[test]
fn a_broken_console_does_not_loop() {
    let test = "spin-table-firmware-broken-console";
    let qemu = misconfigured(test, |c| c.uart = 1 << 48);
    let outcome = run_firmware_alone(test, &qemu);
    assert_eq!(outcome.log, "", "nothing can be printed");
    assert_eq!(outcome.status.and_then(|s| s.code()), Some(firmware::exit::UNEXPECTED_EXCEPTION));
}
