//! The physical interrupt controller, as the hypervisor uses it to deliver
//! interrupts to guests: one interface over GICv2 (`v2`, memory-mapped,
//! architecture independent) and GICv3 (`arch::gicv3`, system registers).
//!
//! Both run with `EOImode = 1`: acknowledging and dropping the priority is
//! the hypervisor's job, deactivating an interrupt linked to a guest (the
//! virtual timer) is the guest's, through the list register's HW bit.

pub mod v2;

use crate::dt::GicVersion;
use crate::vgic::Lr;
use core::sync::atomic::{AtomicU8, Ordering};

/// The SGI a CPU sends another to make it refresh its list registers.
pub const KICK_SGI: u32 = 0;
/// The maintenance interrupt (PPI 9).
pub const MAINTENANCE_INTID: u32 = 25;
/// The EL1 virtual timer (PPI 11).
pub const VTIMER_INTID: u32 = 27;
/// The EL1 (non-secure) physical timer (PPI 14), passed through to the
/// guest like the virtual timer; the hypervisor uses neither.
pub const PTIMER_INTID: u32 = 30;

/// 0: none, 2: GICv2, 3: GICv3.
static VERSION: AtomicU8 = AtomicU8::new(0);

/// The GIC in use for delivery, once set up.
pub fn version() -> Option<GicVersion> {
    match VERSION.load(Ordering::Acquire) {
        2 => Some(GicVersion::V2),
        3 => Some(GicVersion::V3),
        _ => None,
    }
}

/// Records that a GICv2 (`v2::init` done) or GICv3 (`arch::gicv3::init`
/// done) delivers interrupts from now on.
pub fn set_version(v: GicVersion) {
    VERSION.store(if v == GicVersion::V3 { 3 } else { 2 }, Ordering::Release);
}

const ENABLED: u32 = (1 << KICK_SGI) | (1 << MAINTENANCE_INTID) | (1 << VTIMER_INTID) | (1 << PTIMER_INTID);

/// Sets this CPU's side up (logical number `cpu`). False if it failed.
pub fn init_cpu(cpu: usize) -> bool {
    match version() {
        Some(GicVersion::V2) => v2::init_cpu(cpu, ENABLED),
        #[cfg(target_arch = "aarch64")]
        Some(GicVersion::V3) => crate::arch::gicv3::init_cpu(),
        _ => true,
    }
}

/// Acknowledges an interrupt: `(intid, token)`, the token for `eoi` and
/// `deactivate`. INTID 1020 and above: nothing pending.
pub fn ack() -> (u32, u32) {
    match version() {
        #[cfg(target_arch = "aarch64")]
        Some(GicVersion::V3) => {
            let id = crate::arch::gicv3::ack();
            (id, id)
        }
        _ => {
            let iar = v2::ack();
            (iar & 0x3ff, iar)
        }
    }
}

/// Priority drop of an acknowledged interrupt.
pub fn eoi(token: u32) {
    match version() {
        #[cfg(target_arch = "aarch64")]
        Some(GicVersion::V3) => crate::arch::gicv3::eoi(token),
        _ => v2::eoi(token),
    }
}

/// Deactivates an interrupt the hypervisor handled itself.
pub fn deactivate(token: u32) {
    match version() {
        #[cfg(target_arch = "aarch64")]
        Some(GicVersion::V3) => crate::arch::gicv3::deactivate(token),
        _ => v2::deactivate(token),
    }
}

/// Sets or clears the active state of SPI `intid` (a passed-through
/// device's interrupt whose virtual state changed without a list register).
pub fn set_spi_active(intid: u32, active: bool) {
    match version() {
        #[cfg(target_arch = "aarch64")]
        Some(GicVersion::V3) => crate::arch::gicv3::set_spi_active(intid, active),
        _ => v2::set_spi_active(intid, active),
    }
}

/// Sets or clears the active state of PPI `intid` on this CPU (a timer
/// linked to its vCPU's virtual PPI whose line changed while the virtual
/// one was not in a list register).
pub fn set_ppi_active(intid: u32, active: bool) {
    match version() {
        #[cfg(target_arch = "aarch64")]
        Some(GicVersion::V3) => crate::arch::gicv3::set_ppi_active(intid, active),
        // GICD_ISACTIVER0/ICACTIVER0 are banked per CPU interface.
        _ => v2::set_spi_active(intid, active),
    }
}

/// Makes logical CPU `cpu` take the kick SGI.
pub fn kick(cpu: usize) {
    match version() {
        #[cfg(target_arch = "aarch64")]
        Some(GicVersion::V3) => crate::arch::gicv3::send_sgi(KICK_SGI, crate::smp::mpidr_of(cpu)),
        _ => v2::send_sgi(KICK_SGI, cpu),
    }
}

/// Routes SPI `intid` to logical CPU `cpu` and enables it (an interrupt of
/// a device passed through to a guest).
pub fn enable_spi(intid: u32, cpu: usize) {
    match version() {
        #[cfg(target_arch = "aarch64")]
        Some(GicVersion::V3) => crate::arch::gicv3::enable_spi(intid, crate::smp::mpidr_of(cpu)),
        _ => v2::enable_spi(intid, cpu),
    }
}

/// Number of list registers.
pub fn nr_lrs() -> usize {
    match version() {
        #[cfg(target_arch = "aarch64")]
        Some(GicVersion::V3) => crate::arch::gicv3::nr_lrs(),
        _ => v2::nr_lrs(),
    }
}

/// Reads list register `n`.
pub fn read_lr(n: usize) -> Lr {
    match version() {
        #[cfg(target_arch = "aarch64")]
        Some(GicVersion::V3) => Lr::decode_v3(crate::arch::gicv3::read_lr(n)),
        _ => Lr::decode_v2(v2::read_lr(n)),
    }
}

/// Writes list register `n`.
pub fn write_lr(n: usize, lr: &Lr) {
    match version() {
        #[cfg(target_arch = "aarch64")]
        Some(GicVersion::V3) => crate::arch::gicv3::write_lr(n, lr.encode_v3()),
        _ => v2::write_lr(n, lr.encode_v2()),
    }
}

/// Clears every list register (before a vCPU first runs).
pub fn clear_lrs() {
    for n in 0..nr_lrs() {
        write_lr(n, &Lr::INVALID);
    }
}

/// Enables the virtual CPU interface with the maintenance bits `hcr_bits`.
pub fn set_hcr(hcr_bits: u32) {
    match version() {
        #[cfg(target_arch = "aarch64")]
        Some(GicVersion::V3) => crate::arch::gicv3::set_ich_hcr(hcr_bits),
        _ => v2::set_hcr(hcr_bits),
    }
}
