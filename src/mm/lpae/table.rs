//! The table builder: map, unmap and protect ranges in a live set of tables.
//!
//! [`PageTable`] owns one set of tables. Table pages come from a
//! [`TableAllocator`], which also says where a table's physical address can be
//! read and written from (identity with the MMU off, a linear map with it on,
//! heap pages on the host). Every store to an entry is reported to a
//! [`Maintenance`] implementation, which the arch code backs with cache
//! cleaning, barriers and TLB invalidation, and which host tests back with a
//! recorder.
//!
//! Every operation runs in three passes over the range:
//! 1. *check* reads only and finds errors (overlap, hole), so a refused
//!    operation changes nothing;
//! 2. *prepare* allocates every table the operation needs, linking new empty
//!    tables and splitting blocks into equivalent tables — neither changes
//!    what any address translates to; if table memory runs out, the empty
//!    tables it linked are freed again and the error returned;
//! 3. *commit* writes the leaves and cannot fail (it allocates nothing).
//!
//! Break-before-make: a valid entry is only ever replaced by a different
//! valid entry after it has been written invalid and the TLB invalidated for
//! it ([`Invalidation`]). The one exception the architecture allows is a change
//! of permission bits alone (AP`[2]`/S2AP, XN) on a leaf of unchanged output
//! address and size, which is written in place and then invalidated. A table
//! that becomes empty is unlinked (entry invalid, walk-cache invalidation)
//! before its page is freed; a table holding live translations is only
//! unlinked with a range invalidation covering all of them.
//!
//! Breaking an entry makes its range fault until the new entry is written:
//! the caller must not change the mapping it is executing from or whose data
//! it is using (this is why the boot path switches through a temporary alias
//! when the identity map clashes with the runtime map).

use super::desc::{ATTR_MASK, Descriptor, DescriptorKind, permission_bits};
use super::geometry::{ENTRIES, Geometry, GeometryError, LAST_LEVEL, level_shift, level_size};
use super::regime::Regime;
use super::walk::{self, Translation, WalkFault};
use super::{Access, Attributes};
use crate::mm::addr::{Address, AnyAddr, PAGE_SIZE, PhysAddr, is_aligned};
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

/// One 4 KiB translation table: 512 descriptors.
#[derive(Clone)]
#[repr(C, align(4096))]
pub struct TablePage(pub [u64; ENTRIES]);

impl TablePage {
    /// A table of invalid entries.
    pub const ZERO: TablePage = TablePage([0; ENTRIES]);
}

/// Where table pages can be accessed from.
///
/// # Safety
///
/// For every 4 KiB-aligned physical address that is a table of a
/// [`PageTable`] using this memory (handed out by the allocator and not yet
/// freed), [`table_ptr`](TableMemory::table_ptr) must return a pointer that is
/// valid for volatile reads and writes of the whole page, through which no
/// Rust reference to the page is alive while the [`PageTable`] exists. The
/// software walker ([`super::translate`]) also calls it for every table
/// address found in a descriptor.
pub unsafe trait TableMemory {
    /// The pointer through which the table page at `table` is accessed.
    fn table_ptr(&self, table: PhysAddr) -> NonNull<TablePage>;
}

/// A source of table pages.
///
/// # Safety
///
/// Besides the [`TableMemory`] contract: [`alloc_table`](Self::alloc_table)
/// returns a page no other user holds, which stays the table's until it is
/// passed to [`free_table`](Self::free_table); [`alloc_root`](Self::alloc_root)
/// returns `pages` physically contiguous pages aligned to their total size.
/// Content need not be zeroed: the builder fills every page it gets.
pub unsafe trait TableAllocator: TableMemory {
    /// One 4 KiB table page, or `None` when table memory is exhausted.
    fn alloc_table(&mut self) -> Option<PhysAddr>;

    /// Returns a page from [`alloc_table`](Self::alloc_table). The builder
    /// calls it only after the TLB has been invalidated for every entry that
    /// pointed at the table.
    fn free_table(&mut self, table: PhysAddr);

    /// The root table: `pages` contiguous pages aligned to `pages * 4 KiB`
    /// (more than 1 only for a concatenated stage-2 root). The default
    /// handles one page; allocators serving stage 2 override it together
    /// with [`free_root`](Self::free_root).
    fn alloc_root(&mut self, pages: usize) -> Option<PhysAddr> {
        if pages == 1 { self.alloc_table() } else { None }
    }

    /// Returns a root from [`alloc_root`](Self::alloc_root). The default
    /// frees each page with [`free_table`](Self::free_table).
    fn free_root(&mut self, root: PhysAddr, pages: usize) {
        for page in 0..pages as u64 {
            self.free_table(root + page * PAGE_SIZE);
        }
    }
}

/// One store to a translation-table entry, as reported to [`Maintenance`].
#[derive(Clone, Copy, Debug)]
pub struct EntryWrite {
    /// The (first page of the) table the entry is in.
    pub table: PhysAddr,
    /// The entry's index in that table (beyond 511 only in a concatenated
    /// stage-2 root).
    pub index: usize,
    /// The table's level.
    pub level: u8,
    /// The first input address the entry translates.
    pub input: u64,
    /// The value before the store.
    pub old: Descriptor,
    /// The value stored.
    pub new: Descriptor,
    /// Where the store went (what a cache clean by VA needs).
    pub ptr: NonNull<u64>,
}

/// A TLB invalidation the builder needs before it goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// A leaf (block or page) at `level` translating `input` was broken or
    /// had its permissions changed: invalidate the last-level entry for
    /// `input` (AArch64 `TLBI VALE2IS`, ARMv7 `TLBIMVAHIS`; for stage 2
    /// `TLBI IPAS2LE1IS` then `TLBI VMALLE1IS`, since stage-1 entries of the
    /// guest may combine the old stage-2 translation).
    Leaf {
        /// The first input address of the leaf.
        input: u64,
        /// Its level.
        level: u8,
    },
    /// A table entry at `level` whose table held no valid entry any more was
    /// broken: only walk caches may still hold it. Invalidate by `input` at
    /// all levels (AArch64 `TLBI VAE2IS`, ARMv7 `TLBIMVAHIS`, which has no
    /// last-level-only form).
    Walk {
        /// The first input address the table entry covered.
        input: u64,
        /// Its level.
        level: u8,
    },
    /// A table entry still holding live translations was broken: invalidate
    /// every translation of `[input, input + size)`, including walk caches
    /// (per page, or the whole regime when that is cheaper: `TLBI ALLE2IS`,
    /// `TLBIALLHIS`; for stage 2, the VMID's `TLBI VMALLS12E1IS`).
    Range {
        /// First input address.
        input: u64,
        /// Bytes.
        size: u64,
    },
}

/// Cache and TLB maintenance around table stores, implemented by the arch
/// code (and by a recorder in host tests).
///
/// The builder's sequence for replacing a valid entry is: store invalid,
/// [`entry_written`](Self::entry_written), [`invalidate`](Self::invalidate),
/// store the new value, [`entry_written`](Self::entry_written). An arch
/// implementation provides these guarantees:
/// - `entry_written`: the store is visible to the table walker before
///   anything that follows: clean the entry's cache line to the point of
///   coherency if walks are not cache-coherent (TCR IRGN/ORGN non-cacheable,
///   or the MMU off), then `DSB ISHST`.
/// - `table_filled`: the same for a whole page the builder filled before
///   linking it (new tables and split blocks).
/// - `invalidate`: the TLB invalidation described, completed (`DSB ISH`) and
///   followed by `ISB`, before returning.
pub trait Maintenance {
    /// An entry was stored.
    fn entry_written(&mut self, write: &EntryWrite);
    /// A new table page was filled and is about to be linked.
    fn table_filled(&mut self, table: PhysAddr, ptr: NonNull<TablePage>);
    /// The TLB must forget these translations before the builder goes on.
    fn invalidate(&mut self, what: Invalidation);
}

/// Maintenance that does nothing: only for tables no CPU walks yet (built
/// with the MMU off before the first switch to them), and only if the arch
/// code then cleans the tables to the point of coherency (if walks are not
/// coherent) and invalidates the whole TLB before using them.
#[derive(Debug, Default)]
pub struct NoMaintenance;

impl Maintenance for NoMaintenance {
    fn entry_written(&mut self, _: &EntryWrite) {}
    fn table_filled(&mut self, _: PhysAddr, _: NonNull<TablePage>) {}
    fn invalidate(&mut self, _: Invalidation) {}
}

/// Options of [`PageTable::map`] and [`PageTable::protect`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapOptions {
    pages_only: bool,
    remap: bool,
    allow_write_execute: bool,
}

impl MapOptions {
    /// No options: largest blocks, refuse overlaps, enforce W^X.
    pub const fn new() -> Self {
        MapOptions { pages_only: false, remap: false, allow_write_execute: false }
    }

    /// Map with 4 KiB pages only, never blocks (for ranges whose permissions
    /// will later change page by page without splitting a live block).
    pub const fn pages_only(self) -> Self {
        MapOptions { pages_only: true, ..self }
    }

    /// Replace whatever is mapped in the range instead of refusing an
    /// overlap with a different mapping (with break-before-make).
    pub const fn remap(self) -> Self {
        MapOptions { remap: true, ..self }
    }

    /// Allow a writable and executable stage-1 mapping. Without it, such a
    /// request is refused with [`MapError::WriteExecute`].
    pub const fn allow_write_execute(self) -> Self {
        MapOptions { allow_write_execute: true, ..self }
    }
}

/// Why an operation on a [`PageTable`] was refused. Each names the first
/// address concerned; on error the tables translate exactly as before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// An input or output address is not 4 KiB aligned.
    Misaligned(AnyAddr),
    /// The size is not a multiple of 4 KiB.
    MisalignedSize(u64),
    /// The size is zero.
    EmptyRange(AnyAddr),
    /// The input range goes beyond the geometry's input size; this is the
    /// first address outside it.
    InputOutOfRange(AnyAddr),
    /// The output range goes beyond the geometry's output size; this is the
    /// first address outside it.
    OutputOutOfRange(AnyAddr),
    /// The input address is already mapped differently and remapping was not
    /// asked for.
    Overlap {
        /// The first input address mapped differently.
        at: AnyAddr,
        /// What it is mapped to now.
        mapped_to: PhysAddr,
    },
    /// The input address is not mapped (protect needs a fully mapped range).
    NotMapped(AnyAddr),
    /// No table memory was left for the table translating this address.
    OutOfTables(AnyAddr),
    /// A writable and executable stage-1 mapping was asked for without
    /// [`MapOptions::allow_write_execute`].
    WriteExecute(AnyAddr),
    /// An executable device mapping was asked for (never allowed).
    ExecutableDevice(AnyAddr),
    /// The allocator returned a table that descriptors cannot point at
    /// (misaligned or beyond the output size).
    BadTable(PhysAddr),
    /// A reserved descriptor was found at this address: the tables were
    /// corrupted by someone else.
    Corrupt {
        /// The first input address of the entry.
        at: AnyAddr,
        /// The descriptor.
        descriptor: Descriptor,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MapError::Misaligned(a) => write!(f, "{a} is not 4 KiB aligned"),
            MapError::MisalignedSize(s) => write!(f, "size {s:#x} is not a multiple of 4 KiB"),
            MapError::EmptyRange(a) => write!(f, "empty range at {a}"),
            MapError::InputOutOfRange(a) => write!(f, "{a} is beyond the translated input range"),
            MapError::OutputOutOfRange(a) => write!(f, "{a} is beyond the output address size"),
            MapError::Overlap { at, mapped_to } => {
                write!(f, "{at} is already mapped to {mapped_to} with other attributes or address")
            }
            MapError::NotMapped(a) => write!(f, "{a} is not mapped"),
            MapError::OutOfTables(a) => write!(f, "out of translation-table memory mapping {a}"),
            MapError::WriteExecute(a) => write!(f, "{a}: refusing a writable and executable mapping (W^X)"),
            MapError::ExecutableDevice(a) => write!(f, "{a}: refusing an executable device mapping"),
            MapError::BadTable(pa) => write!(f, "allocator returned unusable table page {pa}"),
            MapError::Corrupt { at, descriptor } => write!(f, "{at}: reserved descriptor {descriptor:?}"),
        }
    }
}

/// Why a [`PageTable`] could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// The geometry does not suit the regime.
    Geometry(GeometryError),
    /// No memory for the root table.
    OutOfTables,
    /// The allocator returned a root that descriptors or TTBRs cannot hold.
    BadTable(PhysAddr),
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CreateError::Geometry(e) => write!(f, "bad geometry: {e}"),
            CreateError::OutOfTables => write!(f, "no memory for the root table"),
            CreateError::BadTable(pa) => write!(f, "allocator returned unusable root table {pa}"),
        }
    }
}

impl From<GeometryError> for CreateError {
    fn from(e: GeometryError) -> Self {
        CreateError::Geometry(e)
    }
}

/// What an operation does to each page of its range.
#[derive(Clone, Copy)]
enum Op {
    /// Map `ia0..` to `pa0..` with leaf attribute bits `attrs`.
    Map { ia0: u64, pa0: u64, attrs: u64, pages_only: bool, remap: bool },
    /// Remove every mapping.
    Unmap,
    /// Keep the output addresses, set leaf attribute bits `attrs`.
    Protect { attrs: u64 },
}

/// The three passes (see the module documentation).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Check,
    Prepare,
    Commit,
}

/// One entry being updated.
#[derive(Clone, Copy)]
struct Slot {
    /// The table (its first page if concatenated).
    table: PhysAddr,
    /// Index in the table.
    index: usize,
    /// The table's level.
    level: u8,
    /// First input address the entry translates.
    input: u64,
}

/// One set of translation tables for regime `R`, with table pages from `A`
/// and maintenance by `M`.
///
/// Dropping a `PageTable` leaks its tables on purpose (they may still be in
/// use by a CPU); [`destroy`](Self::destroy) frees them.
pub struct PageTable<R: Regime, A: TableAllocator, M: Maintenance> {
    root: PhysAddr,
    geometry: Geometry,
    alloc: A,
    maint: M,
    /// Set during the commit pass, which must not allocate.
    committing: bool,
    regime: PhantomData<R>,
}

impl<R: Regime, A: TableAllocator, M: Maintenance> PageTable<R, A, M> {
    /// Empty tables (an all-invalid root) of this geometry.
    pub fn new(geometry: Geometry, mut alloc: A, mut maint: M) -> Result<Self, CreateError> {
        R::check_geometry(geometry)?;
        let pages = geometry.root_pages();
        let root = alloc.alloc_root(pages).ok_or(CreateError::OutOfTables)?;
        let bytes = pages as u64 * PAGE_SIZE;
        if !root.is_aligned(bytes) || root.as_u64() + bytes > geometry.oa_limit() {
            alloc.free_root(root, pages);
            return Err(CreateError::BadTable(root));
        }
        for page in 0..pages as u64 {
            let pa = root + page * PAGE_SIZE;
            let ptr = alloc.table_ptr(pa);
            fill(ptr, |_| 0);
            maint.table_filled(pa, ptr);
        }
        Ok(PageTable { root, geometry, alloc, maint, committing: false, regime: PhantomData })
    }

    /// The root table's physical address (for TTBR0_EL2, HTTBR or VTTBR).
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// The geometry.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The allocator.
    pub fn allocator(&self) -> &A {
        &self.alloc
    }

    /// The maintenance implementation.
    pub fn maintenance(&self) -> &M {
        &self.maint
    }

    /// The maintenance implementation, mutably (e.g. to switch it from
    /// "tables not live" to "live" behaviour once the MMU uses them).
    pub fn maintenance_mut(&mut self) -> &mut M {
        &mut self.maint
    }

    /// Maps `[ia, ia + size)` to `[pa, pa + size)` with `attrs`, using the
    /// largest leaves alignment allows (1 GiB, 2 MiB, 4 KiB) unless
    /// [`MapOptions::pages_only`]. Parts already mapped identically (same
    /// output and attributes, at any leaf size) are left alone; parts mapped
    /// differently are an [`MapError::Overlap`] unless [`MapOptions::remap`].
    pub fn map(
        &mut self,
        ia: R::Input,
        pa: PhysAddr,
        size: u64,
        attrs: Attributes,
        options: MapOptions,
    ) -> Result<(), MapError> {
        let (start, end) = self.input_range(ia, size)?;
        if !pa.is_page_aligned() {
            return Err(MapError::Misaligned(pa.any()));
        }
        match pa.checked_add(size) {
            Some(e) if e.as_u64() <= self.geometry.oa_limit() => {}
            _ => {
                let first = pa.as_u64().max(self.geometry.oa_limit());
                return Err(MapError::OutputOutOfRange(PhysAddr::new(first).any()));
            }
        }
        Self::check_attrs(ia, attrs, options)?;
        let op = Op::Map {
            ia0: start,
            pa0: pa.as_u64(),
            attrs: self.leaf_attrs(attrs),
            pages_only: options.pages_only,
            remap: options.remap,
        };
        self.run(start, end, op)
    }

    /// Unmaps `[ia, ia + size)`; holes are fine. Blocks partly in the range
    /// are split; tables that become empty are freed.
    pub fn unmap(&mut self, ia: R::Input, size: u64) -> Result<(), MapError> {
        let (start, end) = self.input_range(ia, size)?;
        self.run(start, end, Op::Unmap)
    }

    /// Gives the mapped range `[ia, ia + size)` the attributes `attrs`,
    /// keeping its output addresses. Every page of the range must be mapped.
    /// Blocks partly in the range are split. A change of permissions only is
    /// made in place; a change of memory type goes through break-before-make.
    pub fn protect(&mut self, ia: R::Input, size: u64, attrs: Attributes, options: MapOptions) -> Result<(), MapError> {
        let (start, end) = self.input_range(ia, size)?;
        Self::check_attrs(ia, attrs, options)?;
        let op = Op::Protect { attrs: self.leaf_attrs(attrs) };
        self.run(start, end, op)
    }

    /// What `ia` translates to, by the independent software walker.
    pub fn translate(&self, ia: R::Input) -> Result<Translation, WalkFault> {
        walk::translate::<R>(&self.alloc, self.root, self.geometry, ia)
    }

    /// Calls `f` for every leaf in input-address order, by the independent
    /// software walker.
    pub fn for_each_mapping(&self, f: impl FnMut(&Translation)) -> Result<(), WalkFault> {
        walk::for_each_leaf::<R>(&self.alloc, self.root, self.geometry, f)
    }

    /// Frees every table, root included, and gives back the allocator and
    /// maintenance. No TLB maintenance is done: no CPU may be using the
    /// tables, and the arch code must invalidate this regime's TLB entries
    /// (e.g. `TLBI ALLE2`) before anything reuses the pages.
    pub fn destroy(mut self) -> (A, M) {
        let (root, start) = (self.root, self.geometry.start_level());
        for index in 0..self.geometry.root_entries() {
            if let DescriptorKind::Table(next) = self.read(root, index).kind(start) {
                self.free_subtree(next, start + 1);
            }
        }
        self.alloc.free_root(root, self.geometry.root_pages());
        (self.alloc, self.maint)
    }

    fn leaf_attrs(&self, attrs: Attributes) -> u64 {
        super::desc::leaf_attr_bits(R::KIND, attrs)
    }

    /// Checks alignment and range of an input range; returns `[start, end)`.
    fn input_range(&self, ia: R::Input, size: u64) -> Result<(u64, u64), MapError> {
        let start = ia.to_u64();
        if !is_aligned(start, PAGE_SIZE) {
            return Err(MapError::Misaligned(ia.any()));
        }
        if size == 0 {
            return Err(MapError::EmptyRange(ia.any()));
        }
        if !is_aligned(size, PAGE_SIZE) {
            return Err(MapError::MisalignedSize(size));
        }
        let limit = self.geometry.ia_limit();
        match start.checked_add(size) {
            Some(end) if end <= limit => Ok((start, end)),
            _ => Err(MapError::InputOutOfRange(R::Input::from_u64(start.max(limit)).any())),
        }
    }

    /// W^X and no executable devices.
    fn check_attrs(ia: R::Input, attrs: Attributes, options: MapOptions) -> Result<(), MapError> {
        if attrs.memory.is_device() && attrs.access.is_executable() {
            return Err(MapError::ExecutableDevice(ia.any()));
        }
        if R::ENFORCE_WX && attrs.access == Access::ReadWriteExecute && !options.allow_write_execute {
            return Err(MapError::WriteExecute(ia.any()));
        }
        Ok(())
    }

    /// Runs the three passes of `op` over `[start, end)`.
    fn run(&mut self, start: u64, end: u64, op: Op) -> Result<(), MapError> {
        let (root, level) = (self.root, self.geometry.start_level());
        self.update(root, level, 0, start, end, op, Pass::Check)?;
        if let Err(e) = self.update(root, level, 0, start, end, op, Pass::Prepare) {
            self.prune(root, level, 0, start, end);
            return Err(e);
        }
        self.committing = true;
        let done = self.update(root, level, 0, start, end, op, Pass::Commit);
        self.committing = false;
        debug_assert!(done.is_ok(), "commit pass failed: {done:?}");
        done
    }

    /// Applies `op` to `[start, end)` in the table at `level` whose first
    /// entry translates `base`.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &mut self,
        table: PhysAddr,
        level: u8,
        base: u64,
        start: u64,
        end: u64,
        op: Op,
        pass: Pass,
    ) -> Result<(), MapError> {
        for (index, input, s, e) in entries_in(level, base, start, end) {
            self.update_entry(Slot { table, index, level, input }, s, e, op, pass)?;
        }
        Ok(())
    }

    /// Applies `op` to the part `[s, e)` of the range that `slot` translates.
    fn update_entry(&mut self, slot: Slot, s: u64, e: u64, op: Op, pass: Pass) -> Result<(), MapError> {
        let level = slot.level;
        let size = level_size(level);
        let full = s == slot.input && e == slot.input + size;
        let old = self.read(slot.table, slot.index);
        let kind = old.kind(level);
        if kind == DescriptorKind::Reserved {
            return Err(MapError::Corrupt { at: self.named(slot.input), descriptor: old });
        }
        match op {
            Op::Map { ia0, pa0, attrs, pages_only, remap } => {
                let pa = pa0 + (s - ia0);
                let as_leaf = full && level > 0 && (level == LAST_LEVEL || (!pages_only && is_aligned(pa, size)));
                let new = Descriptor::leaf_raw(level, pa, attrs);
                match kind {
                    DescriptorKind::Leaf { output, attrs: old_attrs } => {
                        let mapped_to = output + (s - slot.input);
                        if old_attrs == attrs && mapped_to.as_u64() == pa {
                            return Ok(()); // Already mapped exactly so.
                        }
                        if !remap {
                            return Err(MapError::Overlap { at: self.named(s), mapped_to });
                        }
                        if as_leaf {
                            if pass == Pass::Commit {
                                self.replace(slot, old, new);
                            }
                            return Ok(());
                        }
                        self.descend(slot, old, s, e, op, pass)
                    }
                    DescriptorKind::Table(next) => {
                        if as_leaf && remap {
                            if pass == Pass::Commit {
                                self.replace(slot, old, new);
                            }
                            return Ok(());
                        }
                        self.update(next, level + 1, slot.input, s, e, op, pass)
                    }
                    _ => {
                        if as_leaf {
                            if pass == Pass::Commit {
                                self.write(slot, old, new);
                            }
                            return Ok(());
                        }
                        self.descend(slot, old, s, e, op, pass)
                    }
                }
            }
            Op::Unmap => match kind {
                DescriptorKind::Leaf { .. } if full => {
                    if pass == Pass::Commit {
                        self.break_entry(slot, old);
                    }
                    Ok(())
                }
                DescriptorKind::Leaf { .. } => self.descend(slot, old, s, e, op, pass),
                DescriptorKind::Table(_) if full => {
                    if pass == Pass::Commit {
                        self.break_entry(slot, old);
                    }
                    Ok(())
                }
                DescriptorKind::Table(next) => {
                    self.update(next, level + 1, slot.input, s, e, op, pass)?;
                    if pass == Pass::Commit && self.is_empty(next) {
                        self.break_entry(slot, old);
                    }
                    Ok(())
                }
                _ => Ok(()),
            },
            Op::Protect { attrs } => match kind {
                DescriptorKind::Leaf { attrs: old_attrs, .. } if old_attrs == attrs => Ok(()),
                DescriptorKind::Leaf { output, .. } if full => {
                    if pass == Pass::Commit {
                        self.replace(slot, old, Descriptor::leaf_raw(level, output.as_u64(), attrs));
                    }
                    Ok(())
                }
                DescriptorKind::Leaf { .. } => self.descend(slot, old, s, e, op, pass),
                DescriptorKind::Table(next) => self.update(next, level + 1, slot.input, s, e, op, pass),
                _ => Err(MapError::NotMapped(self.named(s))),
            },
        }
    }

    /// Goes one level down below `slot`, which holds a leaf that must be
    /// split or nothing: creates the table in the prepare pass (the check
    /// pass has nothing below to check).
    fn descend(&mut self, slot: Slot, old: Descriptor, s: u64, e: u64, op: Op, pass: Pass) -> Result<(), MapError> {
        if pass == Pass::Check {
            return Ok(());
        }
        let next = match old.kind(slot.level) {
            DescriptorKind::Leaf { output, attrs } => {
                // Split: an equivalent table of the next level's leaves.
                let child = slot.level + 1;
                let child_size = level_size(child);
                let base = output.as_u64();
                let next =
                    self.new_table(s, |i| Descriptor::leaf_raw(child, base + i as u64 * child_size, attrs).raw())?;
                self.replace(slot, old, Descriptor::table(next));
                next
            }
            _ => {
                let next = self.new_table(s, |_| 0)?;
                self.write(slot, old, Descriptor::table(next));
                next
            }
        };
        self.update(next, slot.level + 1, slot.input, s, e, op, pass)
    }

    /// After a failed prepare pass: unlinks and frees the tables in
    /// `[start, end)` left empty.
    fn prune(&mut self, table: PhysAddr, level: u8, base: u64, start: u64, end: u64) {
        for (index, input, s, e) in entries_in(level, base, start, end) {
            let old = self.read(table, index);
            if let DescriptorKind::Table(next) = old.kind(level) {
                self.prune(next, level + 1, input, s, e);
                if self.is_empty(next) {
                    self.break_entry(Slot { table, index, level, input }, old);
                }
            }
        }
    }

    /// Replaces the valid or invalid `old` in `slot` by `new`, with
    /// break-before-make unless only permission bits of a leaf change.
    fn replace(&mut self, slot: Slot, old: Descriptor, new: Descriptor) {
        if old == new {
            return;
        }
        if !old.is_valid() {
            self.write(slot, old, new);
            return;
        }
        let leaf = matches!(old.kind(slot.level), DescriptorKind::Leaf { .. });
        let perms = permission_bits(R::KIND);
        let same_but_perms = (old.raw() ^ new.raw()) & !perms == 0;
        if leaf && new.is_valid() && same_but_perms {
            // Only AP[2]/S2AP/XN differ: no BBM needed, but the TLB may hold
            // the old permissions until invalidated.
            self.write(slot, old, new);
            self.maint.invalidate(Invalidation::Leaf { input: slot.input, level: slot.level });
            return;
        }
        self.break_entry(slot, old);
        if new.is_valid() {
            self.write(slot, Descriptor::INVALID, new);
        }
    }

    /// Writes `slot` invalid, invalidates the TLB for what it held and, if
    /// it was a table, frees that table and everything below it.
    fn break_entry(&mut self, slot: Slot, old: Descriptor) {
        self.write(slot, old, Descriptor::INVALID);
        match old.kind(slot.level) {
            DescriptorKind::Leaf { .. } => {
                self.maint.invalidate(Invalidation::Leaf { input: slot.input, level: slot.level });
            }
            DescriptorKind::Table(next) => {
                let what = if self.is_empty(next) {
                    Invalidation::Walk { input: slot.input, level: slot.level }
                } else {
                    Invalidation::Range { input: slot.input, size: level_size(slot.level) }
                };
                self.maint.invalidate(what);
                self.free_subtree(next, slot.level + 1);
            }
            _ => {}
        }
    }

    /// Frees the (unreachable) table at `level` and every table below it.
    fn free_subtree(&mut self, table: PhysAddr, level: u8) {
        if level < LAST_LEVEL {
            for index in 0..ENTRIES {
                if let DescriptorKind::Table(next) = self.read(table, index).kind(level) {
                    self.free_subtree(next, level + 1);
                }
            }
        }
        self.alloc.free_table(table);
    }

    /// A new table filled by `entry(i)`, reported to maintenance, not yet
    /// linked. `input` is the address it is needed for, named if memory
    /// runs out.
    fn new_table(&mut self, input: u64, entry: impl Fn(usize) -> u64) -> Result<PhysAddr, MapError> {
        debug_assert!(!self.committing, "the commit pass allocated a table");
        let table = self.alloc.alloc_table().ok_or(MapError::OutOfTables(self.named(input)))?;
        if !table.is_page_aligned() || table.as_u64() >= self.geometry.oa_limit() {
            self.alloc.free_table(table);
            return Err(MapError::BadTable(table));
        }
        let ptr = self.alloc.table_ptr(table);
        fill(ptr, entry);
        self.maint.table_filled(table, ptr);
        Ok(table)
    }

    /// True if no entry of the (non-root) `table` is valid.
    fn is_empty(&self, table: PhysAddr) -> bool {
        (0..ENTRIES).all(|index| !self.read(table, index).is_valid())
    }

    /// Pointer to entry `index` of `table` (possibly a concatenated root).
    fn entry_ptr(&self, table: PhysAddr, index: usize) -> NonNull<u64> {
        let page = table + (index / ENTRIES) as u64 * PAGE_SIZE;
        let ptr = self.alloc.table_ptr(page).cast::<u64>();
        // SAFETY: index % ENTRIES < 512, so the entry is inside the page the
        // allocator vouches for (TableMemory contract).
        unsafe { ptr.add(index % ENTRIES) }
    }

    /// Reads an entry.
    fn read(&self, table: PhysAddr, index: usize) -> Descriptor {
        let ptr = self.entry_ptr(table, index);
        // SAFETY: the pointer is valid for reads (TableMemory contract). The
        // read is volatile because the table walker shares the memory.
        Descriptor::from_raw(unsafe { ptr.as_ptr().read_volatile() })
    }

    /// Stores `new` in `slot` (whose value is `old`) and reports it.
    fn write(&mut self, slot: Slot, old: Descriptor, new: Descriptor) {
        let ptr = self.entry_ptr(slot.table, slot.index);
        // SAFETY: the pointer is valid for writes and nothing else references
        // the page (TableMemory contract). Volatile: the table walker reads
        // it concurrently, so the store must be a single 64-bit store, not
        // elided or split (ARMv7 emits STRD, single-copy atomic with LPAE).
        unsafe { ptr.as_ptr().write_volatile(new.raw()) };
        self.maint.entry_written(&EntryWrite {
            table: slot.table,
            index: slot.index,
            level: slot.level,
            input: slot.input,
            old,
            new,
            ptr,
        });
    }

    fn named(&self, input: u64) -> AnyAddr {
        R::Input::from_u64(input).any()
    }
}

/// Fills a whole table page: entry `i` gets `entry(i)`.
fn fill(ptr: NonNull<TablePage>, entry: impl Fn(usize) -> u64) {
    let base = ptr.cast::<u64>();
    for i in 0..ENTRIES {
        // SAFETY: i < 512 entries of the page, valid for writes (TableMemory
        // contract); the page is not linked yet, but volatile stores keep
        // the compiler from merging them with the later link store.
        unsafe { base.add(i).as_ptr().write_volatile(entry(i)) };
    }
}

// The attribute mask must not overlap the address: a leaf's attribute bits
// and output address can be compared separately.
const _: () = assert!(ATTR_MASK & super::desc::ADDR_MASK == 0);

/// The entries of a level-`level` table whose first entry translates
/// `base` that the non-empty range `[start, end)` touches: for each, its
/// index, the input address it translates, and the part of the range inside
/// it.
fn entries_in(level: u8, base: u64, start: u64, end: u64) -> impl Iterator<Item = (usize, u64, u64, u64)> {
    let (shift, size) = (level_shift(level), level_size(level));
    let first = ((start - base) >> shift) as usize;
    let last = ((end - 1 - base) >> shift) as usize;
    (first..=last).map(move |index| {
        let input = base + index as u64 * size;
        (index, input, start.max(input), end.min(input + size))
    })
}
