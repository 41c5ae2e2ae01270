use super::*;

const MIB: u64 = 1 << 20;
const RAM: Region = Region { base: 0x4000_0000, size: 1 << 30 };

fn m(name: &'static str, base: u64, size: u64, role: Role) -> Module<'static> {
    Module { name, region: Region { base, size }, role }
}

fn keep() -> [Keep<'static>; 2] {
    [
        Keep { what: "the device tree", region: Region { base: 0x4800_0000, size: 0x10_0000 } },
        Keep { what: "the hypervisor's load region", region: Region { base: 0x4020_0000, size: 0x20_0000 } },
    ]
}

#[test]
fn good_modules_pass() {
    let mods = [m("k", 0x4a00_0000, 0x1000, Role::Kernel), m("r", 0x4b00_0000, 10 * MIB, Role::Ramdisk)];
    assert_eq!(check_modules(&mods, &[RAM], &keep()), Ok(()));
    // A module ending exactly at the end of RAM is fine.
    let last = [m("k", 0x8000_0000 - 0x1000, 0x1000, Role::Kernel)];
    assert_eq!(check_modules(&last, &[RAM], &keep()), Ok(()));
}

#[test]
fn modules_outside_ram_are_named() {
    for (base, size) in [(0x1000_0000u64, 0x1000u64), (0x8000_0000, 0x1000), (0x1_0000_0000, 0x1000)] {
        let mods = [m("module@x", base, size, Role::Kernel)];
        let e = check_modules(&mods, &[RAM], &[]).unwrap_err();
        assert_eq!(e, ModuleError::OutsideRam(mods[0]));
        let text = alloc::format!("{e}");
        assert!(text.contains("/chosen/module@x (kernel)") && text.contains("not in RAM"), "{text}");
    }
}

#[test]
fn a_module_past_the_end_of_ram_straddles() {
    let mods = [m("r", 0x7fff_f000, 0x2000, Role::Ramdisk)];
    let e = check_modules(&mods, &[RAM], &[]).unwrap_err();
    assert_eq!(e, ModuleError::Straddles { module: mods[0], bank: RAM });
    assert!(alloc::format!("{e}").contains("runs 0x1000 bytes past the end of the RAM bank"), "{e}");
    // Across two adjacent banks is refused too (each bank is its own).
    let banks = [Region { base: 0x4000_0000, size: 0x1000_0000 }, Region { base: 0x5000_0000, size: 0x1000_0000 }];
    let mods = [m("r", 0x4fff_f000, 0x2000, Role::Ramdisk)];
    assert!(matches!(check_modules(&mods, &banks, &[]), Err(ModuleError::Straddles { .. })));
}

#[test]
fn empty_and_wrapping_modules() {
    let mods = [m("k", 0x4a00_0000, 0, Role::Kernel)];
    assert_eq!(check_modules(&mods, &[RAM], &[]), Err(ModuleError::Empty(mods[0])));
    let mods = [m("k", u64::MAX - 0xfff, 0x2000, Role::Kernel)];
    assert_eq!(check_modules(&mods, &[RAM], &[]), Err(ModuleError::Wraps(mods[0])));
}

#[test]
fn overlapping_modules_and_kept_regions() {
    let k = m("k", 0x4a00_0000, 4 * MIB, Role::Kernel);
    let inside = m("r", 0x4a10_0000, 0x1000, Role::Ramdisk);
    assert_eq!(check_modules(&[k, inside], &[RAM], &[]), Err(ModuleError::Overlap(k, inside)));
    // Touching is not overlapping.
    let next = m("r", 0x4a40_0000, 0x1000, Role::Ramdisk);
    assert_eq!(check_modules(&[k, next], &[RAM], &[]), Ok(()));
    let over_dtb = m("r", 0x480f_f000, 0x2000, Role::Ramdisk);
    let e = check_modules(&[over_dtb], &[RAM], &keep()).unwrap_err();
    assert_eq!(e, ModuleError::Over(over_dtb, keep()[0]));
    assert!(alloc::format!("{e}").contains("overlaps the device tree at 0x000048000000-0x0000480fffff"), "{e}");
    let over_hv = m("k", 0x4020_0000, 0x1000, Role::Kernel);
    assert_eq!(check_modules(&[over_hv], &[RAM], &keep()), Err(ModuleError::Over(over_hv, keep()[1])));
}

#[test]
fn roles_take_the_first_of_each() {
    let mods = [
        m("a", 1, 1, Role::Other),
        m("b", 2, 1, Role::Ramdisk),
        m("c", 3, 1, Role::Kernel),
        m("d", 4, 1, Role::Kernel),
    ];
    let (k, r) = dom0_roles(&mods);
    assert_eq!((k.unwrap().name, r.unwrap().name), ("c", "b"));
    assert_eq!(dom0_roles(&mods[..2]).0, None);
}

/// A minimal arm64 Image: header (`b` to 0x40), then `size - 64` bytes.
fn image(text_offset: u64, image_size: u64, size: usize) -> alloc::vec::Vec<u8> {
    let mut b = alloc::vec![0u8; size];
    b[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes()); // b +0x40
    b[8..16].copy_from_slice(&text_offset.to_le_bytes());
    b[16..24].copy_from_slice(&image_size.to_le_bytes());
    b[24..32].copy_from_slice(&0xau64.to_le_bytes());
    b[0x38..0x3c].copy_from_slice(b"ARM\x64");
    b
}

#[test]
fn an_arm64_image_is_read() {
    let b = image(0, 0x3000, 0x1000);
    assert_eq!(parse_kernel(&b, 0x1000), Ok(Arm64Image { text_offset: 0, image_size: 0x3000 }));
    // image_size below the module's size: the module's size counts.
    let b = image(0x8_0000, 0x10, 0x1000);
    assert_eq!(parse_kernel(&b, 0x1000), Ok(Arm64Image { text_offset: 0x8_0000, image_size: 0x1000 }));
    // Pre-3.17: image_size 0.
    let b = image(0x8_0000, 0, 0x1000);
    assert_eq!(parse_kernel(&b, 0x1000).unwrap().image_size, 0x1000);
    // An EFI stub: "MZ" then the branch.
    let mut b = image(0, 0x2000, 0x1000);
    b[0..4].copy_from_slice(&0x9100_5a4du32.to_le_bytes());
    b[4..8].copy_from_slice(&0x1400_0100u32.to_le_bytes()); // b +0x400
    assert!(parse_kernel(&b, 0x1000).is_ok());
    // Newer kernels: `ccmp x18, #0, #0xd, pl` ("MZ" too); a branch past the
    // end after it is refused.
    b[0..4].copy_from_slice(&0xfa40_5a4du32.to_le_bytes());
    assert!(parse_kernel(&b, 0x1000).is_ok());
    b[4..8].copy_from_slice(&0x1400_0800u32.to_le_bytes()); // b +0x2000
    assert_eq!(parse_kernel(&b, 0x1000), Err(KernelError::EntryOutside { target: 0x2004, size: 0x1000 }));
}

#[test]
fn what_is_not_an_arm64_image_is_named() {
    assert_eq!(parse_kernel(&[], 0), Err(KernelError::Empty));
    assert_eq!(parse_kernel(&[0; 4096], 4096), Err(KernelError::Zeros));
    let gz = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    assert_eq!(parse_kernel(&gz, 10), Err(KernelError::Gzip));
    let mut z = alloc::vec![0u8; 4096];
    z[0x24..0x28].copy_from_slice(&0x016f_2818u32.to_le_bytes());
    assert_eq!(parse_kernel(&z, 4096), Err(KernelError::Zimage));
    let random: alloc::vec::Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let e = parse_kernel(&random, 4096).unwrap_err();
    assert!(matches!(e, KernelError::NoMagic(_)), "{e:?}");
    assert!(alloc::format!("{e}").contains("not an arm64 Image"));
    assert_eq!(parse_kernel(&[1, 2, 3], 3), Err(KernelError::TooShort(3)));
    // The header alone: its branch goes past the module.
    let h = image(0, 0x1000, 64);
    assert_eq!(parse_kernel(&h, 64), Err(KernelError::EntryOutside { target: 0x40, size: 64 }));
    let mut be = image(0, 0x2000, 0x1000);
    be[24] = 0xb;
    assert_eq!(parse_kernel(&be, 0x1000), Err(KernelError::BigEndian));
    for e in [KernelError::Gzip, KernelError::Zimage, KernelError::Zeros] {
        assert!(!alloc::format!("{e}").is_empty());
    }
    assert!(alloc::format!("{}", KernelError::Gzip).contains("gzip"));
    assert!(alloc::format!("{}", KernelError::BadGzip(GzipError::Crc)).contains("CRC-32"));
    assert!(alloc::format!("{}", KernelError::Zimage).contains("zImage"));
}

const DOM0: Region = Region { base: 0x6000_0000, size: 512 * MIB };

#[test]
fn placement_of_kernel_ramdisk_and_dtb() {
    let p = place(DOM0, 0, 0x100_0000, Some(0x1800), 2 * MIB, 4096).unwrap();
    assert_eq!(p.entry, 0x6000_0000);
    assert_eq!(p.dtb, 0x8000_0000 - 2 * MIB);
    assert_eq!(p.initrd, Some(Region { base: (p.dtb - 0x1800) & !0xfff, size: 0x1800 }));
    let p = place(DOM0, 0x8_0000, 0x100_0000, None, 2 * MIB, 4096).unwrap();
    assert_eq!((p.entry, p.initrd), (0x6008_0000, None));
}

#[test]
fn placement_refuses_huge_headers_without_overflow() {
    for (to, size, rd) in [
        (u64::MAX, 0x1000, None),
        (0, u64::MAX, None),
        (u64::MAX - 0x6000_0000 + 1, 0x1000, None),
        (0x1000_0000_0000, 0x1000, None),
        (0, 0x1000, Some(u64::MAX)),
        (0, 0x1000, Some(600 * MIB)),
        (0, 510 * MIB, Some(0x1000)),
    ] {
        let e = place(DOM0, to, size, rd, 2 * MIB, 4096).unwrap_err();
        let text = alloc::format!("{e}");
        assert!(text.contains("dom0_mem=") && text.contains("dom0 has 512 MiB"), "{text}");
    }
    // Exactly full: kernel up to the ramdisk.
    assert!(place(DOM0, 0, 510 * MIB - 0x1000, Some(0x1000), 2 * MIB, 4096).is_ok());
    assert!(place(DOM0, 0, 510 * MIB - 0x1000 + 1, Some(0x1000), 2 * MIB, 4096).is_err());
    // RAM smaller than the DTB room.
    assert!(place(Region { base: 0x6000_0000, size: MIB }, 0, 1, None, 2 * MIB, 4096).is_err());
}

#[test]
fn on_fatal_values() {
    assert_eq!(OnFatal::parse("poweroff"), Some(OnFatal::PowerOff));
    assert_eq!(OnFatal::parse("halt"), Some(OnFatal::Halt));
    assert_eq!(OnFatal::parse("reset"), Some(OnFatal::Reset(0)));
    assert_eq!(OnFatal::parse("reset:5"), Some(OnFatal::Reset(5)));
    assert_eq!(OnFatal::parse("reset:x"), None);
    assert_eq!(OnFatal::parse("reboot"), None);
    for a in [OnFatal::PowerOff, OnFatal::Halt, OnFatal::Reset(0), OnFatal::Reset(30)] {
        assert_eq!(OnFatal::decode(a.encode()), a);
    }
}

#[test]
fn copy_order_never_overwrites_an_uncopied_module() {
    let r = |base: u64, size: u64| Region { base, size };
    let k = (r(0x4a00_0000, 0x1000), r(0x6000_0000, 0x1000));
    // Apart: the kernel first.
    assert_eq!(ramdisk_first(k, Some((r(0x4c00_0000, 0x1000), r(0x7000_0000, 0x1000)))), Ok(false));
    assert_eq!(ramdisk_first(k, None), Ok(false));
    // The kernel's destination over the ramdisk: the ramdisk first.
    assert_eq!(ramdisk_first(k, Some((r(0x6000_0800, 0x1000), r(0x7000_0000, 0x1000)))), Ok(true));
    // The ramdisk's destination over the kernel: the kernel first.
    assert_eq!(ramdisk_first(k, Some((r(0x4c00_0000, 0x1000), r(0x4a00_0000, 0x1000)))), Ok(false));
    // Both: refused, with dom0_mem= named.
    let rd = (r(0x6000_0000, 0x1000), r(0x4a00_0000, 0x1000));
    let e = ramdisk_first(k, Some(rd)).unwrap_err();
    assert_eq!(e, CopyConflict { kernel: k, ramdisk: rd });
    assert!(alloc::format!("{e}").contains("dom0_mem="));
}

/// `data` compressed by the host's gzip (no file name in the header).
fn host_gzip(data: &[u8]) -> std::vec::Vec<u8> {
    use std::io::Write;
    let mut cmd = std::process::Command::new("gzip");
    cmd.arg("-c").arg("-n");
    let mut child = cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    child.wait_with_output().unwrap().stdout
}

fn gunzip(gz: &[u8], size: usize) -> Result<std::vec::Vec<u8>, GzipError> {
    let mut state = std::boxed::Box::<miniz_oxide::inflate::core::DecompressorOxide>::default();
    let mut out = std::vec![0u8; size];
    gunzip_into(gz, &mut out, &mut state).map(|()| out)
}

#[test]
fn gzip_kernels_are_decompressed_and_checked() {
    let img = image(0, 0x3000, 0x2000);
    let gz = host_gzip(&img);
    assert!(is_gzip(&gz) && !is_gzip(&img));
    let g = gzip_header(&gz).unwrap();
    assert_eq!((g.data, g.size, g.crc), (10, 0x2000, crc32(&img)));
    assert_eq!(gunzip(&gz, 0x2000).unwrap(), img);
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    // A corrupt byte in the data, a wrong CRC, a short buffer, a cut file.
    let mut bad = gz.clone();
    let n = bad.len();
    bad[n - 8] ^= 1;
    assert_eq!(gunzip(&bad, 0x2000), Err(GzipError::Crc));
    assert!(matches!(gunzip(&gz, 0x1000), Err(GzipError::Length { .. })));
    assert!(gunzip(&gz[..gz.len() / 2], 0x2000).is_err());
    assert_eq!(gzip_header(&gz[..12]), Err(GzipError::Header));
    let mut flags = gz.clone();
    flags[3] = 0x80;
    assert_eq!(gzip_header(&flags), Err(GzipError::Header));
}

#[test]
fn a_gzip_header_with_a_file_name_is_skipped() {
    // The name is only stored for a file: write one.
    let dir = std::env::temp_dir().join(alloc::format!("armature-gz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("Image");
    let img = image(0, 0x1000, 0x1000);
    std::fs::write(&f, &img).unwrap();
    let out = std::process::Command::new("gzip").arg("-c").arg("-N").arg(&f).output().unwrap();
    let gz = out.stdout;
    assert_ne!(gz[3] & 8, 0, "gzip stored the name");
    assert_eq!(gzip_header(&gz).unwrap().data, 10 + "Image".len() + 1);
    assert_eq!(gunzip(&gz, 0x1000).unwrap(), img);
    std::fs::remove_dir_all(&dir).unwrap();
}
