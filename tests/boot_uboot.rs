//! AArch64 boots through firmware: QEMU runs Debian's U-Boot, whose distro
//! boot finds `boot.scr` on a virtio disk and starts Armature with `booti`.
//! `booti` runs the image at `kernel_addr_r` (0x40400000) and moves the DTB
//! away from `fdt_addr` (0x40000000) before jumping.

mod common;

use common::{DtbAt, uboot_boot};
use xtask::Qemu;
use xtask::uboot::{Environment, FDT_ADDR};

#[test]
fn booti_gicv3_smp4() {
    uboot_boot(
        "aarch64-uboot-gicv3-smp4",
        Qemu::aarch64().gic(3).smp(4),
        Environment::Fast,
        "loglvl=info",
        DtbAt::MovedFrom(FDT_ADDR),
    );
}

/// U-Boot's default environment (2 s countdown, probing every boot target)
/// still finds the script by itself.
#[test]
fn booti_default_environment_gicv2_smp2_2g() {
    let qemu = Qemu::aarch64().gic(2).smp(2).memory("2G");
    uboot_boot(
        "aarch64-uboot-defenv-gicv2-smp2",
        qemu,
        Environment::BuiltIn,
        "console=dtuart",
        DtbAt::MovedFrom(FDT_ADDR),
    );
}
