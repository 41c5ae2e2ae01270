//! The early-MMU boot layout (see the seed threads on Xen's and KVM's boot
//! page tables): the image mapped at its link-time VA (runtime mapping) plus
//! one identity-mapped page at the load address, from which the CPU turns
//! the MMU on and jumps to the runtime mapping. When the load address falls
//! inside the runtime range the two cannot coexist, so the image is first
//! also mapped at a temporary alias in another top-level slot; the CPU
//! jumps there, the clashing entries are replaced with the runtime mapping,
//! the CPU jumps to the runtime VA, and the alias is removed.
//!
//! At every step the walker must show exactly the expected translations and
//! nothing else; at the end no table may be left beyond what the runtime
//! mapping alone needs.

extern crate std;

use super::support::*;
use crate::mm::addr::*;
use crate::mm::lpae::*;
use std::vec::Vec;


/// The image: text (RX), rodata (RO), data + bss (RW), each page aligned.
const SECTIONS: [(u64, u64, Attributes); 3] = [
    (0x0_0000, 0x1_5000, Attributes::CODE),
    (0x1_5000, 0x0_7000, Attributes::RODATA),
    (0x1_c000, 0x0_e000, Attributes::DATA),
];
const IMAGE_SIZE: u64 = 0x2_a000;

#[derive(Clone, Copy)]
struct Layout {
    /// Link-time (runtime) VA of the image.
    image_va: u64,
    /// Where the loader put it.
    load_pa: u64,
    /// Temporary alias used when the identity page clashes.
    alias_va: u64,
}

impl Layout {
    fn clashes(&self) -> bool {
        self.load_pa < self.image_va + IMAGE_SIZE && self.image_va < self.load_pa + PAGE_SIZE
    }
}

fn map_image<R: Regime<Input = VirtAddr>>(
    pt: &mut Table<R>,
    va: u64,
    pa: u64,
    options: MapOptions,
) -> Result<(), MapError> {
    for (off, size, attrs) in SECTIONS {
        pt.map(VirtAddr::new(va + off), PhysAddr::new(pa + off), size, attrs, options)?;
    }
    Ok(())
}

fn image_runs(va: u64, pa: u64) -> Vec<Run> {
    SECTIONS.iter().map(|&(off, size, attrs)| run(va + off, pa + off, size, attrs)).collect()
}

fn identity_run(l: &Layout) -> Run {
    run(l.load_pa, l.load_pa, PAGE_SIZE, Attributes::CODE)
}

fn sorted(mut v: Vec<Run>) -> Vec<Run> {
    v.sort_by_key(|r| r.input);
    v
}

/// Tables a set holding only the runtime mapping needs.
fn runtime_only_tables<R: Regime<Input = VirtAddr>>(geometry: Geometry, l: &Layout) -> usize {
    let mut pt = table::<R>(geometry);
    map_image(&mut pt, l.image_va, l.load_pa, NONE).unwrap();
    let n = pt.allocator().live();
    finish(pt);
    n
}

/// Checks the PC-relevant translations of a step.
fn assert_image_at<R: Regime<Input = VirtAddr>>(pt: &Table<R>, va: u64, l: &Layout) {
    for (off, size, attrs) in SECTIONS {
        assert_maps(pt, va + off, l.load_pa + off, size, attrs);
    }
}

fn no_clash<R: Regime<Input = VirtAddr>>(geometry: Geometry, l: Layout) {
    assert!(!l.clashes());
    let mut pt = table::<R>(geometry);
    // Boot tables: runtime mapping + identity page.
    map_image(&mut pt, l.image_va, l.load_pa, NONE).unwrap();
    pt.map(VirtAddr::new(l.load_pa), PhysAddr::new(l.load_pa), PAGE_SIZE, Attributes::CODE, NONE).unwrap();
    let mut expected = image_runs(l.image_va, l.load_pa);
    expected.push(identity_run(&l));
    assert_eq!(runs(&pt), sorted(expected));
    assert_image_at(&pt, l.image_va, &l);
    // MMU on in the identity page, jump to the runtime VA, drop the identity page.
    pt.unmap(VirtAddr::new(l.load_pa), PAGE_SIZE).unwrap();
    assert_eq!(runs(&pt), image_runs(l.image_va, l.load_pa));
    assert_eq!(pt.allocator().live(), runtime_only_tables::<R>(geometry, &l));
    finish(pt);
}

fn clash<R: Regime<Input = VirtAddr>>(geometry: Geometry, l: Layout) {
    assert!(l.clashes());
    let (image_va, load_pa, alias_va) = (l.image_va, l.load_pa, l.alias_va);
    let mut pt = table::<R>(geometry);

    // Step 1, MMU off: identity page + the whole image at the alias.
    pt.map(VirtAddr::new(load_pa), PhysAddr::new(load_pa), PAGE_SIZE, Attributes::CODE, NONE).unwrap();
    map_image(&mut pt, alias_va, load_pa, NONE).unwrap();
    let mut step1 = image_runs(alias_va, load_pa);
    step1.push(identity_run(&l));
    let step1 = sorted(step1);
    assert_eq!(runs(&pt), step1);
    assert_image_at(&pt, alias_va, &l);
    // The runtime mapping cannot go in yet: it clashes with the identity
    // page, and the error names the clashing VA and what it maps now.
    let err = map_image(&mut pt, image_va, load_pa, NONE).unwrap_err();
    assert_eq!(err, MapError::Overlap { at: VirtAddr::new(load_pa).any(), mapped_to: PhysAddr::new(load_pa) });
    // The sections before the clash were mapped by the calls that
    // succeeded; take them out again so the step is exactly as planned.
    // (The boot code maps the runtime mapping only in step 2.)
    for (off, size, _) in SECTIONS {
        if image_va + off + size <= load_pa {
            pt.unmap(VirtAddr::new(image_va + off), size).unwrap();
        }
    }
    assert_eq!(runs(&pt), step1);

    // Step 2, MMU on, running in the identity page: jump to the alias, then
    // replace the clashing entries with the runtime mapping.
    let from = mark(&pt);
    map_image(&mut pt, image_va, load_pa, NONE.remap()).unwrap();
    let step2 = sorted([image_runs(alias_va, load_pa), image_runs(image_va, load_pa)].concat());
    assert_eq!(runs(&pt), step2);
    assert_image_at(&pt, alias_va, &l);
    assert_image_at(&pt, image_va, &l);
    // Exactly one valid entry was broken — the identity page — and it was
    // invalidated before the runtime page went in; the alias was not touched.
    let ev = &events(&pt)[from..];
    let breaks: Vec<usize> =
        (0..ev.len()).filter(|&i| matches!(ev[i], Event::Write { old, new: 0, .. } if old & 1 != 0)).collect();
    assert_eq!(breaks.len(), 1, "only the identity page is broken");
    let b = breaks[0];
    assert!(matches!(ev[b], Event::Write { level: 3, input, .. } if input == load_pa));
    assert_eq!(ev[b + 1], Event::Invalidate(Invalidation::Leaf { input: load_pa, level: 3 }));
    let alias_range = alias_va..alias_va + IMAGE_SIZE;
    for e in ev {
        if let Event::Write { input, level: 3, .. } = *e {
            assert!(!alias_range.contains(&input), "step 2 wrote the alias entry for {input:#x}");
        }
    }

    // Step 3, running at the runtime VA: remove the alias.
    pt.unmap(VirtAddr::new(alias_va), IMAGE_SIZE).unwrap();
    assert_eq!(runs(&pt), image_runs(image_va, load_pa));
    assert_image_at(&pt, image_va, &l);
    assert!(pt.translate(VirtAddr::new(alias_va)).is_err());
    assert_eq!(pt.allocator().live(), runtime_only_tables::<R>(geometry, &l));
    finish(pt);
}

#[test]
fn boot_layout_aarch64_without_clash() {
    let l = Layout { image_va: 0x0000_ff80_0000_0000, load_pa: 0x4020_0000, alias_va: 0x0000_ff00_0000_0000 };
    no_clash::<El2>(Geometry::AARCH64_EL2_48, l);
    // The same in a 39-bit space, image high in it.
    let l = Layout { image_va: 0x0000_007f_c000_0000, load_pa: 0x4020_0000, alias_va: 0x0000_007f_0000_0000 };
    no_clash::<El2>(Geometry::AARCH64_EL2_39, l);
}

#[test]
fn boot_layout_aarch64_clash_switches_through_an_alias() {
    // Load address inside the runtime range (both 48-bit).
    let l = Layout { image_va: 0x0000_ff80_0000_0000, load_pa: 0x0000_ff80_0001_0000, alias_va: 0x0000_ff00_0000_0000 };
    clash::<El2>(Geometry::AARCH64_EL2_48, l);
}

#[test]
fn boot_layout_armv7_without_clash() {
    let l = Layout { image_va: 0xe000_0000, load_pa: 0x4001_0000, alias_va: 0xa000_0000 };
    no_clash::<Hyp>(Geometry::ARMV7_HYP, l);
    // A load address above 4 GiB (40-bit PA) cannot be identity mapped with
    // a 32-bit VA: refused, naming the address.
    let mut pt = table::<Hyp>(Geometry::ARMV7_HYP);
    let high = 0x8_8000_0000;
    let err = pt.map(VirtAddr::new(high), PhysAddr::new(high), PAGE_SIZE, Attributes::CODE, NONE).unwrap_err();
    assert_eq!(err, MapError::InputOutOfRange(VirtAddr::new(high).any()));
    // The runtime mapping of such an image is fine.
    map_image(&mut pt, 0xe000_0000, high, NONE).unwrap();
    assert_eq!(runs(&pt), image_runs(0xe000_0000, high));
    finish(pt);
}

#[test]
fn boot_layout_armv7_clash_switches_through_an_alias() {
    // The image links at 0xe000_0000 and was loaded 64 KiB into the same
    // range: the identity page clashes with the runtime text. The alias is
    // in another level-1 slot (1 GiB each).
    let l = Layout { image_va: 0xe000_0000, load_pa: 0xe001_0000, alias_va: 0xa000_0000 };
    clash::<Hyp>(Geometry::ARMV7_HYP, l);
    // The clash on the very first page too.
    let l = Layout { image_va: 0xe000_0000, load_pa: 0xe000_1000, alias_va: 0x6000_0000 };
    clash::<Hyp>(Geometry::ARMV7_HYP, l);
}
