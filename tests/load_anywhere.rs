//! The load-address matrix: Armature boots from any 4 KiB-aligned load
//! address, not only where QEMU's `-kernel` (RAM + 2 MiB) and U-Boot's
//! `booti` (2 MiB aligned) put it.
//!
//! Each boot runs the shim (`xtask::shim`): QEMU's `-kernel` loads the shim
//! at RAM + 2 MiB and enters it with x0 = the DTB; QEMU's generic loader
//! (`-device loader,…,force-raw=on`, which sets no PC) puts Armature at the
//! load address; the shim `br`s there with x0 untouched. Every boot must
//! print the banner for the machine's real device tree, with `Load address:`
//! the chosen address and the DTB where QEMU put it, name the identity page
//! (load + `__idmap_start`) and the MMU path it took, and power off with
//! QEMU exiting 0.
//!
//! # The matrix
//!
//! QEMU virt RAM starts at 0x40000000. Already in RAM, and kept clear of
//! the whole image including its BSS (`image_end` of the built image, a few
//! hundred KiB; `ShimBoot::prepare` refuses overlaps, naming them, and QEMU
//! itself refuses overlapping files): QEMU's boot stub at 0x40000000
//! (0x28 bytes), the shim at 0x40200000 (0x54 bytes), the DTB at
//! 0x48000000 (1 MiB). So "start of RAM" is the first free slot of each
//! alignment: 0x40001000 (the page after the boot stub) for 4 KiB, and
//! 0x40400000 for 2 MiB (0x40000000 holds the boot stub, 0x40200000 the
//! shim). "End of RAM" is computed from the built image: the image ends
//! exactly at the end of RAM (4 KiB) or in the last 2 MiB block (2 MiB).
//!
//! | row                | RAM     | load                        | default build | `clash-test` build |
//! |--------------------|---------|-----------------------------|---------------|--------------------|
//! | `start_4k_512m`    | 512 MiB | 0x40001000                  | identity only | temporary alias    |
//! | `end_4k_512m`      | 512 MiB | 0x60000000 - image, 4 KiB   | identity only | temporary alias    |
//! | `start_2m_1g`      | 1 GiB   | 0x40400000                  | identity only | temporary alias    |
//! | `end_2m_1g`        | 1 GiB   | 0x7fe00000                  | identity only | temporary alias    |
//! | `last_clash_4k_4g` | 4 GiB   | 0xbfffe000                  | identity only | temporary alias    |
//! | `straddle_4k_4g`   | 4 GiB   | 0xbffff000                  | identity only | identity only      |
//! | `middle_2m_4g`     | 4 GiB   | 0xc0000000                  | identity only | identity only      |
//! | `end_4k_4g`        | 4 GiB   | 0x140000000 - image, 4 KiB  | identity only | identity only      |
//!
//! The default build runs the image at 10 TiB, so no load address clashes.
//! The `clash-test` build runs it at 0x40000000, and the alias is taken iff
//! the *identity page* (load + 0x1000) lies in the runtime range
//! [0x40000000, 0xc0000000): 0xbfffe000 is the last 4 KiB load address
//! whose identity page (0xbffff000) clashes; at 0xbffff000 the image starts
//! inside the range but its identity page (0xc0000000) does not, so no
//! alias; 0xc0000000 is the middle of 4 GiB of RAM, the first 2 MiB load
//! address above the range. With 4 GiB the end of RAM is above 4 GiB, so
//! that load address does not fit in 32 bits (the shim's `movk …, lsl #32`
//! is not zero).
//!
//! Also: one U-Boot boot with the image loaded at an address that is not
//! 2 MiB aligned, which `booti` moves to the next 2 MiB boundary.
//!
//! Console logs: `target/armature/logs/load-anywhere-*.log`.

mod common;

use common::{Banner, DtbAt, assert_lines_in_order};
use xtask::runner::Outcome;
use xtask::shim::{self, ShimBoot};
use xtask::uboot::{self, BootScript, Environment, FDT_ADDR};
use xtask::{Arch, Image, Qemu};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Where the image goes in RAM.
#[derive(Clone, Copy, Debug)]
enum Place {
    /// At this physical address.
    At(u64),
    /// As high as the image (BSS included) fits, aligned down to `align`.
    End { align: u64 },
}

/// Which image is booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Build {
    /// The default build: runs at `0xa0000000000` (10 TiB).
    Default,
    /// `--features clash-test`: runs at `0x40000000`, inside QEMU's RAM.
    ClashTest,
}

impl Build {
    fn features(self) -> &'static [&'static str] {
        match self {
            Build::Default => &[],
            Build::ClashTest => &["clash-test"],
        }
    }

    /// The runtime virtual address (`IMAGE_VA` in `boot/early/src/layout.rs`).
    fn image_va(self) -> u64 {
        match self {
            Build::Default => 0xa00_0000_0000,
            Build::ClashTest => 0x4000_0000,
        }
    }
}

/// Which way the early MMU code went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MmuPath {
    /// Identity page and runtime image mapped at once.
    IdentityOnly,
    /// The identity page clashed with the runtime range: through the alias.
    TemporaryAlias,
}

/// Where a 2 GiB runtime range ends and the temporary alias starts
/// (`ALIAS_VA = IMAGE_VA + RUNTIME_SPAN`).
const RUNTIME_SPAN: u64 = 2 * GIB;

/// The identity page's offset in the image: `__idmap_start` (0x1000).
fn idmap_offset(image: &Image) -> u64 {
    let elf = xtask::paths::read(&image.elf).unwrap_or_else(|e| panic!("{e}"));
    let offset = xtask::image::symbol(&elf, Arch::Aarch64, "__idmap_start").unwrap_or_else(|e| panic!("{e}"));
    assert!(offset.is_multiple_of(4 * KIB) && offset < image.image_end, "__idmap_start is {offset:#x}");
    offset
}

/// The decimal number right after `prefix` in `line`.
fn dec_after(line: &str, prefix: &str) -> u64 {
    let rest = line.split(prefix).nth(1).unwrap_or_else(|| panic!("no {prefix:?} in {line:?}"));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|e| panic!("{prefix:?} in {line:?}: {e}"))
}

/// Checks the MMU lines of a boot of `image` loaded at `load`: the
/// identity page, the path taken, where the boot tables are (inside the
/// loaded image's BSS), and what was removed afterwards.
fn check_mmu(outcome: &Outcome, image: &Image, build: Build, load: u64, path: MmuPath) {
    let va = build.image_va();
    let idmap = load + idmap_offset(image);
    let on = match path {
        MmuPath::IdentityOnly => {
            format!("MMU: on; identity page {idmap:#x} (no clash with the runtime range at {va:#x})")
        }
        MmuPath::TemporaryAlias => format!(
            "MMU: on; identity page {idmap:#x} clashed with the runtime range at {va:#x}: \
             went through the temporary alias at {:#x}",
            va + RUNTIME_SPAN
        ),
    };
    let image_line = format!("MMU: image {load:#x} -> VA {va:#x}; boot tables at 0x");
    assert_lines_in_order(outcome, &[&format!("Load address: {load:#x} (image {va:#x}-"), &on, &image_line]);

    let line = outcome.line_with(&image_line).expect("checked above");
    let tables = common::parse_hex_after(line, "boot tables at ")
        .unwrap_or_else(|| panic!("no hex after \"boot tables at \" in {line:?}"));
    assert!(
        (load..load + image.image_end).contains(&tables),
        "boot tables at {tables:#x}, outside the image {load:#x}-{:#x}\n{}",
        load + image.image_end - 1,
        outcome.log
    );
    let (identity, alias) = (dec_after(line, "removed "), dec_after(line, " identity and "));
    assert_eq!(identity, 1, "identity pages removed: {line}");
    match path {
        MmuPath::IdentityOnly => assert_eq!(alias, 0, "no alias expected: {line}"),
        MmuPath::TemporaryAlias => assert!(alias > 0, "the alias was not removed: {line}"),
    }
}

/// Boots `build` loaded at `place` in a machine with `ram` bytes of RAM
/// through the shim, and checks the banner, the path and the power-off.
fn boot_at(test: &str, ram: u64, place: Place, build: Build, path: MmuPath) {
    let image = common::image(Arch::Aarch64, build.features());
    let qemu = Qemu::aarch64().gic(3).smp(2).memory(format!("{}M", ram / MIB));
    let dt = common::machine_dtb(test, &qemu);
    let banks = dt.memory_banks();
    assert_eq!(banks.len(), 1, "QEMU virt has one RAM bank: {banks:x?}");
    let (ram_base, ram_size) = banks[0];
    assert_eq!(ram_size, ram, "-m {}M", ram / MIB);

    let load = match place {
        Place::At(addr) => addr,
        Place::End { align } => (ram_base + ram_size - image.image_end) / align * align,
    };
    let boot = ShimBoot::prepare(&common::scratch(test), &image, load, ram_base, ram_size)
        .unwrap_or_else(|e| panic!("{test}: {e}"));
    let qemu = boot.apply(qemu);
    let dtb = DtbAt::Exactly(ram_base + shim::qemu_dtb_offset(ram_size));
    let banner = Banner::new(Arch::Aarch64, &dt, load, dtb);
    let outcome = common::boot(test, &qemu, &banner.boot_expect());
    banner.check_values(&outcome);
    check_mmu(&outcome, &image, build, load, path);
    let alignment = if load.is_multiple_of(2 * MIB) { "2 MiB" } else { "4 KiB" };
    eprintln!("{test}: {} MiB RAM, load {load:#x} ({alignment} aligned), {build:?} build: {path:?}", ram / MIB);
}

/// One module per row, with a test per build: `default` (which never
/// clashes) and `clash_test` (expected path given in the row).
macro_rules! matrix {
    ($($(#[$doc:meta])* $row:ident: $ram:expr, $place:expr, clash_test => $clash_path:ident;)*) => {$(
        $(#[$doc])*
        mod $row {
            use super::*;

            #[test]
            fn default() {
                let test = concat!("load-anywhere-", stringify!($row), "-default");
                boot_at(test, $ram, $place, Build::Default, MmuPath::IdentityOnly);
            }

            #[test]
            fn clash_test() {
                let test = concat!("load-anywhere-", stringify!($row), "-clash-test");
                boot_at(test, $ram, $place, Build::ClashTest, MmuPath::$clash_path);
            }
        }
    )*};
}

matrix! {
    /// First free 4 KiB page: right after QEMU's boot stub.
    start_4k_512m: 512 * MIB, Place::At(0x4000_1000), clash_test => TemporaryAlias;
    /// The image (with BSS) ends exactly at the end of 512 MiB.
    end_4k_512m: 512 * MIB, Place::End { align: 4 * KIB }, clash_test => TemporaryAlias;
    /// First free 2 MiB slot: 0x40000000 holds the boot stub, 0x40200000 the shim.
    start_2m_1g: GIB, Place::At(0x4040_0000), clash_test => TemporaryAlias;
    /// The last 2 MiB block of 1 GiB.
    end_2m_1g: GIB, Place::End { align: 2 * MIB }, clash_test => TemporaryAlias;
    /// The last load address whose identity page (0xbffff000) clashes.
    last_clash_4k_4g: 4 * GIB, Place::At(0xbfff_e000), clash_test => TemporaryAlias;
    /// The image starts in the runtime range, its identity page (0xc0000000) does not.
    straddle_4k_4g: 4 * GIB, Place::At(0xbfff_f000), clash_test => IdentityOnly;
    /// The middle of 4 GiB, the first 2 MiB slot above the runtime range.
    middle_2m_4g: 4 * GIB, Place::At(0xc000_0000), clash_test => IdentityOnly;
    /// The image ends exactly at the end of 4 GiB of RAM, above 4 GiB.
    end_4k_4g: 4 * GIB, Place::End { align: 4 * KIB }, clash_test => IdentityOnly;
}

/// U-Boot 2023.01 `booti` with the image loaded at 0x50001000: the Image
/// header says "anywhere" (flags bit 3) with text_offset 0, so `booti`
/// moves it to the next 2 MiB boundary, `ALIGN(0x50001000, 2 MiB)` =
/// 0x50200000 (`booti_setup`, `arch/arm/lib/image.c`), says so, and
/// Armature runs from there.
#[test]
fn booti_moves_an_unaligned_image_up_to_2m() {
    const LOADED: u64 = 0x5000_1000;
    let test = "load-anywhere-booti-unaligned";
    let moved = LOADED.next_multiple_of(2 * MIB);
    let image = common::image(Arch::Aarch64, &[]);
    let script = BootScript::new(Arch::Aarch64).bootargs("loglvl=info").kernel_addr_r(LOADED);
    let firmware = uboot::prepare(&common::scratch(test), &image.bin, &script, Environment::Fast)
        .unwrap_or_else(|e| panic!("{e}"));
    let qemu = firmware.apply(Qemu::aarch64().gic(3).smp(2).memory("1G"));
    let dt = common::machine_dtb(test, &qemu);
    let banner = Banner::new(Arch::Aarch64, &dt, moved, DtbAt::MovedFrom(FDT_ADDR)).cmdline("loglvl=info");
    // U-Boot prints the end (image_size past the new address) without 0x.
    let moving = format!("Moving Image from {LOADED:#x} to {moved:#x}, end={:x}", moved + image.image_end);
    let [uboot, script_runs, booti] = common::uboot_lines(Arch::Aarch64);
    let booti_at = format!("{booti} {LOADED:#x} - {FDT_ADDR:#x}");
    let outcome = common::boot(test, &qemu, &banner.boot_expect_after(&[uboot, script_runs, &booti_at, &moving]));
    banner.check_values(&outcome);
    check_mmu(&outcome, &image, Build::Default, moved, MmuPath::IdentityOnly);
}
