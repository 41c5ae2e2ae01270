//! The kernel heap: what `alloc` (`Box`, `Vec`, ...) allocates from.
//!
//! This module owns the heap: a buddy allocator (`buddy_system_allocator`'s
//! `Heap`, blocks of 2^k bytes up to 2 GiB) behind a spin lock, fed with
//! mapped memory by the boot path ([`init`], then [`add`] to grow it), and
//! the bookkeeping the log needs ([`stats`]). On bare-metal targets the
//! static [`HEAP`] is the `#[global_allocator]`; on the host (unit tests) it
//! is a plain static and the tests use local [`KernelHeap`]s.
//!
//! An allocation that fails logs one line saying what was asked and what
//! the heap had (`heap exhausted: 4096 bytes aligned 8 requested; heap
//! 64 KiB, 60 KiB in use`) and returns null: Rust then reports the failure
//! through the panic handler, whose crash dump stops the machine. Logging
//! happens after the heap lock is dropped, and a failure while that line is
//! being written (should the logger ever allocate) is not logged again.
//!
//! The lock is a spin lock without interrupt masking: an exception handler
//! must not allocate while it may have interrupted an allocation on the
//! same CPU.

use core::alloc::{GlobalAlloc, Layout};
use core::fmt;
use core::mem::size_of;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use buddy_system_allocator::Heap;
use spin::Mutex;

use super::addr::VirtAddr;

/// Buddy orders: blocks of up to 2^(ORDER-1) bytes (2 GiB; also the largest
/// order a 32-bit `usize` can hold).
const ORDER: usize = 32;
/// Most separate regions the heap is built from.
pub const MAX_HEAP_REGIONS: usize = 16;

/// A region given to [`init`] or [`add`] was refused (nothing was added).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapError {
    /// [`init`] on a heap that already has memory.
    AlreadyInitialised,
    /// [`add`] before [`init`].
    NotInitialised,
    /// A region that starts at address 0.
    Null {
        /// Its size.
        size: u64,
    },
    /// A region that runs past the end of the address space (or of `usize`).
    Wraps {
        /// Its start.
        start: VirtAddr,
        /// Its size.
        size: u64,
    },
    /// A region too small to hold one word-aligned word.
    TooSmall {
        /// Its start.
        start: VirtAddr,
        /// Its size.
        size: u64,
    },
    /// A region that overlaps one the heap already has.
    Overlaps {
        /// Its start.
        start: VirtAddr,
        /// Its size.
        size: u64,
        /// The start of the region it overlaps.
        other: VirtAddr,
        /// That region's size.
        other_size: u64,
    },
    /// More than [`MAX_HEAP_REGIONS`] regions.
    TooManyRegions {
        /// The region's start.
        start: VirtAddr,
        /// Its size.
        size: u64,
    },
}

impl fmt::Display for HeapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HeapError::AlreadyInitialised => write!(f, "heap already initialised (grow it with heap::add)"),
            HeapError::NotInitialised => write!(f, "heap not initialised (heap::init comes first)"),
            HeapError::Null { size } => write!(f, "heap region of {size:#x} bytes at address 0"),
            HeapError::Wraps { start, size } => {
                write!(f, "heap region at {start}, {size:#x} bytes, runs past the end of the address space")
            }
            HeapError::TooSmall { start, size } => {
                write!(f, "heap region at {start}, {size:#x} bytes, holds no aligned word")
            }
            HeapError::Overlaps { start, size, other, other_size } => write!(
                f,
                "heap region at {start}, {size:#x} bytes, overlaps the heap's region at {other}, {other_size:#x} bytes"
            ),
            HeapError::TooManyRegions { start, size } => {
                write!(f, "heap region at {start}, {size:#x} bytes: the heap already has {MAX_HEAP_REGIONS} regions")
            }
        }
    }
}

/// An allocation the heap could not satisfy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exhausted {
    /// Bytes asked for.
    pub size: usize,
    /// Alignment asked for.
    pub align: usize,
    /// Bytes in the heap.
    pub heap_bytes: usize,
    /// Bytes in use (allocations rounded up to their buddy blocks).
    pub in_use: usize,
}

/// The line logged on a failed allocation.
impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "heap exhausted: {} bytes aligned {} requested; heap {} KiB, {} KiB in use",
            self.size,
            self.align,
            self.heap_bytes >> 10,
            self.in_use >> 10
        )
    }
}

/// The heap's numbers, for the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes in the heap.
    pub total: usize,
    /// Bytes in use (allocations rounded up to their buddy blocks).
    pub in_use: usize,
    /// Bytes asked for by the live allocations.
    pub requested: usize,
    /// Regions the heap is built from.
    pub regions: usize,
    /// Allocations that failed so far.
    pub failures: usize,
}

/// `heap: 1024 KiB in 1 region(s), 12 KiB in use (9 KiB requested), 0 failed allocation(s)`.
impl fmt::Display for HeapStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "heap: {} KiB in {} region(s), {} KiB in use ({} KiB requested), {} failed allocation(s)",
            self.total >> 10,
            self.regions,
            self.in_use >> 10,
            self.requested >> 10,
            self.failures
        )
    }
}

/// What the lock protects.
struct State {
    heap: Heap<ORDER>,
    /// `(start, end)` of every region added, as given (before alignment).
    regions: [(usize, usize); MAX_HEAP_REGIONS],
    count: usize,
}

/// A buddy heap behind a spin lock that reports its failures (see the
/// module doc). [`HEAP`] is the hypervisor's; tests make their own.
pub struct KernelHeap {
    state: Mutex<State>,
    failures: AtomicUsize,
    /// Set while a failure is being reported, so that a failure inside the
    /// report is not reported again (and cannot recurse).
    reporting: AtomicBool,
}

impl Default for KernelHeap {
    fn default() -> Self {
        Self::new()
    }
}

impl KernelHeap {
    /// An empty heap: every allocation fails until memory is added.
    pub const fn new() -> Self {
        Self {
            state: Mutex::new(State { heap: Heap::new(), regions: [(0, 0); MAX_HEAP_REGIONS], count: 0 }),
            failures: AtomicUsize::new(0),
            reporting: AtomicBool::new(false),
        }
    }

    /// Gives the heap its first region.
    ///
    /// # Safety
    /// As [`KernelHeap::add`].
    pub unsafe fn init(&self, start: VirtAddr, size: u64) -> Result<(), HeapError> {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { self.add_region(start, size, true) }
    }

    /// Grows the heap by a region.
    ///
    /// # Safety
    /// `[start, start + size)` must be mapped, writable, used by nothing
    /// else, and stay so for as long as the heap is used: the heap writes
    /// its free lists into it at once and hands it out.
    pub unsafe fn add(&self, start: VirtAddr, size: u64) -> Result<(), HeapError> {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { self.add_region(start, size, false) }
    }

    /// `first`: for [`init`](Self::init) (the heap must be empty), else for
    /// [`add`](Self::add) (it must not be).
    ///
    /// # Safety
    /// As [`KernelHeap::add`].
    unsafe fn add_region(&self, start: VirtAddr, size: u64, first: bool) -> Result<(), HeapError> {
        let word = size_of::<usize>();
        let begin = usize::try_from(start.as_u64()).map_err(|_| HeapError::Wraps { start, size })?;
        let end =
            usize::try_from(size).ok().and_then(|s| begin.checked_add(s)).ok_or(HeapError::Wraps { start, size })?;
        if begin == 0 {
            return Err(HeapError::Null { size });
        }
        // What the buddy heap would use: whole words (it asserts that much).
        let (aligned_begin, aligned_end) = (begin.div_ceil(word) * word, end / word * word);
        if aligned_end <= aligned_begin {
            return Err(HeapError::TooSmall { start, size });
        }
        let mut s = self.state.lock();
        if first && s.count > 0 {
            return Err(HeapError::AlreadyInitialised);
        }
        if !first && s.count == 0 {
            return Err(HeapError::NotInitialised);
        }
        if let Some(&(b, e)) = s.regions[..s.count].iter().find(|&&(b, e)| begin < e && b < end) {
            return Err(HeapError::Overlaps {
                start,
                size,
                other: VirtAddr::new(b as u64),
                other_size: (e - b) as u64,
            });
        }
        let count = s.count;
        let slot = s.regions.get_mut(count).ok_or(HeapError::TooManyRegions { start, size })?;
        *slot = (begin, end);
        s.count += 1;
        // SAFETY: the caller guarantees the memory is ours, mapped and
        // writable; it overlaps no region already added (checked above), and
        // the range is non-empty, word aligned and not at address 0 (which
        // the buddy heap cannot handle).
        unsafe { s.heap.add_to_heap(aligned_begin, aligned_end) };
        Ok(())
    }

    /// Allocates, or says why not (without reporting it).
    pub fn try_alloc(&self, layout: Layout) -> Result<NonNull<u8>, Exhausted> {
        let mut s = self.state.lock();
        s.heap.alloc(layout).map_err(|()| Exhausted {
            size: layout.size(),
            align: layout.align(),
            heap_bytes: s.heap.stats_total_bytes(),
            in_use: s.heap.stats_alloc_actual(),
        })
    }

    /// Allocates; on failure counts it, calls `report` (unless a report is
    /// already under way) and returns null. The global allocator reports
    /// through `log::error!`.
    pub fn alloc_or_report(&self, layout: Layout, report: impl FnOnce(&Exhausted)) -> *mut u8 {
        match self.try_alloc(layout) {
            Ok(p) => p.as_ptr(),
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if !self.reporting.swap(true, Ordering::Acquire) {
                    report(&e);
                    self.reporting.store(false, Ordering::Release);
                }
                core::ptr::null_mut()
            }
        }
    }

    /// Returns an allocation.
    ///
    /// # Safety
    /// `ptr` must come from this heap with this `layout` and not have been
    /// returned yet.
    pub unsafe fn dealloc(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { self.state.lock().heap.dealloc(ptr, layout) }
    }

    /// The heap's numbers.
    pub fn stats(&self) -> HeapStats {
        let s = self.state.lock();
        HeapStats {
            total: s.heap.stats_total_bytes(),
            in_use: s.heap.stats_alloc_actual(),
            requested: s.heap.stats_alloc_user(),
            regions: s.count,
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

// SAFETY: `alloc` returns null or a block of at least `layout.size()` bytes
// aligned to `layout.align()` that no other live allocation overlaps (the
// buddy heap hands out each block once, sized and aligned to the next power
// of two at least the size and the alignment); `dealloc` passes GlobalAlloc's
// own contract on to the buddy heap.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.alloc_or_report(layout, |e| log::error!("{e}"))
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(ptr) = NonNull::new(ptr) {
            // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc` with `layout`.
            unsafe { KernelHeap::dealloc(self, ptr, layout) }
        }
    }
}

/// The hypervisor's heap: the global allocator on bare-metal targets.
#[cfg_attr(target_os = "none", global_allocator)]
pub static HEAP: KernelHeap = KernelHeap::new();

/// Gives [`HEAP`] its first region (mapped memory, by virtual address).
///
/// # Safety
/// As [`KernelHeap::add`].
pub unsafe fn init(start: VirtAddr, size: u64) -> Result<(), HeapError> {
    // SAFETY: the caller's guarantee, passed on.
    unsafe { HEAP.init(start, size) }
}

/// Grows [`HEAP`] by a region.
///
/// # Safety
/// As [`KernelHeap::add`].
pub unsafe fn add(start: VirtAddr, size: u64) -> Result<(), HeapError> {
    // SAFETY: the caller's guarantee, passed on.
    unsafe { HEAP.add(start, size) }
}

/// [`HEAP`]'s numbers, for the log.
pub fn stats() -> HeapStats {
    HEAP.stats()
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::alloc::{alloc_zeroed, dealloc};
    use std::string::ToString;
    use std::vec::Vec;

    /// Memory from the host allocator for a test heap, aligned to its size
    /// (rounded up to a power of two), so that buddy blocks span all of it.
    struct Arena {
        ptr: *mut u8,
        size: usize,
    }

    impl Arena {
        fn new(size: usize) -> Self {
            // SAFETY: the layout has a non-zero size.
            let ptr = unsafe { alloc_zeroed(Self::layout(size)) };
            assert!(!ptr.is_null());
            Self { ptr, size }
        }

        fn layout(size: usize) -> Layout {
            Layout::from_size_align(size, size.next_power_of_two()).unwrap()
        }

        fn at(&self, offset: usize) -> VirtAddr {
            VirtAddr::from_ptr(self.ptr.wrapping_add(offset))
        }

        fn contains(&self, p: *mut u8, len: usize) -> bool {
            let (p, base) = (p as usize, self.ptr as usize);
            base <= p && p + len <= base + self.size
        }
    }

    impl Drop for Arena {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { dealloc(self.ptr, Self::layout(self.size)) }
        }
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    /// A heap over `arena[offset..offset + size]`.
    fn heap_over(arena: &Arena, offset: usize, size: usize) -> KernelHeap {
        let heap = KernelHeap::new();
        // SAFETY: the arena outlives the heap (declared first in every test) and
        // only this heap uses that part of it.
        unsafe { heap.init(arena.at(offset), size as u64) }.unwrap();
        heap
    }

    #[test]
    fn allocations_are_aligned_disjoint_and_inside_the_heap() {
        let arena = Arena::new(64 << 10);
        let heap = heap_over(&arena, 0, 64 << 10);
        let mut live: Vec<(*mut u8, Layout)> = Vec::new();
        for i in 0..48usize {
            let l = layout(1 + (i * 37) % 900, 1 << (i % 9));
            let p = heap.try_alloc(l).unwrap().as_ptr();
            assert!((p as usize).is_multiple_of(l.align()), "{p:p} not aligned to {}", l.align());
            assert!(arena.contains(p, l.size()));
            // SAFETY: `p` is a live allocation of `l.size()` bytes.
            unsafe { p.write_bytes(i as u8, l.size()) };
            live.push((p, l));
        }
        for (i, &(p, l)) in live.iter().enumerate() {
            // SAFETY: as above; nothing else wrote to it if allocations are disjoint.
            let bytes = unsafe { core::slice::from_raw_parts(p, l.size()) };
            assert!(bytes.iter().all(|&b| b == i as u8), "allocation {i} was overwritten");
        }
        let stats = heap.stats();
        assert_eq!(stats.requested, live.iter().map(|(_, l)| l.size()).sum::<usize>());
        assert!(stats.in_use >= stats.requested);
        for (p, l) in live {
            // SAFETY: allocated above with `l`, returned once.
            unsafe { heap.dealloc(NonNull::new(p).unwrap(), l) };
        }
        let stats = heap.stats();
        assert_eq!((stats.total, stats.in_use, stats.requested, stats.regions), (64 << 10, 0, 0, 1));
        // Everything merged back: the whole heap is one block again.
        let all = heap.try_alloc(layout(64 << 10, 8)).unwrap();
        assert_eq!(all.as_ptr(), arena.ptr);
    }

    #[test]
    fn exhaustion_is_reported_once_with_what_was_asked() {
        let arena = Arena::new(4 << 10);
        let heap = heap_over(&arena, 0, 4 << 10);
        let small = heap.try_alloc(layout(1000, 8)).unwrap();
        let mut reports = Vec::new();
        let p = heap.alloc_or_report(layout(4096, 64), |e| reports.push(*e));
        assert!(p.is_null());
        assert_eq!(reports, [Exhausted { size: 4096, align: 64, heap_bytes: 4096, in_use: 1024 }]);
        assert_eq!(reports[0].to_string(), "heap exhausted: 4096 bytes aligned 64 requested; heap 4 KiB, 1 KiB in use");
        // Through the GlobalAlloc interface: null, counted (and logged).
        // SAFETY: a valid non-zero-size layout.
        let p = unsafe { GlobalAlloc::alloc(&heap, layout(8192, 8)) };
        assert!(p.is_null());
        assert_eq!(heap.stats().failures, 2);
        // A failure inside the report is counted but not reported again, and
        // the heap lock is not held while reporting (this would deadlock).
        let mut nested = 0;
        let p = heap.alloc_or_report(layout(8192, 8), |_| {
            let q = heap.alloc_or_report(layout(16384, 8), |_| nested += 1);
            assert!(q.is_null());
        });
        assert!(p.is_null());
        assert_eq!(nested, 0);
        assert_eq!(heap.stats().failures, 4);
        // Reporting works again afterwards.
        let mut again = 0;
        assert!(heap.alloc_or_report(layout(8192, 8), |_| again += 1).is_null());
        assert_eq!(again, 1);
        // SAFETY: allocated above with this layout.
        unsafe { heap.dealloc(small, layout(1000, 8)) };
        // SAFETY: null is ignored by dealloc.
        unsafe { GlobalAlloc::dealloc(&heap, core::ptr::null_mut(), layout(8, 8)) };
        assert_eq!(heap.stats().in_use, 0);
    }

    #[test]
    fn add_grows_the_heap() {
        let arena = Arena::new(32 << 10);
        let heap = heap_over(&arena, 0, 4 << 10);
        // `try_alloc` fails without counting or reporting.
        assert!(heap.try_alloc(layout(8 << 10, 8)).is_err());
        // SAFETY: a part of the arena the heap does not have yet.
        unsafe { heap.add(arena.at(16 << 10), 16 << 10) }.unwrap();
        let p = heap.try_alloc(layout(8 << 10, 8)).unwrap();
        assert!(p.as_ptr() as usize >= arena.ptr as usize + (16 << 10));
        assert!(arena.contains(p.as_ptr(), 8 << 10));
        let stats = heap.stats();
        assert_eq!((stats.total, stats.in_use, stats.regions), (20 << 10, 8 << 10, 2));
        assert_eq!(
            stats.to_string(),
            "heap: 20 KiB in 2 region(s), 8 KiB in use (8 KiB requested), 0 failed allocation(s)"
        );
        // An unaligned region is trimmed to whole words.
        // SAFETY: another unused part of the arena.
        unsafe { heap.add(arena.at((8 << 10) + 3), 64) }.unwrap();
        assert_eq!(heap.stats().total, (20 << 10) + 56);
    }

    #[test]
    fn bad_regions_are_refused() {
        let arena = Arena::new(16 << 10);
        let heap = KernelHeap::new();
        // SAFETY (every call below): the regions are refused before any memory
        // is touched, or lie in the arena, unused by anything else.
        unsafe {
            assert_eq!(heap.add(arena.at(0), 4096), Err(HeapError::NotInitialised));
            assert_eq!(heap.init(VirtAddr::new(0), 4096), Err(HeapError::Null { size: 4096 }));
            let top = VirtAddr::new(u64::MAX - 10);
            assert_eq!(heap.init(top, 100), Err(HeapError::Wraps { start: top, size: 100 }));
            let odd = arena.at(1);
            assert_eq!(heap.init(odd, 6), Err(HeapError::TooSmall { start: odd, size: 6 }));
            assert_eq!(heap.stats(), HeapStats::default());

            heap.init(arena.at(0), 1024).unwrap();
            assert_eq!(heap.init(arena.at(4096), 1024), Err(HeapError::AlreadyInitialised));
            let e = heap.add(arena.at(512), 1024).unwrap_err();
            assert_eq!(
                e,
                HeapError::Overlaps { start: arena.at(512), size: 1024, other: arena.at(0), other_size: 1024 }
            );
            assert!(
                e.to_string().ends_with(&std::format!("overlaps the heap's region at {}, 0x400 bytes", arena.at(0)))
            );
            // Touching is not overlapping.
            heap.add(arena.at(1024), 64).unwrap();
            for i in 2..MAX_HEAP_REGIONS {
                heap.add(arena.at(4096 + i * 128), 64).unwrap();
            }
            let last = arena.at(12 << 10);
            let e = heap.add(last, 64).unwrap_err();
            assert_eq!(e, HeapError::TooManyRegions { start: last, size: 64 });
            assert_eq!(
                e.to_string(),
                std::format!("heap region at {last}, 0x40 bytes: the heap already has 16 regions")
            );
        }
        let stats = heap.stats();
        assert_eq!((stats.regions, stats.total), (MAX_HEAP_REGIONS, 1024 + 64 * (MAX_HEAP_REGIONS - 1)));
        assert_eq!(HeapError::NotInitialised.to_string(), "heap not initialised (heap::init comes first)");
        assert_eq!(HeapError::Null { size: 0x1000 }.to_string(), "heap region of 0x1000 bytes at address 0");
    }

    /// The static heap and its free functions (on the host it is not the
    /// global allocator; this is the only test that touches it).
    #[test]
    fn static_heap_functions() {
        // Leaked: the static heap keeps using it after the test.
        let arena = core::mem::ManuallyDrop::new(Arena::new(8 << 10));
        // SAFETY: leaked memory that nothing else uses.
        unsafe {
            assert_eq!(add(arena.at(0), 4096), Err(HeapError::NotInitialised));
            init(arena.at(0), 4096).unwrap();
            add(arena.at(4096), 4096).unwrap();
        }
        let p = HEAP.try_alloc(layout(100, 16)).unwrap();
        let s = stats();
        assert_eq!((s.total, s.in_use, s.requested, s.regions), (8 << 10, 128, 100, 2));
        // SAFETY: allocated just above with this layout.
        unsafe { HEAP.dealloc(p, layout(100, 16)) };
        assert_eq!(stats().in_use, 0);
    }
}
