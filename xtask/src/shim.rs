//! A loader shim that boots an arm64 Image from any load address on QEMU virt.
//!
//! QEMU's `-kernel` always puts an arm64 Image at RAM base + 2 MiB (for
//! text_offset 0), and U-Boot's `booti` moves it to a 2 MiB boundary, so
//! neither can test the other load addresses Armature must run from. The
//! shim makes that possible without an assembler:
//!
//! - the shim is a tiny arm64 Image (a valid 64-byte header, text_offset 0,
//!   flags 0xa) that QEMU's `-kernel` loads at RAM + 2 MiB and enters with
//!   x0 = the DTB, like any kernel. Its code moves the target address into
//!   x16 with `movz`/`movk` and `br`s there, leaving x0–x3 alone;
//! - Armature goes to the target address with QEMU's generic loader,
//!   `-device loader,file=…,addr=…,force-raw=on`
//!   ([`crate::Qemu::load_at`]). Without `cpu-num` the generic loader only
//!   copies the file: it does not set any CPU's PC (QEMU's
//!   `hw/core/generic-loader.c`: "only set the PC if they also specified a
//!   CPU to use"), so the CPU still starts in QEMU's boot stub, then the
//!   shim.
//!
//! QEMU registers every loaded file as a ROM blob and refuses to start when
//! two overlap ("rom: requested regions overlap"), but it only knows file
//! sizes, not the image's BSS. [`check_placement`] checks the whole image
//! (up to `image_end`) against what QEMU's direct boot puts in RAM
//! ([`occupied`]): the boot stub at the RAM base, the shim at RAM + 2 MiB
//! and the DTB at RAM + min(RAM/2, 128 MiB).

use crate::paths::write_atomic;
use crate::{Arch, Error, Image, Qemu, Result};
use std::path::{Path, PathBuf};

/// The scratch register the shim jumps through: x16 (IP0), which the
/// procedure call standard leaves to veneers. x0 (the DTB) and x1–x3 (zero,
/// per the arm64 boot protocol) keep what QEMU's boot stub set.
pub const SCRATCH: u8 = 16;
/// Size of the arm64 Image header; the shim's code follows it.
pub const HEADER_SIZE: usize = 0x40;
/// The shim's header flags: little endian, 4 KiB pages, placeable anywhere
/// (the same as Armature's, [`crate::image::ARM64_FLAGS`]).
pub const FLAGS: u64 = crate::image::ARM64_FLAGS;
/// Size of the shim: the header, `movz` + 3 × `movk`, `br`.
pub const SIZE: usize = HEADER_SIZE + 5 * 4;

/// Where QEMU's `-kernel` puts an arm64 Image with text_offset 0 (and a
/// non-zero image_size): RAM base + 2 MiB, above its boot stub.
pub const QEMU_KERNEL_OFFSET: u64 = 2 << 20;
/// QEMU's AArch64 boot stub at the RAM base: 6 instructions and two 64-bit
/// literals (DTB and entry address), `bootloader_aarch64` in `hw/arm/boot.c`.
pub const QEMU_BOOT_STUB_SIZE: u64 = 0x28;
/// The DTB QEMU virt generates is 1 MiB (`DTB: 1048576 bytes` in the log).
pub const QEMU_DTB_SIZE: u64 = 1 << 20;

/// Where QEMU's direct boot puts the DTB without an initrd: after the
/// would-be initrd at RAM + min(RAM / 2, 128 MiB), aligned up to 2 MiB
/// (the shim is far too small to push it higher).
pub fn qemu_dtb_offset(ram_size: u64) -> u64 {
    (ram_size / 2).min(128 << 20).next_multiple_of(2 << 20)
}

/// `movz x<rd>, #imm16, lsl #shift` (64-bit; shift 0, 16, 32 or 48).
pub fn movz(rd: u8, imm16: u16, shift: u32) -> u32 {
    move_wide(0b10, rd, imm16, shift)
}

/// `movk x<rd>, #imm16, lsl #shift` (64-bit; shift 0, 16, 32 or 48).
pub fn movk(rd: u8, imm16: u16, shift: u32) -> u32 {
    move_wide(0b11, rd, imm16, shift)
}

/// Move wide (immediate), 64-bit: sf=1 | opc | 100101 | hw | imm16 | Rd.
fn move_wide(opc: u32, rd: u8, imm16: u16, shift: u32) -> u32 {
    assert!(rd < 31, "x{rd} is not a general-purpose register here (31 is xzr)");
    assert!(shift.is_multiple_of(16) && shift <= 48, "move wide shift must be 0, 16, 32 or 48, not {shift}");
    1 << 31 | opc << 29 | 0b100101 << 23 | (shift / 16) << 21 | u32::from(imm16) << 5 | u32::from(rd)
}

/// `br x<rn>`.
pub fn br(rn: u8) -> u32 {
    assert!(rn < 31, "br x{rn}: not a general-purpose register");
    0xd61f_0000 | u32::from(rn) << 5
}

/// `b <offset>` (PC-relative, a multiple of 4 within ±128 MiB).
pub fn b(offset: i64) -> u32 {
    assert!(offset % 4 == 0 && (-(1 << 27)..1 << 27).contains(&offset), "b: offset {offset:#x} out of range");
    0x1400_0000 | ((offset >> 2) as u32 & 0x03ff_ffff)
}

/// `movz`/`movk` × 3: `x<rd>` = `value`, one 16-bit chunk at a time (all
/// four are written, so the code has a fixed size).
pub fn mov_imm64(rd: u8, value: u64) -> [u32; 4] {
    let chunk = |i: u32| (value >> (16 * i)) as u16;
    [movz(rd, chunk(0), 0), movk(rd, chunk(1), 16), movk(rd, chunk(2), 32), movk(rd, chunk(3), 48)]
}

/// The shim: an arm64 Image whose code jumps to `target` with x0–x3 untouched.
///
/// ```text
/// 0x00  code0        b 0x40
/// 0x04  code1        0
/// 0x08  text_offset  0
/// 0x10  image_size   SIZE (non-zero, or QEMU would ignore text_offset)
/// 0x18  flags        0xa
/// 0x38  magic        "ARM\x64"
/// 0x40  movz x16, #target[15:0]; movk x16, … lsl #16/#32/#48; br x16
/// ```
pub fn image(target: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; HEADER_SIZE];
    bytes[0x00..0x04].copy_from_slice(&b(HEADER_SIZE as i64).to_le_bytes());
    bytes[0x08..0x10].copy_from_slice(&0u64.to_le_bytes());
    bytes[0x10..0x18].copy_from_slice(&(SIZE as u64).to_le_bytes());
    bytes[0x18..0x20].copy_from_slice(&FLAGS.to_le_bytes());
    let magic = crate::image::ARM64_MAGIC_OFFSET;
    bytes[magic..magic + 4].copy_from_slice(crate::image::ARM64_MAGIC);
    for insn in mov_imm64(SCRATCH, target).into_iter().chain([br(SCRATCH)]) {
        bytes.extend_from_slice(&insn.to_le_bytes());
    }
    debug_assert_eq!(bytes.len(), SIZE);
    bytes
}

/// A named range of RAM that is already in use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// What is there.
    pub name: &'static str,
    /// First byte.
    pub start: u64,
    /// Size in bytes.
    pub size: u64,
}

impl Region {
    fn end(&self) -> u64 {
        self.start + self.size
    }
}

/// What QEMU's direct boot of the shim puts in RAM at `ram_base`, of
/// `ram_size` bytes (at least 256 MiB, so the DTB is at RAM + 128 MiB).
pub fn occupied(ram_base: u64, ram_size: u64) -> Vec<Region> {
    vec![
        Region { name: "QEMU's boot stub", start: ram_base, size: QEMU_BOOT_STUB_SIZE },
        Region { name: "the shim", start: ram_base + QEMU_KERNEL_OFFSET, size: SIZE as u64 },
        Region { name: "the DTB", start: ram_base + qemu_dtb_offset(ram_size), size: QEMU_DTB_SIZE },
    ]
}

/// Checks that an image of `image_end` bytes (with its BSS) loaded at
/// `load` is page-aligned, lies in RAM and overlaps nothing in `occupied`.
pub fn check_placement(load: u64, image_end: u64, ram_base: u64, ram_size: u64, occupied: &[Region]) -> Result<()> {
    if !load.is_multiple_of(4096) {
        return Err(Error::new(format!("load address {load:#x} is not 4 KiB aligned")));
    }
    let end = load.checked_add(image_end).ok_or_else(|| Error::new(format!("load address {load:#x} overflows")))?;
    if load < ram_base || end > ram_base + ram_size {
        return Err(Error::new(format!(
            "image {load:#x}-{:#x} is not inside RAM {ram_base:#x}-{:#x}",
            end - 1,
            ram_base + ram_size - 1
        )));
    }
    for r in occupied {
        if load < r.end() && r.start < end {
            return Err(Error::new(format!(
                "image {load:#x}-{:#x} (with BSS) overlaps {} at {:#x}-{:#x}",
                end - 1,
                r.name,
                r.start,
                r.end() - 1
            )));
        }
    }
    Ok(())
}

/// A direct boot of an image at any load address: the files the QEMU
/// command line refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShimBoot {
    /// The shim (`-kernel`).
    pub shim: PathBuf,
    /// The image (`-device loader`).
    pub image: PathBuf,
    /// Where the image is loaded and entered.
    pub load: u64,
}

impl ShimBoot {
    /// Checks the placement of `built` (up to its `image_end`, BSS
    /// included) at `load` in the RAM at `ram_base` of `ram_size` bytes,
    /// and writes the shim that jumps there to `dir/shim-<load>.bin`.
    pub fn prepare(dir: &Path, built: &Image, load: u64, ram_base: u64, ram_size: u64) -> Result<Self> {
        if built.variant.arch() != Arch::Aarch64 {
            return Err(Error::new(format!("the shim boots arm64 Images, not {}", built.variant.name())));
        }
        check_placement(load, built.image_end, ram_base, ram_size, &occupied(ram_base, ram_size))?;
        let shim = dir.join(format!("shim-{load:x}.bin"));
        write_atomic(&shim, &image(load))?;
        Ok(ShimBoot { shim, image: built.bin.clone(), load })
    }

    /// Adds the shim (`-kernel`) and the image (`-device loader`) to `qemu`.
    pub fn apply(&self, qemu: Qemu) -> Qemu {
        qemu.kernel(&self.shim).load_at(&self.image, self.load)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference encodings from `llvm-mc -triple=aarch64 -show-encoding`
    /// (LLVM 14), as little-endian words.
    #[test]
    fn instructions_match_llvm_mc() {
        let cases: [(u32, u32, &str); 13] = [
            (movz(16, 0x1000, 0), 0xd282_0010, "movz x16, #0x1000"),
            (movk(16, 0x4000, 16), 0xf2a8_0010, "movk x16, #0x4000, lsl #16"),
            (movk(16, 0x1, 32), 0xf2c0_0030, "movk x16, #0x1, lsl #32"),
            (movk(16, 0x0, 48), 0xf2e0_0010, "movk x16, #0x0, lsl #48"),
            (movz(16, 0xffff, 48), 0xd2ff_fff0, "movz x16, #0xffff, lsl #48"),
            (movk(16, 0xbeef, 16), 0xf2b7_ddf0, "movk x16, #0xbeef, lsl #16"),
            (movz(17, 0x1234, 32), 0xd2c2_4691, "movz x17, #0x1234, lsl #32"),
            (movk(0, 0xffff, 0), 0xf29f_ffe0, "movk x0, #0xffff"),
            (br(16), 0xd61f_0200, "br x16"),
            (br(17), 0xd61f_0220, "br x17"),
            (br(30), 0xd61f_03c0, "br x30"),
            (b(0x40), 0x1400_0010, "b #0x40"),
            (b(-4), 0x17ff_ffff, "b #-4"),
        ];
        for (ours, llvm, text) in cases {
            assert_eq!(ours, llvm, "{text}: {ours:#010x}, llvm-mc says {llvm:#010x}");
        }
    }

    #[test]
    fn mov_imm64_splits_the_value_into_four_chunks() {
        // 0x1_4000_1000 = movz #0x1000; movk #0x4000, lsl 16; movk #1, lsl 32; movk #0, lsl 48.
        assert_eq!(mov_imm64(16, 0x1_4000_1000), [0xd282_0010, 0xf2a8_0010, 0xf2c0_0030, 0xf2e0_0010]);
        // Every chunk lands in the right place for an arbitrary value.
        let v = 0x0123_4567_89ab_cdef_u64;
        for (i, insn) in mov_imm64(3, v).into_iter().enumerate() {
            assert_eq!(insn & 0x1f, 3, "Rd of instruction {i}");
            assert_eq!((insn >> 21) & 3, i as u32, "hw of instruction {i}");
            assert_eq!(u64::from((insn >> 5) & 0xffff), (v >> (16 * i)) & 0xffff, "imm16 of instruction {i}");
            let opc = if i == 0 { 0b10 } else { 0b11 }; // movz, then movk
            assert_eq!(insn >> 29, 0b100 | opc, "sf and opc of instruction {i}");
        }
    }

    #[test]
    #[should_panic(expected = "not a general-purpose register")]
    fn xzr_is_refused() {
        movz(31, 0, 0);
    }

    #[test]
    fn shim_image_is_a_valid_arm64_image_that_jumps_to_the_target() {
        let target = 0x1_3ffa_d000_u64;
        let bytes = image(target);
        assert_eq!(bytes.len(), SIZE);
        // The header Armature's own images are checked against.
        let flat = crate::image::FlatImage { bytes: bytes.clone(), image_end: SIZE as u64, relocations: 0 };
        crate::image::check_header(&flat, crate::Arch::Aarch64).unwrap();
        let word = |off: usize| u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap());
        let dword = |off: usize| u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap());
        assert_eq!(word(0x00), 0x1400_0010, "code0 branches over the header to 0x40");
        assert_eq!(dword(0x08), 0, "text_offset");
        assert_eq!(dword(0x10), SIZE as u64, "image_size");
        assert_eq!(dword(0x18), 0xa, "flags");
        assert_eq!(&bytes[0x38..0x3c], b"ARM\x64");
        // movz x16, #0xd000; movk x16, #0x3ffa, lsl 16; movk x16, #1, lsl 32;
        // movk x16, #0, lsl 48; br x16 (llvm-mc).
        let code: Vec<u32> = (HEADER_SIZE..SIZE).step_by(4).map(word).collect();
        assert_eq!(code, [0xd29a_0010, 0xf2a7_ff50, 0xf2c0_0030, 0xf2e0_0010, 0xd61f_0200]);
        // Nothing writes x0-x3 (the DTB and the boot protocol's zeros).
        for insn in &code[..4] {
            assert_eq!(insn & 0x1f, u32::from(SCRATCH));
        }
    }

    #[test]
    fn occupied_regions_on_qemu_virt() {
        let r = occupied(0x4000_0000, 512 << 20);
        assert_eq!(r[0], Region { name: "QEMU's boot stub", start: 0x4000_0000, size: 0x28 });
        assert_eq!(r[1], Region { name: "the shim", start: 0x4020_0000, size: SIZE as u64 });
        assert_eq!(r[2], Region { name: "the DTB", start: 0x4800_0000, size: 1 << 20 });
        assert_eq!(qemu_dtb_offset(4 << 30), 128 << 20);
        assert_eq!(qemu_dtb_offset(128 << 20), 64 << 20);
    }

    #[test]
    fn placement_is_checked_with_the_bss() {
        let (base, size) = (0x4000_0000, 1 << 30);
        let occ = occupied(base, size);
        let image_end = 0x53000;
        // Right after the boot stub's page, between the shim and the DTB,
        // right after the DTB, flush with the end of RAM.
        for load in [0x4000_1000, 0x4040_0000, 0x4810_0000, 0x8000_0000 - image_end] {
            check_placement(load, image_end, base, size, &occ).unwrap_or_else(|e| panic!("{load:#x}: {e}"));
        }
        let err = |load| check_placement(load, image_end, base, size, &occ).unwrap_err().to_string();
        assert!(err(0x4000_0000).contains("overlaps QEMU's boot stub"), "{}", err(0x4000_0000));
        // The file would end before the shim, the BSS would not.
        assert!(err(0x401b_0000).contains("overlaps the shim at 0x40200000-0x40200053"), "{}", err(0x401b_0000));
        assert!(err(0x47fa_e000).contains("overlaps the DTB"), "{}", err(0x47fa_e000));
        assert!(err(0x8000_0000 - image_end + 0x1000).contains("not inside RAM"));
        assert!(err(0x3fff_f000).contains("not inside RAM"));
        assert!(err(0x4040_0800).contains("not 4 KiB aligned"));
    }

    fn built(arch: Arch) -> Image {
        Image {
            variant: crate::Variant::new(arch),
            bin: "/x/armature.bin".into(),
            elf: "/x/armature.elf".into(),
            size: 0x21000,
            image_end: 0x53000,
            relocations: 0,
        }
    }

    #[test]
    fn shim_boot_adds_kernel_and_loader() {
        let dir = crate::paths::scratch_dir("shim-unit-test").unwrap();
        let image64 = built(Arch::Aarch64);
        let boot = ShimBoot::prepare(&dir, &image64, 0x4000_1000, 0x4000_0000, 1 << 30).unwrap();
        assert_eq!(crate::paths::read(&boot.shim).unwrap(), image(0x4000_1000));
        let line = boot.apply(Qemu::aarch64()).command_line();
        assert!(
            line.ends_with(&format!(
                "-kernel {} -device loader,file=/x/armature.bin,addr=0x40001000,force-raw=on",
                boot.shim.display()
            )),
            "{line}"
        );
        let clash = ShimBoot::prepare(&dir, &image64, 0x4020_0000, 0x4000_0000, 1 << 30);
        assert!(clash.unwrap_err().to_string().contains("overlaps the shim"));
        let armv7 = ShimBoot::prepare(&dir, &built(Arch::Armv7), 0x4000_1000, 0x4000_0000, 1 << 30);
        assert!(armv7.unwrap_err().to_string().contains("arm64 Images"));
    }
}
