//! The hostile guest's GIC: version detection (the distributor's PIDR2),
//! each vCPU's CPU interface turned on, SGIs sent and taken, and raw MMIO
//! accesses of every width.

use crate::rt::PerVcpu;
use core::arch::asm;
use core::sync::atomic::{AtomicU32, Ordering};

pub const GICD: u64 = 0x0800_0000;
/// GICv2: the CPU interface (Armature maps the hardware GICV frame here).
pub const GICC: u64 = 0x0801_0000;
/// GICv3: the first redistributor; one per vCPU, [`GICR_STRIDE`] apart.
pub const GICR: u64 = 0x080a_0000;
pub const GICR_STRIDE: u64 = 0x2_0000;
/// GICv3: a redistributor's SGI_base frame.
pub const SGI_BASE: u64 = 0x1_0000;

#[unsafe(link_section = ".text.hostile_state")]
static VERSION: AtomicU32 = AtomicU32::new(0);

/// 2 or 3.
pub fn version() -> u32 {
    VERSION.load(Ordering::Relaxed)
}

pub fn v3() -> bool {
    version() == 3
}

/// The redistributor (`RD_base`) of `vcpu` (GICv3).
pub fn gicr(vcpu: usize) -> u64 {
    GICR + vcpu as u64 * GICR_STRIDE
}

/// Reads `size` bytes at `addr` with a plain load of that width.
pub fn read(addr: u64, size: usize) -> u64 {
    let v: u64;
    // SAFETY: an MMIO read of a device the guest owns (or that traps); a
    // fault is taken by the vectors, which skip the load (v then holds the
    // sentinel).
    unsafe {
        match size {
            1 => asm!("mov {v:w}, #0xdead", "ldrb {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack)),
            2 => asm!("mov {v:w}, #0xdead", "ldrh {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack)),
            4 => asm!("mov {v:w}, #0xdead", "ldr {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack)),
            _ => asm!("mov {v}, #0xdead", "ldr {v}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack)),
        }
    }
    v
}

/// Writes the low `size` bytes of `value` at `addr`.
pub fn write(addr: u64, size: usize, value: u64) {
    // SAFETY: an MMIO write to a device the guest owns (or that traps).
    unsafe {
        match size {
            1 => asm!("strb {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack)),
            2 => asm!("strh {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack)),
            4 => asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack)),
            _ => asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack)),
        }
        asm!("dsb sy", options(nostack));
    }
}

pub fn read32(addr: u64) -> u32 {
    read(addr, 4) as u32
}

pub fn write32(addr: u64, value: u32) {
    write(addr, 4, u64::from(value))
}

/// The enable register of SGIs/PPIs for `vcpu` (GICv2: banked in GICD,
/// only for the caller; GICv3: its redistributor).
fn isenabler0(vcpu: usize) -> u64 {
    if v3() { gicr(vcpu) + SGI_BASE + 0x100 } else { GICD + 0x100 }
}

/// The SGIs the guest uses: all of them enabled.
pub const SGIS: u32 = 0xffff;

/// Turns this vCPU's side of the GIC on (vCPU 0 also the distributor):
/// SGIs enabled, priority mask open, IRQs unmasked.
pub fn init_cpu(vcpu: usize) {
    if vcpu == 0 {
        let pidr2 = read32(GICD + 0xfe8);
        VERSION.store(if (pidr2 >> 4) & 0xf == 2 { 2 } else { 3 }, Ordering::SeqCst);
        // GICv3: ARE, EnableGrp1; GICv2: EnableGrp0/1.
        write32(GICD, if v3() { (1 << 4) | (1 << 1) } else { 3 });
    }
    if v3() {
        // SAFETY: the GICv3 CPU interface system registers (ICV_* under
        // the hypervisor): SRE, priority mask, Group 1 enable.
        unsafe {
            asm!(
                "mrs {t}, S3_0_C12_C12_5", "orr {t}, {t}, #1", "msr S3_0_C12_C12_5, {t}", "isb",
                "mov {t}, #0xff", "msr S3_0_C4_C6_0, {t}",
                "mov {t}, #1", "msr S3_0_C12_C12_7, {t}", "isb",
                t = out(reg) _, options(nostack)
            )
        };
        write32(gicr(vcpu) + 0x14, 0); // GICR_WAKER: awake
    } else {
        write32(GICC + 0x4, 0xff); // GICC_PMR
        write32(GICC, 3); // GICC_CTLR: EnableGrp0/1
    }
    write32(isenabler0(vcpu), SGIS);
    crate::rt::mask_irqs(false);
}

/// Sends SGI `intid` to `vcpu`.
pub fn send_sgi(vcpu: usize, intid: u32) {
    if v3() {
        let v = (u64::from(intid) << 24) | (1 << vcpu);
        // SAFETY: ICC_SGI1R_EL1 (trapped by the hypervisor).
        unsafe { asm!("msr S3_0_C12_C11_5, {}", "isb", in(reg) v, options(nostack)) };
    } else {
        write32(GICD + 0xf00, (1 << (16 + vcpu)) | intid);
    }
}

/// The IRQ vector: acknowledge, count, end.
pub fn irq(v: &PerVcpu) {
    loop {
        let iar: u64 = if v3() {
            let iar: u64;
            // SAFETY: ICC_IAR1_EL1 acknowledges the highest pending interrupt.
            unsafe { asm!("mrs {}, S3_0_C12_C12_0", out(reg) iar, options(nostack)) };
            iar
        } else {
            u64::from(read32(GICC + 0xc))
        };
        let intid = iar & 0x3ff;
        if intid >= 1020 {
            if intid == 1023 {
                v.spurious.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        match v.irqs.get(intid as usize) {
            Some(c) => {
                c.fetch_add(1, Ordering::SeqCst);
            }
            None => match v.spis.get(intid as usize / 64) {
                Some(bits) => {
                    bits.fetch_or(1 << (intid % 64), Ordering::SeqCst);
                    v.spi_count.fetch_add(1, Ordering::SeqCst);
                }
                None => {
                    v.unexpected.fetch_add(1, Ordering::SeqCst);
                }
            },
        }
        if intid == 27 || intid == 30 {
            // A timer: turn it off so that its line drops.
            // SAFETY: timer control registers of this vCPU.
            unsafe { asm!("msr cntv_ctl_el0, xzr", "msr cntp_ctl_el0, xzr", "isb", options(nostack)) };
        }
        if v3() {
            // SAFETY: ICC_EOIR1_EL1: priority drop and deactivation.
            unsafe { asm!("msr S3_0_C12_C12_1, {}", "isb", in(reg) iar, options(nostack)) };
        } else {
            write32(GICC + 0x10, iar as u32);
        }
    }
}
