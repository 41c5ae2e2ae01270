//! Spin-table CPU bring-up on QEMU, through the spin-table test firmware
//! (`tests/firmware/spintable/`, harness in `xtask::firmware`).
//!
//! QEMU virt with `secure=on` and `-bios` starts every CPU at EL3 in the
//! firmware. The boot CPU enters the firmware's payload at EL2; the
//! secondaries wait on their release address, per CPU (one slot each) or
//! shared (one word for all, as on the FVP AEMv8). The DTB is QEMU's own
//! with every CPU switched to `enable-method = "spin-table"`, a `/psci` for
//! the firmware's SYSTEM_OFF, and the release page in `/reserved-memory`.
//!
//! Two routes to Armature:
//! - direct: the payload is Armature, with the DTB in x0;
//! - through U-Boot (`…_through_uboot…`): the payload is Debian's U-Boot,
//!   loaded into RAM; its distro boot runs a `boot.scr` that loads
//!   Armature and the spin-table DTB from a virtio disk and `booti`s
//!   Armature with that DTB (which `booti` moves), while the secondaries
//!   still wait in the firmware. The release page lies below U-Boot, as
//!   U-Boot takes the top of RAM for itself.
//!
//! Per route and configuration (2 and 4 CPUs, per-CPU and shared release
//! addresses), one boot checked for:
//! - the banner, the boot plan naming every CPU's spin table and release
//!   address, the reservation, the firmware's PSCI, and power-off through
//!   the firmware: QEMU exits with status 0 by semihosting;
//! - the secondaries: every secondary reports
//!   `CPU i (MPIDR 0x…) online via spin-table` and the summary counts them
//!   all (Armature's spin-table bring-up).
//!
//! And the firmware on its own: unconfigured, or without EL3, it says why
//! and ends QEMU with a non-zero status instead of hanging; and a U-Boot
//! layout that cannot work is refused before QEMU runs.

mod common;

use common::{Banner, DtbAt, assert_lines_in_order};
use std::time::Duration;
use xtask::firmware::{self, Payload, ReleaseLayout, SpinTable, SpinTableBoot};
use xtask::runner::{Ending, Outcome, RunOptions};
use xtask::uboot::{BootScript, Environment};
use xtask::{Arch, Expect, paths};

/// How Armature gets to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// The firmware enters Armature.
    Direct,
    /// The firmware enters U-Boot, whose boot script `booti`s Armature.
    UBoot,
}

/// Boots the default AArch64 image through the firmware with `smp` CPUs and
/// release addresses laid out as `layout`, by `route`: the banner for the
/// spin-table DT, power-off, QEMU exiting 0 through the firmware's
/// semihosting exit.
fn boot(test: &str, smp: u32, layout: ReleaseLayout, route: Route) -> (SpinTableBoot, Outcome) {
    let image = common::image(Arch::Aarch64, &[]);
    let machine = SpinTable::new(smp, layout);
    let dir = common::scratch(test);
    let prepared = match route {
        Route::Direct => machine.prepare(&dir, &image),
        Route::UBoot => machine.prepare_uboot(&dir, &image, BootScript::new(Arch::Aarch64), Environment::Fast),
    };
    let boot = prepared.unwrap_or_else(|e| panic!("{test}: preparing the spin-table boot: {e}"));
    let firmware_line = boot.firmware_line();
    let mut earlier = vec![firmware_line.as_str()];
    let dtb = match (route, &boot.payload) {
        (Route::Direct, Payload::Armature) => DtbAt::Exactly(boot.dtb_addr()),
        (Route::UBoot, Payload::UBoot { .. }) => {
            earlier.extend(common::uboot_lines(Arch::Aarch64));
            DtbAt::MovedFrom(boot.dtb_addr())
        }
        (route, payload) => panic!("{route:?} boot prepared with payload {payload:?}"),
    };
    let banner = Banner::new(Arch::Aarch64, &boot.dt, boot.armature_load(), dtb);
    let outcome = common::boot(test, &boot.qemu, &banner.boot_expect_after(&earlier));
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

/// One test per route and configuration: one boot, checked for the boot
/// itself and for the secondaries.
macro_rules! configurations {
    ($($name:ident: $smp:expr, $layout:ident, $route:ident;)*) => {$(
        #[test]
        fn $name() {
            let test = concat!("spin-table-", stringify!($name));
            let (boot, outcome) = boot(test, $smp, ReleaseLayout::$layout, Route::$route);
            check_plan(&boot, &outcome);
            check_online(&boot, &outcome);
        }
    )*};
}

configurations! {
    smp2_per_cpu: 2, PerCpu, Direct;
    smp2_shared: 2, Shared, Direct;
    smp4_per_cpu: 4, PerCpu, Direct;
    smp4_shared: 4, Shared, Direct;
    smp2_per_cpu_through_uboot: 2, PerCpu, UBoot;
    smp2_shared_through_uboot: 2, Shared, UBoot;
    smp4_per_cpu_through_uboot: 4, PerCpu, UBoot;
    smp4_shared_through_uboot: 4, Shared, UBoot;
}

/// Through U-Boot, the release page lies below U-Boot's load address, not
/// at the top of RAM where U-Boot relocates itself; the firmware enters
/// U-Boot with QEMU's DT (U-Boot's control DT), and U-Boot reads the
/// spin-table DTB from the disk.
#[test]
fn uboot_layout_keeps_the_release_page_below_u_boot() {
    let test = "spin-table-uboot-layout";
    let image = common::image(Arch::Aarch64, &[]);
    let boot = SpinTable::new(2, ReleaseLayout::PerCpu)
        .prepare_uboot(&common::scratch(test), &image, BootScript::new(Arch::Aarch64), Environment::Fast)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(boot.config.entry, firmware::UBOOT_ADDR);
    assert_eq!(boot.config.release_page, firmware::UBOOT_RELEASE_PAGE);
    assert_eq!(boot.config.release_page + firmware::RELEASE_PAGE_SIZE, firmware::UBOOT_ADDR);
    assert_eq!(boot.config.dtb, 0x4000_0000, "U-Boot gets QEMU's DT, at the RAM base");
    assert_eq!((boot.armature_load(), boot.dtb_addr()), (xtask::uboot::KERNEL_ADDR_R, firmware::DTB_ADDR));
    let Payload::UBoot { boot: media, .. } = &boot.payload else { panic!("payload {:?}", boot.payload) };
    assert!(media.env_flash.is_some(), "the fast environment is in flash bank 1");
    let line = boot.qemu.command_line();
    for part in [
        format!("-bios {} ", boot.firmware.display()),
        format!("loader,file=/usr/lib/u-boot/qemu_arm64/u-boot.bin,addr={:#x},force-raw=on", firmware::UBOOT_ADDR),
        format!("file={}", media.disk.display()),
        "secure=on".to_string(),
    ] {
        assert!(line.contains(&part), "{part:?} missing from {line}");
    }
    assert!(!line.contains(&boot.dtb.display().to_string()), "the DTB comes from the disk, not QEMU: {line}");
    // The disk's boot partition (at 1 MiB) holds the spin-table DTB as is.
    let copy = common::scratch(&format!("{test}-copy")).join(xtask::uboot::DTB_FILE);
    let partition = format!("{}@@{}", media.disk.display(), xtask::disk::PARTITION_START_LBA * xtask::disk::SECTOR);
    let status = std::process::Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", &partition, &format!("::/{}", xtask::uboot::DTB_FILE)])
        .arg(&copy)
        .status()
        .expect("running mcopy (mtools: ./x setup)");
    assert!(status.success(), "mcopy of {} from {partition}", xtask::uboot::DTB_FILE);
    assert_eq!(paths::read(&copy).unwrap(), paths::read(&boot.dtb).unwrap(), "the DTB on the disk");
}

/// A layout that cannot work through U-Boot is refused before QEMU runs:
/// a release page at the top of RAM (U-Boot relocates itself there, and
/// its page tables would land in the release slots), or too little RAM
/// for U-Boot below its relocated copy.
#[test]
fn uboot_layouts_that_cannot_work_are_refused() {
    let image = common::image(Arch::Aarch64, &[]);
    let refused = |test: &str, machine: SpinTable| {
        machine
            .prepare_uboot(&common::scratch(test), &image, BootScript::new(Arch::Aarch64), Environment::Fast)
            .map(|b| b.qemu.command_line())
            .expect_err("this layout must be refused")
            .message()
            .to_string()
    };
    let top = refused("spin-table-uboot-top-page", SpinTable::new(2, ReleaseLayout::PerCpu).release_page(0x7fff_f000));
    assert_eq!(
        top,
        "the release page at 0x7ffff000 (+0x1000) overlaps U-Boot's relocated copy (top of RAM) at 0x7c000000 (+0x4000000)"
    );
    let small = refused("spin-table-uboot-256m", SpinTable::new(2, ReleaseLayout::Shared).memory("256M"));
    assert!(small.contains("overlaps U-Boot's relocated copy (top of RAM) at 0x4c000000"), "{small}");
    let unaligned = refused("spin-table-uboot-unaligned", SpinTable::new(2, ReleaseLayout::Shared).load(0x4c00_0800));
    assert!(unaligned.contains("4 KiB-aligned"), "{unaligned}");
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

/// A spin-table board without PSCI firmware (its device tree has no
/// `/psci`): Armature says it has no power control and goes on, the
/// secondaries come up by spin table, and the final power-off becomes a
/// halt (the firmware's SYSTEM_OFF is never called).
#[test]
fn no_psci_is_not_fatal() {
    let test = "spin-table-no-psci";
    let image = common::image(Arch::Aarch64, &[]);
    let dir = common::scratch(test);
    let boot = SpinTable::new(2, ReleaseLayout::PerCpu)
        .prepare(&dir, &image)
        .unwrap_or_else(|e| panic!("{test}: preparing the spin-table boot: {e}"));
    common::fdtput(&boot.dtb, &["-r", "/psci"]);
    let expect = Expect::new()
        .markers([
            "WARN  PSCI: required node /psci is missing; no firmware power control (CPU_OFF, SYSTEM_OFF): power-off requests halt",
            "online via spin-table",
            "CPUs online: 2 of 2",
            "Boot complete",
            "no PSCI firmware to power off: halting",
        ])
        .failure_markers(["PANIC", "----[ Armature", "FATAL"])
        .stop_on("no PSCI firmware to power off: halting")
        .timeout(common::BOOT_TIMEOUT);
    common::boot(test, &boot.qemu, &expect);
}
