//! A fixed pool of translation-table pages inside the hypervisor image.
//!
//! The runtime tables are built in this pool *before* the image moves to its
//! final place, with the physical addresses the pages will have in the new
//! copy: the copy carries the finished tables along, and the switch only has
//! to point TTBR at them. The pool is reached through its (unchanging)
//! virtual address, so the same allocator works before and after the move.

use crate::mm::addr::{PAGE_SIZE, PhysAddr};
use crate::mm::lpae::table::{TableAllocator, TableMemory};
use crate::mm::lpae::TablePage;
use core::ptr::NonNull;

/// Most pages a pool can hand out (one bit each).
pub const MAX_POOL_PAGES: usize = 128;

/// Table pages at virtual address `va`, known to the tables as physical
/// address `pa` (where they are, or will be after the image moves).
#[derive(Debug)]
pub struct TablePool {
    va: usize,
    pa: u64,
    pages: usize,
    used: [u64; MAX_POOL_PAGES / 64],
}

impl TablePool {
    /// A pool of `pages` page-aligned pages at `va`, seen by tables at `pa`.
    ///
    /// # Safety
    /// `[va, va + pages * 4 KiB)` must be page aligned, writable, used by
    /// nothing else, and stay mapped for as long as the tables are used.
    pub unsafe fn new(va: usize, pa: PhysAddr, pages: usize) -> Self {
        Self { va, pa: pa.as_u64(), pages: pages.min(MAX_POOL_PAGES), used: [0; MAX_POOL_PAGES / 64] }
    }

    /// Pages in use.
    pub fn used(&self) -> usize {
        self.used.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Pages in the pool.
    pub fn capacity(&self) -> usize {
        self.pages
    }

    fn index(&self, table: PhysAddr) -> Option<usize> {
        let off = table.as_u64().checked_sub(self.pa)?;
        let i = (off / PAGE_SIZE) as usize;
        (off % PAGE_SIZE == 0 && i < self.pages).then_some(i)
    }
}

// SAFETY: `table_ptr` only returns pointers into the pool, which `new`'s
// caller guarantees is mapped, writable and ours.
unsafe impl TableMemory for TablePool {
    fn table_ptr(&self, table: PhysAddr) -> NonNull<TablePage> {
        match self.index(table) {
            Some(i) => NonNull::new((self.va + i * PAGE_SIZE as usize) as *mut TablePage).expect("pool at null"),
            None => panic!("table {table} is not in the table pool at {:#x}", self.pa),
        }
    }
}

// SAFETY: each page is handed out once until freed (the bitmap), and all
// pages are page aligned and inside the pool.
unsafe impl TableAllocator for TablePool {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        let i = (0..self.pages).find(|&i| self.used[i / 64] & (1 << (i % 64)) == 0)?;
        self.used[i / 64] |= 1 << (i % 64);
        Some(PhysAddr::new(self.pa + i as u64 * PAGE_SIZE))
    }

    fn free_table(&mut self, table: PhysAddr) {
        if let Some(i) = self.index(table) {
            self.used[i / 64] &= !(1 << (i % 64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use crate::mm::addr::VirtAddr;
    use crate::mm::lpae::{Attributes, El2, Geometry, MapOptions, NoMaintenance, PageTable};
    use std::boxed::Box;

    #[repr(C, align(4096))]
    struct Pages([[u64; 512]; 16]);

    #[test]
    fn tables_built_for_another_physical_address_walk_there() {
        let mut mem = Box::new(Pages([[0; 512]; 16]));
        let va = mem.0.as_mut_ptr() as usize;
        // The tables will live at 0x7fe10000 once the image has moved.
        let future = PhysAddr::new(0x7fe1_0000);
        // SAFETY: `mem` is ours, page aligned, and outlives the tables.
        let pool = unsafe { TablePool::new(va, future, 16) };
        let mut pt = PageTable::<El2, _, _>::new(Geometry::AARCH64_EL2_48, pool, NoMaintenance).unwrap();
        pt.map(VirtAddr::new(0xa00_0000_0000), PhysAddr::new(0x7fe0_0000), 0x4000, Attributes::CODE, MapOptions::new())
            .unwrap();
        assert_eq!(pt.root(), future);
        // The root's entry points at the next table by its future address.
        let root = mem.0[0][(0xa00_0000_0000u64 >> 39) as usize & 511];
        assert_eq!(root & 0xffff_ffff_f000, 0x7fe1_1000);
        let t = pt.translate(VirtAddr::new(0xa00_0000_1234)).unwrap();
        assert_eq!(t.output, PhysAddr::new(0x7fe0_1234));
        assert_eq!(pt.allocator().used(), 4);
        let (pool, _) = pt.destroy();
        assert_eq!(pool.used(), 0);
    }

    #[test]
    fn exhaustion_is_none_and_foreign_pages_are_ignored_on_free() {
        let mut mem = Box::new(Pages([[0; 512]; 16]));
        // SAFETY: as above.
        let mut pool = unsafe { TablePool::new(mem.0.as_mut_ptr() as usize, PhysAddr::new(0x1000_0000), 2) };
        assert_eq!(pool.alloc_table(), Some(PhysAddr::new(0x1000_0000)));
        assert_eq!(pool.alloc_table(), Some(PhysAddr::new(0x1000_1000)));
        assert_eq!(pool.alloc_table(), None);
        pool.free_table(PhysAddr::new(0x2000_0000));
        assert_eq!(pool.used(), 2);
        pool.free_table(PhysAddr::new(0x1000_0000));
        assert_eq!(pool.alloc_table(), Some(PhysAddr::new(0x1000_0000)));
    }
}
