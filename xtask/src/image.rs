//! From the linked ELF to the flat boot image, and the checks that keep the
//! image bootable.
//!
//! The image is a position-independent executable linked at address 0. The
//! flat image holds each `PT_LOAD` segment's file bytes at its physical
//! address (BSS is not stored: the boot stub zeroes it). The boot stub can
//! only apply `R_AARCH64_RELATIVE`/`R_ARM_RELATIVE` relocations, and loaders
//! only accept the image if its header is right, so both are checked here:
//! a failure is a build error with a message saying what is wrong.

use crate::{Arch, Context, Error, Result};
use object::Endianness;
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader, Rel, Rela, SectionHeader, Sym};

/// Offset of the "ARM\x64" magic in the Linux arm64 Image header.
pub const ARM64_MAGIC_OFFSET: usize = 0x38;
/// The arm64 Image magic.
pub const ARM64_MAGIC: &[u8; 4] = b"ARM\x64";
/// Image header flags Armature must have: little endian, 4 KiB pages, placeable anywhere.
pub const ARM64_FLAGS: u64 = 0xa;
/// Offset of the zImage magic in an ARM zImage header.
pub const ZIMAGE_MAGIC_OFFSET: usize = 0x24;
/// The zImage magic.
pub const ZIMAGE_MAGIC: u32 = 0x016f_2818;

/// The boot image and what was learnt from the ELF while making it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlatImage {
    /// The bytes to load.
    pub bytes: Vec<u8>,
    /// End of the image in memory, including BSS: the ELF symbol `__image_end`.
    pub image_end: u64,
    /// Number of dynamic (all relative) relocations the boot stub applies.
    pub relocations: usize,
}

/// Converts the ELF `elf` built for `arch` into the flat image, checking the
/// relocations and the boot header.
pub fn flatten(elf: &[u8], arch: Arch) -> Result<FlatImage> {
    match arch {
        Arch::Aarch64 => flatten_elf::<elf::FileHeader64<Endianness>>(elf, arch, elf::EM_AARCH64),
        Arch::Armv7 => flatten_elf::<elf::FileHeader32<Endianness>>(elf, arch, elf::EM_ARM),
    }
}

/// Relocation type the boot stub applies, and its name.
fn relative_reloc(arch: Arch) -> (u32, &'static str) {
    match arch {
        Arch::Aarch64 => (elf::R_AARCH64_RELATIVE.0, "R_AARCH64_RELATIVE"),
        Arch::Armv7 => (elf::R_ARM_RELATIVE.0, "R_ARM_RELATIVE"),
    }
}

fn flatten_elf<E: FileHeader<Endian = Endianness>>(
    data: &[u8],
    arch: Arch,
    machine: elf::Machine,
) -> Result<FlatImage> {
    let header = E::parse(data).context(|| "not a valid ELF file for this architecture")?;
    let endian = header.endian().context(|| "ELF header")?;
    let e_machine = header.e_machine(endian);
    if e_machine != machine {
        return Err(Error::new(format!("ELF machine is {}, expected {} for {arch}", e_machine.0, machine.0)));
    }

    // The flat image: every PT_LOAD segment's file bytes at its p_paddr.
    let mut bytes = Vec::new();
    let mut lowest = u64::MAX;
    let mut mem_end = 0u64;
    for ph in header.program_headers(endian, data).context(|| "program headers")? {
        if ph.p_type(endian) != elf::PT_LOAD {
            continue;
        }
        let paddr: u64 = ph.p_paddr(endian).into();
        let memsz: u64 = ph.p_memsz(endian).into();
        let seg = ph.data(endian, data).map_err(|_| Error::new(format!("PT_LOAD at {paddr:#x}: bad file range")))?;
        lowest = lowest.min(paddr);
        mem_end = mem_end.max(paddr + memsz);
        if seg.is_empty() {
            continue;
        }
        let start = usize::try_from(paddr)
            .ok()
            .filter(|&a| a < 1 << 30)
            .ok_or_else(|| Error::new(format!("PT_LOAD at {paddr:#x} is not plausible for an image linked at 0")))?;
        let end = start + seg.len();
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[start..end].copy_from_slice(seg);
    }
    if lowest != 0 {
        return Err(Error::new(format!(
            "the image must be linked at 0 (position independent), but its first PT_LOAD is at {lowest:#x}"
        )));
    }

    let sections = header.sections(endian, data).context(|| "section headers")?;
    let relocations = check_relocations::<E>(&sections, endian, data, arch)?;

    let symtab = sections.symbols(endian, data, elf::SHT_SYMTAB).context(|| "symbol table")?;
    let image_end = symtab
        .iter()
        .find(|s| s.name(endian, symtab.strings()) == Ok(b"__image_end".as_slice()))
        .map(|s| s.st_value(endian).into())
        .ok_or_else(|| Error::new("the ELF has no __image_end symbol (is the linker script in use?)"))?;
    if image_end < mem_end {
        return Err(Error::new(format!(
            "__image_end ({image_end:#x}) lies before the end of the last segment ({mem_end:#x})"
        )));
    }

    let image = FlatImage { bytes, image_end, relocations };
    check_header(&image, arch)?;
    Ok(image)
}

/// Checks that every dynamic relocation is one the boot stub applies.
/// Returns how many there are.
fn check_relocations<E: FileHeader<Endian = Endianness>>(
    sections: &object::read::elf::SectionTable<'_, E>,
    endian: Endianness,
    data: &[u8],
    arch: Arch,
) -> Result<usize> {
    let (relative, relative_name) = relative_reloc(arch);
    let mut count = 0;
    let mut bad = Vec::new();
    for section in sections.iter() {
        if section.sh_flags(endian).0 & elf::SHF_ALLOC.0 == 0 {
            continue; // static relocations of a relocatable link: not loaded
        }
        let name = String::from_utf8_lossy(sections.section_name(endian, section).unwrap_or(b"?")).into_owned();
        if section.sh_type(endian) == elf::SHT_RELR {
            return Err(Error::new(format!(
                "section {name} holds RELR relocations, which the boot stub does not apply \
                 (only {relative_name}); do not link with -z pack-relative-relocs"
            )));
        }
        let mut note = |offset: u64, r_type: u32| {
            count += 1;
            if r_type != relative {
                bad.push(format!("{} at {offset:#x}", reloc_name(arch, r_type)));
            }
        };
        if let Some((rels, _)) = section.rela(endian, data).context(|| format!("relocations in {name}"))? {
            for r in rels {
                note(r.r_offset(endian).into(), r.r_type(endian, false).0);
            }
        }
        if let Some((rels, _)) = section.rel(endian, data).context(|| format!("relocations in {name}"))? {
            for r in rels {
                note(r.r_offset(endian).into(), r.r_type(endian).0);
            }
        }
    }
    if !bad.is_empty() {
        let shown = bad.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
        let more = if bad.len() > 10 { format!(" and {} more", bad.len() - 10) } else { String::new() };
        return Err(Error::new(format!(
            "{} dynamic relocation(s) the boot stub cannot apply (it applies only {relative_name}): {shown}{more}. \
             Something refers to an absolute or external symbol; build position-independent code only.",
            bad.len()
        )));
    }
    Ok(count)
}

fn reloc_name(arch: Arch, r_type: u32) -> String {
    let known = match (arch, r_type) {
        (Arch::Aarch64, 257) => Some("R_AARCH64_ABS64"),
        (Arch::Aarch64, 1025) => Some("R_AARCH64_GLOB_DAT"),
        (Arch::Aarch64, 1026) => Some("R_AARCH64_JUMP_SLOT"),
        (Arch::Aarch64, 1027) => Some("R_AARCH64_RELATIVE"),
        (Arch::Armv7, 2) => Some("R_ARM_ABS32"),
        (Arch::Armv7, 21) => Some("R_ARM_GLOB_DAT"),
        (Arch::Armv7, 22) => Some("R_ARM_JUMP_SLOT"),
        (Arch::Armv7, 23) => Some("R_ARM_RELATIVE"),
        _ => None,
    };
    known.map_or_else(|| format!("relocation type {r_type}"), str::to_string)
}

/// The value of the symbol `name` in the ELF `elf` built for `arch` (e.g.
/// `__idmap_start`, the offset of the identity page in the image).
pub fn symbol(elf: &[u8], arch: Arch, name: &str) -> Result<u64> {
    match arch {
        Arch::Aarch64 => symbol_in::<elf::FileHeader64<Endianness>>(elf, name),
        Arch::Armv7 => symbol_in::<elf::FileHeader32<Endianness>>(elf, name),
    }
}

fn symbol_in<E: FileHeader<Endian = Endianness>>(data: &[u8], name: &str) -> Result<u64> {
    let header = E::parse(data).context(|| "not a valid ELF file for this architecture")?;
    let endian = header.endian().context(|| "ELF header")?;
    let sections = header.sections(endian, data).context(|| "section headers")?;
    let symtab = sections.symbols(endian, data, elf::SHT_SYMTAB).context(|| "symbol table")?;
    symtab
        .iter()
        .find(|s| s.name(endian, symtab.strings()) == Ok(name.as_bytes()))
        .map(|s| s.st_value(endian).into())
        .ok_or_else(|| Error::new(format!("the ELF has no symbol {name}")))
}

fn le_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn le_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// Checks the boot header loaders rely on: the Linux arm64 Image header
/// (`booti`, QEMU `-kernel`) or the zImage magic (`bootz`).
pub fn check_header(image: &FlatImage, arch: Arch) -> Result<()> {
    let b = &image.bytes;
    match arch {
        Arch::Aarch64 => {
            if b.len() < 0x40 {
                return Err(Error::new(format!("image is {} bytes, too small for an arm64 Image header", b.len())));
            }
            let mut errors = Vec::new();
            if &b[ARM64_MAGIC_OFFSET..ARM64_MAGIC_OFFSET + 4] != ARM64_MAGIC {
                errors.push(format!(
                    "magic at {ARM64_MAGIC_OFFSET:#x} is {:02x?}, expected \"ARM\\x64\"",
                    &b[0x38..0x3c]
                ));
            }
            let text_offset = le_u64(b, 0x08);
            if text_offset != 0 {
                errors.push(format!("text_offset is {text_offset:#x}, expected 0"));
            }
            let image_size = le_u64(b, 0x10);
            if image_size != image.image_end {
                errors.push(format!(
                    "image_size is {image_size:#x}, expected {:#x} (__image_end, including BSS)",
                    image.image_end
                ));
            }
            let flags = le_u64(b, 0x18);
            if flags != ARM64_FLAGS {
                errors.push(format!("flags are {flags:#x}, expected {ARM64_FLAGS:#x} (LE, 4K pages, anywhere)"));
            }
            if errors.is_empty() {
                Ok(())
            } else {
                Err(Error::new(format!("bad arm64 Image header: {}", errors.join("; "))))
            }
        }
        Arch::Armv7 => {
            if b.len() < ZIMAGE_MAGIC_OFFSET + 4 {
                return Err(Error::new(format!("image is {} bytes, too small for a zImage header", b.len())));
            }
            let magic = le_u32(b, ZIMAGE_MAGIC_OFFSET);
            if magic != ZIMAGE_MAGIC {
                return Err(Error::new(format!(
                    "bad zImage header: magic at {ZIMAGE_MAGIC_OFFSET:#x} is {magic:#010x}, expected {ZIMAGE_MAGIC:#010x}"
                )));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    //! The conversion and checks on small hand-made ELF files.
    use super::*;

    const R_ABS64: u32 = 257;
    const R_RELATIVE: u32 = 1027;

    /// A minimal ELF64 image for AArch64: one PT_LOAD of `text` at 0 with
    /// `memsz`, a .rela.dyn with `relocs` (type, offset), and a symbol table
    /// holding `__image_end`.
    fn elf64(text: &[u8], memsz: u64, relocs: &[(u32, u64)], image_end: u64) -> Vec<u8> {
        let mut f = vec![0u8; 0x1000];
        let text_off = f.len();
        f.extend_from_slice(text);
        let align8 = |f: &mut Vec<u8>| f.resize(f.len().next_multiple_of(8), 0);
        align8(&mut f);
        let rela_off = f.len();
        for &(ty, off) in relocs {
            f.extend_from_slice(&off.to_le_bytes());
            f.extend_from_slice(&(ty as u64).to_le_bytes());
            f.extend_from_slice(&0u64.to_le_bytes());
        }
        let strtab_off = f.len();
        f.extend_from_slice(b"\0__image_end\0");
        align8(&mut f);
        let symtab_off = f.len();
        f.extend_from_slice(&[0u8; 24]); // null symbol
        let mut sym = [0u8; 24];
        sym[0..4].copy_from_slice(&1u32.to_le_bytes()); // name
        sym[4] = 0x10; // STB_GLOBAL, STT_NOTYPE
        sym[6..8].copy_from_slice(&0xfff1u16.to_le_bytes()); // SHN_ABS
        sym[8..16].copy_from_slice(&image_end.to_le_bytes());
        f.extend_from_slice(&sym);
        let shstr_off = f.len();
        let shstr = b"\0.rela.dyn\0.symtab\0.strtab\0.shstrtab\0";
        f.extend_from_slice(shstr);
        align8(&mut f);
        let sh_off = f.len();
        /// (name, type, flags, offset, size, link, info, entsize)
        type Shdr = (u32, u32, u64, usize, usize, u32, u32, u64);
        let shdrs: [Shdr; 5] = [
            (0, 0, 0, 0, 0, 0, 0, 0),
            (1, 4, 2, rela_off, relocs.len() * 24, 2, 0, 24),
            (11, 2, 0, symtab_off, 48, 3, 1, 24),
            (19, 3, 0, strtab_off, 13, 0, 0, 0),
            (27, 3, 0, shstr_off, shstr.len(), 0, 0, 0),
        ];
        for (name, ty, flags, off, size, link, info, entsize) in shdrs {
            f.extend_from_slice(&name.to_le_bytes());
            f.extend_from_slice(&ty.to_le_bytes());
            f.extend_from_slice(&flags.to_le_bytes());
            f.extend_from_slice(&0u64.to_le_bytes()); // addr
            f.extend_from_slice(&(off as u64).to_le_bytes());
            f.extend_from_slice(&(size as u64).to_le_bytes());
            f.extend_from_slice(&link.to_le_bytes());
            f.extend_from_slice(&info.to_le_bytes());
            f.extend_from_slice(&8u64.to_le_bytes()); // addralign
            f.extend_from_slice(&entsize.to_le_bytes());
        }
        // ELF header.
        let h = &mut f[0..64];
        h[0..4].copy_from_slice(b"\x7fELF");
        h[4] = 2; // 64-bit
        h[5] = 1; // little endian
        h[6] = 1; // version
        h[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
        h[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
        h[20..24].copy_from_slice(&1u32.to_le_bytes());
        h[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        h[40..48].copy_from_slice(&(sh_off as u64).to_le_bytes());
        h[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
        h[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
        h[56..58].copy_from_slice(&1u16.to_le_bytes()); // phnum
        h[58..60].copy_from_slice(&64u16.to_le_bytes()); // shentsize
        h[60..62].copy_from_slice(&5u16.to_le_bytes()); // shnum
        h[62..64].copy_from_slice(&4u16.to_le_bytes()); // shstrndx
        // One PT_LOAD at 0.
        let p = &mut f[64..120];
        p[0..4].copy_from_slice(&1u32.to_le_bytes());
        p[4..8].copy_from_slice(&5u32.to_le_bytes());
        p[8..16].copy_from_slice(&(text_off as u64).to_le_bytes());
        p[32..40].copy_from_slice(&(text.len() as u64).to_le_bytes());
        p[40..48].copy_from_slice(&memsz.to_le_bytes());
        f
    }

    /// A 0x100-byte text whose Image header has `image_size`.
    fn text_with_header(image_size: u64) -> Vec<u8> {
        let mut t = vec![0u8; 0x100];
        t[0x10..0x18].copy_from_slice(&image_size.to_le_bytes());
        t[0x18..0x20].copy_from_slice(&ARM64_FLAGS.to_le_bytes());
        t[0x38..0x3c].copy_from_slice(ARM64_MAGIC);
        t[0xfc] = 0xaa;
        t
    }

    #[test]
    fn good_image_converts() {
        let elf = elf64(&text_with_header(0x2000), 0x1800, &[(R_RELATIVE, 0x80), (R_RELATIVE, 0x88)], 0x2000);
        let img = flatten(&elf, Arch::Aarch64).unwrap();
        assert_eq!(img.bytes.len(), 0x100);
        assert_eq!(img.bytes[0xfc], 0xaa);
        assert_eq!(img.image_end, 0x2000);
        assert_eq!(img.relocations, 2);
    }

    #[test]
    fn absolute_relocation_is_refused() {
        let elf = elf64(&text_with_header(0x2000), 0x1800, &[(R_RELATIVE, 0x80), (R_ABS64, 0x90)], 0x2000);
        let e = flatten(&elf, Arch::Aarch64).unwrap_err();
        assert!(e.message().contains("R_AARCH64_ABS64 at 0x90"), "{e}");
        assert!(e.message().contains("only R_AARCH64_RELATIVE"), "{e}");
    }

    #[test]
    fn image_size_must_match_image_end() {
        let elf = elf64(&text_with_header(0x1000), 0x1800, &[], 0x2000);
        let e = flatten(&elf, Arch::Aarch64).unwrap_err();
        assert!(e.message().contains("image_size is 0x1000, expected 0x2000"), "{e}");
    }

    #[test]
    fn image_end_must_cover_bss() {
        let elf = elf64(&text_with_header(0x1000), 0x1800, &[], 0x1000);
        let e = flatten(&elf, Arch::Aarch64).unwrap_err();
        assert!(e.message().contains("before the end of the last segment"), "{e}");
    }

    #[test]
    fn magic_and_flags_are_checked() {
        let mut text = text_with_header(0x2000);
        text[0x38] = b'X';
        text[0x18] = 0x2;
        let e = flatten(&elf64(&text, 0x100, &[], 0x2000), Arch::Aarch64).unwrap_err();
        assert!(e.message().contains("magic at 0x38"), "{e}");
        assert!(e.message().contains("flags are 0x2"), "{e}");
    }

    #[test]
    fn wrong_machine_is_refused() {
        let elf = elf64(&text_with_header(0x2000), 0x100, &[], 0x2000);
        assert!(flatten(&elf, Arch::Armv7).is_err());
    }

    #[test]
    fn symbols_are_looked_up_by_name() {
        let elf = elf64(&text_with_header(0x2000), 0x100, &[], 0x2000);
        assert_eq!(symbol(&elf, Arch::Aarch64, "__image_end").unwrap(), 0x2000);
        let e = symbol(&elf, Arch::Aarch64, "__idmap_start").unwrap_err();
        assert!(e.message().contains("no symbol __idmap_start"), "{e}");
    }

    #[test]
    fn zimage_magic() {
        let mut bytes = vec![0u8; 0x40];
        let img = |b: &Vec<u8>| FlatImage { bytes: b.clone(), image_end: 0x40, relocations: 0 };
        assert!(check_header(&img(&bytes), Arch::Armv7).is_err());
        bytes[0x24..0x28].copy_from_slice(&ZIMAGE_MAGIC.to_le_bytes());
        check_header(&img(&bytes), Arch::Armv7).unwrap();
    }
}
