//! Bring-up tables for secondary CPUs.
//!
//! A secondary CPU starts with its MMU off at a physical address, and may
//! only turn the MMU on from code that stays mapped at that same address:
//! the identity page. The runtime tables do not contain it (nothing else
//! needs it, and it may collide with hypervisor mappings), so secondaries
//! use a **dedicated root**: a copy of the runtime root whose entries point
//! at the *same* lower-level tables, plus the identity page. Everything the
//! runtime tables map below the root is therefore shared, and a secondary
//! never has to change TTBR with its MMU on. Only the tables on the path
//! to the identity page are private copies (when that path crosses a
//! runtime table); kept for hotplug as well.

use crate::mm::addr::PhysAddr;
use crate::mm::lpae::desc::{Descriptor, DescriptorKind};
use crate::mm::lpae::geometry::{ENTRIES, Geometry, LAST_LEVEL};
use crate::mm::lpae::regime::Regime;
use crate::mm::lpae::table::{TableAllocator, TableMemory};
use crate::mm::lpae::Attributes;
use core::fmt;

/// Why the bring-up tables could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BringupError {
    /// The bring-up pool is exhausted.
    OutOfTables,
    /// The identity page is covered by a runtime block or page that maps it
    /// elsewhere.
    Clash(u64),
    /// The identity page cannot be encoded (alignment, range).
    BadAddress(u64),
}

impl fmt::Display for BringupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BringupError::OutOfTables => write!(f, "out of bring-up table pages"),
            BringupError::Clash(a) => write!(f, "identity page {a:#x} is already mapped elsewhere by the runtime tables"),
            BringupError::BadAddress(a) => write!(f, "identity page {a:#x} cannot be mapped"),
        }
    }
}

fn read(mem: &impl TableMemory, table: PhysAddr, i: usize) -> u64 {
    // SAFETY: `table` is a live table page of `mem`, `i < ENTRIES`.
    unsafe { (*mem.table_ptr(table).as_ptr()).0[i % ENTRIES] }
}

fn write(mem: &impl TableMemory, table: PhysAddr, i: usize, v: u64) {
    // SAFETY: as `read`; the bring-up tables are not live yet.
    unsafe { (*mem.table_ptr(table).as_ptr()).0[i % ENTRIES] = v }
}

/// Makes the bring-up root: the entries of `runtime_root` (tables reached
/// through `runtime`), plus `page` mapped at itself with `attrs`. New pages
/// come from `own`. Returns the new root.
pub fn graft_identity<R: Regime>(
    runtime: &impl TableMemory,
    runtime_root: PhysAddr,
    own: &mut impl TableAllocator,
    geometry: Geometry,
    page: u64,
    attrs: Attributes,
) -> Result<PhysAddr, BringupError> {
    let leaf = Descriptor::leaf(R::KIND, LAST_LEVEL, PhysAddr::new(page), attrs).ok_or(BringupError::BadAddress(page))?;
    let root = own.alloc_table().ok_or(BringupError::OutOfTables)?;
    for i in 0..geometry.root_entries() {
        write(own, root, i, read(runtime, runtime_root, i));
    }
    // Walk down, copying every runtime table on the path into our own pool.
    let mut table = root;
    for level in geometry.start_level()..LAST_LEVEL {
        let i = geometry.index(level, page);
        let entry = Descriptor::from_raw(read(own, table, i));
        let next = own.alloc_table().ok_or(BringupError::OutOfTables)?;
        match entry.kind(level) {
            DescriptorKind::Invalid => {
                for j in 0..ENTRIES {
                    write(own, next, j, 0);
                }
            }
            DescriptorKind::Table(shared) => {
                for j in 0..ENTRIES {
                    write(own, next, j, read(runtime, shared, j));
                }
            }
            _ => return Err(BringupError::Clash(page)),
        }
        write(own, table, i, Descriptor::table(next).raw());
        table = next;
    }
    let i = geometry.index(LAST_LEVEL, page);
    let old = Descriptor::from_raw(read(own, table, i));
    if old.is_valid() && old.raw() != leaf.raw() {
        return Err(BringupError::Clash(page));
    }
    write(own, table, i, leaf.raw());
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use crate::mm::addr::VirtAddr;
    use crate::mm::lpae::{El2, MapOptions, NoMaintenance, PageTable, walk};
    use crate::mm::pool::TablePool;
    use std::boxed::Box;

    #[repr(C, align(4096))]
    struct Pages([[u64; 512]; 32]);

    fn pool(mem: &mut Pages, pa: u64) -> TablePool {
        // SAFETY: `mem` is ours, page aligned, and outlives the tables.
        unsafe { TablePool::new(mem.0.as_mut_ptr() as usize, PhysAddr::new(pa), 32) }
    }

    /// Runtime tables like the relocated hypervisor's, and a bring-up root
    /// grafted on them: the identity page translates in the bring-up tables
    /// only, every runtime mapping translates identically in both, and a
    /// mapping added to the runtime tables later is seen through the
    /// bring-up root too (shared lower tables).
    fn scenario(image_va: u64, idmap: u64) {
        let g = Geometry::AARCH64_EL2_48;
        let (mut rmem, mut bmem) = (Box::new(Pages([[0; 512]; 32])), Box::new(Pages([[0; 512]; 32])));
        let mut rt = PageTable::<El2, _, _>::new(g, pool(&mut rmem, 0x7fe4_0000), NoMaintenance).unwrap();
        let map = |rt: &mut PageTable<El2, TablePool, NoMaintenance>, va: u64, pa: u64, len: u64, a: Attributes| {
            rt.map(VirtAddr::new(va), PhysAddr::new(pa), len, a, MapOptions::new()).unwrap()
        };
        map(&mut rt, image_va, 0x7fe0_0000, 0x10000, Attributes::CODE);
        map(&mut rt, image_va + 0x10000, 0x7fe1_0000, 0x30000, Attributes::DATA);
        map(&mut rt, 0x8000_4000_0000, 0x4000_0000, 1 << 30, Attributes::DATA);
        let mut own = pool(&mut bmem, 0x7fe6_0000);
        let broot = graft_identity::<El2>(rt.allocator(), rt.root(), &mut own, g, idmap, Attributes::CODE).unwrap();
        // The walker reads both pools: route by physical address.
        struct Both<'a>(&'a TablePool, &'a TablePool);
        // SAFETY: each address is served by the pool that owns it.
        unsafe impl TableMemory for Both<'_> {
            fn table_ptr(&self, t: PhysAddr) -> core::ptr::NonNull<crate::mm::lpae::TablePage> {
                if t.as_u64() >= 0x7fe6_0000 { self.1.table_ptr(t) } else { self.0.table_ptr(t) }
            }
        }
        let both = Both(rt.allocator(), &own);
        let tr = |root: PhysAddr, va: u64| walk::translate::<El2>(&both, root, g, VirtAddr::new(va));
        let id = tr(broot, idmap + 0x123).unwrap();
        assert_eq!((id.output.as_u64(), id.attrs), (idmap + 0x123, Attributes::CODE));
        assert!(tr(rt.root(), idmap).is_err() || idmap >= image_va && idmap < image_va + 0x40000);
        for va in [image_va, image_va + 0x1_0008, 0x8000_4000_0000, 0x8000_7fff_fff8] {
            assert_eq!(tr(broot, va).unwrap(), tr(rt.root(), va).unwrap(), "VA {va:#x}");
        }
        // Shared below the root: a later runtime mapping in an existing slot shows up.
        map(&mut rt, image_va + 0x40000, 0x7fe4_8000, 0x1000, Attributes::RODATA);
        let both = Both(rt.allocator(), &own);
        let later = walk::translate::<El2>(&both, broot, g, VirtAddr::new(image_va + 0x40000));
        if idmap >> 30 != image_va >> 30 {
            assert_eq!(later.unwrap().output.as_u64(), 0x7fe4_8000);
        }
    }

    #[test]
    fn identity_in_its_own_root_slot() {
        // Default layout: image at 10 TiB, identity page in RAM (root slot 0).
        scenario(0xa00_0000_0000, 0x7fe0_1000);
    }

    #[test]
    fn identity_sharing_a_path_with_the_runtime_image() {
        // Clash-test layout: image at 1 GiB, identity page in the same GiB.
        scenario(0x4000_0000, 0x7fe0_1000);
    }

    #[test]
    fn a_runtime_page_already_there_is_a_clash() {
        let g = Geometry::AARCH64_EL2_48;
        let (mut rmem, mut bmem) = (Box::new(Pages([[0; 512]; 32])), Box::new(Pages([[0; 512]; 32])));
        let mut rt = PageTable::<El2, _, _>::new(g, pool(&mut rmem, 0x1000_0000), NoMaintenance).unwrap();
        rt.map(VirtAddr::new(0x7fe0_1000), PhysAddr::new(0x5000_0000), 0x1000, Attributes::DATA, MapOptions::new())
            .unwrap();
        let mut own = pool(&mut bmem, 0x2000_0000);
        let e = graft_identity::<El2>(rt.allocator(), rt.root(), &mut own, g, 0x7fe0_1000, Attributes::CODE);
        assert_eq!(e, Err(BringupError::Clash(0x7fe0_1000)));
    }
}
