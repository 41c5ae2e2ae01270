//! The architected generic timer (`arm,armv8-timer`, `arm,armv7-timer`).
//!
//! `interrupts` lists, in this order, the secure physical, non-secure
//! physical, virtual and hypervisor physical timer PPIs, and on ARMv8.1+
//! optionally the hypervisor virtual timer. `clock-frequency` is only there
//! when firmware does not program CNTFRQ (Arndale: 24 MHz; the AEMv8 model:
//! 100 MHz); `always-on` says the timer keeps counting in every idle state.

use super::gic::{Irq, IrqKind, decode_interrupts};
use super::walk::{self, Flow};
use super::{DeviceTree, DtError, NodePath, Problem};

/// Which binding the node uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerKind {
    /// `arm,armv8-timer`.
    Armv8,
    /// `arm,armv7-timer`.
    Armv7,
}

/// The generic timer's interrupts and properties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    /// The node.
    pub node: NodePath,
    /// The first recognised compatible.
    pub kind: TimerKind,
    /// Secure EL1 physical timer.
    pub secure_phys: Irq,
    /// Non-secure EL1 physical timer (the guest's CNTP).
    pub nonsecure_phys: Irq,
    /// Virtual timer (the guest's CNTV).
    pub virt: Irq,
    /// Hypervisor physical timer (CNTHP: the hypervisor's own timer).
    pub hyp_phys: Irq,
    /// Hypervisor virtual timer (CNTHV, ARMv8.1 VHE), if listed.
    pub hyp_virt: Option<Irq>,
    /// `clock-frequency` in Hz, when firmware leaves CNTFRQ unset.
    pub clock_frequency: Option<u32>,
    /// `always-on`.
    pub always_on: bool,
}

const COMPATIBLE: [&str; 2] = ["arm,armv8-timer", "arm,armv7-timer"];

impl DeviceTree<'_> {
    /// The first enabled generic timer node.
    pub fn timer(&self) -> Result<Timer, DtError> {
        let mut found = None;
        self.walk(&mut |at| match walk::compatible_with(at.node(), &COMPATIBLE) {
            Some(c) if walk::enabled(at.node()) => {
                found = Some((*at, c));
                Flow::Stop
            }
            _ => Flow::Descend,
        });
        let (at, compatible) = found.ok_or(DtError::MissingNode("timer (arm,armv8-timer or arm,armv7-timer)"))?;
        let cells = self.parent_interrupt_cells(&at)?;
        if cells < 3 {
            return Err(at.err("interrupts", Problem::InterruptCells(cells)));
        }
        let mut irqs = [None; 5];
        let n = decode_interrupts(&at, cells, &mut irqs)?;
        if n < 4 {
            return Err(at.err("interrupts", Problem::TooFew { have: n, need: 4 }));
        }
        let mut ppis = [None; 5];
        for (out, irq) in ppis.iter_mut().zip(irqs) {
            match irq {
                Some(i) if i.kind != IrqKind::Ppi => return Err(at.err("interrupts", Problem::NotPpi)),
                i => *out = i,
            }
        }
        let [Some(secure_phys), Some(nonsecure_phys), Some(virt), Some(hyp_phys), hyp_virt] = ppis else {
            return Err(at.err("interrupts", Problem::TooFew { have: n, need: 4 }));
        };
        Ok(Timer {
            node: at.path(),
            kind: if compatible == "arm,armv8-timer" { TimerKind::Armv8 } else { TimerKind::Armv7 },
            secure_phys,
            nonsecure_phys,
            virt,
            hyp_phys,
            hyp_virt,
            clock_frequency: walk::read_u32_prop(&at, "clock-frequency")?,
            always_on: at.prop("always-on").is_some(),
        })
    }
}
