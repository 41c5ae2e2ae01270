//! EL2 translation-table maintenance and the relocation switch (AArch64).
//!
//! [`LiveMaintenance`] is what the LPAE library calls when it edits tables:
//! nothing while the tables are being built (no CPU uses them), barriers and
//! TLB invalidation once they are live; [`El2Maintenance`] is it for EL2's
//! own tables (stage 2 has its own invalidation in `guest`). [`relocate_and_switch`] copies the
//! image and moves the CPU onto the runtime tables, from the identity page.

use crate::mm::addr::PhysAddr;
use crate::mm::lpae::{EntryWrite, Invalidation, Maintenance, TablePage};
use aarch64_cpu::asm::barrier;
use core::arch::asm;
use core::ptr::NonNull;

/// How one translation regime's TLB entries are invalidated.
pub trait TlbInvalidate: Default {
    /// Invalidates the entries `what` covers and waits for completion
    /// (the table store is already visible: `dsb ishst` came before).
    fn invalidate(what: Invalidation);
}

/// Barrier and TLB maintenance for a set of tables: nothing while they are
/// being built (no CPU walks them), once live a `dsb ishst` after each store
/// (walks read through the cache: inner write-back in TCR/VTCR, so making
/// the store visible is enough) and `T`'s invalidation.
#[derive(Debug, Default)]
pub struct LiveMaintenance<T: TlbInvalidate> {
    live: bool,
    _tlb: core::marker::PhantomData<T>,
}

impl<T: TlbInvalidate> LiveMaintenance<T> {
    /// For tables no CPU walks yet: no maintenance at all.
    pub const fn building() -> Self {
        Self { live: false, _tlb: core::marker::PhantomData }
    }

    /// From now on a CPU may walk the tables.
    pub fn set_live(&mut self) {
        self.live = true;
    }

    fn publish(&self) {
        if self.live {
            barrier::dsb(barrier::ISHST);
        }
    }
}

impl<T: TlbInvalidate> Maintenance for LiveMaintenance<T> {
    fn entry_written(&mut self, _: &EntryWrite) {
        self.publish();
    }

    fn table_filled(&mut self, _: PhysAddr, _: NonNull<TablePage>) {
        self.publish();
    }

    fn invalidate(&mut self, what: Invalidation) {
        if self.live {
            barrier::dsb(barrier::ISHST);
            T::invalidate(what);
        }
    }
}

/// The hypervisor's own (EL2) tables, once in TTBR0_EL2 of some CPU.
pub type El2Maintenance = LiveMaintenance<El2Tlb>;

/// EL2 TLB invalidation by VA (all of EL2 for ranges over 64 pages).
#[derive(Debug, Default)]
pub struct El2Tlb;

fn tlbi_va(va: u64) {
    // SAFETY: TLB maintenance by VA for EL2; no memory effects.
    unsafe { asm!("tlbi vae2is, {}", in(reg) va >> 12, options(nostack, preserves_flags)) };
}

impl TlbInvalidate for El2Tlb {
    fn invalidate(what: Invalidation) {
        match what {
            Invalidation::Leaf { input, .. } | Invalidation::Walk { input, .. } => tlbi_va(input),
            Invalidation::Range { input, size } if size <= 64 << 12 => {
                (input..input + size).step_by(1 << 12).for_each(tlbi_va);
            }
            // SAFETY: invalidates every EL2 TLB entry; no memory effects.
            Invalidation::Range { .. } => unsafe { asm!("tlbi alle2is", options(nostack, preserves_flags)) },
        }
        barrier::dsb(barrier::ISH);
        barrier::isb(barrier::SY);
    }
}

unsafe extern "C" {
    fn relocate_and_switch_asm(copy_va: u64, size: u64, ttbr0: u64, switch_pa: u64);
    static switch_ttbr: u8;
}

/// Copies the running image (`size` bytes from its start) to the copy
/// mapped at `copy_va`, then jumps to `switch_ttbr` in the *copy*, at its
/// identity-mapped physical address `copy_idmap_pa` + offset, which turns the
/// MMU off, installs `ttbr0` and turns it back on. Returns on the copy.
///
/// # Safety
/// `copy_va` must map the destination read/write in the current tables; the
/// copy's identity page must be identity-mapped in both the current tables
/// and the tables at `ttbr0`; the tables at `ttbr0` must map the image at the
/// same virtual addresses onto the copy. No other CPU may run.
pub unsafe fn relocate_and_switch(copy_va: u64, size: u64, ttbr0: PhysAddr, copy_idmap_pa: u64) {
    let switch = (&raw const switch_ttbr) as u64;
    let idmap = crate::arch::idmap_start() as u64;
    let switch_pa = copy_idmap_pa + (switch - idmap);
    // SAFETY: the caller guarantees the mappings the routine depends on.
    unsafe { relocate_and_switch_asm(copy_va, size, ttbr0.as_u64(), switch_pa) };
}
