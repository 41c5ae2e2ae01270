//! Running guests at EL1 (AArch64): stage-2 translation registers, the EL2
//! configuration a vCPU runs under, entering it, and injecting exceptions.
//!
//! A vCPU's registers live in an [`ExceptionFrame`] at the top of its
//! physical CPU's trap stack: `enter_guest` restores it and `eret`s, a trap
//! from the guest saves it at the same place and calls the Rust handler,
//! which edits it (results in x0-x3, skipping an instruction, injecting an
//! exception) before the stub resumes the guest.

use super::exception::ExceptionFrame;
use crate::mm::addr::PhysAddr;
use super::mmu::{LiveMaintenance, TlbInvalidate};
use crate::mm::lpae::Invalidation;
use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;
use core::arch::asm;

/// Guest physical (IPA) bits: as many as the CPU's physical addresses, at
/// most 40 (QEMU virt's high PCIe window ends at 1 TiB), walked from level 1
/// (VTCR_EL2.SL0 = 1): a 40-bit IPA concatenates two level-1 tables.
pub fn ipa_bits() -> u8 {
    super::pa_bits().clamp(32, 40) as u8
}

/// Maintenance of a domain's stage-2 tables (live once a vCPU has run on
/// them, i.e. its VMID is in VTTBR_EL2).
pub type Stage2Maintenance = LiveMaintenance<Stage2Tlb>;

/// Stage-2 TLB invalidation for the VMID in VTTBR_EL2: by IPA, then every
/// stage-1 entry of the VMID (they may be combined with stage 2); whole
/// VMID for ranges.
#[derive(Debug, Default)]
pub struct Stage2Tlb;

impl TlbInvalidate for Stage2Tlb {
    fn invalidate(what: Invalidation) {
        match what {
            Invalidation::Leaf { input, .. } | Invalidation::Walk { input, .. } => {
                // SAFETY: TLB maintenance for the loaded VMID; no memory effects.
                unsafe {
                    asm!("tlbi ipas2e1is, {}", "dsb ish", "tlbi vmalle1is",
                        in(reg) input >> 12, options(nostack, preserves_flags))
                }
            }
            // SAFETY: as above.
            Invalidation::Range { .. } => unsafe { asm!("tlbi vmalls12e1is", options(nostack, preserves_flags)) },
        }
        barrier::dsb(barrier::ISH);
        barrier::isb(barrier::SY);
    }
}

/// Loads a domain's stage-2 tables: VTCR_EL2 ([`ipa_bits`], 4 KiB granule,
/// inner-shareable write-back walks) and VTTBR_EL2 (VMID and root).
pub fn load_stage2(root: PhysAddr, vmid: u16) {
    let ps = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange).min(5);
    VTCR_EL2.write(
        VTCR_EL2::PS.val(ps)
            + VTCR_EL2::TG0::Granule4KB
            + VTCR_EL2::SH0::Inner
            + VTCR_EL2::ORGN0::NormalWBRAWA
            + VTCR_EL2::IRGN0::NormalWBRAWA
            + VTCR_EL2::SL0::Granule4KBLevel1
            + VTCR_EL2::T0SZ.val(64 - u64::from(ipa_bits()))
            + VTCR_EL2::RES1::SET,
    );
    VTTBR_EL2.write(VTTBR_EL2::VMID.val(vmid as u64) + VTTBR_EL2::BADDR.val(root.as_u64() >> 1));
    barrier::isb(barrier::SY);
    // A VMID may have been used before: drop whatever the TLBs hold for it.
    // SAFETY: TLB maintenance for the VMID just loaded.
    unsafe { asm!("tlbi vmalls12e1is", "dsb ish", "isb", options(nostack, preserves_flags)) };
}

/// Trap stacks: a vCPU's frame sits at the top while it runs.
const TRAP_STACK: usize = 16 << 10;
#[repr(C, align(16))]
struct TrapStack([u8; TRAP_STACK]);
static mut TRAP_STACKS: [TrapStack; super::smp::NR_CPUS] =
    [const { TrapStack([0; TRAP_STACK]) }; super::smp::NR_CPUS];

unsafe extern "C" {
    fn enter_guest(frame: *mut ExceptionFrame) -> !;
}

/// Starts a vCPU at EL1h with its MMU off and interrupts masked, at `pc`
/// with `x0` (the guest's DTB), virtual MPIDR `vmpidr` and its domain's
/// virtual counter offset `cntvoff`, on this physical CPU, under the
/// stage-2 tables loaded by [`load_stage2`]. Never returns: from now on
/// this CPU runs the guest and handles its traps.
pub fn run_vcpu(pc: u64, x0: u64, vmpidr: u64, cntvoff: u64) -> ! {
    // HCR_EL2: stage 2 on; physical IRQ/FIQ/SError to EL2 and virtual ones
    // to the guest; SMC trapped (SMCCC goes through the hypervisor); set/way
    // cache operations made safe; EL1 is AArch64. WFI/WFE are not trapped:
    // a vCPU alone on its physical CPU waits natively.
    HCR_EL2.write(
        HCR_EL2::VM::Enable
            + HCR_EL2::SWIO::SET
            + HCR_EL2::FMO::EnableVirtualFIQ
            + HCR_EL2::IMO::EnableVirtualIRQ
            + HCR_EL2::AMO::SET
            + HCR_EL2::TSC::EnableTrapEl1SmcToEl2
            + HCR_EL2::RW::EL1IsAarch64,
    );
    VMPIDR_EL2.set(vmpidr | (1 << 31));
    // The guest may read the physical counter and use the EL1 physical
    // timer (passed through: its PPI is linked to the guest's like the
    // virtual timer's; the hypervisor uses no EL1 timer). Its physical
    // counter is the machine's (no CNTPOFF without FEAT_ECV), so CNTPCT,
    // CNTP_CVAL and CNTP_TVAL agree with each other on every vCPU; its
    // virtual counter runs from its domain's offset (one per domain, so
    // every vCPU's virtual counter agrees).
    CNTHCTL_EL2.write(CNTHCTL_EL2::EL1PCEN::SET + CNTHCTL_EL2::EL1PCTEN::SET);
    CNTVOFF_EL2.set(cntvoff);
    // EL1 in a reset-like state: MMU and caches off, both EL1 timers off
    // (a vCPU started again after CPU_OFF must not find its old timers).
    El1Context::reset().restore();

    let cpu = crate::cpu::this_cpu();
    let stacks = &raw mut TRAP_STACKS;
    // SAFETY: each physical CPU uses its own trap stack, and this one is
    // not in use: the CPU is about to leave EL2 for good.
    let top = unsafe { (*stacks)[cpu].0.as_mut_ptr().add(TRAP_STACK) };
    let frame = (top as usize - core::mem::size_of::<ExceptionFrame>()) as *mut ExceptionFrame;
    // SPSR: EL1h, D, A, I, F masked.
    const SPSR_EL1H_MASKED: u64 = 0x3c5;
    // SAFETY: `frame` is inside this CPU's trap stack, aligned (16-byte
    // stack top, 288-byte frame) and writable.
    unsafe {
        frame.write(ExceptionFrame { x: [0; 31], sp: 0, elr: pc, spsr: SPSR_EL1H_MASKED, esr: 0, far: 0 });
        (*frame).x[0] = x0;
        enter_guest(frame)
    }
}

/// A vCPU's EL1 (and EL0) system-register state: what a physical CPU must
/// save and restore to switch between vCPUs, and what a register dump
/// shows. While each vCPU is pinned alone on its CPU the hardware keeps it;
/// [`El1Context::reset`] gives a starting vCPU a defined, reset-like state
/// (MMU off, virtual timer disabled) and [`El1Context::save`] reads a
/// running vCPU's (the `d` debug key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct El1Context {
    /// SCTLR_EL1.
    pub sctlr: u64,
    /// TTBR0_EL1.
    pub ttbr0: u64,
    /// TTBR1_EL1.
    pub ttbr1: u64,
    /// TCR_EL1.
    pub tcr: u64,
    /// MAIR_EL1.
    pub mair: u64,
    /// AMAIR_EL1.
    pub amair: u64,
    /// VBAR_EL1.
    pub vbar: u64,
    /// CONTEXTIDR_EL1.
    pub contextidr: u64,
    /// TPIDR_EL1.
    pub tpidr_el1: u64,
    /// TPIDR_EL0.
    pub tpidr_el0: u64,
    /// TPIDRRO_EL0.
    pub tpidrro_el0: u64,
    /// SP_EL0.
    pub sp_el0: u64,
    /// SP_EL1.
    pub sp_el1: u64,
    /// ELR_EL1.
    pub elr: u64,
    /// SPSR_EL1.
    pub spsr: u64,
    /// ESR_EL1.
    pub esr: u64,
    /// FAR_EL1.
    pub far: u64,
    /// AFSR0_EL1.
    pub afsr0: u64,
    /// AFSR1_EL1.
    pub afsr1: u64,
    /// PAR_EL1.
    pub par: u64,
    /// CPACR_EL1.
    pub cpacr: u64,
    /// CNTKCTL_EL1.
    pub cntkctl: u64,
    /// CNTV_CTL_EL0.
    pub cntv_ctl: u64,
    /// CNTV_CVAL_EL0.
    pub cntv_cval: u64,
    /// CNTP_CTL_EL0 (the EL1 physical timer, the guest's own: passed
    /// through, the hypervisor uses only its EL2 timer).
    pub cntp_ctl: u64,
    /// CNTP_CVAL_EL0.
    pub cntp_cval: u64,
    /// CSSELR_EL1.
    pub csselr: u64,
}

/// SCTLR_EL1's RES1 bits (ARMv8.0): with them only, the MMU and caches
/// are off.
const SCTLR_EL1_RES1: u64 = (1 << 29) | (1 << 28) | (1 << 23) | (1 << 22) | (1 << 20) | (1 << 11);

impl El1Context {
    /// The state a vCPU starts in (PSCI `CPU_ON`, or dom0's first vCPU):
    /// MMU and caches off, no translation tables, both EL1 timers off,
    /// FP/SIMD not trapped at EL1.
    pub fn reset() -> Self {
        Self { sctlr: SCTLR_EL1_RES1, cpacr: 3 << 20, ..Self::default() }
    }

    /// Reads this physical CPU's EL1 state (the vCPU it runs, from EL2).
    pub fn save() -> Self {
        Self {
            sctlr: SCTLR_EL1.get(),
            ttbr0: TTBR0_EL1.get(),
            ttbr1: TTBR1_EL1.get(),
            tcr: TCR_EL1.get(),
            mair: MAIR_EL1.get(),
            amair: AMAIR_EL1.get(),
            vbar: VBAR_EL1.get(),
            contextidr: CONTEXTIDR_EL1.get(),
            tpidr_el1: TPIDR_EL1.get(),
            tpidr_el0: TPIDR_EL0.get(),
            tpidrro_el0: TPIDRRO_EL0.get(),
            sp_el0: SP_EL0.get(),
            sp_el1: SP_EL1.get(),
            elr: ELR_EL1.get(),
            spsr: SPSR_EL1.get(),
            esr: ESR_EL1.get(),
            far: FAR_EL1.get(),
            afsr0: AFSR0_EL1.get(),
            afsr1: AFSR1_EL1.get(),
            par: PAR_EL1.get(),
            cpacr: CPACR_EL1.get(),
            cntkctl: CNTKCTL_EL1.get(),
            cntv_ctl: CNTV_CTL_EL0.get(),
            cntv_cval: CNTV_CVAL_EL0.get(),
            cntp_ctl: CNTP_CTL_EL0.get(),
            cntp_cval: CNTP_CVAL_EL0.get(),
            csselr: CSSELR_EL1.get(),
        }
    }

    /// Loads this state into this physical CPU's EL1 registers (before
    /// entering the vCPU it belongs to).
    pub fn restore(&self) {
        SCTLR_EL1.set(self.sctlr);
        TTBR0_EL1.set(self.ttbr0);
        TTBR1_EL1.set(self.ttbr1);
        TCR_EL1.set(self.tcr);
        MAIR_EL1.set(self.mair);
        AMAIR_EL1.set(self.amair);
        VBAR_EL1.set(self.vbar);
        CONTEXTIDR_EL1.set(self.contextidr);
        TPIDR_EL1.set(self.tpidr_el1);
        TPIDR_EL0.set(self.tpidr_el0);
        TPIDRRO_EL0.set(self.tpidrro_el0);
        SP_EL0.set(self.sp_el0);
        SP_EL1.set(self.sp_el1);
        ELR_EL1.set(self.elr);
        SPSR_EL1.set(self.spsr);
        ESR_EL1.set(self.esr);
        FAR_EL1.set(self.far);
        AFSR0_EL1.set(self.afsr0);
        AFSR1_EL1.set(self.afsr1);
        PAR_EL1.set(self.par);
        CPACR_EL1.set(self.cpacr);
        CNTKCTL_EL1.set(self.cntkctl);
        CNTV_CVAL_EL0.set(self.cntv_cval);
        CNTV_CTL_EL0.set(self.cntv_ctl);
        CNTP_CVAL_EL0.set(self.cntp_cval);
        CNTP_CTL_EL0.set(self.cntp_ctl);
        CSSELR_EL1.set(self.csselr);
        barrier::isb(barrier::SY);
    }
}

/// The output of a generic timer from its `CTL` register: high while it
/// is enabled, its condition is met (`ISTATUS`) and it is not masked.
pub fn timer_output(ctl: u64) -> bool {
    const ENABLE: u64 = 1 << 0;
    const IMASK: u64 = 1 << 1;
    const ISTATUS: u64 = 1 << 2;
    ctl & (ENABLE | IMASK | ISTATUS) == ENABLE | ISTATUS
}

/// The interrupt outputs of the EL1 virtual and physical timers of the
/// vCPU this CPU runs (read from EL2: with `HCR_EL2.E2H` = 0 these are
/// the guest's EL1 timers), as (virtual, physical).
pub fn timer_outputs() -> (bool, bool) {
    (timer_output(CNTV_CTL_EL0.get()), timer_output(CNTP_CTL_EL0.get()))
}

/// Turns this CPU's EL1 virtual and physical timers off (a vCPU that
/// stopped: its CPU must not keep taking their interrupts while idle).
pub fn stop_timers() {
    CNTV_CTL_EL0.set(0);
    CNTP_CTL_EL0.set(0);
    barrier::isb(barrier::SY);
}

/// HPFAR_EL2: the faulting IPA's page of the last stage-2 abort.
pub fn hpfar() -> u64 {
    HPFAR_EL2.get()
}

/// Makes the guest take a synchronous external abort at `frame.far` for
/// the stage-2 abort it took (`frame.esr`: a data or instruction abort),
/// as if its own access had faulted, the direction of a data access kept
/// ([`crate::mmio::external_abort_esr`]); the vCPU returns into its EL1
/// vector.
pub fn inject_external_abort(frame: &mut ExceptionFrame) {
    inject_sync(frame, crate::mmio::external_abort_esr(frame.esr), frame.far);
}

/// Makes the guest take a virtual SError (HCR_EL2.VSE) as soon as it
/// unmasks asynchronous aborts; the hardware clears VSE when it is taken.
pub fn inject_serror() {
    HCR_EL2.modify(HCR_EL2::VSE::SET);
}

/// Makes the guest take an undefined-instruction exception.
pub fn inject_undefined(frame: &mut ExceptionFrame) {
    inject_sync(frame, 1 << 25, 0);
}

fn inject_sync(frame: &mut ExceptionFrame, esr: u64, far: u64) {
    let from_el1 = frame.spsr & 0b1100 == 0b0100;
    let esr = if from_el1 { esr } else { (esr & !(0x3f << 26)) | (((esr >> 26) & 0x3f & !1) << 26) };
    ESR_EL1.set(esr);
    FAR_EL1.set(far);
    ELR_EL1.set(frame.elr);
    SPSR_EL1.set(frame.spsr);
    // Vector offset: current EL with SP_ELx 0x200, SP_EL0 0x0; lower EL 0x400.
    let offset = match frame.spsr & 0b1111 {
        0b0101 => 0x200,
        0b0100 => 0x0,
        _ => 0x400,
    };
    frame.elr = VBAR_EL1.get() + offset;
    frame.spsr = 0x3c5; // EL1h, DAIF masked
}
