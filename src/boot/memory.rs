//! The hypervisor's memory once it runs from its final place (AArch64): the
//! physical page allocator and the heap.
//!
//! Free memory is every RAM bank minus what must stay: the hypervisor image
//! (at its new place), the firmware's DTB, the boot modules and reserved
//! memory. The image's original load region is *not* claimed: relocation
//! released it. The heap is carved from the allocator and reached through
//! the direct map.

use super::relocate::DIRECTMAP_VA;
use crate::dt::{Region, Regions, Reserved};
use crate::mm::addr::{PAGE_SIZE, VirtAddr};
use crate::mm::frames::{Claim, FrameAllocator, FrameError};
use crate::mm::heap::{self, HeapError};
use core::fmt;
use log::info;

/// Size of the initial heap.
pub const HEAP_SIZE: u64 = 2 << 20;

/// The physical page allocator.
pub static FRAMES: spin::Mutex<Option<FrameAllocator<'static>>> = spin::Mutex::new(None);

/// Why memory could not be set up.
#[derive(Debug)]
pub enum MemError {
    /// The page allocator refused.
    Frames(FrameError<'static>),
    /// The heap refused its region.
    Heap(HeapError),
    /// More reserved-memory nodes than the DT reader keeps: unknown memory
    /// could be handed out, so refuse.
    ReservedDropped(usize),
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemError::Frames(e) => write!(f, "page allocator: {e}"),
            MemError::Heap(e) => write!(f, "heap: {e}"),
            MemError::ReservedDropped(n) => {
                write!(f, "{n} /reserved-memory node(s) beyond what is tracked: cannot tell free memory from reserved")
            }
        }
    }
}

/// Sets up the page allocator and the heap over the DT's memory `banks`,
/// minus its `reserved` memory and boot `modules`. `image` is the
/// hypervisor's (new) place, `dtb` the firmware's device tree blob.
#[allow(clippy::result_large_err)]
pub fn init(
    banks: &Regions,
    reserved: &Reserved<'static>,
    modules: &Regions,
    image: Region,
    dtb: Region,
) -> Result<(), MemError> {
    const MAX_CLAIMS: usize = 2 + crate::dt::MAX_BANKS;
    let mut claims = [Claim::new(Region::default(), ""); MAX_CLAIMS];
    claims[0] = Claim::new(image, "hypervisor image");
    claims[1] = Claim::new(dtb, "firmware DTB");
    let mut n = 2;
    for m in modules.as_slice() {
        if let Some(slot) = claims.get_mut(n) {
            *slot = Claim::new(*m, "boot module");
            n += 1;
        }
    }
    let mut frames = FrameAllocator::new(banks.as_slice(), &claims[..n]).map_err(MemError::Frames)?;
    if reserved.dropped() > 0 {
        return Err(MemError::ReservedDropped(reserved.dropped()));
    }
    frames.claim_reserved(reserved).map_err(MemError::Frames)?;
    frames.report(&mut |line| info!("  {line}"));

    let pa = frames.alloc(HEAP_SIZE / PAGE_SIZE, 1).map_err(MemError::Frames)?;
    // SAFETY: the pages were just allocated for the heap alone, and the
    // direct map covers all RAM read/write.
    unsafe { heap::init(VirtAddr::new(DIRECTMAP_VA + pa.as_u64()), HEAP_SIZE) }.map_err(MemError::Heap)?;
    info!("Heap: {} KiB at {pa} (direct map); {}", HEAP_SIZE >> 10, heap::stats());
    *FRAMES.lock() = Some(frames);
    Ok(())
}
