//! The boot-time physical page allocator: which pages of RAM are free.
//!
//! This module owns the hypervisor's map of physical RAM once the device tree
//! has been read: the memory banks, the regions inside them that must never
//! be handed out (*claims*, each with a label for the log: the hypervisor
//! image, the DTB, boot modules, `/memreserve/` and `/reserved-memory`
//! entries), and the free pages in between. [`FrameAllocator`] hands out runs
//! of 4 KiB pages from the top of memory ([`FrameAllocator::alloc`]) or below
//! a limit ([`FrameAllocator::alloc_below`]), takes them back
//! ([`FrameAllocator::free`]), and accepts claims and their release after it
//! was built ([`FrameAllocator::claim`], [`FrameAllocator::free_range`]): the
//! image's load region is released once the image has moved, and its new
//! place claimed.
//!
//! It needs no heap: every list has a fixed capacity ([`MAX_BANKS`] banks,
//! [`MAX_CLAIMS`] claims, [`MAX_FREE_RANGES`] free ranges), and running out
//! of one is an error naming it, never a silent loss of memory or of a claim.
//! It is pure logic: it never reads or writes the memory it manages.
//!
//! Rounding: banks are rounded *inward* (a partial page of RAM is not
//! usable), claims *outward* (a page holding any claimed byte is not free).
//! Claims are kept byte-exact, so releasing a region frees a page it shares
//! with another claim only once no claim covers any byte of it.
//!
//! Every page inside a bank is in exactly one state: *claimed* (some claim
//! touches it), *free* (in the free list) or *allocated* (neither: handed out
//! by `alloc`). An operation that would break this — freeing a free page
//! (double free), freeing a claimed page, claiming an allocated page,
//! releasing memory that is not claimed — is refused with an error that
//! says what was asked and what is in the way, and changes nothing.

use core::fmt;

use super::addr::{PAGE_SHIFT, PAGE_SIZE, PhysAddr};
use crate::dt::plan::Sink;
use crate::dt::{MAX_BANKS, Region, Reserved};

/// Most free ranges tracked (a fragmented free list beyond this is an error).
pub const MAX_FREE_RANGES: usize = 64;
/// Most claims tracked (including the pieces a partial release leaves).
pub const MAX_CLAIMS: usize = 64;

/// One past the highest page frame number of the 64-bit address space.
const PFN_LIMIT: u64 = 1 << (64 - PAGE_SHIFT);

/// A run of whole 4 KiB pages, as reported by the allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frames {
    /// The first page's address (page aligned).
    pub start: PhysAddr,
    /// How many pages.
    pub pages: u64,
}

impl Frames {
    /// One past the last byte (saturating).
    pub fn end(&self) -> PhysAddr {
        PhysAddr::new(self.start.as_u64().saturating_add(self.pages.saturating_mul(PAGE_SIZE)))
    }

    /// The run as a byte region.
    pub fn region(&self) -> Region {
        Region { base: self.start.as_u64(), size: self.end() - self.start }
    }
}

/// `0x000040000000-0x000040003fff (4 pages)`, like [`Region`] plus the count.
impl fmt::Display for Frames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.pages == 1 { "" } else { "s" };
        write!(f, "{} ({} page{s})", self.region(), self.pages)
    }
}

/// A region that is not free memory, with what it is (for the log and errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim<'a> {
    /// The bytes claimed (pages touching them are never handed out).
    pub region: Region,
    /// What it is: `hypervisor image`, `DTB`, a `/reserved-memory` node name.
    pub label: &'a str,
}

impl<'a> Claim<'a> {
    /// A claim of `region`, labelled `label`.
    pub const fn new(region: Region, label: &'a str) -> Self {
        Self { region, label }
    }

    /// The pages it touches.
    fn pages(&self) -> Span {
        Span::outward(self.region)
    }
}

/// What went wrong, with what was asked and what was in the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError<'a> {
    /// More memory banks than [`MAX_BANKS`].
    TooManyBanks {
        /// Banks given.
        banks: usize,
    },
    /// The claim list ([`MAX_CLAIMS`]) is full.
    TooManyClaims {
        /// The region that could not be recorded.
        region: Region,
        /// Its label.
        label: &'a str,
    },
    /// The free list ([`MAX_FREE_RANGES`]) is full and the operation would
    /// split a free range.
    FreeListFull {
        /// The operation (`allocate`, `free`, `claim`, `release`).
        op: &'static str,
        /// The pages it was about.
        range: Frames,
    },
    /// A request for zero pages.
    ZeroPages,
    /// An alignment that is not a power of two.
    BadAlignment {
        /// The alignment asked for, in pages.
        align_pages: u64,
    },
    /// No free run of pages fits the request.
    OutOfMemory {
        /// Pages asked for.
        pages: u64,
        /// Their alignment, in pages.
        align_pages: u64,
        /// The limit the run had to end below, if any.
        below: Option<PhysAddr>,
        /// The largest free range (anywhere), if any memory is free.
        largest: Option<Frames>,
        /// Free pages in total (anywhere).
        free_pages: u64,
    },
    /// A free of an address that is not page aligned.
    Unaligned {
        /// The address given.
        addr: PhysAddr,
        /// Pages given.
        pages: u64,
    },
    /// A free whose range runs past the end of the address space.
    Wraps {
        /// The address given.
        addr: PhysAddr,
        /// Pages given.
        pages: u64,
    },
    /// A free of memory that is not in any bank.
    NotOwned {
        /// The pages given.
        range: Frames,
        /// The first address of them outside every bank.
        outside: PhysAddr,
    },
    /// A free of pages that are already free.
    DoubleFree {
        /// The pages given.
        range: Frames,
        /// The free range they overlap.
        free: Frames,
    },
    /// A free of claimed pages (claims are released with
    /// [`FrameAllocator::free_range`]).
    FreeClaimed {
        /// The pages given.
        range: Frames,
        /// The claim they overlap.
        claim: Region,
        /// Its label.
        label: &'a str,
    },
    /// A claim of pages that have been allocated.
    ClaimOverlapsAllocated {
        /// The region to claim.
        region: Region,
        /// Its label.
        label: &'a str,
        /// The first run of allocated pages it touches.
        allocated: Frames,
    },
    /// A release of memory that is not claimed.
    NotClaimed {
        /// The region to release.
        region: Region,
        /// The first byte of it that no claim covers.
        addr: PhysAddr,
    },
}

impl fmt::Display for FrameError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameError::TooManyBanks { banks } => {
                write!(f, "{banks} memory banks given, at most {MAX_BANKS} supported")
            }
            FrameError::TooManyClaims { region, label } => {
                write!(f, "claim list full ({MAX_CLAIMS} entries): cannot record {region} ({label})")
            }
            FrameError::FreeListFull { op, range } => {
                write!(f, "free list full ({MAX_FREE_RANGES} ranges): cannot {op} {range}")
            }
            FrameError::ZeroPages => write!(f, "a request for zero pages"),
            FrameError::BadAlignment { align_pages } => {
                write!(f, "alignment of {align_pages} pages requested: not a power of two")
            }
            FrameError::OutOfMemory { pages, align_pages, below, largest, free_pages } => {
                write!(f, "out of memory: {pages} pages aligned to {align_pages} requested")?;
                if let Some(limit) = below {
                    write!(f, " below {limit}")?;
                }
                match largest {
                    Some(l) => write!(f, ", largest free range {l}")?,
                    None => write!(f, ", no free range")?,
                }
                write!(f, ", total free {free_pages} pages")
            }
            FrameError::Unaligned { addr, pages } => {
                write!(f, "cannot free {pages} pages at {addr}: not page aligned")
            }
            FrameError::Wraps { addr, pages } => {
                write!(f, "cannot free {pages} pages at {addr}: the range runs past the end of the address space")
            }
            FrameError::NotOwned { range, outside } => {
                write!(f, "cannot free {range}: {outside} is in no memory bank")
            }
            FrameError::DoubleFree { range, free } => {
                write!(f, "double free: {range} overlaps free range {free}")
            }
            FrameError::FreeClaimed { range, claim, label } => {
                write!(f, "cannot free {range}: it overlaps claimed {claim} ({label}); release claims with free_range")
            }
            FrameError::ClaimOverlapsAllocated { region, label, allocated } => {
                write!(f, "cannot claim {region} ({label}): {allocated} already allocated")
            }
            FrameError::NotClaimed { region, addr } => {
                write!(f, "cannot release {region}: {addr} is not claimed (released twice?)")
            }
        }
    }
}

/// Page frame numbers `[start, end)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    start: u64,
    end: u64,
}

impl Span {
    /// The pages touching any byte of `r` (rounded outward).
    fn outward(r: Region) -> Self {
        Self { start: r.base >> PAGE_SHIFT, end: r.end().div_ceil(PAGE_SIZE) }
    }

    /// The whole pages inside `[base, end)` bytes (rounded inward).
    fn inward(base: u64, end: u64) -> Self {
        Self { start: base.div_ceil(PAGE_SIZE), end: end >> PAGE_SHIFT }
    }

    fn len(self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    fn is_empty(self) -> bool {
        self.start >= self.end
    }

    fn contains(self, pfn: u64) -> bool {
        self.start <= pfn && pfn < self.end
    }

    fn overlaps(self, o: Span) -> bool {
        self.start < o.end && o.start < self.end
    }

    /// As [`Frames`] (the end is capped at the last page of the address space).
    fn frames(self) -> Frames {
        let end = self.end.min(PFN_LIMIT - 1);
        Frames { start: PhysAddr::new(self.start << PAGE_SHIFT), pages: end.saturating_sub(self.start) }
    }
}

/// A list is at capacity.
struct Full;

/// A sorted list of disjoint page spans, at most `N`.
#[derive(Clone, Copy)]
struct SpanList<const N: usize> {
    items: [Span; N],
    len: usize,
}

impl<const N: usize> SpanList<N> {
    const EMPTY: Self = Self { items: [Span { start: 0, end: 0 }; N], len: 0 };

    fn as_slice(&self) -> &[Span] {
        &self.items[..self.len]
    }

    /// Appends (the caller keeps the order).
    fn push(&mut self, s: Span) -> Result<(), Full> {
        let slot = self.items.get_mut(self.len).ok_or(Full)?;
        *slot = s;
        self.len += 1;
        Ok(())
    }

    fn pages(&self) -> u64 {
        self.as_slice().iter().map(|s| s.len()).sum()
    }

    fn containing(&self, pfn: u64) -> Option<Span> {
        self.as_slice().iter().copied().find(|s| s.contains(pfn))
    }

    fn overlapping(&self, o: Span) -> Option<Span> {
        self.as_slice().iter().copied().find(|s| s.overlaps(o))
    }

    /// The lowest start above `pfn`.
    fn next_start_after(&self, pfn: u64) -> Option<u64> {
        self.as_slice().iter().map(|s| s.start).find(|&start| start > pfn)
    }

    /// The first page of `o` that no span covers.
    fn first_uncovered(&self, o: Span) -> Option<u64> {
        let mut cur = o.start;
        for s in self.as_slice() {
            if s.contains(cur) {
                cur = s.end;
            }
        }
        (cur < o.end).then_some(cur)
    }

    /// Removes `o`'s pages; on [`Full`] (a split with no room) nothing changes.
    fn subtract(&mut self, o: Span) -> Result<(), Full> {
        let mut out = Self::EMPTY;
        for &s in self.as_slice() {
            if !s.overlaps(o) {
                out.push(s)?;
                continue;
            }
            let left = Span { start: s.start, end: o.start };
            let right = Span { start: o.end, end: s.end };
            for piece in [left, right] {
                if !piece.is_empty() {
                    out.push(piece)?;
                }
            }
        }
        *self = out;
        Ok(())
    }

    /// Adds `o`, which overlaps no span, merging it with its neighbours; on
    /// [`Full`] nothing changes.
    fn insert(&mut self, o: Span) -> Result<(), Full> {
        let mut merged = o;
        let mut out = Self::EMPTY;
        let mut placed = false;
        for &s in self.as_slice() {
            if s.end == merged.start {
                merged.start = s.start;
            } else if s.start == merged.end {
                merged.end = s.end;
            } else {
                if !placed && s.start > merged.end {
                    out.push(merged)?;
                    placed = true;
                }
                out.push(s)?;
            }
        }
        if !placed {
            out.push(merged)?;
        }
        *self = out;
        Ok(())
    }
}

/// The physical page allocator (see the module doc).
///
/// `'a` is the lifetime of the claim labels (DT node names borrow the DTB).
/// The whole state is a few KiB of plain data, so the boot path can keep it
/// in a static behind a lock.
#[derive(Clone, Copy)]
pub struct FrameAllocator<'a> {
    banks: SpanList<MAX_BANKS>,
    free: SpanList<MAX_FREE_RANGES>,
    claims: [Claim<'a>; MAX_CLAIMS],
    claim_count: usize,
    free_pages: u64,
    allocated_pages: u64,
}

impl fmt::Debug for FrameAllocator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameAllocator")
            .field("banks", &self.banks.as_slice())
            .field("free", &self.free.as_slice())
            .field("claims", &self.claims())
            .field("free_pages", &self.free_pages)
            .field("allocated_pages", &self.allocated_pages)
            .finish()
    }
}

/// A region with its end saturated at the top of the address space.
fn normalized(r: Region) -> Region {
    Region { base: r.base, size: r.end() - r.base }
}

impl<'a> FrameAllocator<'a> {
    const NO_CLAIM: Claim<'static> = Claim { region: Region { base: 0, size: 0 }, label: "" };

    /// An allocator for the RAM in `banks` minus the pages `claims` touch.
    ///
    /// Both lists may be unsorted and overlap, claims may overlap bank edges
    /// or lie outside every bank, and empty regions are ignored. Overlapping
    /// or touching banks are merged before they are rounded inward.
    pub fn new(banks: &[Region], claims: &[Claim<'a>]) -> Result<Self, FrameError<'a>> {
        if banks.len() > MAX_BANKS {
            return Err(FrameError::TooManyBanks { banks: banks.len() });
        }
        // Sort by base (insertion sort: at most MAX_BANKS entries), then merge.
        let mut sorted = [Region::default(); MAX_BANKS];
        let mut n = 0;
        for b in banks.iter().map(|b| normalized(*b)).filter(|b| b.size != 0) {
            let mut i = n;
            while i > 0 && sorted[i - 1].base > b.base {
                sorted[i] = sorted[i - 1];
                i -= 1;
            }
            sorted[i] = b;
            n += 1;
        }
        let mut merged = [(0u64, 0u64); MAX_BANKS];
        let mut m = 0;
        for b in &sorted[..n] {
            if m > 0 && b.base <= merged[m - 1].1 {
                merged[m - 1].1 = merged[m - 1].1.max(b.end());
            } else {
                merged[m] = (b.base, b.end());
                m += 1;
            }
        }
        let mut list = SpanList::EMPTY;
        for &(base, end) in &merged[..m] {
            let s = Span::inward(base, end);
            if !s.is_empty() {
                // Cannot fail: at most MAX_BANKS spans.
                let _ = list.push(s);
            }
        }
        let mut free = SpanList::EMPTY;
        for &s in list.as_slice() {
            // Cannot fail: MAX_BANKS <= MAX_FREE_RANGES.
            let _ = free.push(s);
        }
        let mut a = Self {
            banks: list,
            free,
            claims: [Self::NO_CLAIM; MAX_CLAIMS],
            claim_count: 0,
            free_pages: 0,
            allocated_pages: 0,
        };
        for c in claims {
            let region = normalized(c.region);
            if region.size == 0 {
                continue;
            }
            a.push_claim(Claim { region, label: c.label })?;
            a.free
                .subtract(Span::outward(region))
                .map_err(|_| FrameError::FreeListFull { op: "claim", range: Span::outward(region).frames() })?;
        }
        a.free_pages = a.free.pages();
        Ok(a)
    }

    fn push_claim(&mut self, c: Claim<'a>) -> Result<(), FrameError<'a>> {
        let slot = self
            .claims
            .get_mut(self.claim_count)
            .ok_or(FrameError::TooManyClaims { region: c.region, label: c.label })?;
        *slot = c;
        self.claim_count += 1;
        Ok(())
    }

    /// `pages` pages aligned to `align_pages` pages (a power of two), as high
    /// in memory as they fit.
    pub fn alloc(&mut self, pages: u64, align_pages: u64) -> Result<PhysAddr, FrameError<'a>> {
        self.alloc_in(pages, align_pages, None)
    }

    /// `pages` pages aligned to `align_pages` pages (a power of two), as high
    /// as they fit while ending at or below `limit` (for users that need low
    /// memory, like a 32-bit DMA range).
    pub fn alloc_below(&mut self, limit: PhysAddr, pages: u64, align_pages: u64) -> Result<PhysAddr, FrameError<'a>> {
        self.alloc_in(pages, align_pages, Some(limit))
    }

    fn alloc_in(&mut self, pages: u64, align_pages: u64, below: Option<PhysAddr>) -> Result<PhysAddr, FrameError<'a>> {
        if pages == 0 {
            return Err(FrameError::ZeroPages);
        }
        if !align_pages.is_power_of_two() {
            return Err(FrameError::BadAlignment { align_pages });
        }
        let limit = below.map_or(PFN_LIMIT, |l| l.as_u64() >> PAGE_SHIFT);
        for &s in self.free.as_slice().iter().rev() {
            let end = s.end.min(limit);
            if end <= s.start || end - s.start < pages {
                continue;
            }
            let start = (end - pages) & !(align_pages - 1);
            if start < s.start {
                continue;
            }
            let got = Span { start, end: start + pages };
            self.free.subtract(got).map_err(|_| FrameError::FreeListFull { op: "allocate", range: got.frames() })?;
            self.free_pages -= pages;
            self.allocated_pages += pages;
            return Ok(PhysAddr::new(start << PAGE_SHIFT));
        }
        Err(FrameError::OutOfMemory {
            pages,
            align_pages,
            below,
            largest: self.largest_free(),
            free_pages: self.free_pages,
        })
    }

    /// The largest free range (the highest of equals).
    pub fn largest_free(&self) -> Option<Frames> {
        // `max_by_key` keeps the last of equals: the highest.
        self.free.as_slice().iter().copied().max_by_key(|s| s.len()).map(Span::frames)
    }

    /// Returns `pages` allocated pages at `pa` to the free list. They need
    /// not be exactly one earlier allocation, but each must be allocated:
    /// not free (double free), not claimed, inside a bank.
    pub fn free(&mut self, pa: PhysAddr, pages: u64) -> Result<(), FrameError<'a>> {
        if pages == 0 {
            return Err(FrameError::ZeroPages);
        }
        if !pa.is_page_aligned() {
            return Err(FrameError::Unaligned { addr: pa, pages });
        }
        let start = pa.as_u64() >> PAGE_SHIFT;
        let Some(end) = start.checked_add(pages).filter(|&e| e < PFN_LIMIT) else {
            return Err(FrameError::Wraps { addr: pa, pages });
        };
        let s = Span { start, end };
        let range = s.frames();
        if let Some(pfn) = self.banks.first_uncovered(s) {
            return Err(FrameError::NotOwned { range, outside: PhysAddr::new(pfn << PAGE_SHIFT) });
        }
        if let Some(f) = self.free.overlapping(s) {
            return Err(FrameError::DoubleFree { range, free: f.frames() });
        }
        if let Some(c) = self.claims().iter().find(|c| c.pages().overlaps(s)) {
            return Err(FrameError::FreeClaimed { range, claim: c.region, label: c.label });
        }
        self.free.insert(s).map_err(|_| FrameError::FreeListFull { op: "free", range })?;
        self.free_pages += pages;
        self.allocated_pages -= pages;
        Ok(())
    }

    /// Claims `region` after construction (say, the image's new place):
    /// the pages it touches are no longer free. Parts outside every bank
    /// and parts already claimed are fine; allocated pages are an error.
    /// Returns how many free pages it took.
    pub fn claim(&mut self, region: Region, label: &'a str) -> Result<u64, FrameError<'a>> {
        let region = normalized(region);
        if region.size == 0 {
            return Ok(0);
        }
        let pages = Span::outward(region);
        if let Some(run) = self.next_allocated(pages) {
            return Err(FrameError::ClaimOverlapsAllocated { region, label, allocated: run.frames() });
        }
        let mut next = *self;
        next.push_claim(Claim { region, label })?;
        next.free.subtract(pages).map_err(|_| FrameError::FreeListFull { op: "claim", range: pages.frames() })?;
        next.free_pages = next.free.pages();
        let taken = self.free_pages - next.free_pages;
        *self = next;
        Ok(taken)
    }

    /// Claims every `/memreserve/` entry (labelled `/memreserve/`) and every
    /// `/reserved-memory` region (labelled with its node name). Stops at the
    /// first error, keeping the claims made so far. Entries the DT reader
    /// dropped ([`Reserved::dropped`], `memreserve.dropped()`) are unknown
    /// here: the caller decides whether booting on is safe.
    pub fn claim_reserved(&mut self, reserved: &Reserved<'a>) -> Result<u64, FrameError<'a>> {
        let mut taken = 0;
        for m in reserved.memreserve.as_slice() {
            taken += self.claim(*m, "/memreserve/")?;
        }
        for n in reserved.nodes() {
            taken += self.claim(n.region, n.name)?;
        }
        Ok(taken)
    }

    /// Releases claimed memory (say, the image's load region once it has
    /// moved): every byte of `region` must be claimed. The claims are cut
    /// byte-exactly, and the pages no claim touches any more become free.
    /// Returns how many pages became free.
    pub fn free_range(&mut self, region: Region) -> Result<u64, FrameError<'a>> {
        let region = normalized(region);
        if region.size == 0 {
            return Ok(0);
        }
        let mut cur = region.base;
        while cur < region.end() {
            let covered = self
                .claims()
                .iter()
                .filter(|c| c.region.base <= cur && cur < c.region.end())
                .map(|c| c.region.end())
                .max();
            match covered {
                Some(end) => cur = end,
                None => return Err(FrameError::NotClaimed { region, addr: PhysAddr::new(cur) }),
            }
        }
        let mut next = *self;
        next.claim_count = 0;
        // Only a claim cut in two needs a new entry: on overflow, name its second piece.
        let mut split = None;
        for c in self.claims() {
            let (base, end) = (c.region.base, c.region.end());
            let left = Region { base, size: region.base.min(end).saturating_sub(base) };
            let right = Region { base: region.end().max(base), size: end.saturating_sub(region.end().max(base)) };
            if left.size != 0 && right.size != 0 && split.is_none() {
                split = Some(Claim { region: right, label: c.label });
            }
            for piece in [left, right] {
                if piece.size != 0 && next.push_claim(Claim { region: piece, label: c.label }).is_err() {
                    let c = split.unwrap_or(Claim { region: piece, label: c.label });
                    return Err(FrameError::TooManyClaims { region: c.region, label: c.label });
                }
            }
        }
        // Every page of `region` was claimed; those now neither claimed nor
        // free (the `next_allocated` runs) are the ones to free.
        let pages = Span::outward(region);
        let mut freed = 0;
        let mut from = pages.start;
        while let Some(run) = next.next_allocated(Span { start: from, end: pages.end }) {
            next.free.insert(run).map_err(|_| FrameError::FreeListFull { op: "release", range: run.frames() })?;
            freed += run.len();
            from = run.end;
        }
        next.free_pages += freed;
        *self = next;
        Ok(freed)
    }

    /// The first run of pages in `s` that is inside a bank, not free and not
    /// claimed: allocated pages.
    fn next_allocated(&self, s: Span) -> Option<Span> {
        let mut cur = s.start;
        while cur < s.end {
            let Some(bank) = self.banks.containing(cur) else {
                cur = self.banks.next_start_after(cur).unwrap_or(s.end);
                continue;
            };
            if let Some(f) = self.free.containing(cur) {
                cur = f.end;
                continue;
            }
            let claimed = self.claims().iter().map(Claim::pages).filter(|p| p.contains(cur)).map(|p| p.end).max();
            if let Some(end) = claimed {
                cur = end;
                continue;
            }
            let mut end = bank.end.min(s.end);
            if let Some(f) = self.free.next_start_after(cur) {
                end = end.min(f);
            }
            for p in self.claims().iter().map(Claim::pages).filter(|p| p.start > cur) {
                end = end.min(p.start);
            }
            return Some(Span { start: cur, end });
        }
        None
    }

    /// Free pages.
    pub fn free_pages(&self) -> u64 {
        self.free_pages
    }

    /// Pages handed out by `alloc` and not freed.
    pub fn allocated_pages(&self) -> u64 {
        self.allocated_pages
    }

    /// Whole pages in the banks.
    pub fn total_pages(&self) -> u64 {
        self.banks.pages()
    }

    /// Pages in the banks that claims touch.
    pub fn claimed_pages(&self) -> u64 {
        self.total_pages() - self.free_pages - self.allocated_pages
    }

    /// The free ranges, lowest first.
    pub fn free_ranges(&self) -> impl Iterator<Item = Frames> + '_ {
        self.free.as_slice().iter().map(|s| s.frames())
    }

    /// The banks' whole pages (merged, rounded inward), lowest first.
    pub fn banks(&self) -> impl Iterator<Item = Frames> + '_ {
        self.banks.as_slice().iter().map(|s| s.frames())
    }

    /// The claims, in the order they were made (a partial release leaves
    /// the pieces in the place of the claim it cut).
    pub fn claims(&self) -> &[Claim<'a>] {
        &self.claims[..self.claim_count]
    }

    /// Describes the allocator, one line per call of `out` (for the boot
    /// log): every claim, every free range, and the totals.
    pub fn report(&self, out: Sink<'_>) {
        for c in self.claims() {
            out(format_args!("frames: claimed {} ({})", c.region, c.label));
        }
        for f in self.free_ranges() {
            out(format_args!("frames: free {f}"));
        }
        out(format_args!(
            "frames: {} of {} pages free ({} MiB), {} allocated, {} claimed",
            self.free_pages,
            self.total_pages(),
            self.free_pages >> (20 - PAGE_SHIFT),
            self.allocated_pages,
            self.claimed_pages()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dt::{Regions, ReservedRegion};
    extern crate std;
    use std::string::{String, ToString};
    use std::vec::Vec;
    use std::{format, vec};

    const K: u64 = 1 << 10;
    const M: u64 = 1 << 20;
    const G: u64 = 1 << 30;

    fn r(base: u64, size: u64) -> Region {
        Region { base, size }
    }

    fn pa(a: u64) -> PhysAddr {
        PhysAddr::new(a)
    }

    /// The free ranges as (start, pages).
    fn free_list(a: &FrameAllocator<'_>) -> Vec<(u64, u64)> {
        a.free_ranges().map(|f| (f.start.as_u64(), f.pages)).collect()
    }

    /// The whole observable state, to check that a refused operation changed nothing.
    fn snapshot(a: &FrameAllocator<'_>) -> String {
        format!("{a:?}")
    }

    /// Free ranges sorted, apart, inside banks, touching no claim; the counters agree.
    fn check_invariants(a: &FrameAllocator<'_>) {
        let free = a.free.as_slice();
        for w in free.windows(2) {
            assert!(w[0].end < w[1].start, "free ranges {:?} and {:?} not sorted and apart", w[0], w[1]);
        }
        for s in free {
            assert!(!s.is_empty());
            assert!(a.banks.as_slice().iter().any(|b| b.start <= s.start && s.end <= b.end), "{s:?} outside the banks");
            for c in a.claims() {
                assert!(!c.pages().overlaps(*s), "free {s:?} overlaps claim {c:?}");
            }
        }
        assert_eq!(a.free_pages(), a.free.pages());
        assert_eq!(a.total_pages(), a.free_pages() + a.allocated_pages() + a.claimed_pages());
        // Claimed pages, counted independently: the union of every claim's
        // pages inside every bank.
        let mut pieces: Vec<(u64, u64)> = Vec::new();
        for b in a.banks.as_slice() {
            for c in a.claims() {
                let p = c.pages();
                let (start, end) = (p.start.max(b.start), p.end.min(b.end));
                if start < end {
                    pieces.push((start, end));
                }
            }
        }
        pieces.sort();
        let (mut claimed, mut reach) = (0, 0);
        for (start, end) in pieces {
            let start = start.max(reach);
            if start < end {
                claimed += end - start;
            }
            reach = reach.max(end);
        }
        assert_eq!(a.claimed_pages(), claimed);
    }

    fn report_lines(a: &FrameAllocator<'_>) -> Vec<String> {
        let mut lines = Vec::new();
        a.report(&mut |args| lines.push(args.to_string()));
        lines
    }

    /// QEMU `virt` with 1 GiB, as U-Boot starts the image: DTB at the start
    /// of RAM, the image at `kernel_addr_r`, plus reserved memory from the DT.
    #[test]
    fn qemu_like_single_bank() {
        let banks = [r(0x4000_0000, G)];
        let claims = [Claim::new(r(0x4000_0000, M), "DTB"), Claim::new(r(0x4040_0000, 0x6_3210), "hypervisor image")];
        let mut a = FrameAllocator::new(&banks, &claims).unwrap();
        let secmon = [ReservedRegion { name: "secmon@4ff00000", region: r(0x4ff0_0000, M), no_map: true }];
        let reserved = Reserved::new(Regions::from_slice(&[r(0x4800_0000, 0x1000)]), &secmon);
        assert_eq!(a.claim_reserved(&reserved), Ok(1 + 256));
        check_invariants(&a);
        assert_eq!(
            free_list(&a),
            vec![
                (0x4010_0000, 0x300),
                (0x4046_4000, (0x4800_0000 - 0x4046_4000) / PAGE_SIZE),
                (0x4800_1000, (0x4ff0_0000 - 0x4800_1000) / PAGE_SIZE),
                (0x5000_0000, 0x3_0000),
            ]
        );
        assert_eq!(a.total_pages(), 0x4_0000);
        // DTB 256 pages, image 0x64 pages (its last byte is 0x4046_320f), 1 + 256 reserved.
        assert_eq!(a.claimed_pages(), 256 + 0x64 + 1 + 256);
        assert_eq!(a.free_pages(), 0x4_0000 - a.claimed_pages());
        assert_eq!(a.allocated_pages(), 0);
        let labels: Vec<&str> = a.claims().iter().map(|c| c.label).collect();
        assert_eq!(labels, ["DTB", "hypervisor image", "/memreserve/", "secmon@4ff00000"]);

        // From the top by default; a 2 MiB block below the page just taken.
        assert_eq!(a.alloc(1, 1), Ok(pa(0x7fff_f000)));
        assert_eq!(a.alloc(512, 512), Ok(pa(0x7fc0_0000)));
        assert_eq!(free_list(&a)[3], (0x5000_0000, (0x7fc0_0000 - 0x5000_0000) / PAGE_SIZE));
        assert_eq!(free_list(&a)[4], (0x7fe0_0000, 511));
        // Low memory on request.
        assert_eq!(a.alloc_below(pa(0x4040_0000), 16, 1), Ok(pa(0x403f_0000)));
        let e = a.alloc_below(pa(0x4010_0000), 1, 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "out of memory: 1 pages aligned to 1 requested below PA 0x40100000, largest free range \
                 0x000050000000-0x00007fbfffff (195584 pages), total free {} pages",
                a.free_pages()
            )
        );
        assert_eq!(a.allocated_pages(), 1 + 512 + 16);
        check_invariants(&a);

        let lines = report_lines(&a);
        assert_eq!(lines[0], "frames: claimed 0x000040000000-0x0000400fffff (DTB)");
        assert_eq!(lines[1], "frames: claimed 0x000040400000-0x00004046320f (hypervisor image)");
        assert_eq!(lines[3], "frames: claimed 0x00004ff00000-0x00004fffffff (secmon@4ff00000)");
        assert_eq!(lines[4], "frames: free 0x000040100000-0x0000403effff (752 pages)");
        assert_eq!(
            lines.last().unwrap(),
            &format!(
                "frames: {} of 262144 pages free ({} MiB), 529 allocated, 613 claimed",
                a.free_pages(),
                a.free_pages() / 256
            )
        );
        assert_eq!(lines.len(), 4 + a.free_ranges().count() + 1);
    }

    /// The FVP base platform: 2 GiB below 4 GiB and 2 GiB at 0x8_8000_0000
    /// (listed high bank first), TF-A's `/memreserve/` at the start of DRAM.
    #[test]
    fn fvp_like_two_banks() {
        let banks = [r(0x8_8000_0000, 2 * G), r(0x8000_0000, 2 * G)];
        let claims = [
            Claim::new(r(0x8800_0000, 2 * M), "hypervisor image"),
            Claim::new(r(0x8000_0000, 0x1_0000), "/memreserve/"),
            Claim::new(r(0x8200_0000, 0x2345), "DTB"),
        ];
        let mut a = FrameAllocator::new(&banks, &claims).unwrap();
        check_invariants(&a);
        let banks: Vec<Frames> = a.banks().collect();
        assert_eq!(
            banks,
            [Frames { start: pa(0x8000_0000), pages: 0x8_0000 }, Frames { start: pa(0x8_8000_0000), pages: 0x8_0000 }]
        );
        assert_eq!(a.total_pages(), 0x10_0000);
        assert_eq!(a.claimed_pages(), 512 + 16 + 3);
        assert_eq!(free_list(&a).len(), 4);

        assert_eq!(a.alloc(1, 1), Ok(pa(0x8_ffff_f000)));
        assert_eq!(a.alloc_below(pa(1 << 32), 512, 512), Ok(pa(0xffe0_0000)));
        // Exhaust the high bank: the next page comes from the low one.
        assert_eq!(a.alloc(0x8_0000 - 1, 1), Ok(pa(0x8_8000_0000)));
        assert_eq!(a.alloc(1, 1), Ok(pa(0xffdf_f000)));
        // A 1 GiB block: only 0x8000_0000-0xbfffffff is aligned, and claims are in it.
        let e = a.alloc(0x4_0000, 0x4_0000).unwrap_err();
        assert!(matches!(e, FrameError::OutOfMemory { pages: 0x4_0000, align_pages: 0x4_0000, below: None, .. }));
        assert_eq!(a.alloc(0x2_0000, 0x2_0000), Ok(pa(0xc000_0000)));
        check_invariants(&a);
        // Hand everything in the high bank back: it is one range again.
        a.free(pa(0x8_8000_0000), 0x8_0000).unwrap();
        assert_eq!(free_list(&a).last(), Some(&(0x8_8000_0000, 0x8_0000)));
        check_invariants(&a);
    }

    /// Unsorted, overlapping, touching and unaligned banks; claims that
    /// overlap each other, straddle bank edges, repeat, lie outside or are empty.
    #[test]
    fn overlapping_claims_and_bank_edges() {
        let banks = [
            r(0x2000_0800, 0x1800), // touches the next one: together two whole pages
            r(0x1010_0000, 0x30_0000),
            r(0x1000_0800, 0x20_0000), // overlaps the previous one
            r(0x2000_0000, 0x800),
            r(0x3000_0000, 0),
        ];
        let claims = [
            Claim::new(r(0x0fff_0000, 0x2_0000), "straddles the bank start"),
            Claim::new(r(0x1000_8000, 0x1_0000), "overlaps the one before"),
            Claim::new(r(0x1002_0000, 0x10), "sixteen bytes"),
            Claim::new(r(0x1002_0000, 0x10), "the same again"),
            Claim::new(r(0x103f_f800, 0x1000), "straddles the bank end"),
            Claim::new(r(0x5000_0000, 0x1000), "outside every bank"),
            Claim::new(r(0x1003_0000, 0), "empty"),
            Claim::new(r(0x2000_1fff, 1), "last byte of a bank"),
        ];
        let a = FrameAllocator::new(&banks, &claims).unwrap();
        check_invariants(&a);
        let banks: Vec<Frames> = a.banks().collect();
        assert_eq!(
            banks,
            [Frames { start: pa(0x1000_1000), pages: 0x3ff }, Frames { start: pa(0x2000_0000), pages: 2 }]
        );
        assert_eq!(
            free_list(&a),
            vec![(0x1001_8000, 8), (0x1002_1000, (0x103f_f000 - 0x1002_1000) / PAGE_SIZE), (0x2000_0000, 1)]
        );
        assert_eq!(a.claims().len(), 7, "the empty claim is not recorded");
        assert_eq!(a.claimed_pages(), 0x3ff + 2 - a.free_pages());

        // A bank at the very top of the address space: its end saturates.
        let mut top = FrameAllocator::new(&[r(u64::MAX - 0x2fff, 0x1_0000)], &[]).unwrap();
        assert_eq!(free_list(&top), vec![(0xffff_ffff_ffff_d000, 2)]);
        assert_eq!(top.alloc(2, 1), Ok(pa(0xffff_ffff_ffff_d000)));
        assert_eq!(
            top.free(pa(0xffff_ffff_ffff_f000), 1),
            Err(FrameError::Wraps { addr: pa(0xffff_ffff_ffff_f000), pages: 1 })
        );
        assert_eq!(top.free(pa(0xffff_ffff_ffff_d000), 2), Ok(()));
        let c = top.claim(r(0xffff_ffff_ffff_e000, u64::MAX), "to the end");
        assert_eq!(c, Ok(1));
        assert_eq!(top.claims()[0].region, r(0xffff_ffff_ffff_e000, 0x1fff));
        check_invariants(&top);

        // Memory that is all claimed: an allocator with nothing free.
        let mut none =
            FrameAllocator::new(&[r(0x4000_0000, 0x4000)], &[Claim::new(r(0x3fff_ffff, 0x4002), "all")]).unwrap();
        assert_eq!(none.free_pages(), 0);
        assert_eq!(
            none.alloc(1, 1).unwrap_err().to_string(),
            "out of memory: 1 pages aligned to 1 requested, no free range, total free 0 pages"
        );

        let too_many = [r(0, 0x1000); MAX_BANKS + 1];
        let e = FrameAllocator::new(&too_many, &[]).unwrap_err();
        assert_eq!(e.to_string(), "17 memory banks given, at most 16 supported");
    }

    #[test]
    fn exhaustion_and_fragmentation() {
        let mut a = FrameAllocator::new(&[r(0x10_0000, 16 * PAGE_SIZE)], &[]).unwrap();
        let pages: Vec<PhysAddr> = (0..16).map(|_| a.alloc(1, 1).unwrap()).collect();
        assert_eq!(pages[0], pa(0x10_f000));
        assert_eq!(pages[15], pa(0x10_0000));
        assert_eq!(a.free_pages(), 0);
        assert_eq!(
            a.alloc(1, 1).unwrap_err().to_string(),
            "out of memory: 1 pages aligned to 1 requested, no free range, total free 0 pages"
        );
        // Free every other page: eight one-page holes.
        for p in pages.iter().filter(|p| p.as_u64() % (2 * PAGE_SIZE) == 0) {
            a.free(*p, 1).unwrap();
        }
        assert_eq!(a.free_ranges().count(), 8);
        assert_eq!(a.free_pages(), 8);
        let e = a.alloc(2, 1).unwrap_err();
        assert_eq!(
            e,
            FrameError::OutOfMemory {
                pages: 2,
                align_pages: 1,
                below: None,
                largest: Some(Frames { start: pa(0x10_e000), pages: 1 }),
                free_pages: 8
            }
        );
        assert_eq!(
            e.to_string(),
            "out of memory: 2 pages aligned to 1 requested, largest free range \
             0x00000010e000-0x00000010efff (1 page), total free 8 pages"
        );
        check_invariants(&a);
        // The rest back: everything coalesces into one range.
        for p in pages.iter().filter(|p| p.as_u64() % (2 * PAGE_SIZE) != 0) {
            a.free(*p, 1).unwrap();
        }
        assert_eq!(free_list(&a), vec![(0x10_0000, 16)]);
        assert_eq!(a.alloc(16, 16), Ok(pa(0x10_0000)));
        check_invariants(&a);
    }

    #[test]
    fn alignment() {
        let mut a = FrameAllocator::new(&[r(0x4000_0000, 4 * M + 3 * PAGE_SIZE)], &[]).unwrap();
        assert_eq!(a.alloc(1, 1), Ok(pa(0x4040_2000)));
        // The 2 MiB block goes below the unaligned top, leaving the tail free.
        assert_eq!(a.alloc(512, 512), Ok(pa(0x4020_0000)));
        assert_eq!(free_list(&a), vec![(0x4000_0000, 512), (0x4040_0000, 2)]);
        // Too small at the top: the aligned run comes from the range below.
        assert_eq!(a.alloc(4, 4), Ok(pa(0x401f_c000)));
        assert!(a.alloc(3, 2).unwrap().is_aligned(2 * PAGE_SIZE));
        assert_eq!(a.alloc(1, 3), Err(FrameError::BadAlignment { align_pages: 3 }));
        assert_eq!(a.alloc(1, 0), Err(FrameError::BadAlignment { align_pages: 0 }));
        assert_eq!(a.alloc(0, 1), Err(FrameError::ZeroPages));
        assert_eq!(a.alloc(1, 3).unwrap_err().to_string(), "alignment of 3 pages requested: not a power of two");
        assert_eq!(a.alloc(0, 1).unwrap_err().to_string(), "a request for zero pages");
        // 4 MiB aligned: only 0x4000_0000 qualifies, and that range is too short now.
        let e = a.alloc(512, 1024).unwrap_err();
        assert!(e.to_string().starts_with("out of memory: 512 pages aligned to 1024 requested, largest free range"));
        // Sizes that overflow any range are just out of memory.
        assert!(matches!(a.alloc(u64::MAX, 1), Err(FrameError::OutOfMemory { .. })));
        assert!(matches!(a.alloc(1, 1 << 63), Err(FrameError::OutOfMemory { .. })));
        check_invariants(&a);
    }

    #[test]
    fn free_and_realloc() {
        let mut a = FrameAllocator::new(&[r(0x8000_0000, M)], &[]).unwrap();
        let p = a.alloc(8, 1).unwrap();
        let q = a.alloc(8, 1).unwrap();
        assert_eq!(q, pa(p.as_u64() - 8 * PAGE_SIZE));
        a.free(p, 8).unwrap();
        assert_eq!(a.alloc(8, 1), Ok(p), "the freed run is the highest again");
        // A run freed in two parts, in either order, coalesces.
        a.free(p + 4 * PAGE_SIZE, 4).unwrap();
        a.free(p, 4).unwrap();
        a.free(q + 2 * PAGE_SIZE, 6).unwrap();
        a.free(q, 2).unwrap();
        assert_eq!(free_list(&a), vec![(0x8000_0000, 256)]);
        assert_eq!((a.free_pages(), a.allocated_pages()), (256, 0));
        check_invariants(&a);
    }

    #[test]
    fn bad_frees_are_refused_and_change_nothing() {
        let claims = [Claim::new(r(0x4000_8000, 0x100), "DTB")];
        let mut a = FrameAllocator::new(&[r(0x4000_0000, 64 * PAGE_SIZE)], &claims).unwrap();
        let p = a.alloc(4, 1).unwrap();
        assert_eq!(p, pa(0x4003_c000));
        a.free(p, 2).unwrap();
        let before = snapshot(&a);
        let e = a.free(p, 2).unwrap_err();
        assert_eq!(
            e,
            FrameError::DoubleFree {
                range: Frames { start: p, pages: 2 },
                free: Frames { start: pa(0x4000_9000), pages: 0x35 }
            }
        );
        assert_eq!(
            e.to_string(),
            "double free: 0x00004003c000-0x00004003dfff (2 pages) overlaps free range \
             0x000040009000-0x00004003dfff (53 pages)"
        );
        // Partly free, partly allocated: still a double free.
        assert!(matches!(a.free(p + PAGE_SIZE, 2), Err(FrameError::DoubleFree { .. })));
        let e = a.free(pa(0x4000_8000), 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot free 0x000040008000-0x000040008fff (1 page): it overlaps claimed \
             0x000040008000-0x0000400080ff (DTB); release claims with free_range"
        );
        let e = a.free(pa(0x4003_f000), 2).unwrap_err();
        assert_eq!(
            e,
            FrameError::NotOwned { range: Frames { start: pa(0x4003_f000), pages: 2 }, outside: pa(0x4004_0000) }
        );
        assert_eq!(
            e.to_string(),
            "cannot free 0x00004003f000-0x000040040fff (2 pages): PA 0x40040000 is in no memory bank"
        );
        assert!(matches!(a.free(pa(0x1000), 1), Err(FrameError::NotOwned { .. })));
        let e = a.free(pa(0x4003_e800), 1).unwrap_err();
        assert_eq!(e.to_string(), "cannot free 1 pages at PA 0x4003e800: not page aligned");
        let e = a.free(p, u64::MAX).unwrap_err();
        assert_eq!(e, FrameError::Wraps { addr: p, pages: u64::MAX });
        assert!(e.to_string().ends_with("the range runs past the end of the address space"));
        assert_eq!(a.free(p, 0), Err(FrameError::ZeroPages));
        assert_eq!(snapshot(&a), before);
        // The allocated half is still freeable.
        a.free(p + 2 * PAGE_SIZE, 2).unwrap();
        assert_eq!(a.allocated_pages(), 0);
        check_invariants(&a);
    }

    /// The relocation sequence: the image moves to the top of RAM (claimed),
    /// its load region is released; the DTB shares a page with it.
    #[test]
    fn relocation_claim_and_release() {
        let claims = [Claim::new(r(0x4000_0000, 0x2345), "DTB"), Claim::new(r(0x4000_2400, M), "image (load)")];
        let mut a = FrameAllocator::new(&[r(0x4000_0000, G)], &claims).unwrap();
        assert_eq!(a.free_ranges().next().map(|f| f.start), Some(pa(0x4010_3000)));
        assert_eq!(a.claim(r(0x7ff0_0000, M), "image"), Ok(256));
        assert_eq!(a.claim(r(0x7ff8_0000, 0x10), "inside the image"), Ok(0));
        assert_eq!(a.claim(r(0xc000_0000, M), "outside RAM"), Ok(0));
        assert_eq!(a.claim(r(0x5000_0000, 0), "empty"), Ok(0));
        check_invariants(&a);
        // The page shared with the DTB stays claimed.
        assert_eq!(a.free_range(r(0x4000_2400, M)), Ok(256));
        assert_eq!(free_list(&a), vec![(0x4000_3000, (0x7ff0_0000 - 0x4000_3000) / PAGE_SIZE)]);
        let e = a.free_range(r(0x4000_2400, M)).unwrap_err();
        assert_eq!(e, FrameError::NotClaimed { region: r(0x4000_2400, M), addr: pa(0x4000_2400) });
        assert_eq!(
            e.to_string(),
            "cannot release 0x000040002400-0x0000401023ff: PA 0x40002400 is not claimed (released twice?)"
        );
        assert_eq!(a.free_range(r(0x4000_0000, 0x2345)), Ok(3));
        assert_eq!(free_list(&a), vec![(0x4000_0000, (0x7ff0_0000 - 0x4000_0000) / PAGE_SIZE)]);
        check_invariants(&a);

        // Claiming allocated memory is refused.
        let p = a.alloc(1, 1).unwrap();
        assert_eq!(p, pa(0x7fef_f000));
        let before = snapshot(&a);
        let e = a.claim(r(0x7fef_e800, 0x1000), "module").unwrap_err();
        assert_eq!(
            e,
            FrameError::ClaimOverlapsAllocated {
                region: r(0x7fef_e800, 0x1000),
                label: "module",
                allocated: Frames { start: p, pages: 1 }
            }
        );
        assert_eq!(
            e.to_string(),
            "cannot claim 0x00007fefe800-0x00007feff7ff (module): 0x00007feff000-0x00007fefffff (1 page) already allocated"
        );
        assert_eq!(snapshot(&a), before);

        // Partial release: the claim is cut in two, both pieces keep the label.
        assert_eq!(a.claim(r(0x5000_0000, M), "pool"), Ok(256));
        assert_eq!(a.free_range(r(0x5004_0000, 0x1_0000)), Ok(16));
        let pool: Vec<Region> = a.claims().iter().filter(|c| c.label == "pool").map(|c| c.region).collect();
        assert_eq!(pool, [r(0x5000_0000, 0x4_0000), r(0x5005_0000, 0xb_0000)]);
        // One release across two adjacent claims; a gap makes it fail whole.
        assert_eq!(a.claim(r(0x6000_0000, 0x1000), "a"), Ok(1));
        assert_eq!(a.claim(r(0x6000_1000, 0x1000), "b"), Ok(1));
        let before = snapshot(&a);
        let e = a.free_range(r(0x6000_0000, 0x3000)).unwrap_err();
        assert_eq!(e, FrameError::NotClaimed { region: r(0x6000_0000, 0x3000), addr: pa(0x6000_2000) });
        assert_eq!(snapshot(&a), before);
        assert_eq!(a.free_range(r(0x6000_0000, 0x2000)), Ok(2));
        assert_eq!(a.free_range(r(0x6000_0000, 0)), Ok(0));
        check_invariants(&a);
    }

    /// Full lists are errors that change nothing.
    #[test]
    fn capacity_limits() {
        const BASE: u64 = 0x8000_0000;
        let page = |n: u64| BASE + n * PAGE_SIZE;
        // 63 one-page claims, one every 8 pages: exactly 64 free ranges.
        let claims: Vec<Claim<'_>> = (1..64).map(|k| Claim::new(r(page(8 * k), PAGE_SIZE), "hole")).collect();
        let mut a = FrameAllocator::new(&[r(BASE, 1024 * PAGE_SIZE)], &claims).unwrap();
        assert_eq!(a.free_ranges().count(), MAX_FREE_RANGES);
        assert_eq!(a.alloc(1, 1), Ok(pa(page(1023))), "no split needed");
        let before = snapshot(&a);
        let e = a.alloc(1, 4).unwrap_err();
        assert_eq!(e, FrameError::FreeListFull { op: "allocate", range: Frames { start: pa(page(1020)), pages: 1 } });
        assert_eq!(e.to_string(), "free list full (64 ranges): cannot allocate 0x0000803fc000-0x0000803fcfff (1 page)");
        let e = a.claim(r(page(3), 1), "splits").unwrap_err();
        assert!(matches!(e, FrameError::FreeListFull { op: "claim", .. }));
        assert_eq!(snapshot(&a), before);
        // At an edge a claim splits nothing: it takes the 64th slot.
        assert_eq!(a.claim(r(page(0), 1), "edge"), Ok(1));
        let e = a.claim(r(page(2), 1), "one too many").unwrap_err();
        assert_eq!(e, FrameError::TooManyClaims { region: r(page(2), 1), label: "one too many" });
        assert_eq!(
            e.to_string(),
            "claim list full (64 entries): cannot record 0x000080002000-0x000080002000 (one too many)"
        );
        // Releasing the middle of a claim needs one more entry.
        let before = snapshot(&a);
        let e = a.free_range(r(page(8) + 0x100, 0x100)).unwrap_err();
        assert_eq!(e, FrameError::TooManyClaims { region: r(page(8) + 0x200, 0xe00), label: "hole" });
        assert_eq!(snapshot(&a), before);
        // Releasing a whole claim frees its page and merges two ranges.
        assert_eq!(a.free_range(r(page(8), PAGE_SIZE)), Ok(1));
        assert_eq!(a.free_ranges().count(), MAX_FREE_RANGES - 1);
        check_invariants(&a);

        // One more hole at construction: 65 ranges do not fit.
        let claims: Vec<Claim<'_>> = (1..65).map(|k| Claim::new(r(page(8 * k), PAGE_SIZE), "hole")).collect();
        let e = FrameAllocator::new(&[r(BASE, 1024 * PAGE_SIZE)], &claims).unwrap_err();
        assert_eq!(e, FrameError::FreeListFull { op: "claim", range: Frames { start: pa(page(512)), pages: 1 } });
        let claims: Vec<Claim<'_>> = (0..65).map(|_| Claim::new(r(BASE, 1), "same")).collect();
        let e = FrameAllocator::new(&[r(BASE, 1024 * PAGE_SIZE)], &claims).unwrap_err();
        assert!(matches!(e, FrameError::TooManyClaims { label: "same", .. }));

        // Frees that would need a 65th range.
        let mut a = FrameAllocator::new(&[r(BASE, 256 * PAGE_SIZE)], &[]).unwrap();
        assert_eq!(a.alloc(256, 1), Ok(pa(BASE)));
        for k in 0..64 {
            a.free(pa(page(2 * k)), 1).unwrap();
        }
        let before = snapshot(&a);
        let e = a.free(pa(page(200)), 1).unwrap_err();
        assert_eq!(e, FrameError::FreeListFull { op: "free", range: Frames { start: pa(page(200)), pages: 1 } });
        assert_eq!(snapshot(&a), before);
        // A free that merges needs no new range.
        a.free(pa(page(1)), 1).unwrap();
        a.free(pa(page(200)), 1).unwrap();
        check_invariants(&a);
    }

    use crate::testutil::Rng;

    /// The model's window: 8 MiB from here, in 1 KiB units (claims and
    /// releases are 1 KiB granular, so sub-page rounding is exercised).
    const WIN: u64 = 0x4000_0000;
    const WIN_PAGES: usize = 2048;
    const KIB_PER_PAGE: usize = 4;

    /// The state page by page, and claimed memory KiB by KiB.
    struct Model {
        in_bank: Vec<bool>,
        free: Vec<bool>,
        claimed_kib: Vec<bool>,
    }

    impl Model {
        fn claimed(&self, page: usize) -> bool {
            self.claimed_kib[page * KIB_PER_PAGE..(page + 1) * KIB_PER_PAGE].iter().any(|&c| c)
        }

        fn allocated(&self, page: usize) -> bool {
            self.in_bank[page] && !self.free[page] && !self.claimed(page)
        }

        fn count(&self, f: impl Fn(usize) -> bool) -> u64 {
            (0..WIN_PAGES).filter(|&p| f(p)).count() as u64
        }

        /// The highest aligned start of `pages` free pages ending at or below
        /// page `limit`, and whether taking them splits a free range.
        fn best_fit(&self, pages: usize, align: usize, limit: usize) -> Option<(usize, bool)> {
            let mut run = vec![0usize; WIN_PAGES + 1];
            for p in (0..WIN_PAGES).rev() {
                run[p] = if self.free[p] { run[p + 1] + 1 } else { 0 };
            }
            let abs = |p: usize| (WIN / PAGE_SIZE) as usize + p;
            (0..WIN_PAGES).rev().find(|&p| run[p] >= pages && abs(p) % align == 0 && p + pages <= limit).map(|p| {
                let split = p > 0 && self.free[p - 1] && p + pages < WIN_PAGES && self.free[p + pages];
                (p, split)
            })
        }

        /// The largest run of free pages (the highest of equals).
        fn largest(&self) -> Option<Frames> {
            let mut best: Option<(usize, usize)> = None;
            let mut p = 0;
            while p < WIN_PAGES {
                if !self.free[p] {
                    p += 1;
                    continue;
                }
                let start = p;
                while p < WIN_PAGES && self.free[p] {
                    p += 1;
                }
                if best.is_none_or(|(_, len)| p - start >= len) {
                    best = Some((start, p - start));
                }
            }
            best.map(|(s, len)| Frames { start: pa(WIN + s as u64 * PAGE_SIZE), pages: len as u64 })
        }
    }

    fn page_addr(p: usize) -> u64 {
        WIN + p as u64 * PAGE_SIZE
    }

    /// Compares the allocator with the model.
    fn check_against(a: &FrameAllocator<'_>, m: &Model) {
        check_invariants(a);
        let mut free = vec![false; WIN_PAGES];
        for f in a.free_ranges() {
            for i in 0..f.pages {
                free[((f.start.as_u64() - WIN) / PAGE_SIZE + i) as usize] = true;
            }
        }
        assert!(free == m.free, "free pages differ from the model");
        let mut claimed = vec![false; WIN_PAGES * KIB_PER_PAGE];
        for c in a.claims() {
            for k in (c.region.base - WIN) / K..(c.region.end() - WIN) / K {
                claimed[k as usize] = true;
            }
        }
        assert!(claimed == m.claimed_kib, "claimed memory differs from the model");
        assert_eq!(a.free_pages(), m.count(|p| m.free[p]));
        assert_eq!(a.allocated_pages(), m.count(|p| m.allocated(p)));
        assert_eq!(a.claimed_pages(), m.count(|p| m.in_bank[p] && m.claimed(p)));
    }

    /// A random 1 KiB-granular region inside the window, up to 96 KiB long.
    fn random_region(rng: &mut Rng) -> Region {
        let kib = (WIN_PAGES * KIB_PER_PAGE) as u64;
        let start = rng.below(kib);
        let len = 1 + rng.below(96).min(kib - start - 1);
        r(WIN + start * K, len * K)
    }

    /// Random alloc / alloc_below / free / double free / claim / release
    /// sequences against a page-by-page model: every result (address or
    /// error) is the one the model predicts, and after every step the free
    /// pages, claims and counters are exactly the model's.
    #[test]
    fn random_operations_match_a_page_model() {
        // Unaligned bank edges, a gap, a small bank at the top of the window.
        let banks = [r(WIN + 0x400, 0x30_0000), r(WIN + 0x40_0000, 0x20_0c00), r(WIN + 0x70_0000, 0x8_0000)];
        let initial = [
            Claim::new(r(WIN, 0x2400), "DTB"),
            Claim::new(r(WIN + 0x10_0400, 0x3_0000), "image"),
            Claim::new(r(WIN + 0x5f_f000, 0x2000), "reserved"),
            Claim::new(r(WIN + 0x68_0000, 0x1000), "outside"),
        ];
        let mut outcomes = [0u32; 8];
        for seed in 1..=12u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut a = FrameAllocator::new(&banks, &initial).unwrap();
            let mut m = Model {
                in_bank: (0..WIN_PAGES)
                    .map(|p| {
                        let (s, e) = (page_addr(p), page_addr(p) + PAGE_SIZE);
                        banks.iter().any(|b| b.base <= s && e <= b.end())
                    })
                    .collect(),
                free: vec![false; WIN_PAGES],
                claimed_kib: vec![false; WIN_PAGES * KIB_PER_PAGE],
            };
            for c in &initial {
                for k in (c.region.base - WIN) / K..(c.region.end() - WIN) / K {
                    m.claimed_kib[k as usize] = true;
                }
            }
            for p in 0..WIN_PAGES {
                m.free[p] = m.in_bank[p] && !m.claimed(p);
            }
            check_against(&a, &m);

            for _ in 0..1500 {
                let before = snapshot(&a);
                let succeeded = match rng.below(100) {
                    // alloc / alloc_below
                    0..=39 => {
                        let pages = 1 + rng.below(24) as usize;
                        // Mostly unaligned: aligned runs fragment memory fast.
                        let align = if rng.below(4) == 0 { 1usize << rng.below(6) } else { 1 };
                        let below = rng.below(4) == 0;
                        let limit = if below { rng.below(WIN_PAGES as u64 + 1) as usize } else { WIN_PAGES };
                        let got = if below {
                            a.alloc_below(pa(page_addr(limit)), pages as u64, align as u64)
                        } else {
                            a.alloc(pages as u64, align as u64)
                        };
                        match (m.best_fit(pages, align, limit), got) {
                            (Some((p, _)), Ok(addr)) => {
                                assert_eq!(addr, pa(page_addr(p)));
                                m.free[p..p + pages].iter_mut().for_each(|f| *f = false);
                                outcomes[0] += 1;
                                true
                            }
                            (Some((p, split)), Err(FrameError::FreeListFull { op: "allocate", range })) => {
                                assert!(split && a.free_ranges().count() == MAX_FREE_RANGES);
                                assert_eq!(range.start, pa(page_addr(p)));
                                outcomes[1] += 1;
                                false
                            }
                            (None, Err(FrameError::OutOfMemory { largest, free_pages, .. })) => {
                                assert_eq!(largest, m.largest());
                                assert_eq!(free_pages, m.count(|p| m.free[p]));
                                outcomes[2] += 1;
                                false
                            }
                            (want, got) => {
                                panic!("alloc({pages}, {align}, limit {limit}): model {want:?}, got {got:?}")
                            }
                        }
                    }
                    // free: mostly an allocated run, sometimes anything
                    40..=79 => {
                        let (start, pages) = if rng.below(4) != 0 {
                            let Some(p) = (0..WIN_PAGES)
                                .map(|i| (i + rng.below(WIN_PAGES as u64) as usize) % WIN_PAGES)
                                .take(64)
                                .find(|&p| m.allocated(p))
                            else {
                                continue;
                            };
                            let want = 1 + rng.below(64) as usize;
                            let mut n = 1;
                            while n < want && p + n < WIN_PAGES && m.allocated(p + n) {
                                n += 1;
                            }
                            (p, n)
                        } else {
                            let p = rng.below(WIN_PAGES as u64) as usize;
                            (p, 1 + rng.below(8).min((WIN_PAGES - p - 1) as u64) as usize)
                        };
                        let got = a.free(pa(page_addr(start)), pages as u64);
                        let span = start..start + pages;
                        if let Some(out) = span.clone().find(|&p| !m.in_bank[p]) {
                            assert!(
                                matches!(got, Err(FrameError::NotOwned { outside, .. }) if outside == pa(page_addr(out)))
                            );
                            outcomes[3] += 1;
                            false
                        } else if span.clone().any(|p| m.free[p]) {
                            assert!(matches!(got, Err(FrameError::DoubleFree { .. })), "{got:?}");
                            outcomes[3] += 1;
                            false
                        } else if span.clone().any(|p| m.claimed(p)) {
                            assert!(matches!(got, Err(FrameError::FreeClaimed { .. })), "{got:?}");
                            outcomes[3] += 1;
                            false
                        } else if let Err(e) = got {
                            let merges = (start > 0 && m.free[start - 1])
                                || (start + pages < WIN_PAGES && m.free[start + pages]);
                            assert!(matches!(e, FrameError::FreeListFull { op: "free", .. }), "{e}");
                            assert!(!merges && a.free_ranges().count() == MAX_FREE_RANGES);
                            outcomes[1] += 1;
                            false
                        } else {
                            span.for_each(|p| m.free[p] = true);
                            outcomes[4] += 1;
                            true
                        }
                    }
                    // claim
                    80..=89 => {
                        let region = random_region(&mut rng);
                        let got = a.claim(region, "random");
                        let pages = Span::outward(Region { base: region.base - WIN, size: region.size });
                        let allocated = (pages.start as usize..pages.end as usize).find(|&p| m.allocated(p));
                        match (allocated, got) {
                            (Some(p), Err(FrameError::ClaimOverlapsAllocated { allocated, .. })) => {
                                assert_eq!(allocated.start, pa(page_addr(p)));
                                let run = (p..WIN_PAGES).take_while(|&q| m.allocated(q) && q < pages.end as usize);
                                assert_eq!(allocated.pages, run.count() as u64);
                                outcomes[5] += 1;
                                false
                            }
                            (None, Ok(taken)) => {
                                let span = pages.start as usize..pages.end as usize;
                                assert_eq!(taken, span.clone().filter(|&p| m.free[p]).count() as u64);
                                span.for_each(|p| m.free[p] = false);
                                let kib = (region.base - WIN) / K..(region.end() - WIN) / K;
                                kib.for_each(|k| m.claimed_kib[k as usize] = true);
                                outcomes[6] += 1;
                                true
                            }
                            (None, Err(FrameError::TooManyClaims { .. })) => {
                                assert_eq!(a.claims().len(), MAX_CLAIMS);
                                outcomes[1] += 1;
                                false
                            }
                            (None, Err(FrameError::FreeListFull { op: "claim", .. })) => {
                                assert_eq!(a.free_ranges().count(), MAX_FREE_RANGES);
                                outcomes[1] += 1;
                                false
                            }
                            (want, got) => panic!("claim {region}: model allocated at {want:?}, got {got:?}"),
                        }
                    }
                    // release: part of a claim, or anything
                    _ => {
                        let region = match a.claims().get(rng.below(MAX_CLAIMS as u64) as usize) {
                            Some(c) if rng.below(4) != 0 && c.region.base >= WIN => {
                                let kib = c.region.size / K;
                                let from = rng.below(kib);
                                let len = if rng.below(2) == 0 { kib - from } else { 1 + rng.below(kib - from) };
                                r(c.region.base + from * K, len * K)
                            }
                            _ => random_region(&mut rng),
                        };
                        let got = a.free_range(region);
                        let kib = (region.base - WIN) / K..(region.end() - WIN) / K;
                        match (kib.clone().find(|&k| !m.claimed_kib[k as usize]), got) {
                            (Some(k), Err(FrameError::NotClaimed { addr, .. })) => {
                                assert_eq!(addr, pa(WIN + k * K));
                                outcomes[7] += 1;
                                false
                            }
                            (None, Ok(freed)) => {
                                kib.for_each(|k| m.claimed_kib[k as usize] = false);
                                let pages = Span::outward(Region { base: region.base - WIN, size: region.size });
                                let mut n = 0;
                                for p in pages.start as usize..pages.end as usize {
                                    if m.in_bank[p] && !m.claimed(p) {
                                        assert!(!m.free[p]);
                                        m.free[p] = true;
                                        n += 1;
                                    }
                                }
                                assert_eq!(freed, n);
                                outcomes[6] += 1;
                                true
                            }
                            (None, Err(FrameError::TooManyClaims { .. })) => {
                                // Cutting the claims needs more entries than there are.
                                let pieces: usize = a
                                    .claims()
                                    .iter()
                                    .map(|c| {
                                        usize::from(c.region.base < region.base.min(c.region.end()))
                                            + usize::from(c.region.end() > region.end().max(c.region.base))
                                    })
                                    .sum();
                                assert!(pieces > MAX_CLAIMS, "{pieces} pieces");
                                outcomes[1] += 1;
                                false
                            }
                            (None, Err(FrameError::FreeListFull { op: "release", .. })) => {
                                assert_eq!(a.free_ranges().count(), MAX_FREE_RANGES);
                                outcomes[1] += 1;
                                false
                            }
                            (want, got) => panic!("release {region}: model unclaimed at {want:?}, got {got:?}"),
                        }
                    }
                };
                if !succeeded {
                    assert_eq!(snapshot(&a), before, "a refused operation changed the state");
                }
                check_against(&a, &m);
            }
        }
        // Every kind of outcome happened: successes, each refusal, and full lists.
        assert!(outcomes.iter().all(|&n| n > 0), "outcomes {outcomes:?}");
    }
}
