//! The published images: each variant in its own directory, the flat image
//! starting with the arm64 Image header, the ELF kept next to it.

mod common;

use xtask::image::{ARM64_MAGIC, ARM64_MAGIC_OFFSET};
use xtask::{Arch, paths};

#[test]
fn variants_are_published_side_by_side() {
    let plain = common::image(Arch::Aarch64, &[]);
    let crashtest = common::image(Arch::Aarch64, &["crashtest"]);
    assert!(plain.bin.ends_with("armature/aarch64/armature.bin"), "{}", plain.bin.display());
    assert!(crashtest.bin.ends_with("armature/aarch64-crashtest/armature.bin"), "{}", crashtest.bin.display());
    for image in [&plain, &crashtest] {
        let bin = paths::read(&image.bin).unwrap();
        assert_eq!(bin.len(), image.size);
        assert_eq!(&bin[ARM64_MAGIC_OFFSET..ARM64_MAGIC_OFFSET + 4], ARM64_MAGIC);
        assert_eq!(u64::from_le_bytes(bin[0x10..0x18].try_into().unwrap()), image.image_end);
        assert!(image.image_end >= bin.len() as u64);
        let elf = paths::read(&image.elf).unwrap();
        assert_eq!(&elf[..4], b"\x7fELF");
    }
    // The crashtest code is only in the crashtest image.
    let has = |path: &std::path::Path, text: &str| {
        paths::read(path).unwrap().windows(text.len()).any(|w| w == text.as_bytes())
    };
    assert!(has(&crashtest.bin, "faulting on purpose"));
    assert_ne!(paths::read(&plain.bin).unwrap(), paths::read(&crashtest.bin).unwrap());
}
