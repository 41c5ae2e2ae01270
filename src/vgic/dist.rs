//! Register banks shared by the GICv2 distributor, the GICv3 distributor
//! and the GICv3 redistributors: the one-bit-per-interrupt registers
//! (`IGROUPR`, `IS/ICENABLER`, `IS/ICPENDR`, `IS/ICACTIVER`), the byte-per-
//! interrupt `IPRIORITYR`, and the two-bits-per-interrupt `ICFGR`.
//!
//! Each works on a range of INTIDs as seen by vCPU `bank` (whose SGIs and
//! PPIs are meant); interrupts that are not implemented read as zero and
//! ignore writes, as the architecture says.

use super::state::{Irq, State};
use super::{GicVersion, Outcome, VgicConfig};

/// A one-bit-per-interrupt register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BitReg {
    /// `IGROUPR`: read/write, 1 = Group 1.
    Group,
    /// `ISENABLER`: write 1 to enable.
    SetEnable,
    /// `ICENABLER`: write 1 to disable.
    ClearEnable,
    /// `ISPENDR`: write 1 to make pending.
    SetPending,
    /// `ICPENDR`: write 1 to clear pending.
    ClearPending,
    /// `ISACTIVER`: write 1 to activate.
    SetActive,
    /// `ICACTIVER`: write 1 to deactivate.
    ClearActive,
}

impl BitReg {
    /// The register at `index` (0-6) of the block starting at `0x080`,
    /// where each register array takes `0x80` bytes.
    pub fn from_block(index: u64) -> Option<Self> {
        Some(match index {
            0 => BitReg::Group,
            1 => BitReg::SetEnable,
            2 => BitReg::ClearEnable,
            3 => BitReg::SetPending,
            4 => BitReg::ClearPending,
            5 => BitReg::SetActive,
            6 => BitReg::ClearActive,
            _ => return None,
        })
    }

    /// The register's name.
    pub fn name(self) -> &'static str {
        match self {
            BitReg::Group => "IGROUPR",
            BitReg::SetEnable => "ISENABLER",
            BitReg::ClearEnable => "ICENABLER",
            BitReg::SetPending => "ISPENDR",
            BitReg::ClearPending => "ICPENDR",
            BitReg::SetActive => "ISACTIVER",
            BitReg::ClearActive => "ICACTIVER",
        }
    }
}

fn bit_of(reg: BitReg, irq: &Irq) -> bool {
    match reg {
        BitReg::Group => irq.group1,
        BitReg::SetEnable | BitReg::ClearEnable => irq.enabled,
        BitReg::SetPending | BitReg::ClearPending => irq.pending_visible(),
        BitReg::SetActive | BitReg::ClearActive => irq.active_visible(),
    }
}

/// Reads `reg` for INTIDs `first..first + 32`.
/// `GICD_CTLR` write: the group enables (the rest is RAZ/WI here); every
/// vCPU re-evaluates what it can take when they change.
pub(crate) fn write_ctlr(st: &mut State, cfg: &VgicConfig, value: u32, out: &mut Outcome) {
    let ctlr = value & (super::state::CTLR_GRP0 | super::state::CTLR_GRP1);
    if core::mem::replace(&mut st.ctlr, ctlr) != ctlr {
        out.kick |= super::VcpuMask::all(cfg.vcpus);
    }
}

pub(crate) fn read_bits(st: &State, bank: usize, first: u32, reg: BitReg) -> u32 {
    (0..32).filter(|&i| st.irq(bank, first + i).is_some_and(|irq| bit_of(reg, irq))).fold(0, |v, i| v | 1 << i)
}

/// Writes `value` to `reg` for INTIDs `first..first + 32`. An SPI the guest
/// activates is held by its first target (vCPU 0 if it has none).
pub(crate) fn write_bits(
    st: &mut State,
    cfg: &VgicConfig,
    bank: usize,
    first: u32,
    reg: BitReg,
    value: u32,
    out: &mut Outcome,
) {
    for i in 0..32 {
        let intid = first + i;
        let set = value & (1 << i) != 0;
        if reg != BitReg::Group && !set {
            continue;
        }
        // GICv2 SGIs are made pending and cleared through SPENDSGIR/CPENDSGIR only.
        let v2_sgi = cfg.version == GicVersion::V2 && intid < 16;
        if v2_sgi && matches!(reg, BitReg::SetPending | BitReg::ClearPending) {
            continue;
        }
        // Where an SPI activated by the guest must be listed: its target.
        let holder = match st.irq(bank, intid) {
            Some(irq) if intid >= 32 => State::route_mask(cfg, irq).iter().next().unwrap_or(0),
            _ => bank,
        };
        st.modify(cfg, bank, intid, true, out, |irq| apply(irq, reg, set, holder as u8));
    }
}

/// One bit of a write; whether it changed anything.
fn apply(irq: &mut Irq, reg: BitReg, set: bool, holder: u8) -> bool {
    match reg {
        BitReg::Group => core::mem::replace(&mut irq.group1, set) != set,
        BitReg::SetEnable => !core::mem::replace(&mut irq.enabled, true),
        BitReg::ClearEnable => core::mem::replace(&mut irq.enabled, false),
        BitReg::SetPending => !core::mem::replace(&mut irq.latch, true),
        BitReg::ClearPending => {
            let mut changed = core::mem::replace(&mut irq.latch, false);
            if irq.sources != 0 {
                irq.sources = 0;
                changed = true;
            }
            if irq.listed.is_some_and(|l| l.pending) && !irq.cancel_pending {
                irq.cancel_pending = true;
                changed = true;
            }
            changed
        }
        BitReg::SetActive | BitReg::ClearActive => {
            let want = reg == BitReg::SetActive;
            if irq.active_visible() == want {
                return false;
            }
            if irq.listed.is_some() {
                irq.active_override = Some(want);
            } else {
                irq.active = want;
                if want {
                    irq.active_on = holder;
                }
            }
            true
        }
    }
}

/// Reads `size` bytes of `IPRIORITYR` from INTID `first`.
pub(crate) fn read_priority(st: &State, bank: usize, first: u32, size: usize) -> u64 {
    (0..size as u32).fold(0, |v, i| v | u64::from(st.irq(bank, first + i).map_or(0, |irq| irq.priority)) << (8 * i))
}

/// Writes `size` bytes of `IPRIORITYR` from INTID `first` (only the
/// implemented priority bits are kept).
pub(crate) fn write_priority(
    st: &mut State,
    cfg: &VgicConfig,
    bank: usize,
    first: u32,
    size: usize,
    value: u64,
    out: &mut Outcome,
) {
    for i in 0..size as u32 {
        let p = (value >> (8 * i)) as u8 & cfg.priority_mask();
        st.modify(cfg, bank, first + i, false, out, |irq| core::mem::replace(&mut irq.priority, p) != p);
    }
}

/// Reads `ICFGR` for INTIDs `first..first + 16`: bit `2k + 1` set for
/// edge-triggered (SGIs always are), bit `2k` reads 0.
pub(crate) fn read_config(st: &State, bank: usize, first: u32) -> u32 {
    (0..16).filter(|&i| st.irq(bank, first + i).is_some_and(|irq| irq.edge)).fold(0, |v, i| v | 2 << (2 * i))
}

/// Writes `ICFGR` for INTIDs `first..first + 16`; SGIs keep being edge.
pub(crate) fn write_config(st: &mut State, cfg: &VgicConfig, bank: usize, first: u32, value: u32, out: &mut Outcome) {
    for i in 0..16 {
        let intid = first + i;
        if intid < 16 {
            continue;
        }
        let edge = value & (2 << (2 * i)) != 0;
        st.modify(cfg, bank, intid, false, out, |irq| core::mem::replace(&mut irq.edge, edge) != edge);
    }
}
