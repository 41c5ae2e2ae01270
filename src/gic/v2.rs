//! The physical GICv2 (memory-mapped: distributor, CPU interface, virtual
//! interface control). Architecture independent: AArch64 and ARMv7 both
//! reach it by MMIO. The CPU interface runs with `EOImode = 1` (see
//! `super`), interrupts in group 0 signalled as IRQs.

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

const GICD_CTLR: usize = 0x000;
const GICD_ISENABLER0: usize = 0x100;
const GICD_IPRIORITYR: usize = 0x400;
const GICD_ITARGETSR: usize = 0x800;
const GICD_SGIR: usize = 0xf00;
const GICC_CTLR: usize = 0x00;
const GICC_PMR: usize = 0x04;
const GICC_IAR: usize = 0x0c;
const GICC_EOIR: usize = 0x10;
const GICC_DIR: usize = 0x1000;
const GICH_HCR: usize = 0x00;
const GICH_VTR: usize = 0x04;
const GICH_LR0: usize = 0x100;
const GICD_ISACTIVER: usize = 0x300;
const GICD_ICACTIVER: usize = 0x380;

static GICD: AtomicUsize = AtomicUsize::new(0);
static GICC: AtomicUsize = AtomicUsize::new(0);
static GICH: AtomicUsize = AtomicUsize::new(0);
/// Each logical CPU's CPU-interface mask (for GICD_SGIR targets).
static TARGET: [AtomicU8; 8] = [const { AtomicU8::new(0) }; 8];

fn reg(base: &AtomicUsize, off: usize) -> *mut u32 {
    (base.load(Ordering::Relaxed) + off) as *mut u32
}

fn read(base: &AtomicUsize, off: usize) -> u32 {
    // SAFETY: the frames were mapped as Device memory before `init`.
    unsafe { reg(base, off).read_volatile() }
}

fn write(base: &AtomicUsize, off: usize, v: u32) {
    // SAFETY: as `read`.
    unsafe { reg(base, off).write_volatile(v) }
}

/// Records the frames' virtual addresses and enables the distributor.
pub fn init(gicd: usize, gicc: usize, gich: usize) {
    GICD.store(gicd, Ordering::Relaxed);
    GICC.store(gicc, Ordering::Relaxed);
    GICH.store(gich, Ordering::Relaxed);
    write(&GICD, GICD_CTLR, 0b11); // EnableGrp0, EnableGrp1
}

/// Whether [`init`] ran.
pub fn is_initialised() -> bool {
    GICD.load(Ordering::Relaxed) != 0
}

/// This CPU's banked distributor registers and CPU interface: the kick SGI,
/// the maintenance interrupt and the EL1 virtual and physical timers enabled; priority mask
/// open; group 0 and 1 on; `EOImode = 1`. `cpu` is the logical number.
/// (Always succeeds; returns true for the common interface of `super`.)
pub fn init_cpu(cpu: usize, enabled: u32) -> bool {
    for i in 0..8 {
        write(&GICD, GICD_IPRIORITYR + 4 * i, 0xa0a0_a0a0);
    }
    write(&GICD, GICD_ISENABLER0, enabled);
    // The banked ITARGETSR of SGI 0 reads as this CPU interface's mask
    // (RAZ on a uniprocessor GIC, where the only interface is 1).
    let mask = match read(&GICD, GICD_ITARGETSR) as u8 {
        0 => 1,
        m => m,
    };
    if let Some(t) = TARGET.get(cpu) {
        t.store(mask, Ordering::Relaxed);
    }
    write(&GICC, GICC_PMR, 0xff);
    write(&GICC, GICC_CTLR, 0b11 | (1 << 9)); // EnableGrp0/1, EOImode
    true
}

/// Routes SPI `intid` to logical CPU `cpu` and enables it.
pub fn enable_spi(intid: u32, cpu: usize) {
    let i = intid as usize;
    let target = TARGET.get(cpu).map_or(1, |t| t.load(Ordering::Relaxed));
    let gicd = GICD.load(Ordering::Relaxed);
    // SAFETY: byte registers of the distributor, mapped as Device memory.
    unsafe {
        ((gicd + GICD_IPRIORITYR + i) as *mut u8).write_volatile(0xa0);
        ((gicd + GICD_ITARGETSR + i) as *mut u8).write_volatile(target);
    }
    write(&GICD, GICD_ISENABLER0 + 4 * (i / 32), 1 << (i % 32));
}

/// Sets or clears the active state of SPI `intid` in the distributor
/// (`GICD_ISACTIVERn` / `GICD_ICACTIVERn`), from any CPU.
pub fn set_spi_active(intid: u32, active: bool) {
    let i = intid as usize;
    let base = if active { GICD_ISACTIVER } else { GICD_ICACTIVER };
    write(&GICD, base + 4 * (i / 32), 1 << (i % 32));
}

/// Acknowledges the highest-priority pending interrupt (INTID and, for an
/// SGI, the source CPU in bits 12:10: pass it back to `eoi`/`deactivate`).
pub fn ack() -> u32 {
    read(&GICC, GICC_IAR)
}

/// Priority drop.
pub fn eoi(iar: u32) {
    write(&GICC, GICC_EOIR, iar);
}

/// Deactivation.
pub fn deactivate(iar: u32) {
    write(&GICC, GICC_DIR, iar);
}

/// Sends SGI `intid` to logical CPU `cpu`.
pub fn send_sgi(intid: u32, cpu: usize) {
    let mask = TARGET.get(cpu).map_or(0, |t| t.load(Ordering::Relaxed));
    write(&GICD, GICD_SGIR, (u32::from(mask) << 16) | (intid & 0xf));
}

/// Number of list registers (`GICH_VTR.ListRegs + 1`).
pub fn nr_lrs() -> usize {
    ((read(&GICH, GICH_VTR) & 0x3f) + 1) as usize
}

/// Reads list register `n`.
pub fn read_lr(n: usize) -> u32 {
    read(&GICH, GICH_LR0 + 4 * n)
}

/// Writes list register `n`.
pub fn write_lr(n: usize, v: u32) {
    write(&GICH, GICH_LR0 + 4 * n, v);
}

/// Enables the virtual interface with the maintenance bits `hcr_bits`.
pub fn set_hcr(hcr_bits: u32) {
    write(&GICH, GICH_HCR, hcr_bits | 1);
}
