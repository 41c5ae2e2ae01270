//! AArch64 boots loaded by QEMU itself (`-kernel`): the banner on GICv2 and
//! GICv3 with one and four CPUs and several RAM sizes, checked against the
//! device tree QEMU generates for each machine, a clean PSCI power-off; and
//! entry at EL1, which Armature must refuse.

mod common;

use common::{BOOT_TIMEOUT, direct_boot};
use xtask::{Expect, Qemu};

#[test]
fn gicv3_smp4_1g() {
    direct_boot("aarch64-direct-gicv3-smp4-1g", Qemu::aarch64().gic(3).smp(4).memory("1G"));
}

#[test]
fn gicv3_smp1_512m() {
    direct_boot("aarch64-direct-gicv3-smp1-512m", Qemu::aarch64().gic(3).smp(1).memory("512M"));
}

#[test]
fn gicv2_smp4_2g() {
    direct_boot("aarch64-direct-gicv2-smp4-2g", Qemu::aarch64().gic(2).smp(4).memory("2G"));
}

#[test]
fn gicv2_smp1_1g() {
    direct_boot("aarch64-direct-gicv2-smp1-1g", Qemu::aarch64().gic(2).smp(1).memory("1G"));
}

/// `-append` reaches Armature through `/chosen/bootargs`.
#[test]
fn command_line_from_append() {
    let outcome = direct_boot("aarch64-direct-append", Qemu::aarch64().append("loglvl=info poweroff"));
    assert!(outcome.log.contains("Command line: \"loglvl=info poweroff\""), "{}", outcome.log);
}

/// Without `virtualization=on` QEMU enters at EL1: Armature says why it
/// cannot run and halts (it never powers off, so the run stops on "halted.").
#[test]
fn el1_entry_is_refused() {
    let image = common::image(xtask::Arch::Aarch64, &[]);
    let qemu = Qemu::aarch64().virtualization(false).smp(1).kernel(&image.bin);
    let expect = Expect::new()
        .markers(["FATAL: not started at the hypervisor level", "CurrentEL=1 (EL1)", "halted."])
        .failure_markers(["PANIC", "----[ Armature", "Boot complete"])
        .stop_on("halted.")
        .timeout(BOOT_TIMEOUT);
    common::boot("aarch64-el1-refused", &qemu, &expect);
}
