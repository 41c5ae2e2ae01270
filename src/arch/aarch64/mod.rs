//! AArch64 support: EL2 without VHE (the hypervisor runs at EL2 with its own
//! translation regime; guests run at EL1/EL0).
//!
//! The entry stub is `boot/aarch64/head.S`, included here; the exception
//! vectors there call into [`exception`].

pub mod exception;
pub mod gicv3;
pub mod guest;
pub mod mmu;
pub mod probe;
pub mod smp;

pub use smp::clean_to_poc as clean_dcache_range;

use super::Privilege;
use crate::dt::Conduit;
use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;
use core::arch::{asm, global_asm};

global_asm!(include_str!("../../../boot/aarch64/head.S"));

/// Architecture name for the log.
pub const NAME: &str = "aarch64";

/// The exception level the CPU is at now.
pub fn privilege() -> Privilege {
    match CurrentEL.read(CurrentEL::EL) {
        2 => Privilege { is_hyp: true, text: "CurrentEL=2 (EL2)" },
        1 => Privilege {
            is_hyp: false,
            text: "CurrentEL=1 (EL1): entered below the hypervisor level; boot from firmware \
                   that enters at EL2 (QEMU: -M virt,virtualization=on)",
        },
        3 => Privilege { is_hyp: false, text: "CurrentEL=3 (EL3): the drop to EL2 failed" },
        _ => Privilege { is_hyp: false, text: "CurrentEL=0 (EL0): cannot run here" },
    }
}

/// Human-readable name of the level the stub was entered at.
pub fn entry_level_name(level: usize) -> &'static str {
    match level {
        3 => "EL3 (dropped to EL2 by the boot stub)",
        2 => "EL2",
        1 => "EL1",
        _ => "EL0",
    }
}

/// Baseline EL2 state of a CPU, and its logical number `cpu`:
/// - SCTLR_EL2: I-cache on, SP alignment checking on, alignment checking
///   off, little-endian; the MMU and D-cache bits are left as the boot stub
///   (or `secondary_entry`) set them;
/// - HCR_EL2: only RW (a lower EL is AArch64); no guest traps until domains;
/// - CPTR_EL2: nothing trapped (RES1 bits only): guests own FP/SIMD, which
///   the hypervisor itself never touches (softfloat target);
/// - MDCR_EL2: HPMN = PMCR_EL0.N (all counters to EL1/EL0), no debug traps;
/// - TPIDR_EL2: the logical CPU number.
pub fn init_cpu(cpu: usize) {
    SCTLR_EL2.modify(
        SCTLR_EL2::A::Disable + SCTLR_EL2::SA::Enable + SCTLR_EL2::I::Cacheable + SCTLR_EL2::EE::Little,
    );
    HCR_EL2.write(HCR_EL2::RW::EL1IsAarch64);
    // CPTR_EL2 (E2H = 0): bits 13:12 and 9:0 are RES1; TFP (10), TTA (20),
    // TAM (30), TCPAC (31) clear. aarch64-cpu only names TAM.
    const CPTR_EL2_RES1: u64 = 0x33ff;
    CPTR_EL2.set(CPTR_EL2_RES1);
    let pmcr: u64;
    // SAFETY: reads PMCR_EL0 (accessible at EL2).
    unsafe { asm!("mrs {}, pmcr_el0", out(reg) pmcr, options(nomem, nostack, preserves_flags)) };
    MDCR_EL2.write(MDCR_EL2::HPMN.val((pmcr >> 11) & 0x1f));
    TPIDR_EL2.set(cpu as u64);
    barrier::isb(barrier::SY);
}

/// The logical number `init_cpu` gave this CPU.
pub fn cpu_number() -> usize {
    TPIDR_EL2.get() as usize
}

/// Sends an event to every CPU (they wait in `wfe` when idle).
pub fn wake_all() {
    aarch64_cpu::asm::sev();
}

/// Physical address bits this CPU implements (ID_AA64MMFR0_EL1.PARange),
/// capped at 48 (the 4 KiB-granule tables' limit).
pub fn pa_bits() -> u32 {
    match ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange) {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        _ => 48,
    }
}

/// The generic timer's physical count.
pub fn counter() -> u64 {
    barrier::isb(barrier::SY);
    CNTPCT_EL0.get()
}

/// The generic timer's frequency in Hz, as firmware programmed CNTFRQ_EL0.
pub fn counter_frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// An SMC Calling Convention call (SMC64/SMC32 function IDs) over `conduit`.
/// Returns x0. x0-x17 are treated as clobbered (SMCCC v1.0 allows it).
pub fn firmware_call(conduit: Conduit, fid: u32, a1: u64, a2: u64, a3: u64) -> u64 {
    let mut x0 = fid as u64;
    macro_rules! call {
        ($insn:literal) => {
            // SAFETY: an SMCCC call only changes the registers declared here;
            // the firmware owns no memory of ours.
            unsafe {
                asm!($insn,
                    inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                    out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
                    out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
                    out("x15") _, out("x16") _, out("x17") _, options(nostack))
            }
        };
    }
    match conduit {
        Conduit::Smc => call!("smc #0"),
        Conduit::Hvc => call!("hvc #0"),
    }
    x0
}

/// Stops this CPU for good: interrupts masked, waiting forever.
pub fn halt() -> ! {
    DAIF.write(DAIF::D::Masked + DAIF::A::Masked + DAIF::I::Masked + DAIF::F::Masked);
    loop {
        aarch64_cpu::asm::wfi();
    }
}

/// Enters the crash path from a panic: a `brk` whose immediate tells the
/// exception handler it was a panic, so the registers at the panic site are
/// dumped like any other crash.
pub fn panic_trap() -> ! {
    // SAFETY: `brk` raises a synchronous exception that the EL2 vectors
    // handle; the handler never returns.
    unsafe { asm!("brk #{imm}", imm = const crate::crash::PANIC_BRK_IMM, options(noreturn)) }
}

/// Executes an undefined instruction (crash-path tests only).
pub fn undefined_instruction() -> ! {
    // SAFETY: `udf` raises an undefined-instruction exception, handled by
    // the vectors, which never return.
    unsafe { asm!("udf #0x4a52", options(noreturn)) }
}

/// Address read by `crashtest=abort`: above the 48-bit virtual range with the
/// MMU on (a level-0 translation fault), above any implemented physical
/// address size with it off (an address size fault); never a silent read.
pub const CRASH_ADDRESS: u64 = 0x00de_ad00_0000_0000;
