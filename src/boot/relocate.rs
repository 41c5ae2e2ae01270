//! Moving the hypervisor to the top of RAM, onto its runtime page tables
//! (AArch64).
//!
//! The image runs at its link-time virtual address on the boot tables,
//! backed by wherever the loader put it. This module picks a home at the top
//! of RAM, below anything that must not be overwritten (reserved memory,
//! boot modules, the DTB), builds the runtime tables *inside the image* with
//! the physical addresses the copy will have (so they travel with it), then
//! copies the image and switches TTBR from the copy's identity page with the
//! MMU off. Afterwards nothing refers to the original copy: its region is
//! free for later use (dom0), and the `poison-old-image` build overwrites it
//! to prove that.

use crate::arch::{self, mmu::El2Maintenance};
use crate::dt::{DtError, Gic, Region, Regions, Reserved};
use crate::mm::addr::{PAGE_SIZE, PhysAddr, VirtAddr};
use crate::mm::lpae::{Attributes, CreateError, El2, Geometry, MapError, MapOptions, PageTable};
use crate::mm::placement::{self, NoRoom, Placement};
use crate::mm::pool::TablePool;
use armature_early::EarlyInfo;
use armature_early::layout::{ALIAS_VA, FIXMAP_DTB_VA, FIXMAP_DTB_WINDOW, FIXMAP_UART_VA, PAGE};
use armature_early::tables::Perm;
use core::fmt;

// The runtime tables take over from the early code's boot tables: same
// memory attributes (MAIR_EL2 is not rewritten) and the same VA size.
const _: () = assert!(armature_early::tables::MAIR == crate::mm::lpae::MAIR);
const _: () = assert!(64 - armature_early::layout::VA_BITS == Geometry::AARCH64_EL2_48.aarch64_t0sz() as u32);

/// Where all RAM is mapped, at `DIRECTMAP_VA + physical address`.
pub const DIRECTMAP_VA: u64 = 0x0000_8000_0000_0000;
/// Where the boot tables map the destination while the image is copied
/// (the temporary-alias slot, unused after the MMU switch).
const COPY_VA: u64 = ALIAS_VA;
/// Alignment of the destination (a 2 MiB block, as for a Linux Image).
const DEST_ALIGN: u64 = 2 << 20;
/// Table pages for the runtime tables.
const POOL_PAGES: usize = 64;

/// `N` page-table pages inside the image.
#[repr(C, align(4096))]
struct Pool<const N: usize>([[u64; 512]; N]);

impl<const N: usize> Pool<N> {
    const ZERO: Self = Self([[0; 512]; N]);
}

static mut RUNTIME_POOL: Pool<POOL_PAGES> = Pool::ZERO;

/// Table pages for the bring-up tables (a root plus the path to the
/// identity page).
const BRINGUP_PAGES: usize = 8;
static mut BRINGUP_POOL: Pool<BRINGUP_PAGES> = Pool::ZERO;

/// The hypervisor's runtime stage-1 tables.
pub type RuntimeTables = PageTable<El2, TablePool, El2Maintenance>;

/// The runtime tables, once the CPU runs on them.
pub static TABLES: spin::Mutex<Option<RuntimeTables>> = spin::Mutex::new(None);

/// What the relocation did, for the boot log.
#[derive(Clone, Copy, Debug)]
pub struct Relocated {
    /// The original load address.
    pub from: u64,
    /// The new physical address of the image.
    pub to: u64,
    /// Image size (including BSS).
    pub size: u64,
    /// The bank it went to.
    pub bank: Region,
    /// Where it was placed and what capped it.
    pub placement: Placement,
    /// Runtime table pages used.
    pub tables: usize,
    /// Whether the old copy was overwritten (the `poison-old-image` build).
    pub poisoned: bool,
    /// Root of the bring-up tables for secondary CPUs.
    pub bringup_root: u64,
    /// Physical address of `secondary_entry` in the copy.
    pub secondary_entry: u64,
}

/// Why the image could not move. (Boot-time, one per boot: its size does
/// not matter.)
#[derive(Debug)]
#[allow(clippy::result_large_err)]
pub enum RelocError {
    /// Reading the device tree failed.
    Dt(DtError),
    /// No room in RAM.
    NoRoom(NoRoom),
    /// Building the runtime tables failed.
    Map(MapError),
    /// Creating the runtime tables failed.
    Create(CreateError),
    /// Editing the boot tables failed (an `armature_early::Error`).
    BootTables(armature_early::Error),
    /// Making the bring-up tables failed.
    Bringup(crate::mm::bringup::BringupError),
    /// Too many regions to avoid.
    TooManyRegions,
}

impl fmt::Display for RelocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelocError::Dt(e) => write!(f, "device tree: {e}"),
            RelocError::NoRoom(e) => write!(f, "{e}"),
            RelocError::Map(e) => write!(f, "runtime tables: {e}"),
            RelocError::Create(e) => write!(f, "runtime tables: {e:?}"),
            RelocError::BootTables(e) => write!(f, "boot tables: {e:?}"),
            RelocError::Bringup(e) => write!(f, "bring-up tables: {e}"),
            RelocError::TooManyRegions => write!(f, "more than {} regions to keep clear", AVOID_MAX),
        }
    }
}

impl From<DtError> for RelocError {
    fn from(e: DtError) -> Self {
        RelocError::Dt(e)
    }
}
impl From<MapError> for RelocError {
    fn from(e: MapError) -> Self {
        RelocError::Map(e)
    }
}

const AVOID_MAX: usize = 48;

/// A fixed list of regions to keep clear.
struct Avoid {
    items: [Region; AVOID_MAX],
    len: usize,
}

#[allow(clippy::result_large_err)]
impl Avoid {
    fn push(&mut self, r: Region) -> Result<(), RelocError> {
        if r.size == 0 {
            return Ok(());
        }
        *self.items.get_mut(self.len).ok_or(RelocError::TooManyRegions)? = r;
        self.len += 1;
        Ok(())
    }
    fn extend(&mut self, rs: &Regions) -> Result<(), RelocError> {
        rs.as_slice().iter().try_for_each(|r| self.push(*r))
    }
}

/// Moves the image to the top of RAM and switches to the runtime tables.
/// `early` is what the early code did; from the device tree: `banks` the
/// memory banks, `reserved` the reserved memory and `modules` the boot
/// modules (both kept clear), `gic` the interrupt controller (its frames are
/// mapped); `dtb_size` is the size of the firmware's DTB (kept intact,
/// although the hypervisor works on its own copy).
#[allow(clippy::result_large_err)]
pub fn relocate(
    early: &EarlyInfo,
    banks: &Regions,
    reserved: &Reserved<'_>,
    modules: &Regions,
    gic: Option<&Gic>,
    dtb_size: usize,
) -> Result<Relocated, RelocError> {
    let (text_end, rodata_end, image_end) = arch::image_sections();
    let (text_end, rodata_end, size) = (text_end as u64, rodata_end as u64, image_end as u64);
    let image_va = early.image_va;
    let load = early.load_pa;

    // Everything the copy must not land on.
    let mut avoid = Avoid { items: [Region::default(); AVOID_MAX], len: 0 };
    reserved.regions().try_for_each(|r| avoid.push(r))?;
    avoid.extend(modules)?;
    avoid.push(Region { base: early.dtb_pa, size: dtb_size as u64 })?;
    avoid.push(Region { base: load, size })?;
    // The copy's identity page is mapped at its physical address while the
    // boot tables are live: keep it off every virtual range in use then.
    avoid.push(Region { base: image_va, size })?;
    avoid.push(Region { base: FIXMAP_UART_VA, size: PAGE })?;
    avoid.push(Region { base: FIXMAP_DTB_VA, size: FIXMAP_DTB_WINDOW })?;
    avoid.push(Region { base: COPY_VA, size })?;

    let pa_limit = 1u64 << arch::pa_bits();
    let p = placement::choose(banks.as_slice(), &avoid.items[..avoid.len], size, DEST_ALIGN, pa_limit)
        .map_err(RelocError::NoRoom)?;
    let dest = p.dest;
    // Where a virtual address inside the running image lands in the copy.
    let image_start = arch::image_bounds().0;
    let in_copy = |va: usize| dest + (va - image_start) as u64;
    let dest_idmap = in_copy(arch::idmap_start());

    // The runtime tables, in the pool inside the image, addressed as the
    // pool will be in the copy.
    let pool_va = (&raw mut RUNTIME_POOL) as usize;
    // SAFETY: the pool is a page-aligned static of the image, used only here.
    let pool = unsafe { TablePool::new(pool_va, PhysAddr::new(in_copy(pool_va)), POOL_PAGES) };
    let mut pt = PageTable::<El2, _, _>::new(Geometry::AARCH64_EL2_48, pool, El2Maintenance::building())
        .map_err(RelocError::Create)?;
    let mut map = |va: u64, pa: u64, len: u64, attrs: Attributes| -> Result<(), MapError> {
        pt.map(VirtAddr::new(va), PhysAddr::new(pa), len, attrs, MapOptions::new())
    };
    map(image_va, dest, text_end, Attributes::CODE)?;
    map(image_va + text_end, dest + text_end, rodata_end - text_end, Attributes::RODATA)?;
    map(image_va + rodata_end, dest + rodata_end, size - rodata_end, Attributes::DATA)?;
    if early.uart_pa != 0 {
        map(FIXMAP_UART_VA, early.uart_pa & !(PAGE - 1), PAGE, Attributes::DEVICE)?;
    }
    map(FIXMAP_DTB_VA, early.dtb_pa & !((2 << 20) - 1), FIXMAP_DTB_WINDOW, Attributes::RODATA)?;
    for b in banks.as_slice() {
        let base = b.base.next_multiple_of(PAGE_SIZE);
        let end = b.end() & !(PAGE_SIZE - 1);
        if end > base && end <= pa_limit {
            map(DIRECTMAP_VA + base, base, end - base, Attributes::DATA)?;
        }
    }
    // The GIC's frames, as Device memory at their direct-map address (they
    // go in now, before the bring-up tables copy the root, so that every
    // CPU sees them).
    if let Some(gic) = gic {
        let v2_frames = [gic.cpu_if, gic.hyp_if, gic.vcpu_if];
        for r in core::iter::once(&gic.dist).chain(gic.redist.as_slice()).chain(v2_frames.iter().flatten()) {
            let base = r.base & !(PAGE_SIZE - 1);
            let end = r.end().next_multiple_of(PAGE_SIZE);
            map(DIRECTMAP_VA + base, base, end - base, Attributes::DEVICE)?;
        }
    }
    map(dest_idmap, dest_idmap, PAGE, Attributes::CODE)?;
    let root = pt.root();
    let tables = pt.allocator().used();

    // The boot tables must reach the copy, and the copy's identity page.
    armature_early::boot_map(COPY_VA, dest, size, Perm::ReadWrite).map_err(RelocError::BootTables)?;
    armature_early::boot_map(dest_idmap, dest_idmap, PAGE, Perm::Text).map_err(RelocError::BootTables)?;

    // Store the tables first: the copy must hold them.
    *TABLES.lock() = Some(pt);
    // SAFETY: COPY_VA maps the destination read/write; the copy's identity
    // page is in the boot tables (just added) and in the runtime tables; the
    // runtime tables map the image's virtual addresses onto the copy. Only
    // the boot CPU runs.
    unsafe { arch::mmu::relocate_and_switch(COPY_VA, size, root, dest_idmap) };

    // Now running on the copy, on the runtime tables.
    let mut guard = TABLES.lock();
    let pt = guard.as_mut().expect("runtime tables stored before the switch");
    pt.maintenance_mut().set_live();
    pt.unmap(VirtAddr::new(dest_idmap), PAGE)?;
    // Bring-up tables for secondary CPUs: the runtime tables' root entries
    // (sharing everything below) plus the identity page, which holds
    // `secondary_entry`. Kept for CPU hotplug.
    let bpool_va = (&raw mut BRINGUP_POOL) as usize;
    // SAFETY: a page-aligned static of the image, used only for these tables.
    let mut bpool = unsafe { TablePool::new(bpool_va, PhysAddr::new(in_copy(bpool_va)), BRINGUP_PAGES) };
    let bringup_root = crate::mm::bringup::graft_identity::<El2>(
        pt.allocator(),
        pt.root(),
        &mut bpool,
        Geometry::AARCH64_EL2_48,
        dest_idmap,
        Attributes::CODE,
    )
    .map_err(RelocError::Bringup)?;
    drop(guard);
    // The bring-up tables are read by CPUs whose MMU (and so cache) is off
    // while they switch it on: the walker is coherent once it is on, and the
    // pool is written here through the cache, so clean it to be safe.
    arch::clean_dcache_range(bpool_va, BRINGUP_PAGES * PAGE_SIZE as usize);
    let secondary_entry = in_copy(arch::smp::secondary_entry_va());

    let poisoned = cfg!(feature = "poison-old-image");
    if poisoned {
        // Nothing may use the original copy any more: overwrite it with
        // `udf #0xdead` so that any use faults or reads garbage.
        let old = (DIRECTMAP_VA + load) as *mut u32;
        for i in 0..(size / 4) as usize {
            // SAFETY: the directmap maps all RAM read/write; the old image
            // region is no longer used by anything.
            unsafe { old.add(i).write_volatile(0x0000_dead) };
        }
    }
    let bank = banks.as_slice()[p.bank];
    Ok(Relocated {
        from: load,
        to: dest,
        size,
        bank,
        placement: p,
        tables,
        poisoned,
        bringup_root: bringup_root.as_u64(),
        secondary_entry,
    })
}
