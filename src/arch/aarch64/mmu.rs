//! EL2 translation-table maintenance and the relocation switch (AArch64).
//!
//! [`El2Maintenance`] is what the LPAE library calls when it edits tables:
//! nothing while the tables are being built (no CPU uses them), barriers and
//! TLB invalidation once they are live. [`relocate_and_switch`] copies the
//! image and moves the CPU onto the runtime tables, from the identity page.

use crate::mm::addr::PhysAddr;
use crate::mm::lpae::{EntryWrite, Invalidation, Maintenance, TablePage};
use core::arch::asm;
use core::ptr::NonNull;

/// TLB and barrier maintenance for the hypervisor's own (EL2) tables.
#[derive(Debug, Default)]
pub struct El2Maintenance {
    live: bool,
}

impl El2Maintenance {
    /// For tables no CPU walks yet: no maintenance at all.
    pub const fn building() -> Self {
        Self { live: false }
    }

    /// From now on the tables are in TTBR0_EL2 of some CPU.
    pub fn set_live(&mut self) {
        self.live = true;
    }
}

fn tlbi_va(va: u64) {
    // SAFETY: TLB maintenance by VA for EL2; orders after the table write.
    unsafe { asm!("dsb ishst", "tlbi vae2is, {}", options(nostack, preserves_flags), in(reg) va >> 12) };
}

fn sync() {
    // SAFETY: barriers only.
    unsafe { asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
}

impl Maintenance for El2Maintenance {
    fn entry_written(&mut self, _: &EntryWrite) {
        if self.live {
            // The walker reads through the cache (inner write-back walks in
            // TCR_EL2), so making the store visible is enough.
            // SAFETY: barrier only.
            unsafe { asm!("dsb ishst", options(nostack, preserves_flags)) };
        }
    }

    fn table_filled(&mut self, _: PhysAddr, _: NonNull<TablePage>) {
        if self.live {
            // SAFETY: barrier only.
            unsafe { asm!("dsb ishst", options(nostack, preserves_flags)) };
        }
    }

    fn invalidate(&mut self, what: Invalidation) {
        if !self.live {
            return;
        }
        match what {
            Invalidation::Leaf { input, .. } | Invalidation::Walk { input, .. } => tlbi_va(input),
            Invalidation::Range { input, size } if size <= 64 << 12 => {
                let mut va = input;
                while va < input + size {
                    tlbi_va(va);
                    va += 1 << 12;
                }
            }
            Invalidation::Range { .. } => {
                // SAFETY: invalidates every EL2 TLB entry; always safe.
                unsafe { asm!("dsb ishst", "tlbi alle2is", options(nostack, preserves_flags)) };
            }
        }
        sync();
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
