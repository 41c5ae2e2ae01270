//! ARMv7-A boots: `qemu-system-arm -M virt,virtualization=on,highmem=off
//! -cpu cortex-a15` enters the zImage in HYP mode, loaded by QEMU itself
//! (`-kernel`) or by U-Boot (`bootz`, which leaves the DTB at `fdt_addr`).
//! The banner is checked against the machine's device tree as on AArch64,
//! and the machine must power off cleanly.

mod common;

use common::{DtbAt, uboot_boot};
use xtask::Qemu;
use xtask::uboot::{Environment, FDT_ADDR};

#[test]
fn hyp_smp2_1g() {
    common::direct_boot("armv7-direct-gicv2-smp2-1g", Qemu::armv7().smp(2).memory("1G"));
}

#[test]
fn bootz_smp2() {
    uboot_boot(
        "armv7-uboot-gicv2-smp2",
        Qemu::armv7().smp(2),
        Environment::Fast,
        "loglvl=info",
        DtbAt::Exactly(FDT_ADDR),
    );
}
