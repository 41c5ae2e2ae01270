//! Which CPU this is, and which CPUs are online.
//!
//! Every CPU keeps its logical number (0 for the boot CPU, then in device
//! tree order) in a per-CPU register (`TPIDR_EL2` on AArch64), set by
//! `arch::init_cpu`. The online mask is what the bring-up waits on and what
//! a crash dump reports.

use core::sync::atomic::{AtomicU64, Ordering};

static ONLINE: AtomicU64 = AtomicU64::new(1);

/// Marks logical CPU `cpu` online.
pub fn set_online(cpu: usize) {
    ONLINE.fetch_or(1 << cpu, Ordering::AcqRel);
}

/// The online mask (bit `n`: logical CPU `n`).
pub fn online_mask() -> u64 {
    ONLINE.load(Ordering::Acquire)
}

/// This CPU's logical number.
#[cfg(target_os = "none")]
pub fn this_cpu() -> usize {
    crate::arch::cpu_number()
}

/// On the host (unit tests) there is only CPU 0.
#[cfg(not(target_os = "none"))]
pub fn this_cpu() -> usize {
    0
}
