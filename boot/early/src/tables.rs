//! Boot page tables: a fixed pool of table pages inside the image, filled
//! with the MMU off (addresses are physical) and edited afterwards through
//! whatever mapping of the image is live.
//!
//! Only the AArch64 EL2 stage-1 format with a 4 KiB granule and four levels
//! (48-bit VA) is needed here, at page granularity. The encoding is written
//! out independently of `armature::mm::lpae` on purpose: the host tests walk
//! these tables with that library's walker, so a mistake in either shows.
//! Everything here is panic-free (no indexing that can fail, no overflow
//! checks), because this code may not reference panic machinery.

use crate::Error;
use crate::layout::{PAGE, VA_BITS};

/// Entries per table.
pub const ENTRIES: usize = 512;
/// One table page.
pub type TablePage = [u64; ENTRIES];

const VALID: u64 = 1 << 0;
const TABLE_OR_PAGE: u64 = 1 << 1;
const ATTR_INDX_SHIFT: u32 = 2;
/// MAIR index of Device-nGnRE (see [`MAIR`]).
const MAIR_IDX_DEVICE: u64 = 1;
/// MAIR index of Normal write-back (see [`MAIR`]).
const MAIR_IDX_NORMAL: u64 = 3;
/// AP[1]: RES1 in the EL2 (E2H = 0) regime.
const AP1_RES1: u64 = 1 << 6;
/// AP[2]: read-only.
const AP2_READ_ONLY: u64 = 1 << 7;
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
/// Execute-never (bit 54; PXN is RES0 at EL2).
const XN: u64 = 1 << 54;
const OUTPUT_MASK: u64 = ((1 << VA_BITS) - 1) & !(PAGE - 1);

/// MAIR_EL2: index 0 Device-nGnRnE, 1 Device-nGnRE, 2 Normal non-cacheable,
/// 3 Normal write-back read/write-allocate (the same as the runtime tables).
pub const MAIR: u64 = 0xff_44_04_00;

/// Permissions of a boot mapping. Never writable and executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    /// Normal memory, read-only, executable.
    Text,
    /// Normal memory, read-only.
    ReadOnly,
    /// Normal memory, read/write.
    ReadWrite,
    /// Device-nGnRE, read/write.
    Device,
}

impl Perm {
    /// The leaf (page) descriptor attribute bits.
    pub const fn bits(self) -> u64 {
        let normal = (MAIR_IDX_NORMAL << ATTR_INDX_SHIFT) | SH_INNER | AF | AP1_RES1;
        match self {
            Perm::Text => normal | AP2_READ_ONLY,
            Perm::ReadOnly => normal | AP2_READ_ONLY | XN,
            Perm::ReadWrite => normal | XN,
            Perm::Device => (MAIR_IDX_DEVICE << ATTR_INDX_SHIFT) | SH_INNER | AF | AP1_RES1 | XN,
        }
    }
}

const fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (3 - level))) & (ENTRIES as u64 - 1)) as usize
}

/// The boot tables: `pages[0]` is the root, the rest are handed out in order.
pub struct Tables<'a> {
    pages: &'a mut [TablePage],
    base_pa: u64,
    used: usize,
}

impl<'a> Tables<'a> {
    /// Starts new tables in `pages`, whose first page is at physical address
    /// `base_pa`. The root is cleared; other pages are cleared when handed out.
    pub fn new(pages: &'a mut [TablePage], base_pa: u64) -> Result<Self, Error> {
        let mut t = Tables { pages, base_pa, used: 0 };
        t.alloc()?;
        Ok(t)
    }

    /// Continues editing tables made earlier by [`Tables::new`] with `used`
    /// pages in use. `pages` may be reached through another mapping now.
    pub fn resume(pages: &'a mut [TablePage], base_pa: u64, used: usize) -> Self {
        Tables { pages, base_pa, used }
    }

    /// Physical address of the root table (for TTBR0_EL2).
    pub fn root_pa(&self) -> u64 {
        self.base_pa
    }

    /// Pages handed out so far, root included.
    pub fn used(&self) -> usize {
        self.used
    }

    fn alloc(&mut self) -> Result<u64, Error> {
        let idx = self.used;
        let page = self.pages.get_mut(idx).ok_or(Error::OutOfTables)?;
        for e in page.iter_mut() {
            *e = 0;
        }
        self.used = idx + 1;
        Ok(self.base_pa.wrapping_add((idx as u64).wrapping_mul(PAGE)))
    }

    fn page(&mut self, pa: u64) -> Result<&mut TablePage, Error> {
        let off = pa.wrapping_sub(self.base_pa);
        let idx = (off / PAGE) as usize;
        if !off.is_multiple_of(PAGE) || idx >= self.used {
            return Err(Error::BadAddress);
        }
        self.pages.get_mut(idx).ok_or(Error::BadAddress)
    }

    /// Finds the level-3 table and index for `va`, creating tables when `create`.
    fn leaf_slot(&mut self, va: u64, create: bool) -> Result<Option<(u64, usize)>, Error> {
        let mut table = self.base_pa;
        for level in 0..3 {
            let i = index(va, level);
            let entry = *self.page(table)?.get(i).ok_or(Error::BadAddress)?;
            if entry & VALID == 0 {
                if !create {
                    return Ok(None);
                }
                let next = self.alloc()?;
                let slot = self.page(table)?.get_mut(i).ok_or(Error::BadAddress)?;
                *slot = next | TABLE_OR_PAGE | VALID;
                table = next;
            } else if entry & TABLE_OR_PAGE == 0 {
                // A block: the boot tables never make them.
                return Err(Error::Overlap);
            } else {
                table = entry & OUTPUT_MASK;
            }
        }
        Ok(Some((table, index(va, 3))))
    }

    /// Maps `[va, va + size)` to `[pa, pa + size)` with 4 KiB pages. Mapping
    /// a page again identically is allowed; differently, it is an overlap.
    pub fn map(&mut self, va: u64, pa: u64, size: u64, perm: Perm) -> Result<(), Error> {
        if !(va | pa | size).is_multiple_of(PAGE)
            || va.checked_add(size).is_none_or(|end| end > 1 << VA_BITS)
            || pa.checked_add(size).is_none_or(|end| end > 1 << VA_BITS)
        {
            return Err(Error::BadAddress);
        }
        let mut off = 0;
        while off < size {
            let Some((table, i)) = self.leaf_slot(va + off, true)? else {
                return Err(Error::OutOfTables);
            };
            let desc = (pa + off) | perm.bits() | TABLE_OR_PAGE | VALID;
            let slot = self.page(table)?.get_mut(i).ok_or(Error::BadAddress)?;
            if *slot & VALID != 0 && *slot != desc {
                return Err(Error::Overlap);
            }
            *slot = desc;
            off += PAGE;
        }
        Ok(())
    }

    /// Removes the page mappings of `[va, va + size)`, calling `invalidate`
    /// with each page's virtual address after its entry is cleared (the caller
    /// does the TLB maintenance). Returns how many pages were mapped.
    pub fn unmap(&mut self, va: u64, size: u64, mut invalidate: impl FnMut(u64)) -> Result<u64, Error> {
        if !(va | size).is_multiple_of(PAGE) || va.checked_add(size).is_none_or(|end| end > 1 << VA_BITS) {
            return Err(Error::BadAddress);
        }
        let mut removed = 0;
        let mut off = 0;
        while off < size {
            if let Some((table, i)) = self.leaf_slot(va + off, false)? {
                let slot = self.page(table)?.get_mut(i).ok_or(Error::BadAddress)?;
                if *slot & VALID != 0 {
                    *slot = 0;
                    removed += 1;
                    invalidate(va + off);
                }
            }
            off += PAGE;
        }
        Ok(removed)
    }
}

impl Tables<'_> {
    /// Changes only the permissions of the pages of `[va, va + size)`, in
    /// place: the output address and memory type stay, which the
    /// architecture allows without break-before-make. `invalidate` gets each
    /// page's address after its entry changed.
    pub fn protect(&mut self, va: u64, size: u64, perm: Perm, mut invalidate: impl FnMut(u64)) -> Result<(), Error> {
        if !(va | size).is_multiple_of(PAGE) || va.checked_add(size).is_none_or(|end| end > 1 << VA_BITS) {
            return Err(Error::BadAddress);
        }
        let mut off = 0;
        while off < size {
            let Some((table, i)) = self.leaf_slot(va + off, false)? else {
                return Err(Error::NotMapped);
            };
            let slot = self.page(table)?.get_mut(i).ok_or(Error::BadAddress)?;
            if *slot & VALID == 0 {
                return Err(Error::NotMapped);
            }
            let new = (*slot & OUTPUT_MASK) | perm.bits() | TABLE_OR_PAGE | VALID;
            if (*slot ^ new) & !(AP2_READ_ONLY | XN) != 0 {
                // Not a permission-only change: that would need break-before-make.
                return Err(Error::Overlap);
            }
            *slot = new;
            invalidate(va + off);
            off += PAGE;
        }
        Ok(())
    }
}

/// The sections of the image, as offsets from its start (all page aligned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLayout {
    /// End of text (start of rodata).
    pub text_end: u64,
    /// End of rodata (start of data).
    pub rodata_end: u64,
    /// End of the image including BSS.
    pub image_end: u64,
}

/// Maps the image loaded at `pa` at `va`: text RX, rodata RW until the
/// relocations are applied (pointer tables of the precompiled `core` live in
/// `.rodata` and need relocating), data and BSS RW. [`seal_rodata`] then
/// makes rodata read-only.
pub fn map_image(t: &mut Tables<'_>, va: u64, pa: u64, l: ImageLayout) -> Result<(), Error> {
    t.map(va, pa, l.text_end, Perm::Text)?;
    t.map(va + l.text_end, pa + l.text_end, l.rodata_end - l.text_end, Perm::ReadWrite)?;
    t.map(va + l.rodata_end, pa + l.rodata_end, l.image_end - l.rodata_end, Perm::ReadWrite)
}

/// Makes the image's rodata at `va` read-only, once relocated.
pub fn seal_rodata(t: &mut Tables<'_>, va: u64, l: ImageLayout, invalidate: impl FnMut(u64)) -> Result<(), Error> {
    t.protect(va + l.text_end, l.rodata_end - l.text_end, Perm::ReadOnly, invalidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::boxed::Box;

    /// Page-aligned pages filled with garbage (the builder must not rely on
    /// zeroed memory), as the boot pool is.
    #[repr(C, align(4096))]
    pub struct HostPool(pub [TablePage; 32]);

    pub fn host_pool() -> Box<HostPool> {
        Box::new(HostPool([[0xdead_beef_u64; ENTRIES]; 32]))
    }

    fn pool(n: usize) -> (Box<HostPool>, u64) {
        let p = host_pool();
        let base = p.0.as_ptr() as u64;
        let _ = n;
        (p, base)
    }

    #[test]
    fn page_descriptors_encode_permissions() {
        // AttrIndx 3, SH inner, AF, AP[1]; AP[2] for read-only; XN bit 54.
        assert_eq!(Perm::Text.bits(), 0x0000_0000_0000_07cc);
        assert_eq!(Perm::ReadOnly.bits(), 0x0040_0000_0000_07cc);
        assert_eq!(Perm::ReadWrite.bits(), 0x0040_0000_0000_074c);
        assert_eq!(Perm::Device.bits(), 0x0040_0000_0000_0744);
    }

    #[test]
    fn map_creates_one_table_per_level_and_reuses_them() {
        let (mut p, base) = pool(8);
        let mut t = Tables::new(&mut p.0[..8], base).unwrap();
        t.map(0x4020_0000, 0x4020_0000, 3 * PAGE, Perm::Text).unwrap();
        assert_eq!(t.used(), 4);
        t.map(0x4020_3000, 0x5000_0000, PAGE, Perm::ReadWrite).unwrap();
        assert_eq!(t.used(), 4);
        // Identical again: fine. Different: overlap.
        t.map(0x4020_0000, 0x4020_0000, PAGE, Perm::Text).unwrap();
        assert_eq!(t.map(0x4020_0000, 0x4030_0000, PAGE, Perm::Text), Err(Error::Overlap));
        assert_eq!(t.map(0x4020_0000, 0x4020_0000, PAGE, Perm::ReadWrite), Err(Error::Overlap));
    }

    #[test]
    fn pool_exhaustion_and_bad_addresses_are_errors() {
        let (mut p, base) = pool(3);
        let mut t = Tables::new(&mut p.0[..3], base).unwrap();
        assert_eq!(t.map(0x1000, 0x1000, PAGE, Perm::Text), Err(Error::OutOfTables));
        assert_eq!(t.map(0x1001, 0x1000, PAGE, Perm::Text), Err(Error::BadAddress));
        assert_eq!(t.map(1 << 48, 0x1000, PAGE, Perm::Text), Err(Error::BadAddress));
        assert_eq!(t.map(0, 0, !0xfff, Perm::Text), Err(Error::BadAddress));
    }

    #[test]
    fn unmap_clears_and_reports_each_page() {
        let (mut p, base) = pool(8);
        let mut t = Tables::new(&mut p.0[..8], base).unwrap();
        t.map(0x4020_0000, 0x4020_0000, 2 * PAGE, Perm::Text).unwrap();
        let mut seen = std::vec::Vec::new();
        assert_eq!(t.unmap(0x4020_0000, 4 * PAGE, |va| seen.push(va)).unwrap(), 2);
        assert_eq!(seen, [0x4020_0000, 0x4020_1000]);
        // Now the page may be mapped elsewhere.
        t.map(0x4020_0000, 0x9000_0000, PAGE, Perm::Device).unwrap();
    }

    #[test]
    fn protect_changes_permissions_only() {
        let (mut p, base) = pool(8);
        let mut t = Tables::new(&mut p.0[..8], base).unwrap();
        t.map(0x10_0000, 0x4000_0000, 2 * PAGE, Perm::ReadWrite).unwrap();
        let mut seen = std::vec::Vec::new();
        t.protect(0x10_0000, 2 * PAGE, Perm::ReadOnly, |va| seen.push(va)).unwrap();
        assert_eq!(seen, [0x10_0000, 0x10_1000]);
        // Read-only now: mapping it read-only again is identical, RW differs.
        t.map(0x10_0000, 0x4000_0000, PAGE, Perm::ReadOnly).unwrap();
        // Normal -> Device is a memory-type change: refused.
        assert_eq!(t.protect(0x10_0000, PAGE, Perm::Device, |_| {}), Err(Error::Overlap));
        assert_eq!(t.protect(0x20_0000, PAGE, Perm::ReadOnly, |_| {}), Err(Error::NotMapped));
    }
}
