//! The interrupt state of one domain, and the rules that change it: what
//! "pending" and "active" mean while an interrupt sits in a list register,
//! where an SPI is routed, whom to kick, what the physical GIC must do for
//! a passed-through interrupt, and moving interrupts into list registers
//! and back.
//!
//! An interrupt in a list register ("listed") belongs to the list register
//! while its vCPU runs: its pending and active state moved there at listing
//! and come back at fold. Events while it is listed are recorded beside it:
//! a new pending event in `latch` (or `sources`), a guest's clear-pending in
//! `cancel_pending`, a guest's set/clear-active in `active_override`; they
//! are merged at fold, and the owner is kicked so that the fold comes soon.

use alloc::vec::Vec;

use super::lr::{LrKind, LrState, MAX_LRS};
use super::{GicVersion, HwAction, Outcome, VcpuMask, VgicConfig};

/// `GICD_CTLR` bit enabling Group 0 (GICv2 and GICv3 with `DS` = 1).
pub(crate) const CTLR_GRP0: u32 = 1 << 0;
/// `GICD_CTLR` bit enabling Group 1.
pub(crate) const CTLR_GRP1: u32 = 1 << 1;
/// `GICD_IROUTER.IRM`: route to any vCPU.
pub(crate) const IROUTER_IRM: u64 = 1 << 31;
/// The writable bits of `GICD_IROUTER`: Aff3, IRM, Aff2, Aff1, Aff0.
pub(crate) const IROUTER_MASK: u64 = 0xff_8000_0000 | 0xff_ffff;

/// What an interrupt looked like when it was listed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Listed {
    /// The vCPU whose list registers hold it.
    pub vcpu: u8,
    /// Listed pending.
    pub pending: bool,
    /// Listed active.
    pub active: bool,
    /// The listed pending state came from the latch (not only from a level
    /// line), so it goes back to the latch if the guest did not take it.
    pub from_latch: bool,
    /// GICv2 SGI: the source vCPU in the list register.
    pub source: u8,
}

/// One interrupt (SGI, PPI or SPI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Irq {
    /// Enabled (`ISENABLER`).
    pub enabled: bool,
    /// Edge latch, or pending set by software (`ISPENDR`, an SGI under
    /// GICv3, [`super::Vgic::raise`]); not counting a listed copy.
    pub latch: bool,
    /// GICv2 SGIs: the vCPUs it is pending from (bit per source).
    pub sources: u8,
    /// Input line level (level-sensitive interrupts).
    pub line: bool,
    /// Active, not counting a listed copy.
    pub active: bool,
    /// The vCPU holding an active SPI (it must be listed there), or the
    /// source of an active GICv2 SGI.
    pub active_on: u8,
    /// Priority (only the implemented bits).
    pub priority: u8,
    /// Edge-triggered (else level-sensitive).
    pub edge: bool,
    /// Group 1 (else Group 0).
    pub group1: bool,
    /// GICv2 SPIs: `ITARGETSR` byte, masked to existing vCPUs.
    pub targets: u8,
    /// GICv3 SPIs: `IROUTER`, masked to its defined bits.
    pub route: u64,
    /// Physical INTID of a passed-through interrupt.
    pub hw: Option<u32>,
    /// Set while in a vCPU's list registers.
    pub listed: Option<Listed>,
    /// While listed: the guest cleared its pending state.
    pub cancel_pending: bool,
    /// While listed: the guest set or cleared its active state.
    pub active_override: Option<bool>,
}

impl Irq {
    /// Adds GICv2 SGI sources `mask` (one bit per sending CPU interface);
    /// whether any was new.
    pub fn add_sources(&mut self, mask: u8) -> bool {
        let new = self.sources | mask;
        new != core::mem::replace(&mut self.sources, new)
    }

    /// The reset state of INTID `intid` under `version`: SGIs edge, the rest
    /// level; GICv3 interrupts Group 1 (what its non-secure software
    /// expects), GICv2 Group 0; SPIs target vCPU 0.
    fn reset(intid: u32, version: GicVersion) -> Self {
        Irq {
            enabled: false,
            latch: false,
            sources: 0,
            line: false,
            active: false,
            active_on: 0,
            priority: 0,
            edge: intid < 16,
            group1: version == GicVersion::V3,
            targets: if intid >= 32 { 1 } else { 0 },
            route: 0,
            hw: None,
            listed: None,
            cancel_pending: false,
            active_override: None,
        }
    }

    /// Pending outside any list register.
    pub fn pending_here(&self) -> bool {
        self.latch || self.sources != 0 || (!self.edge && self.line)
    }

    /// Pending as the guest's registers show it.
    pub fn pending_visible(&self) -> bool {
        self.pending_here() || self.listed.is_some_and(|l| l.pending && !self.cancel_pending)
    }

    /// Active as the guest's registers show it.
    pub fn active_visible(&self) -> bool {
        match self.listed {
            Some(l) => self.active_override.unwrap_or(l.active),
            None => self.active,
        }
    }

    /// Pending or active anywhere: for a passed-through interrupt, exactly
    /// when its physical interrupt is active.
    pub fn holds(&self) -> bool {
        self.pending_visible() || self.active_visible()
    }
}

/// Per-vCPU state.
#[derive(Debug)]
pub(crate) struct VcpuState {
    /// SGIs 0-15 and PPIs 16-31.
    pub private: [Irq; 32],
    /// GICv3 `GICR_WAKER.ProcessorSleep`.
    pub sleep: bool,
    /// INTIDs in this vCPU's list registers since the last flush.
    listed: [u16; MAX_LRS],
    nlisted: usize,
}

/// The state of a domain's virtual GIC (kept under the domain's lock).
#[derive(Debug)]
pub(crate) struct State {
    /// `GICD_CTLR` group enables ([`CTLR_GRP0`], [`CTLR_GRP1`]).
    pub ctlr: u32,
    /// One per vCPU.
    pub vcpus: Vec<VcpuState>,
    /// SPIs from INTID 32.
    pub spis: Vec<Irq>,
}

impl State {
    /// The reset state for `cfg` (already validated).
    pub fn new(cfg: &VgicConfig) -> Self {
        let vcpus = (0..cfg.vcpus)
            .map(|_| VcpuState {
                private: core::array::from_fn(|i| Irq::reset(i as u32, cfg.version)),
                sleep: true,
                listed: [0; MAX_LRS],
                nlisted: 0,
            })
            .collect();
        let spis = (32..cfg.spi_end()).map(|i| Irq::reset(i, cfg.version)).collect();
        State { ctlr: 0, vcpus, spis }
    }

    /// Interrupt `intid` as `bank` sees it (SGIs and PPIs are banked per
    /// vCPU); `None` if not implemented.
    pub fn irq(&self, bank: usize, intid: u32) -> Option<&Irq> {
        if intid < 32 { self.vcpus.get(bank)?.private.get(intid as usize) } else { self.spis.get(intid as usize - 32) }
    }

    /// Mutable [`State::irq`].
    pub fn irq_mut(&mut self, bank: usize, intid: u32) -> Option<&mut Irq> {
        if intid < 32 {
            self.vcpus.get_mut(bank)?.private.get_mut(intid as usize)
        } else {
            self.spis.get_mut(intid as usize - 32)
        }
    }

    /// Whether the distributor forwards `irq`'s pending state: enabled, and
    /// its group enabled in `GICD_CTLR`.
    pub fn eligible(&self, irq: &Irq) -> bool {
        let group = if irq.group1 { CTLR_GRP1 } else { CTLR_GRP0 };
        irq.enabled && self.ctlr & group != 0
    }

    /// The vCPUs a (not listed, not active) SPI may be listed on.
    pub fn route_mask(cfg: &VgicConfig, irq: &Irq) -> VcpuMask {
        match cfg.version {
            GicVersion::V2 => VcpuMask(u64::from(irq.targets)) & VcpuMask::all(cfg.vcpus),
            GicVersion::V3 if irq.route & IROUTER_IRM != 0 => VcpuMask::all(cfg.vcpus),
            GicVersion::V3 => {
                let aff = ((irq.route >> 8) & 0xff00_0000) as u32 | (irq.route & 0xff_ffff) as u32;
                super::vcpu_of_affinity(aff, cfg.vcpus).map_or(VcpuMask::EMPTY, VcpuMask::one)
            }
        }
    }

    /// Where interrupt (`bank`, `intid`) would be listed now.
    fn delivery_mask(cfg: &VgicConfig, bank: usize, intid: u32, irq: &Irq) -> VcpuMask {
        if intid < 32 {
            VcpuMask::one(bank)
        } else if irq.active {
            VcpuMask::one(usize::from(irq.active_on))
        } else {
            Self::route_mask(cfg, irq)
        }
    }

    /// The vCPUs that must exit (and fold/flush) to see a change to this
    /// interrupt: the owner of its list register, or where it is deliverable.
    pub fn kick_mask(&self, cfg: &VgicConfig, bank: usize, intid: u32) -> VcpuMask {
        let Some(irq) = self.irq(bank, intid) else { return VcpuMask::EMPTY };
        if let Some(l) = irq.listed {
            return VcpuMask::one(usize::from(l.vcpu));
        }
        if irq.active || (irq.pending_here() && self.eligible(irq)) {
            return Self::delivery_mask(cfg, bank, intid, irq);
        }
        VcpuMask::EMPTY
    }

    /// Applies `f` (which says whether it changed anything) to an interrupt;
    /// records whom to kick and, if `hw_ops` and the interrupt is passed
    /// through and not listed, what the physical GIC must do to keep its
    /// physical interrupt active exactly while the virtual one is pending
    /// or active. Unimplemented interrupts are ignored (RAZ/WI).
    pub fn modify(
        &mut self,
        cfg: &VgicConfig,
        bank: usize,
        intid: u32,
        hw_ops: bool,
        out: &mut Outcome,
        f: impl FnOnce(&mut Irq) -> bool,
    ) {
        let Some(irq) = self.irq_mut(bank, intid) else { return };
        let held = irq.holds();
        if !f(irq) {
            return;
        }
        if hw_ops
            && irq.listed.is_none()
            && let Some(p) = irq.hw
        {
            match (held, irq.holds()) {
                (true, false) => out.hw.push(p, HwAction::Deactivate),
                (false, true) => out.hw.push(p, HwAction::Activate),
                _ => {}
            }
        }
        out.kick |= self.kick_mask(cfg, bank, intid);
    }

    /// The sort key of interrupt `intid` if `vcpu` should list it now.
    pub fn candidate(&self, cfg: &VgicConfig, vcpu: usize, intid: u32) -> Option<super::lr::SortKey> {
        let irq = self.irq(vcpu, intid)?;
        if irq.listed.is_some() {
            return None;
        }
        let pending = irq.pending_here() && self.eligible(irq);
        if !irq.active && !pending {
            return None;
        }
        if intid >= 32 && !Self::delivery_mask(cfg, vcpu, intid, irq).contains(vcpu) {
            return None;
        }
        Some(super::lr::SortKey::new(irq.active, irq.priority, intid))
    }

    /// Whether `vcpu` has a pending interrupt (not active) it can take at
    /// priority `threshold` (its priority value is lower).
    pub fn signallable(&self, cfg: &VgicConfig, vcpu: usize, threshold: u8) -> bool {
        let ok = |intid: u32| self.candidate(cfg, vcpu, intid).is_some_and(|k| k.class == 1 && k.priority < threshold);
        (0..32).any(ok) || (32..cfg.spi_end()).any(ok)
    }

    /// Moves interrupt `intid` into a list register of `vcpu` (it must be a
    /// [`State::candidate`]) and returns that register.
    pub fn list(&mut self, cfg: &VgicConfig, vcpu: usize, intid: u32) -> Option<super::lr::Lr> {
        let v2_sgi = cfg.version == GicVersion::V2 && intid < 16;
        let eligible = self.irq(vcpu, intid).is_some_and(|irq| self.eligible(irq));
        let slot = self.vcpus.get(vcpu)?.nlisted;
        if slot >= MAX_LRS {
            return None;
        }
        let irq = self.irq_mut(vcpu, intid)?;
        let active = irq.active;
        let mut pending = eligible && irq.pending_here();
        // A hardware interrupt is never listed pending+active: the physical
        // GIC keeps its second pending state.
        if irq.hw.is_some() && active {
            pending = false;
        }
        let mut source = 0;
        let mut more = false; // a pending state left behind, to be listed later
        if v2_sgi {
            if active {
                source = irq.active_on & 7;
                // Only the same source can share the list register.
                pending = pending && irq.sources & (1 << source) != 0;
            } else if pending {
                source = irq.sources.trailing_zeros() as u8;
            }
        }
        let mut from_latch = false;
        if pending {
            if v2_sgi {
                irq.sources &= !(1 << source);
                from_latch = true;
            } else {
                from_latch = irq.latch;
                irq.latch = false;
            }
        }
        if v2_sgi && irq.sources != 0 {
            more = true;
        }
        irq.active = false;
        irq.cancel_pending = false;
        irq.active_override = None;
        irq.listed = Some(Listed { vcpu: vcpu as u8, pending, active, from_latch, source });
        let kind = match irq.hw {
            Some(pintid) => LrKind::Hardware { pintid },
            None => LrKind::Software { source, eoi: more },
        };
        let lr = super::lr::Lr {
            vintid: intid,
            state: LrState::new(pending, active),
            priority: irq.priority,
            group1: irq.group1,
            kind,
        };
        let v = &mut self.vcpus[vcpu];
        v.listed[slot] = intid as u16;
        v.nlisted += 1;
        Some(lr)
    }

    /// Takes the list of interrupts listed on `vcpu` (emptying it).
    pub fn take_listed(&mut self, vcpu: usize) -> ([u16; MAX_LRS], usize) {
        match self.vcpus.get_mut(vcpu) {
            Some(v) => {
                let n = core::mem::take(&mut v.nlisted);
                (v.listed, n)
            }
            None => ([0; MAX_LRS], 0),
        }
    }

    /// Moves listed interrupt `intid` of `vcpu` back out of its list
    /// register, which the guest left in `state`, merging what happened
    /// meanwhile.
    pub fn unlist(&mut self, cfg: &VgicConfig, vcpu: usize, intid: u32, state: LrState, out: &mut Outcome) {
        let v2_sgi = cfg.version == GicVersion::V2 && intid < 16;
        let Some(irq) = self.irq_mut(vcpu, intid) else { return };
        let Some(l) = irq.listed.take() else { return };
        if l.vcpu as usize != vcpu {
            irq.listed = Some(l); // someone else's: leave it
            return;
        }
        if state.pending() && l.from_latch && !irq.cancel_pending {
            if v2_sgi {
                irq.sources |= 1 << l.source;
            } else {
                irq.latch = true;
            }
        }
        irq.active = irq.active_override.unwrap_or(state.active());
        if irq.active {
            irq.active_on = if v2_sgi { l.source } else { vcpu as u8 };
        }
        irq.cancel_pending = false;
        irq.active_override = None;
        if let Some(p) = irq.hw {
            // The physical interrupt stays active until the guest's
            // deactivation (the list register going empty) deactivates it.
            let physical_active = state != LrState::Invalid;
            match (physical_active, irq.holds()) {
                (true, false) => out.hw.push(p, HwAction::Deactivate),
                (false, true) => out.hw.push(p, HwAction::Activate),
                _ => {}
            }
        }
    }
}
