//! Starting secondary CPUs (AArch64): what the stub's `secondary_entry`
//! reads with its MMU off, and the spin-table release.

use aarch64_cpu::registers::*;
use core::arch::asm;

/// Most CPUs the hypervisor runs on.
pub const NR_CPUS: usize = 8;
/// Stack of each secondary CPU.
const STACK_SIZE: usize = 16 << 10;
/// Marks a used slot of [`SecondaryBoot::mpidr`] (MPIDR bit 63 is RES0).
const VALID: u64 = 1 << 63;

/// Read by `secondary_entry` with the MMU off (layout shared with head.S).
#[repr(C, align(64))]
pub struct SecondaryBoot {
    ttbr: u64,
    tcr: u64,
    mair: u64,
    sctlr: u64,
    vbar: u64,
    entry: u64,
    mpidr: [u64; NR_CPUS],
    stack_top: [u64; NR_CPUS],
}

const _: () = assert!(core::mem::offset_of!(SecondaryBoot, mair) == 16); // SB_MAIR
const _: () = assert!(core::mem::offset_of!(SecondaryBoot, vbar) == 32); // SB_VBAR
const _: () = assert!(core::mem::offset_of!(SecondaryBoot, mpidr) == 48); // SB_MPIDR
const _: () = assert!(core::mem::offset_of!(SecondaryBoot, stack_top) == 48 + 8 * NR_CPUS); // SB_STACK

#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
static mut secondary_boot: SecondaryBoot =
    SecondaryBoot { ttbr: 0, tcr: 0, mair: 0, sctlr: 0, vbar: 0, entry: 0, mpidr: [0; NR_CPUS], stack_top: [0; NR_CPUS] };

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);
static mut STACKS: [Stack; NR_CPUS] = [const { Stack([0; STACK_SIZE]) }; NR_CPUS];

unsafe extern "C" {
    fn secondary_entry();
    fn armature_secondary_main(cpu: usize) -> !;
}

/// This CPU's MPIDR affinity (Aff3..Aff0).
pub fn mpidr() -> u64 {
    MPIDR_EL1.get() & crate::dt::MPIDR_AFFINITY_MASK
}

/// Virtual address of `secondary_entry` (the caller turns it into the
/// physical address in the relocated image).
pub fn secondary_entry_va() -> usize {
    secondary_entry as *const () as usize
}

/// The stack bounds of logical CPU `cpu` (`cpu >= 1`).
pub fn secondary_stack(cpu: usize) -> (usize, usize) {
    let base = (&raw const STACKS) as usize + cpu * STACK_SIZE;
    (base, base + STACK_SIZE)
}

/// Cleans `[start, start + len)` to the point of coherency, then `dsb sy`.
pub fn clean_to_poc(start: usize, len: usize) {
    // CTR_EL0.DminLine (bits 19:16): log2 of the smallest D-cache line in
    // words. (aarch64-cpu has no CTR_EL0.)
    let ctr: u64;
    // SAFETY: reads an ID register.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    let line = 4usize << ((ctr >> 16) & 0xf);
    let mut a = start & !(line - 1);
    while a < start + len {
        // SAFETY: cache maintenance on memory of ours; no effect on contents.
        unsafe { asm!("dc cvac, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += line;
    }
    // SAFETY: barrier only.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Fills the table `secondary_entry` reads: the bring-up tables at
/// `bringup_root`, this CPU's translation and exception settings, and the
/// MPIDR of each logical CPU (`mpidrs[i]` for CPU `i`; CPU 0, the boot CPU,
/// is never started). Cleaned to the point of coherency: the secondaries
/// read it with their MMU off.
pub fn prepare(bringup_root: u64, mpidrs: &[Option<u64>]) {
    let p = &raw mut secondary_boot;
    // SAFETY: only the boot CPU writes the table, before starting anyone.
    let b = unsafe { &mut *p };
    b.ttbr = bringup_root;
    b.tcr = TCR_EL2.get();
    b.mair = MAIR_EL2.get();
    b.sctlr = SCTLR_EL2.get();
    b.vbar = VBAR_EL2.get();
    b.entry = armature_secondary_main as *const () as usize as u64;
    for cpu in 0..NR_CPUS {
        let m = mpidrs.get(cpu).copied().flatten().filter(|_| cpu != 0);
        b.mpidr[cpu] = m.map_or(0, |m| m | VALID);
        b.stack_top[cpu] = if cpu == 0 { 0 } else { secondary_stack(cpu).1 as u64 };
    }
    clean_to_poc(p as usize, core::mem::size_of::<SecondaryBoot>());
}

/// Spin-table release: writes `entry_pa` to the release address (mapped at
/// `release_va`), cleans it to the point of coherency and wakes waiters.
///
/// # Safety
/// `release_va` must map the CPU's `cpu-release-addr` read/write.
pub unsafe fn spin_table_release(release_va: usize, entry_pa: u64) {
    // SAFETY: the caller guarantees the mapping.
    unsafe { (release_va as *mut u64).write_volatile(entry_pa) };
    clean_to_poc(release_va, 8);
    // SAFETY: wakes CPUs waiting in wfe.
    unsafe { asm!("sev", options(nomem, nostack, preserves_flags)) };
}

/// Waits for an event or an interrupt (idle, or between polls).
pub fn wait() {
    aarch64_cpu::asm::wfe();
}
