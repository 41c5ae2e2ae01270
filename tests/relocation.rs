//! Relocation (AArch64): the image moves from its load address to the top
//! of RAM, below everything that must not be overwritten, and switches to
//! the runtime tables. The `poison-old-image` build overwrites the original
//! load region right after the move with `udf` instructions: a boot that
//! still used anything there would crash instead of powering off.

mod common;

use common::{BOOT_TIMEOUT, DtbAt, assert_lines_in_order, direct_boot_image, image, parse_hex_after, scratch, uboot_boot_image};
use xtask::uboot::{Environment, FDT_ADDR};
use xtask::{Arch, Expect, Qemu};

const MIB: u64 = 1 << 20;

/// The image (a few hundred KiB) goes to the last 2 MiB of the only bank.
fn top_of_ram(test: &str, memory: &str, ram_end: u64, features: &[&str]) {
    let outcome = direct_boot_image(test, Qemu::aarch64().gic(3).smp(2).memory(memory), features);
    let dest = ram_end - 2 * MIB;
    assert_lines_in_order(
        &outcome,
        &[
            &format!("Relocated: 0x40200000 -> {dest:#x} ("),
            "top of the bank; runtime tables: ",
            "Relocated: original load region 0x40200000-",
            "released",
            // The page allocator claims the image at its new place, and the
            // original load region is free memory again.
            &format!("frames: claimed {dest:#014x}-"),
            "(hypervisor image)",
            "frames: free 0x000040000000-",
            "Heap: 2048 KiB at PA 0x",
            "Powering off via PSCI SYSTEM_OFF",
        ],
    );
    if features.contains(&"poison-old-image") {
        assert!(outcome.log.contains("original load region poisoned"), "{}", outcome.log);
    }
}

#[test]
fn to_the_top_of_512m() {
    top_of_ram("aarch64-reloc-512m", "512M", 0x6000_0000, &["poison-old-image"]);
}

#[test]
fn to_the_top_of_1g() {
    top_of_ram("aarch64-reloc-1g", "1G", 0x8000_0000, &[]);
}

#[test]
fn to_the_top_of_4g_poisoned() {
    top_of_ram("aarch64-reloc-4g", "4G", 0x1_4000_0000, &["poison-old-image"]);
}

/// With the clash layout the boot first goes through the temporary alias,
/// then relocates: both mechanisms in one boot.
#[test]
fn clash_then_relocate_poisoned() {
    top_of_ram("aarch64-reloc-clash-1g", "1G", 0x8000_0000, &["clash-test", "poison-old-image"]);
}

/// Boot modules listed in `/chosen` (the Xen binding) fill the top 24 MiB:
/// the image must go below them, never over them. (Both are ramdisks: a
/// kernel module would be started as dom0, and these hold no code.)
#[test]
fn below_boot_modules_at_the_top_of_ram() {
    let test = "aarch64-reloc-below-modules";
    let img = image(Arch::Aarch64, &["poison-old-image"]);
    let qemu = Qemu::aarch64().gic(3).smp(1).memory("1G");
    let dtb = scratch(test).join("modules.dtb");
    common::dump_machine_dtb(&qemu, &dtb);
    for (base, size) in [(0x7f00_0000u64, 0x100_0000u64), (0x7e80_0000, 0x80_0000)] {
        xtask::fdt::add_chosen_module(&dtb, base, size, &["multiboot,ramdisk"]).unwrap_or_else(|e| panic!("{e}"));
    }
    let qemu = qemu.kernel(&img.bin).dtb(&dtb);
    let expect = Expect::new()
        .markers([
            "Relocated: 0x40200000 -> 0x7e600000 (",
            "below 0x00007e800000-0x00007effffff",
            "frames: claimed 0x00007e800000-0x00007effffff (boot module)",
            "frames: claimed 0x00007f000000-0x00007fffffff (boot module)",
            "Powering off via PSCI SYSTEM_OFF",
        ])
        .failure_markers(["PANIC", "----[ Armature", "FATAL"])
        .timeout(BOOT_TIMEOUT);
    common::boot(test, &qemu, &expect);
}

/// Through U-Boot: `booti` moves the DTB to just below U-Boot at the top of
/// RAM; the image must land below that DTB.
#[test]
fn through_uboot_below_the_moved_dtb() {
    let outcome = uboot_boot_image(
        "aarch64-reloc-uboot",
        Qemu::aarch64().gic(2).smp(2).memory("1G"),
        Environment::Fast,
        "loglvl=info",
        DtbAt::MovedFrom(FDT_ADDR),
        &["poison-old-image"],
    );
    let dtb = outcome
        .log
        .lines()
        .find(|l| l.contains("DTB address: 0x"))
        .and_then(|l| parse_hex_after(l, "DTB address: "))
        .expect("DTB address in the log");
    let line = outcome.log.lines().find(|l| l.contains("Relocated: 0x40400000 -> ")).expect("relocation line");
    let dest = parse_hex_after(line, " -> ").unwrap();
    assert!(dest + 2 * MIB <= dtb || dest >= dtb + MIB, "image at {dest:#x} overlaps the DTB at {dtb:#x}\n{}", outcome.log);
    assert_eq!(dest % (2 * MIB), 0);
    assert!(outcome.log.contains("original load region poisoned"), "{}", outcome.log);
}
