//! Mapping sizes, block selection, geometries, errors and W^X.

extern crate std;

use super::support::*;
use crate::mm::addr::*;
use crate::mm::lpae::*;
use std::format;
use std::string::ToString;
use std::vec::Vec;


fn count(leaves: &[Leaf], size: PageSize) -> usize {
    leaves.iter().filter(|l| l.size == size).count()
}

/// A 4 KiB page, a 2 MiB block and a 1 GiB block, at addresses every
/// stage-1 geometry (including ARMv7's 32-bit VA and 40-bit PA) has.
fn three_sizes<R: Regime<Input = VirtAddr>>(geometry: Geometry, tables: usize) {
    let mut pt = table::<R>(geometry);
    let device = Attributes::DEVICE;
    pt.map(va(0x0040_3000), pa(0x80_1234_5000), PAGE_SIZE, Attributes::CODE, NONE).unwrap();
    pt.map(va(0x0060_0000), pa(0x04_0020_0000), SIZE_2M, Attributes::DATA, NONE).unwrap();
    pt.map(va(0x4000_0000), pa(0x01_c000_0000), SIZE_1G, Attributes::RODATA, NONE).unwrap();
    pt.map(va(0x8000_0000), pa(0x00_0900_0000), PAGE_SIZE, device, NONE).unwrap();
    assert_maps(&pt, 0x0040_3000, 0x80_1234_5000, PAGE_SIZE, Attributes::CODE);
    assert_maps(&pt, 0x0060_0000, 0x04_0020_0000, SIZE_2M, Attributes::DATA);
    assert_maps(&pt, 0x4000_0000, 0x01_c000_0000, SIZE_1G, Attributes::RODATA);
    assert_maps(&pt, 0x8000_0000, 0x00_0900_0000, PAGE_SIZE, device);
    let sizes: Vec<_> = leaves(&pt).iter().map(|l| (l.input, l.size)).collect();
    assert_eq!(
        sizes,
        [
            (0x0040_3000, PageSize::Size4K),
            (0x0060_0000, PageSize::Size2M),
            (0x4000_0000, PageSize::Size1G),
            (0x8000_0000, PageSize::Size4K)
        ]
    );
    // The walker reports the level too, and nothing around is mapped.
    assert_eq!(pt.translate(va(0x4000_0000)).unwrap().level, 1);
    assert_eq!(pt.translate(va(0x0060_0000)).unwrap().level, 2);
    assert_eq!(pt.translate(va(0x0040_3000)).unwrap().level, 3);
    assert!(matches!(pt.translate(va(0x0040_2fff)), Err(WalkFault::Translation { level: 3 })));
    assert!(matches!(pt.translate(va(0x0080_0000)), Err(WalkFault::Translation { level: 2 })));
    assert_eq!(pt.allocator().live(), tables);
    finish(pt);
}

#[test]
fn pages_and_blocks_translate_at_first_middle_and_last_byte() {
    // Root, L1, L2 (first GiB), L3 (first 2 MiB), L2 + L3 (device page).
    three_sizes::<El2>(Geometry::AARCH64_EL2_48, 6);
    // The 39-bit and ARMv7 roots are level-1 tables: one table fewer.
    three_sizes::<El2>(Geometry::AARCH64_EL2_39, 5);
    three_sizes::<Hyp>(Geometry::ARMV7_HYP, 5);
}

#[test]
fn mixed_alignment_picks_the_largest_blocks() {
    // [1 GiB - 2 MiB - 4 KiB, 2 GiB + 2 MiB + 4 KiB), output congruent mod 1 GiB.
    let (start, end) = (0x3fdf_f000u64, 0x8020_1000u64);
    let mut pt = table::<El2>(Geometry::AARCH64_EL2_48);
    pt.map(va(start), pa(start + (4 << 30)), end - start, Attributes::DATA, NONE).unwrap();
    let got: Vec<_> = leaves(&pt).iter().map(|l| (l.input, l.size)).collect();
    assert_eq!(
        got,
        [
            (0x3fdf_f000, PageSize::Size4K),
            (0x3fe0_0000, PageSize::Size2M),
            (0x4000_0000, PageSize::Size1G),
            (0x8000_0000, PageSize::Size2M),
            (0x8020_0000, PageSize::Size4K),
        ]
    );
    assert_eq!(runs(&pt), [run(start, start + (4 << 30), end - start, Attributes::DATA)]);
    finish(pt);

    // Output only congruent mod 2 MiB: no 1 GiB block.
    let mut pt = table::<El2>(Geometry::AARCH64_EL2_48);
    pt.map(va(start), pa(start + SIZE_2M * 3), end - start, Attributes::DATA, NONE).unwrap();
    let l = leaves(&pt);
    assert_eq!((count(&l, PageSize::Size4K), count(&l, PageSize::Size2M), count(&l, PageSize::Size1G)), (2, 514, 0));
    assert_maps(&pt, start, start + SIZE_2M * 3, end - start, Attributes::DATA);
    finish(pt);

    // Output only page aligned relative to the input: pages only.
    let mut pt = table::<El2>(Geometry::AARCH64_EL2_48);
    let (start, end) = (0x3fe0_0000u64, 0x4060_0000u64);
    pt.map(va(start), pa(0x1_0000_1000), end - start, Attributes::RODATA, NONE).unwrap();
    let l = leaves(&pt);
    assert_eq!(l.len() as u64, (end - start) / PAGE_SIZE);
    assert_eq!(count(&l, PageSize::Size4K), l.len());
    assert_maps(&pt, start, 0x1_0000_1000, end - start, Attributes::RODATA);
    finish(pt);
}

#[test]
fn pages_only_never_uses_blocks() {
    let mut pt = table::<El2>(Geometry::AARCH64_EL2_39);
    pt.map(va(0x4000_0000), pa(0x4000_0000), 2 * SIZE_2M, Attributes::DATA, NONE.pages_only()).unwrap();
    let l = leaves(&pt);
    assert_eq!((l.len(), count(&l, PageSize::Size4K)), (1024, 1024));
    // Root L1, one L2, two L3.
    assert_eq!(pt.allocator().live(), 4);
    finish(pt);
}

#[test]
fn identical_mapping_is_a_no_op_and_a_different_one_an_overlap() {
    let mut pt = table::<El2>(Geometry::AARCH64_EL2_48);
    pt.map(va(0x4000_0000), pa(0x8000_0000), SIZE_2M, Attributes::DATA, NONE).unwrap();
    let before = mark(&pt);
    // The same translation for a sub-range: nothing written, no split.
    pt.map(va(0x4000_5000), pa(0x8000_5000), PAGE_SIZE, Attributes::DATA, NONE).unwrap();
    pt.map(va(0x4000_0000), pa(0x8000_0000), SIZE_2M, Attributes::DATA, NONE.pages_only()).unwrap();
    assert_eq!(mark(&pt), before);
    assert_eq!(leaves(&pt).len(), 1);
    // Another output address or other attributes: an overlap, naming the
    // first address that differs and what it maps to now.
    let err = pt.map(va(0x4000_5000), pa(0x9000_5000), 2 * PAGE_SIZE, Attributes::DATA, NONE).unwrap_err();
    assert_eq!(err, MapError::Overlap { at: va(0x4000_5000).any(), mapped_to: pa(0x8000_5000) });
    let err = pt.map(va(0x401f_f000), pa(0x801f_f000), 2 * PAGE_SIZE, Attributes::RODATA, NONE).unwrap_err();
    assert_eq!(err, MapError::Overlap { at: va(0x401f_f000).any(), mapped_to: pa(0x801f_f000) });
    // A range starting in a hole and running into the block: the first
    // mapped address is named.
    let err = pt.map(va(0x3fff_e000), pa(0x1000_0000), 4 * PAGE_SIZE, Attributes::DATA, NONE).unwrap_err();
    assert_eq!(err, MapError::Overlap { at: va(0x4000_0000).any(), mapped_to: pa(0x8000_0000) });
    // Refused operations changed nothing.
    assert_eq!(mark(&pt), before);
    assert_eq!(runs(&pt), [run(0x4000_0000, 0x8000_0000, SIZE_2M, Attributes::DATA)]);
    finish(pt);
}

#[test]
fn errors_name_the_address() {
    let mut pt = table::<El2>(Geometry::AARCH64_EL2_39);
    let e = |r: Result<(), MapError>| r.unwrap_err();
    assert_eq!(
        e(pt.map(va(0x4000_0800), pa(0x4000_0000), PAGE_SIZE, Attributes::DATA, NONE)),
        MapError::Misaligned(va(0x4000_0800).any())
    );
    assert_eq!(
        e(pt.map(va(0x4000_0000), pa(0x4000_0010), PAGE_SIZE, Attributes::DATA, NONE)),
        MapError::Misaligned(pa(0x4000_0010).any())
    );
    assert_eq!(
        e(pt.map(va(0x4000_0000), pa(0x4000_0000), 0x1800, Attributes::DATA, NONE)),
        MapError::MisalignedSize(0x1800)
    );
    assert_eq!(e(pt.unmap(va(0x4000_0000), 0)), MapError::EmptyRange(va(0x4000_0000).any()));
    // 39-bit VA: the first address outside is 2^39.
    assert_eq!(
        e(pt.map(va(0x7f_ffff_f000), pa(0x4000_0000), 2 * PAGE_SIZE, Attributes::DATA, NONE)),
        MapError::InputOutOfRange(va(0x80_0000_0000).any())
    );
    assert_eq!(e(pt.unmap(va(0x90_0000_0000), PAGE_SIZE)), MapError::InputOutOfRange(va(0x90_0000_0000).any()));
    assert_eq!(
        e(pt.map(va(0x1000), pa(0xffff_ffff_f000), 2 * PAGE_SIZE, Attributes::DATA, NONE)),
        MapError::OutputOutOfRange(pa(1 << 48).any())
    );
    // Protect needs the whole range mapped: the first hole is named.
    pt.map(va(0x4000_0000), pa(0x4000_0000), 2 * PAGE_SIZE, Attributes::DATA, NONE).unwrap();
    let err = e(pt.protect(va(0x4000_0000), 3 * PAGE_SIZE, Attributes::RODATA, NONE));
    assert_eq!(err, MapError::NotMapped(va(0x4000_2000).any()));
    assert_eq!(err.to_string(), "VA 0x40002000 is not mapped");
    // Nothing changed by the refused protect.
    assert_eq!(runs(&pt), [run(0x4000_0000, 0x4000_0000, 2 * PAGE_SIZE, Attributes::DATA)]);
    // Messages carry the kind and the address.
    assert_eq!(MapError::Misaligned(pa(0x10).any()).to_string(), "PA 0x10 is not 4 KiB aligned");
    let msg = MapError::Overlap { at: va(0x4000_5000).any(), mapped_to: pa(0x8000_5000) }.to_string();
    assert!(msg.contains("VA 0x40005000") && msg.contains("PA 0x80005000"), "{msg}");
    assert!(MapError::OutOfTables(va(0x1000).any()).to_string().contains("VA 0x1000"));
    finish(pt);
}

#[test]
fn write_execute_is_refused_unless_forced() {
    fn check<R: Regime<Input = VirtAddr>>(geometry: Geometry) {
        let mut pt = table::<R>(geometry);
        let rwx = Attributes::new(MemoryType::Normal, Access::ReadWriteExecute);
        let err = pt.map(va(0x20_0000), pa(0x4000_0000), SIZE_2M, rwx, NONE).unwrap_err();
        assert_eq!(err, MapError::WriteExecute(va(0x20_0000).any()));
        assert!(err.to_string().contains("W^X"));
        // Refused before anything was allocated or written.
        assert_eq!(pt.allocator().live(), 1);
        assert!(runs(&pt).is_empty());
        // Protecting into W+X is refused the same way.
        pt.map(va(0x20_0000), pa(0x4000_0000), SIZE_2M, Attributes::CODE, NONE).unwrap();
        let err = pt.protect(va(0x20_0000), PAGE_SIZE, rwx, NONE).unwrap_err();
        assert_eq!(err, MapError::WriteExecute(va(0x20_0000).any()));
        assert_eq!(runs(&pt), [run(0x20_0000, 0x4000_0000, SIZE_2M, Attributes::CODE)]);
        // Executable device memory is refused even when W+X is forced.
        let dev_x = Attributes::new(MemoryType::Device, Access::ReadExecute);
        let force = NONE.allow_write_execute();
        let err = pt.map(va(0x4000_0000), pa(0x0900_0000), PAGE_SIZE, dev_x, force).unwrap_err();
        assert_eq!(err, MapError::ExecutableDevice(va(0x4000_0000).any()));
        // Forced, W+X is mapped and the walker sees it.
        pt.protect(va(0x20_0000), PAGE_SIZE, rwx, force).unwrap();
        assert_eq!(pt.translate(va(0x20_0fff)).unwrap().attrs, rwx);
        assert_eq!(pt.translate(va(0x20_1000)).unwrap().attrs, Attributes::CODE);
        finish(pt);
    }
    check::<El2>(Geometry::AARCH64_EL2_48);
    check::<Hyp>(Geometry::ARMV7_HYP);
}

#[test]
fn armv7_hyp_geometry() {
    let mut pt = table::<Hyp>(Geometry::ARMV7_HYP);
    assert_eq!(pt.geometry().root_entries(), 4);
    // The last page of the 32-bit VA space, to the last page of the 40-bit PA space.
    pt.map(va(0xffff_f000), pa(0xff_ffff_f000), PAGE_SIZE, Attributes::DATA, NONE).unwrap();
    // A 1 GiB block at level 1 and a 2 MiB block, both above 4 GiB in PA.
    pt.map(va(0x4000_0000), pa(0x80_4000_0000), SIZE_1G, Attributes::CODE, NONE).unwrap();
    pt.map(va(0x0020_0000), pa(0x12_3440_0000), SIZE_2M, Attributes::DEVICE, NONE).unwrap();
    assert_maps(&pt, 0xffff_f000, 0xff_ffff_f000, PAGE_SIZE, Attributes::DATA);
    assert_maps(&pt, 0x4000_0000, 0x80_4000_0000, SIZE_1G, Attributes::CODE);
    assert_maps(&pt, 0x0020_0000, 0x12_3440_0000, SIZE_2M, Attributes::DEVICE);
    // The root: 4 entries, each covering 1 GiB; only 0, 1 and 3 in use.
    let root = pt.allocator().table_ptr(pt.root());
    // SAFETY: a live fake page, read only.
    let entries = unsafe { (*root.as_ptr()).0 };
    assert_eq!(entries.iter().map(|e| e & 3).collect::<Vec<_>>()[..4], [3, 1, 0, 3]);
    assert!(entries[4..].iter().all(|&e| e == 0));
    // HYP leaves: AP[1] (bit 6) set, PXN (53), nG (11), NS (5) and the PA
    // bits above 40 clear.
    let d = pt.translate(va(0xffff_f000)).unwrap().descriptor;
    assert_eq!(d & (1 << 6), 1 << 6);
    assert_eq!(d & ((1 << 53) | (1 << 11) | (1 << 5) | (0xff << 40)), 0);
    // Out of range both ways, named.
    assert_eq!(
        pt.map(va(0xffff_f000), pa(0x1000), 2 * PAGE_SIZE, Attributes::DATA, NONE).unwrap_err(),
        MapError::InputOutOfRange(va(0x1_0000_0000).any())
    );
    assert_eq!(
        pt.map(va(0x1000), pa(0xff_ffff_f000), 2 * PAGE_SIZE, Attributes::DATA, NONE).unwrap_err(),
        MapError::OutputOutOfRange(pa(0x100_0000_0000).any())
    );
    assert_eq!(pt.translate(va(0x1_0000_0000)).unwrap_err(), WalkFault::InputOutOfRange(va(0x1_0000_0000).any()));
    // Tables: root, L2 + L3 for the last page, L2 for the 2 MiB block.
    assert_eq!(pt.allocator().live(), 4);
    finish(pt);

    // A HYP table cannot have an AArch64 geometry.
    let log = std::rc::Rc::new(core::cell::RefCell::new(Vec::new()));
    let alloc = FakeAllocator::new(log.clone(), 8);
    let r = PageTable::<Hyp, _, _>::new(Geometry::AARCH64_EL2_48, alloc, NoMaintenance);
    assert!(matches!(r, Err(CreateError::Geometry(GeometryError::Regime { .. }))));
    assert!(log.borrow().is_empty(), "nothing allocated for a refused geometry");
}

#[test]
fn stage2_concatenated_root_and_attributes() {
    let ipa = IntermediatePhysAddr::new;
    let geometry = Geometry::new(1, 40, 40).unwrap();
    let mut pt = table::<Stage2>(geometry);
    assert_eq!(pt.allocator().live(), 2, "two concatenated root pages");
    assert!(pt.root().is_aligned(2 * PAGE_SIZE));
    let ram = Attributes::new(MemoryType::Normal, Access::ReadWriteExecute);
    // Guest RAM is RWX at stage 2 without forcing; the entry lands in the
    // root's second page (index 512).
    pt.map(ipa(0x80_0000_0000), pa(0x4000_0000), SIZE_1G, ram, NONE).unwrap();
    pt.map(ipa(0x0900_0000), pa(0x0900_0000), PAGE_SIZE, Attributes::DEVICE, NONE).unwrap();
    pt.map(ipa(0x4000_0000), pa(0x8020_0000), SIZE_2M, Attributes::RODATA, NONE).unwrap();
    assert_maps(&pt, 0x80_0000_0000, 0x4000_0000, SIZE_1G, ram);
    assert_maps(&pt, 0x0900_0000, 0x0900_0000, PAGE_SIZE, Attributes::DEVICE);
    assert_maps(&pt, 0x4000_0000, 0x8020_0000, SIZE_2M, Attributes::RODATA);
    let second = pt.allocator().table_ptr(pt.root() + PAGE_SIZE);
    // SAFETY: a live fake page, read only.
    assert_eq!(unsafe { (*second.as_ptr()).0[0] } & 3, 1, "1 GiB block in the second root page");
    // Stage-2 descriptor: MemAttr 0b1111, S2AP 0b11, XN clear.
    let d = pt.translate(ipa(0x80_0000_0000)).unwrap().descriptor;
    assert_eq!((d >> 2) & 0xf, 0xf);
    assert_eq!((d >> 6) & 3, 3);
    assert_eq!(d & (1 << 54), 0);
    // Device stays non-executable at stage 2 too.
    let dev_x = Attributes::new(MemoryType::Device, Access::ReadWriteExecute);
    assert_eq!(
        pt.map(ipa(0x0a00_0000), pa(0x0a00_0000), PAGE_SIZE, dev_x, NONE).unwrap_err(),
        MapError::ExecutableDevice(ipa(0x0a00_0000).any())
    );
    assert_eq!(
        format!("{}", MapError::ExecutableDevice(ipa(0x10).any())),
        "IPA 0x10: refusing an executable device mapping"
    );
    pt.unmap(ipa(0), 1 << 40).unwrap();
    assert_eq!(pt.allocator().live(), 2);
    finish(pt);
}

#[test]
fn walker_rejects_what_the_encoder_must_never_write() {
    let mut pt = table::<Hyp>(Geometry::ARMV7_HYP);
    pt.map(va(0x1000), pa(0x4000_1000), PAGE_SIZE, Attributes::DATA, NONE).unwrap();
    let good = pt.translate(va(0x1000)).unwrap().descriptor;
    // The level-3 table holding the page: follow root[0] and L2[0].
    let l3 = {
        let read = |t: u64, i: usize| {
            let p = pt.allocator().table_ptr(pa(t));
            // SAFETY: a live fake page, read only.
            unsafe { (*p.as_ptr()).0[i] }
        };
        let l2 = read(pt.root().as_u64(), 0) & 0xffff_ffff_f000;
        read(l2, 0) & 0xffff_ffff_f000
    };
    let poke = |pt: &Table<Hyp>, raw: u64| {
        let p = pt.allocator().table_ptr(pa(l3));
        // SAFETY: a live fake page; no reference to it is alive.
        unsafe { (*p.as_ptr()).0[1] = raw };
    };
    let cases = [
        (good & !(1 << 10), WalkFault::AccessFlag { level: 3 }),
        (good & !(1 << 6), WalkFault::UnexpectedBits { level: 3, descriptor: good & !(1 << 6), bits: 1 << 6 }),
        (good | (1 << 53), WalkFault::UnexpectedBits { level: 3, descriptor: good | (1 << 53), bits: 1 << 53 }),
        (good | (1 << 11), WalkFault::UnexpectedBits { level: 3, descriptor: good | (1 << 11), bits: 1 << 11 }),
        (good & !2, WalkFault::Reserved { level: 3, descriptor: good & !2 }),
        (good | (1 << 40), WalkFault::AddressSize { level: 3, descriptor: good | (1 << 40) }),
        (
            (good & !(3 << 8)) | (1 << 8),
            WalkFault::UnsupportedAttributes { level: 3, descriptor: (good & !(3 << 8)) | (1 << 8) },
        ),
    ];
    for (raw, fault) in cases {
        poke(&pt, raw);
        assert_eq!(pt.translate(va(0x1000)).unwrap_err(), fault, "descriptor {raw:#x}");
    }
    poke(&pt, good);
    assert_eq!(pt.translate(va(0x1000)).unwrap().output, pa(0x4000_1000));

    // Stage 2: a MemAttr outside the layout, write-only S2AP.
    let mut pt2 = table::<Stage2>(Geometry::new(1, 32, 40).unwrap());
    let ipa = IntermediatePhysAddr::new(0x20_0000);
    pt2.map(ipa, pa(0x4000_0000), SIZE_2M, Attributes::DATA, NONE).unwrap();
    let good = pt2.translate(ipa).unwrap().descriptor;
    let poke2 = |raw: u64| {
        let p = pt2.allocator().table_ptr(pt2.root());
        let l2 = {
            // SAFETY: a live fake page, read only.
            unsafe { (*p.as_ptr()).0[0] & 0xffff_ffff_f000 }
        };
        let q = pt2.allocator().table_ptr(pa(l2));
        // SAFETY: a live fake page; no reference to it is alive.
        unsafe { (*q.as_ptr()).0[1] = raw };
    };
    let bad_memattr = (good & !(0xf << 2)) | (0b0010 << 2);
    poke2(bad_memattr);
    assert_eq!(pt2.translate(ipa).unwrap_err(), WalkFault::UnknownMemoryType { level: 2, descriptor: bad_memattr });
    let write_only = (good & !(3 << 6)) | (0b10 << 6);
    poke2(write_only);
    assert_eq!(pt2.translate(ipa).unwrap_err(), WalkFault::UnsupportedAttributes { level: 2, descriptor: write_only });
    poke2(good);
    finish(pt);
    finish(pt2);
}
