//! The boot page tables that `boot/early` builds with the MMU off, read back
//! through this library's walker. The two encoders are written separately,
//! so a bit wrong in either shows here. The scenarios replay the boot CPU's
//! steps for both paths (identity only, and the clash through the temporary
//! alias) and check every address the boot code depends on, at each step.

extern crate std;

use crate::mm::addr::{PhysAddr, VirtAddr};
use crate::mm::lpae::{Attributes, El2, Geometry, TablePage, Translation, WalkFault, for_each_leaf, translate};
use crate::mm::lpae::table::TableMemory;
use armature_early::layout::{self, FIXMAP_OFFSET, PAGE, Plan, RUNTIME_SPAN};
use armature_early::tables::{self, ImageLayout, Perm, Tables};
use core::ptr::NonNull;
use std::boxed::Box;
use std::vec::Vec;

/// Host memory: a "physical" address is the host address of the page.
struct HostMem;

// SAFETY: every address the walker follows comes from the early builder,
// which only links pages of the pool below, which outlives the walks.
unsafe impl TableMemory for HostMem {
    fn table_ptr(&self, table: PhysAddr) -> NonNull<TablePage> {
        NonNull::new(table.as_u64() as *mut TablePage).expect("null table")
    }
}

#[repr(C, align(4096))]
struct Pool([tables::TablePage; 32]);

fn pool() -> (Box<Pool>, u64) {
    let p = Box::new(Pool([[0x5a5a_5a5a_5a5a_5a5a; 512]; 32]));
    let base = p.0.as_ptr() as u64;
    (p, base)
}

/// The image as the linker lays it out today (offsets from its start).
const L: ImageLayout = ImageLayout { text_end: 0xf000, rodata_end: 0x17000, image_end: 0x4a000 };
const LOAD: u64 = 0x4020_0000;
const IDMAP: u64 = LOAD + 0x1000;
const DTB: u64 = 0x4800_0000;
const UART: u64 = 0x0900_0000;

fn walk(root: u64, va: u64) -> Result<Translation, WalkFault> {
    translate::<El2>(&HostMem, PhysAddr::new(root), Geometry::AARCH64_EL2_48, VirtAddr::new(va))
}

fn expect(root: u64, va: u64, pa: u64, attrs: Attributes) {
    let t = walk(root, va).unwrap_or_else(|e| panic!("VA {va:#x} does not translate: {e:?}"));
    assert_eq!(t.output.as_u64(), pa, "VA {va:#x}");
    assert_eq!(t.attrs, attrs, "VA {va:#x}");
    assert_eq!(t.level, 3, "boot tables use pages only");
}

fn expect_unmapped(root: u64, va: u64) {
    assert!(walk(root, va).is_err(), "VA {va:#x} is still mapped");
}

/// Checks the first, a middle and the last byte of every section of the image at `va`.
fn expect_image(root: u64, va: u64, rodata: Attributes) {
    for (start, end, attrs) in [
        (0, L.text_end, Attributes::CODE),
        (L.text_end, L.rodata_end, rodata),
        (L.rodata_end, L.image_end, Attributes::DATA),
    ] {
        for off in [start, ((start + end) / 2) & !7, end - 1] {
            expect(root, va + off, LOAD + off, attrs);
        }
    }
    expect_unmapped(root, va + L.image_end);
}

fn expect_fixmap(root: u64, image_va: u64) {
    let uart_va = image_va + FIXMAP_OFFSET;
    expect(root, uart_va, UART, Attributes::DEVICE);
    let dtb_va = image_va + FIXMAP_OFFSET + (2 << 20);
    expect(root, dtb_va, DTB, Attributes::RODATA);
    expect(root, dtb_va + (2 << 20) - 1, DTB + (2 << 20) - 1, Attributes::RODATA);
}

fn leaf_count(root: u64) -> usize {
    let mut n = 0;
    for_each_leaf::<El2>(&HostMem, PhysAddr::new(root), Geometry::AARCH64_EL2_48, |_| n += 1).unwrap();
    n
}

fn map_fixmap(t: &mut Tables<'_>, image_va: u64) {
    t.map(image_va + FIXMAP_OFFSET, UART, PAGE, Perm::Device).unwrap();
    t.map(image_va + FIXMAP_OFFSET + (2 << 20), DTB, 4 << 20, Perm::ReadOnly).unwrap();
}

const IMAGE_PAGES: usize = (L.image_end / PAGE) as usize;
const FIXMAP_PAGES: usize = 1 + 1024;

#[test]
fn identity_only_boot() {
    let image_va = 0x0a00_0000_0000;
    assert_eq!(layout::plan(IDMAP, image_va), Plan::IdentityOnly);
    let (mut p, base) = pool();
    let mut t = Tables::new(&mut p.0, base).unwrap();
    // Step 1 (MMU off): identity page, runtime image, fixmap.
    t.map(IDMAP, IDMAP, PAGE, Perm::Text).unwrap();
    tables::map_image(&mut t, image_va, LOAD, L).unwrap();
    map_fixmap(&mut t, image_va);
    let root = t.root_pa();
    expect(root, IDMAP, IDMAP, Attributes::CODE);
    expect_image(root, image_va, Attributes::DATA);
    expect_fixmap(root, image_va);
    assert_eq!(leaf_count(root), 1 + IMAGE_PAGES + FIXMAP_PAGES);
    // Step 3 (at the runtime address): the identity page goes.
    let mut invalidated = Vec::new();
    assert_eq!(t.unmap(IDMAP, PAGE, |va| invalidated.push(va)).unwrap(), 1);
    assert_eq!(invalidated, [IDMAP]);
    expect_unmapped(root, IDMAP);
    // Step 4 (relocated): rodata read-only, everything else unchanged.
    let mut sealed = 0;
    tables::seal_rodata(&mut t, image_va, L, |_| sealed += 1).unwrap();
    assert_eq!(sealed, ((L.rodata_end - L.text_end) / PAGE) as usize);
    expect_image(root, image_va, Attributes::RODATA);
    expect_fixmap(root, image_va);
    assert_eq!(leaf_count(root), IMAGE_PAGES + FIXMAP_PAGES);
    // 1 root + runtime (L1, L2, L3) + fixmap in the next GiB (L2, UART L3,
    // two DTB L3s) + identity in another 512 GiB slot (L1, L2, L3): the 11
    // pages the real boot logs.
    assert_eq!(t.used(), 11);
}

#[test]
fn clash_boot_goes_through_the_alias() {
    // The `clash-test` layout: runtime image at 1 GiB, inside QEMU's RAM.
    let image_va = 0x4000_0000;
    let alias_va = image_va + RUNTIME_SPAN;
    assert_eq!(layout::plan(IDMAP, image_va), Plan::TemporaryAlias);
    let (mut p, base) = pool();
    let mut t = Tables::new(&mut p.0, base).unwrap();
    // Step 1 (MMU off): identity page and the alias, no runtime mapping.
    t.map(IDMAP, IDMAP, PAGE, Perm::Text).unwrap();
    tables::map_image(&mut t, alias_va, LOAD, L).unwrap();
    let root = t.root_pa();
    expect(root, IDMAP, IDMAP, Attributes::CODE);
    expect_image(root, alias_va, Attributes::DATA);
    expect_unmapped(root, image_va);
    assert_eq!(leaf_count(root), 1 + IMAGE_PAGES);
    // Step 2 (at the alias): break the identity entry, then make the runtime mapping.
    let mut invalidated = Vec::new();
    t.unmap(IDMAP, PAGE, |va| invalidated.push(va)).unwrap();
    assert_eq!(invalidated, [IDMAP]);
    tables::map_image(&mut t, image_va, LOAD, L).unwrap();
    map_fixmap(&mut t, image_va);
    expect_image(root, image_va, Attributes::DATA);
    expect_image(root, alias_va, Attributes::DATA);
    expect_fixmap(root, image_va);
    // The identity VA now belongs to the runtime range: nothing there but
    // what the runtime mapping puts there (here: beyond the image, nothing).
    expect_unmapped(root, IDMAP);
    // Step 3 (at the runtime address): the alias goes, page by page.
    let removed = t.unmap(alias_va, L.image_end, |_| {}).unwrap();
    assert_eq!(removed as usize, IMAGE_PAGES);
    expect_unmapped(root, alias_va);
    expect_unmapped(root, alias_va + L.image_end - 1);
    tables::seal_rodata(&mut t, image_va, L, |_| {}).unwrap();
    expect_image(root, image_va, Attributes::RODATA);
    assert_eq!(leaf_count(root), IMAGE_PAGES + FIXMAP_PAGES);
}

#[test]
fn the_runtime_mapping_cannot_be_made_while_the_identity_page_is_there() {
    // What the alias exists for: a load address whose identity page lies on
    // a runtime page is refused as an overlap.
    let image_va = 0x4020_0000 - 0x1000;
    let (mut p, base) = pool();
    let mut t = Tables::new(&mut p.0, base).unwrap();
    t.map(IDMAP, IDMAP, PAGE, Perm::Text).unwrap();
    assert_eq!(tables::map_image(&mut t, image_va, LOAD, L), Err(armature_early::Error::Overlap));
}
