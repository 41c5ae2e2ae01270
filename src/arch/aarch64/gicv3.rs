//! The physical GICv3 at EL2 (AArch64): distributor and redistributor
//! set-up, the CPU interface (system registers), physical SGIs between CPUs
//! (to make a CPU running a vCPU refresh its list registers), and the
//! virtual CPU interface's list registers (`ICH_LR<n>_EL2`).
//!
//! The CPU interface runs with `EOImode = 1`: writing `ICC_EOIR1_EL1` only
//! drops the priority, and an interrupt linked to a guest's virtual one
//! (the virtual timer) is deactivated by the guest itself through the
//! list register's HW bit.

use aarch64_cpu::registers::*;
use core::arch::asm;
use core::sync::atomic::{AtomicUsize, Ordering};

/// The SGI one CPU sends another to make it exit its guest and refresh.
pub const KICK_SGI: u32 = 0;
/// The maintenance interrupt's INTID (PPI 9).
pub const MAINTENANCE_INTID: u32 = 25;
/// The EL1 virtual timer's INTID (PPI 11).
pub const VTIMER_INTID: u32 = 27;
/// The EL1 physical timer's INTID (PPI 14).
pub const PTIMER_INTID: u32 = 30;
/// No interrupt pending (`ICC_IAR1_EL1` read).
pub const SPURIOUS: u32 = 1023;

/// The distance between redistributor frames when the DT gives no
/// `redistributor-stride`: two 64 KiB frames (RD_base, SGI_base), as on
/// GICv3 (GICv4 adds two more: its DTs give the stride).
pub const GICR_STRIDE: usize = 0x20000;
const GICD_CTLR: usize = 0x0;
const GICD_CTLR_RWP: u32 = 1 << 31;
const GICR_TYPER: usize = 0x8;
const GICR_WAKER: usize = 0x14;
const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
const SGI_BASE: usize = 0x10000;
const GICR_IGROUPR0: usize = SGI_BASE + 0x80;
const GICR_ISENABLER0: usize = SGI_BASE + 0x100;
const GICR_ISACTIVER0: usize = SGI_BASE + 0x300;
const GICR_ICACTIVER0: usize = SGI_BASE + 0x380;
const GICR_IPRIORITYR: usize = SGI_BASE + 0x400;

static GICD: AtomicUsize = AtomicUsize::new(0);
static GICR: AtomicUsize = AtomicUsize::new(0);
static GICR_FRAMES: AtomicUsize = AtomicUsize::new(0);
static GICR_STEP: AtomicUsize = AtomicUsize::new(GICR_STRIDE);
/// Each CPU's redistributor frame, found by [`init_cpu`] (0: none yet).
static MY_FRAME: [AtomicUsize; super::smp::NR_CPUS] = [const { AtomicUsize::new(0) }; super::smp::NR_CPUS];

fn read32(addr: usize) -> u32 {
    // SAFETY: `addr` is inside a GIC frame mapped as Device memory by `init`.
    unsafe { (addr as *const u32).read_volatile() }
}

fn write32(addr: usize, v: u32) {
    // SAFETY: as `read32`.
    unsafe { (addr as *mut u32).write_volatile(v) }
}

fn read64(addr: usize) -> u64 {
    // SAFETY: as `read32`.
    unsafe { (addr as *const u64).read_volatile() }
}

macro_rules! sysreg_write {
    ($name:literal, $v:expr) => {
        // SAFETY: a GIC CPU-interface system register; the value is what
        // the GICv3 architecture specifies for this use.
        unsafe { asm!(concat!("msr ", $name, ", {}"), in(reg) $v as u64, options(nostack, preserves_flags)) }
    };
}

macro_rules! sysreg_read {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: reading a GIC CPU-interface system register.
        unsafe { asm!(concat!("mrs {}, ", $name), out(reg) v, options(nostack, preserves_flags)) };
        v
    }};
}

/// Sets the distributor up (affinity routing, group 1 enabled). `gicd` and
/// `gicr` are the virtual addresses of the distributor and of the first
/// redistributor region, `gicr_size` that region's size and `stride` the
/// distance between its frames (the DT's `redistributor-stride`; `None`:
/// [`GICR_STRIDE`]).
pub fn init(gicd: usize, gicr: usize, gicr_size: usize, stride: Option<usize>) {
    let stride = stride.filter(|&s| s != 0).unwrap_or(GICR_STRIDE);
    GICD.store(gicd, Ordering::Relaxed);
    GICR.store(gicr, Ordering::Relaxed);
    GICR_STEP.store(stride, Ordering::Relaxed);
    GICR_FRAMES.store(gicr_size / stride, Ordering::Relaxed);
    // ARE (bit 4), EnableGrp1 (bit 1), EnableGrp0 (bit 0) with a single
    // security state; ARE_NS and EnableGrp1NS in the non-secure view.
    let ctlr = read32(gicd + GICD_CTLR);
    write32(gicd + GICD_CTLR, ctlr | (1 << 4) | (1 << 1) | 1);
    while read32(gicd + GICD_CTLR) & GICD_CTLR_RWP != 0 {
        core::hint::spin_loop();
    }
}

/// Whether [`init`] ran (the boot CPU set the distributor up).
pub fn is_initialised() -> bool {
    GICD.load(Ordering::Relaxed) != 0
}

/// The redistributor frames that exist: from the first, by stride, up to
/// the one whose `GICR_TYPER.Last` is set (the region may be larger).
pub fn frames() -> impl Iterator<Item = usize> {
    let base = GICR.load(Ordering::Relaxed);
    let stride = GICR_STEP.load(Ordering::Relaxed);
    let mut done = base == 0;
    (0..GICR_FRAMES.load(Ordering::Relaxed)).map_while(move |i| {
        if done {
            return None;
        }
        let f = base + i * stride;
        done = read64(f + GICR_TYPER) & (1 << 4) != 0;
        Some(f)
    })
}

/// This CPU's redistributor frame (matched by affinity in `GICR_TYPER`).
fn my_frame() -> Option<usize> {
    let mpidr = MPIDR_EL1.get();
    let aff = ((mpidr >> 32) & 0xff) << 24 | (mpidr & 0xff_ffff);
    frames().find(|&f| read64(f + GICR_TYPER) >> 32 == aff)
}

/// Sets this CPU's redistributor and CPU interface up: awake, SGIs and PPIs
/// in group 1, the kick SGI, the maintenance interrupt and the EL1 virtual and physical timers
/// enabled; system-register access for EL2 and EL1; `EOImode = 1`. Returns
/// false if no redistributor matches this CPU.
pub fn init_cpu() -> bool {
    let Some(rd) = my_frame() else { return false };
    if let Some(f) = MY_FRAME.get(crate::cpu::this_cpu()) {
        f.store(rd, Ordering::Relaxed);
    }
    write32(rd + GICR_WAKER, read32(rd + GICR_WAKER) & !GICR_WAKER_PROCESSOR_SLEEP);
    while read32(rd + GICR_WAKER) & GICR_WAKER_CHILDREN_ASLEEP != 0 {
        core::hint::spin_loop();
    }
    write32(rd + GICR_IGROUPR0, u32::MAX);
    for i in 0..8 {
        write32(rd + GICR_IPRIORITYR + 4 * i, 0xa0a0_a0a0);
    }
    write32(
        rd + GICR_ISENABLER0,
        (1 << KICK_SGI) | (1 << MAINTENANCE_INTID) | (1 << VTIMER_INTID) | (1 << PTIMER_INTID),
    );
    ICC_SRE_EL2.write(ICC_SRE_EL2::SRE::SET + ICC_SRE_EL2::ENABLE::SET);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    sysreg_write!("S3_0_C4_C6_0", 0xffu64); // ICC_PMR_EL1: everything
    sysreg_write!("S3_0_C12_C12_4", 1u64 << 1); // ICC_CTLR_EL1: EOImode = 1
    sysreg_write!("S3_0_C12_C12_7", 1u64); // ICC_IGRPEN1_EL1
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    true
}

/// Routes SPI `intid` to the CPU with affinity `mpidr` (group 1, priority
/// 0xa0) and enables it.
pub fn enable_spi(intid: u32, mpidr: u64) {
    let i = intid as usize;
    let gicd = GICD.load(Ordering::Relaxed);
    let aff = mpidr & crate::dt::MPIDR_AFFINITY_MASK;
    // SAFETY: distributor registers, mapped as Device memory.
    unsafe {
        let grp = (gicd + 0x80 + 4 * (i / 32)) as *mut u32;
        grp.write_volatile(grp.read_volatile() | 1 << (i % 32));
        ((gicd + 0x400 + i) as *mut u8).write_volatile(0xa0);
        ((gicd + 0x6000 + 8 * i) as *mut u64).write_volatile(aff);
    }
    write32(gicd + 0x100 + 4 * (i / 32), 1 << (i % 32));
}

/// Sets or clears the active state of SPI `intid` in the distributor
/// (`GICD_ISACTIVERn` / `GICD_ICACTIVERn`), from any CPU.
pub fn set_spi_active(intid: u32, active: bool) {
    let i = intid as usize;
    let reg = if active { 0x300 } else { 0x380 };
    write32(GICD.load(Ordering::Relaxed) + reg + 4 * (i / 32), 1 << (i % 32));
}

/// Sets or clears the active state of PPI `intid` in this CPU's
/// redistributor (`GICR_ISACTIVER0` / `GICR_ICACTIVER0`).
pub fn set_ppi_active(intid: u32, active: bool) {
    let rd = MY_FRAME.get(crate::cpu::this_cpu()).map_or(0, |f| f.load(Ordering::Relaxed));
    if rd != 0 && intid < 32 {
        write32(rd + if active { GICR_ISACTIVER0 } else { GICR_ICACTIVER0 }, 1 << intid);
    }
}

/// Acknowledges the highest-priority pending interrupt (`ICC_IAR1_EL1`).
pub fn ack() -> u32 {
    (sysreg_read!("S3_0_C12_C12_0") & 0xff_ffff) as u32
}

/// Drops the running priority (`ICC_EOIR1_EL1`; with `EOImode = 1` this
/// does not deactivate).
pub fn eoi(intid: u32) {
    sysreg_write!("S3_0_C12_C12_1", intid);
}

/// Deactivates an interrupt the hypervisor handled itself (`ICC_DIR_EL1`).
pub fn deactivate(intid: u32) {
    sysreg_write!("S3_0_C12_C11_1", intid);
}

/// Sends SGI `intid` to the CPU with affinity `mpidr` (`ICC_SGI1R_EL1`).
pub fn send_sgi(intid: u32, mpidr: u64) {
    let v = ((mpidr >> 32) & 0xff) << 48
        | ((mpidr >> 16) & 0xff) << 32
        | ((mpidr >> 8) & 0xff) << 16
        | u64::from(intid & 0xf) << 24
        | 1u64 << (mpidr & 0xf);
    // SAFETY: barrier so that state written before the kick is seen.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
    sysreg_write!("S3_0_C12_C11_5", v);
}

/// Number of list registers (`ICH_VTR_EL2.ListRegs + 1`).
pub fn nr_lrs() -> usize {
    (ICH_VTR_EL2.read(ICH_VTR_EL2::ListRegs) + 1) as usize
}

/// Reads list register `n`.
pub fn read_lr(n: usize) -> u64 {
    match n {
        0 => ICH_LR0_EL2.get(),
        1 => ICH_LR1_EL2.get(),
        2 => ICH_LR2_EL2.get(),
        3 => ICH_LR3_EL2.get(),
        4 => ICH_LR4_EL2.get(),
        5 => ICH_LR5_EL2.get(),
        6 => ICH_LR6_EL2.get(),
        7 => ICH_LR7_EL2.get(),
        8 => ICH_LR8_EL2.get(),
        9 => ICH_LR9_EL2.get(),
        10 => ICH_LR10_EL2.get(),
        11 => ICH_LR11_EL2.get(),
        12 => ICH_LR12_EL2.get(),
        13 => ICH_LR13_EL2.get(),
        14 => ICH_LR14_EL2.get(),
        _ => ICH_LR15_EL2.get(),
    }
}

/// Writes list register `n`.
pub fn write_lr(n: usize, v: u64) {
    match n {
        0 => ICH_LR0_EL2.set(v),
        1 => ICH_LR1_EL2.set(v),
        2 => ICH_LR2_EL2.set(v),
        3 => ICH_LR3_EL2.set(v),
        4 => ICH_LR4_EL2.set(v),
        5 => ICH_LR5_EL2.set(v),
        6 => ICH_LR6_EL2.set(v),
        7 => ICH_LR7_EL2.set(v),
        8 => ICH_LR8_EL2.set(v),
        9 => ICH_LR9_EL2.set(v),
        10 => ICH_LR10_EL2.set(v),
        11 => ICH_LR11_EL2.set(v),
        12 => ICH_LR12_EL2.set(v),
        13 => ICH_LR13_EL2.set(v),
        14 => ICH_LR14_EL2.set(v),
        _ => ICH_LR15_EL2.set(v),
    }
}

/// Enables the virtual CPU interface with the maintenance bits `hcr_bits`
/// (`UIE`/`NPIE` from the vGIC model).
pub fn set_ich_hcr(hcr_bits: u32) {
    ICH_HCR_EL2.set(u64::from(hcr_bits) | 1);
}
