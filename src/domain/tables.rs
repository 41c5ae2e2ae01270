//! Stage-2 table pages from the physical page allocator, reached through
//! the direct map.

use crate::boot::memory::FRAMES;
use crate::boot::relocate::DIRECTMAP_VA;
use crate::mm::addr::PhysAddr;
use crate::mm::lpae::{TableAllocator, TableMemory, TablePage};
use core::ptr::NonNull;

/// Table pages from [`FRAMES`].
#[derive(Debug)]
pub struct FrameTables;

// SAFETY: every table page is RAM the allocator handed out, mapped
// read/write by the direct map.
unsafe impl TableMemory for FrameTables {
    fn table_ptr(&self, table: PhysAddr) -> NonNull<TablePage> {
        NonNull::new((DIRECTMAP_VA + table.as_u64()) as *mut TablePage).expect("direct map at null")
    }
}

// SAFETY: pages come from the page allocator, one owner each until freed.
unsafe impl TableAllocator for FrameTables {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        FRAMES.lock().as_mut()?.alloc(1, 1).ok()
    }

    fn free_table(&mut self, table: PhysAddr) {
        if let Some(f) = FRAMES.lock().as_mut() {
            let _ = f.free(table, 1);
        }
    }

    /// A concatenated stage-2 root (a 40-bit IPA: two level-1 pages),
    /// aligned to its size as VTTBR_EL2 requires.
    fn alloc_root(&mut self, pages: usize) -> Option<PhysAddr> {
        let pages = pages as u64;
        FRAMES.lock().as_mut()?.alloc(pages, pages).ok()
    }

    fn free_root(&mut self, root: PhysAddr, pages: usize) {
        if let Some(f) = FRAMES.lock().as_mut() {
            let _ = f.free(root, pages as u64);
        }
    }
}
