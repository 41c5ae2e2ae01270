//! The early MMU (AArch64): the boot tables built by `boot/early`, the MMU
//! switch from the identity page, and the temporary alias when the load
//! address clashes with the runtime virtual range. Also the build-time
//! check that the early code uses PC-relative addressing only.

mod common;

use common::{DtbAt, assert_lines_in_order, direct_boot, direct_boot_image, uboot_boot_image};
use xtask::build::{self, CargoOutput, Variant};
use xtask::uboot::{Environment, FDT_ADDR};
use xtask::{Arch, Qemu};

/// The default layout runs the image at 10 TiB: no load address in QEMU's
/// RAM clashes, so the identity page is mapped beside the runtime image and
/// removed once the CPU runs at the runtime address.
#[test]
fn identity_only_path() {
    let outcome = direct_boot("aarch64-mmu-identity-only", Qemu::aarch64().gic(3).smp(2).memory("1G"));
    assert_lines_in_order(
        &outcome,
        &[
            "Load address: 0x40200000 (image 0xa0000000000-",
            "MMU: on; identity page 0x40201000 (no clash with the runtime range at 0xa0000000000)",
            "MMU: image 0x40200000 -> VA 0xa0000000000; boot tables at 0x",
            "removed 1 identity and 0 alias page(s)",
            "DTB: ",
        ],
    );
}

/// The `clash-test` layout runs the image at 1 GiB, inside QEMU's RAM: the
/// load address clashes, so the boot goes through the temporary alias, and
/// afterwards both the identity page and the whole alias are gone.
fn clash(test: &str, memory: &str) {
    let outcome = direct_boot_image(test, Qemu::aarch64().gic(3).smp(2).memory(memory), &["clash-test"]);
    assert_lines_in_order(
        &outcome,
        &[
            "Load address: 0x40200000 (image 0x40000000-",
            "MMU: on; identity page 0x40201000 clashed with the runtime range at 0x40000000: \
             went through the temporary alias at 0xc0000000",
            "MMU: image 0x40200000 -> VA 0x40000000; boot tables at 0x",
            "removed 1 identity and ",
            " alias page(s)",
        ],
    );
    assert!(!outcome.log.contains("removed 1 identity and 0 alias"), "alias not removed\n{}", outcome.log);
}

#[test]
fn clash_path_512m() {
    clash("aarch64-mmu-clash-512m", "512M");
}

#[test]
fn clash_path_4g() {
    clash("aarch64-mmu-clash-4g", "4G");
}

/// The same through U-Boot's `booti` (load address 0x40400000).
#[test]
fn clash_path_through_uboot() {
    let outcome = uboot_boot_image(
        "aarch64-mmu-clash-uboot",
        Qemu::aarch64().gic(2).smp(2).memory("1G"),
        Environment::Fast,
        "loglvl=info",
        DtbAt::MovedFrom(FDT_ADDR),
        &["clash-test"],
    );
    assert_lines_in_order(
        &outcome,
        &[
            "Load address: 0x40400000 (image 0x40000000-",
            "MMU: on; identity page 0x40401000 clashed with the runtime range at 0x40000000",
            "MMU: image 0x40400000 -> VA 0x40000000",
        ],
    );
}

/// The check passes on the real early code, in both profiles, and has
/// something to check.
#[test]
fn early_code_check_passes_real_code() {
    for release in [false, true] {
        let n = xtask::early_check::run(&Variant::new(Arch::Aarch64).release(release)).unwrap_or_else(|e| panic!("{e}"));
        assert!(n > 50, "only {n} relocations checked");
    }
}

/// A static holding a pointer planted in the early code (feature
/// `plant-absolute-reloc`) makes the image build fail, naming it.
#[test]
fn early_code_check_catches_a_planted_absolute_address() {
    let variant = Variant::new(Arch::Aarch64).features(["plant-absolute-reloc"]);
    let err = match build::build(&variant, CargoOutput::Capture) {
        Ok(image) => panic!("the build with a planted absolute relocation succeeded: {}", image.bin.display()),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("early-code check failed"), "{err}");
    assert!(err.contains("R_AARCH64_ABS64"), "{err}");
    assert!(err.contains("PLANTED"), "{err}");
}
