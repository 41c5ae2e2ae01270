//! The boot inputs checked against the machine before anything is copied
//! (AArch64, MMU on, boot tables live): the DTB readable to its
//! `totalsize`, every `/memory` bank backed by something that answers, and
//! the `/chosen` boot modules inside RAM and clear of one another, the DTB,
//! reserved memory and the hypervisor's own load region. Each failure is a
//! fatal error naming the node, the address range and what is wrong.

use super::fatal_error as fatal;
use crate::arch::probe;
use crate::bootcheck::{self, Keep};
use crate::dt::{ChosenModules, DeviceTree, Region, Regions, Reserved};
use armature_early::layout::{ALIAS_VA, IMAGE_WINDOW, PAGE};
use armature_early::tables::Perm;

/// Where one page is mapped at a time to probe physical memory: above the
/// relocation's copy window (ALIAS_VA), unused at this point.
const PROBE_VA: u64 = ALIAS_VA + IMAGE_WINDOW;
/// Steps between probes inside a bank (its first and last page are always
/// probed).
const PROBE_STEP: u64 = 256 << 20;

/// Checks that the DTB at `va` (physical `pa`) can be read up to its
/// header's `totalsize` (the early code mapped a 4 MiB window around it).
pub fn check_dtb(va: usize, pa: u64) {
    if !probe::readable(va as u64) {
        fatal(format_args!("device tree at {pa:#x}: its header cannot be read (nothing answers there)"));
    }
    // SAFETY: the first 8 bytes were just read without a fault.
    let total = u32::from_be(unsafe { core::ptr::read_volatile((va + 4) as *const u32) }) as u64;
    let total = total.min(crate::dt::MAX_DT_SIZE as u64);
    // One read per page the blob touches (a page answers as a whole).
    let end = va as u64 + total.max(8);
    let mut at = va as u64 & !7;
    loop {
        if !probe::readable(at) {
            fatal(format_args!(
                "device tree at {pa:#x}: its header says totalsize {total:#x} bytes (to {:#x}), but nothing \
                 answers at {:#x}: the blob runs past the end of RAM",
                pa + total - 1,
                pa + (at - va as u64)
            ));
        }
        at = (at | (PAGE - 1)) + 1;
        if at >= end {
            break;
        }
    }
}

/// Whether the page at physical `pa` answers a read.
fn probe_pa(pa: u64) -> bool {
    let page = pa & !(PAGE - 1);
    if armature_early::boot_map(PROBE_VA, page, PAGE, Perm::ReadOnly).is_err() {
        return true; // cannot tell: do not refuse
    }
    let ok = probe::readable(PROBE_VA + (pa - page));
    let _ = armature_early::boot_unmap(PROBE_VA, PAGE);
    ok
}

/// Checks that every bank answers reads: its first and last page, and every
/// [`PROBE_STEP`] in between.
pub fn check_banks(dt: &DeviceTree<'_>, banks: &Regions) {
    for b in banks.as_slice() {
        let first = b.base.next_multiple_of(PAGE);
        let last = (b.end() - 1) & !(PAGE - 1);
        let mut at = first;
        let bad = loop {
            if !probe_pa(at) {
                break Some(at);
            }
            if at >= last {
                break None;
            }
            at = (at + PROBE_STEP).min(last);
        };
        if let Some(at) = bad {
            let node = dt.memory_node_at(b.base);
            fatal(format_args!(
                "{}: reg says RAM at {b} ({} MiB), but nothing answers at {at:#x}: the node is larger than the \
                 machine's memory",
                node.as_ref().map_or("a /memory node", |n| n.as_str()),
                b.size >> 20
            ));
        }
    }
}

/// Reads and checks the boot modules of `/chosen`: inside one RAM bank,
/// not empty, clear of one another, of the DTB (`dtb`), of `reserved`
/// memory and of the hypervisor's load region (`image`).
pub fn check_modules<'a>(
    dt: &DeviceTree<'a>,
    banks: &Regions,
    reserved: &Reserved<'_>,
    dtb: Region,
    image: Region,
) -> ChosenModules<'a> {
    let modules = match dt.chosen_modules() {
        Ok(m) => m,
        Err(e) => fatal(format_args!("boot modules: {e}")),
    };
    let mut keep = [Keep { what: "", region: Region::default() }; 2 + 2 * crate::dt::MAX_RESERVED];
    keep[0] = Keep { what: "the device tree", region: dtb };
    keep[1] = Keep { what: "the hypervisor's load region", region: image };
    let mut n = 2;
    for r in reserved.regions() {
        if let Some(slot) = keep.get_mut(n) {
            *slot = Keep { what: "reserved memory", region: r };
            n += 1;
        }
    }
    if let Err(e) = bootcheck::check_modules(modules.as_slice(), banks.as_slice(), &keep[..n]) {
        fatal(format_args!("{e}"));
    }
    modules
}
