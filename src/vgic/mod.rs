//! The virtual GIC model: each domain's virtual interrupt state, its
//! emulated distributor (GICv2 `GICD`, GICv3 `GICD` and `GICR` frames) and
//! the choice of list registers on each vCPU entry.
//!
//! This module owns the *model* only — pure logic, no `asm!`, no system
//! registers, no physical GIC: values in, values out. The arch code
//! (`crate::arch`) owns the hardware side and drives the model:
//!
//! - **Trapped MMIO** to the guest's `GICD` or `GICR` region goes to
//!   [`Vgic::read`] / [`Vgic::write`] with the offset into that region.
//!   An `Err` means the model did *nothing*: the arch code logs it
//!   (`"d0v1 {err}"` gives "d0v1 vGICD: unhandled word write 0x… to … at
//!   offset 0x…") and completes the access as read-as-zero / write-ignored.
//!   Registers the architecture defines as RAZ/WI (GICv3 `GICD` registers
//!   for INTIDs 0-31, `ITARGETSR` under affinity routing, `IGRPMODR`,
//!   `NSACR`, `STATUSR`, `TYPER2`, interrupts beyond the implemented ones)
//!   are handled silently; errors are reserved offsets, sizes and
//!   alignments the register does not allow, writes to read-only and reads
//!   of write-only registers, and reserved field values. `ICACTIVER`, which
//!   Linux writes at boot and Xen does not implement, is implemented.
//! - **GICv3 SGIs** (`ICC_SGI1R_EL1` / `ICC_SGI0R_EL1`, trapped by the arch
//!   code) go to [`Vgic::send_sgi_v3`] / [`Vgic::send_sgi0_v3`].
//! - **Devices and passed-through interrupts** use [`Vgic::raise`] (an edge,
//!   or a physical interrupt the hypervisor acknowledged with priority drop
//!   only, for one linked by [`Vgic::link_hw`]) and [`Vgic::set_level`].
//! - **Every vCPU exit** starts with [`Vgic::fold`] (the list registers,
//!   decoded with [`Lr::decode_v2`] / [`Lr::decode_v3`], go back into the
//!   model) before anything else touches the vGIC for that vCPU; **every
//!   entry** ends with [`Vgic::flush`], whose [`Lr`]s the arch code encodes
//!   ([`Lr::encode_v2`] / [`Lr::encode_v3`]) into all its list registers,
//!   with the [`Maintenance`] bits in `GICH_HCR` / `ICH_HCR_EL2`.
//!   Between fold and flush the vCPU has nothing listed, so the model is
//!   the whole truth for it; interrupts listed on *other*, running vCPUs
//!   are handled as the `state` submodule describes.
//! - Every call that changes state returns an [`Outcome`]: the vCPUs to
//!   kick (send a physical SGI to the CPU running them so that they exit,
//!   fold and flush; it may name the caller, and idle vCPUs should be woken
//!   instead), and [`HwOp`]s on physical interrupts of passed-through ones.
//!
//! **Locking.** All state of a domain's vGIC is behind one spin lock
//! ([`spin::Mutex`]) in [`Vgic`]; every method takes it once, briefly, and
//! calls nothing outside this module while holding it. A `Vgic` is shared
//! by reference between the physical CPUs running its vCPUs. Do not call
//! it from an interrupt handler that can interrupt a call on the same CPU
//! (the hypervisor runs its vGIC paths with interrupts masked).
//!
//! **Interrupt model.** Per vCPU: SGIs 0-15 (always edge) and PPIs 16-31;
//! shared: SPIs 32 up to [`VgicConfig::lines`] (a multiple of 32, at most
//! 1024; INTIDs 1020-1023 are never implemented, so at most 988 SPIs).
//! Each has enabled, pending (edge latch or level line), active, priority
//! (the implemented top [`VgicConfig::priority_bits`] bits), edge/level
//! (guest-programmable for PPIs and SPIs), group, and for SPIs the GICv2
//! `ITARGETSR` (masked to existing vCPUs) or GICv3 `IROUTER` (an affinity,
//! or IRM = 1 for any vCPU). An SPI with several targets may be listed by
//! whichever target enters first (like GICv2 1-of-N). GICv2 SGIs remember
//! each source vCPU. The GICv3 model has a single security state
//! (`GICD_CTLR.DS` = 1), affinity routing always on (`ARE` = 1), no LPIs.
//! vCPU affinities are [`vcpu_affinity`] (Aff0 = vCPU % 16, Aff1 = vCPU / 16),
//! which the arch code must also put in the vCPUs' `VMPIDR_EL2`.
//!
//! Submodules: [`lr`] (list registers, selection, maintenance), `state`
//! (the interrupt records and their rules), `dist` (register banks shared
//! by the GICv2 and GICv3 frames), `v2` and `v3` (the register maps).

use core::fmt;
use core::ops::{BitAnd, BitOr, BitOrAssign};

pub use crate::dt::GicVersion;

mod dist;
pub mod lr;
mod state;
mod v2;
mod v3;

pub use lr::{Lr, LrKind, LrState, MAX_LRS, Maintenance};

use state::State;

/// Most vCPUs a GICv3 vGIC serves (GICv2: 8).
pub const MAX_VCPUS: usize = 64;
/// Most vCPUs a GICv2 vGIC serves.
pub const MAX_VCPUS_V2: usize = 8;
/// First INTID that is never implemented (1020-1023 are special).
pub const SPECIAL_INTID: u32 = 1020;
/// Size of one GICv3 redistributor (RD_base + SGI_base, 2 × 64 KiB).
pub const GICR_STRIDE: u64 = 0x2_0000;
/// Size of the GICv2 distributor frame.
pub const GICD_SIZE_V2: u64 = 0x1000;
/// Size of the GICv3 distributor frame.
pub const GICD_SIZE_V3: u64 = 0x1_0000;
/// `GICD_IIDR` / `GICR_IIDR`: ProductID 0x41 ('A'), variant and revision 0,
/// implementer 0x43b (JEP106 code Arm uses; KVM does the same); chosen so
/// that no Linux erratum workaround matches it.
pub const IIDR: u32 = 0x4100_043b;

/// The vCPU affinity (Aff3.Aff2.Aff1.Aff0, as in `GICR_TYPER[63:32]`) of
/// vCPU `vcpu`: Aff0 = `vcpu % 16`, Aff1 = `vcpu / 16`, so that an SGI's
/// 16-bit target list reaches a whole Aff1 group.
pub fn vcpu_affinity(vcpu: usize) -> u32 {
    (((vcpu / 16) as u32 & 0xff) << 8) | (vcpu % 16) as u32
}

/// The MPIDR affinity fields (Aff0 7:0, Aff1 15:8, Aff2 23:16, Aff3 39:32)
/// of vCPU `vcpu`, for `VMPIDR_EL2` (the caller adds bit 31, RES1).
pub fn vcpu_mpidr(vcpu: usize) -> u64 {
    let a = vcpu_affinity(vcpu);
    u64::from(a & 0xff_ffff) | (u64::from(a >> 24) << 32)
}

/// The vCPU with affinity `aff` (packed as in [`vcpu_affinity`]), if any.
pub fn vcpu_of_affinity(aff: u32, vcpus: usize) -> Option<usize> {
    let (aff0, aff1) = ((aff & 0xff) as usize, ((aff >> 8) & 0xff) as usize);
    if aff >> 16 != 0 || aff0 >= 16 {
        return None;
    }
    let v = aff1 * 16 + aff0;
    (v < vcpus).then_some(v)
}

/// What a domain's vGIC looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VgicConfig {
    /// GICv2 or GICv3 programming model (the physical GIC's).
    pub version: GicVersion,
    /// Number of vCPUs (1-8 for GICv2, 1-[`MAX_VCPUS`] for GICv3).
    pub vcpus: usize,
    /// Number of INTIDs including SGIs and PPIs: a multiple of 32 from 32
    /// to 1024 (`GICD_TYPER.ITLinesNumber` = lines / 32 - 1).
    pub lines: u32,
    /// Implemented priority bits, 4-8 (GICv2: 4-5, what `GICH_LR` holds);
    /// normally `PRIbits + 1` of `ICH_VTR_EL2` / `GICH_VTR`.
    pub priority_bits: u8,
}

impl VgicConfig {
    /// A configuration with 5 priority bits (32 levels).
    pub fn new(version: GicVersion, vcpus: usize, lines: u32) -> Self {
        VgicConfig { version, vcpus, lines, priority_bits: 5 }
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let max = match self.version {
            GicVersion::V2 => MAX_VCPUS_V2,
            GicVersion::V3 => MAX_VCPUS,
        };
        if self.vcpus == 0 || self.vcpus > max {
            return Err(ConfigError::Vcpus { vcpus: self.vcpus, max });
        }
        if self.lines < 32 || self.lines > 1024 || !self.lines.is_multiple_of(32) {
            return Err(ConfigError::Lines(self.lines));
        }
        let max_bits = if self.version == GicVersion::V2 { 5 } else { 8 };
        if self.priority_bits < 4 || self.priority_bits > max_bits {
            return Err(ConfigError::PriorityBits(self.priority_bits));
        }
        Ok(())
    }

    /// One past the last implemented SPI.
    pub fn spi_end(&self) -> u32 {
        self.lines.min(SPECIAL_INTID)
    }

    /// The implemented bits of an 8-bit priority.
    pub fn priority_mask(&self) -> u8 {
        !(0xffu16 >> self.priority_bits) as u8
    }
}

/// Why a [`VgicConfig`] was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// No vCPUs, or more than the GIC version can address.
    Vcpus {
        /// Requested.
        vcpus: usize,
        /// Allowed.
        max: usize,
    },
    /// The number of interrupt lines is not a multiple of 32 in 32-1024.
    Lines(u32),
    /// The number of priority bits is out of range.
    PriorityBits(u8),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Vcpus { vcpus, max } => write!(f, "vGIC: {vcpus} vCPUs (1 to {max} possible)"),
            ConfigError::Lines(n) => write!(f, "vGIC: {n} interrupt lines (a multiple of 32 from 32 to 1024)"),
            ConfigError::PriorityBits(n) => write!(f, "vGIC: {n} priority bits (4 to 5 for GICv2, to 8 for GICv3)"),
        }
    }
}

/// Which register frame an access is to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The distributor (`GICD`); offset from its base.
    Distributor,
    /// The GICv3 redistributors (`GICR`), one [`GICR_STRIDE`] frame pair
    /// per vCPU in vCPU order; offset from the base of the first.
    Redistributors,
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Frame::Distributor => "vGICD",
            Frame::Redistributors => "vGICR",
        })
    }
}

/// A register's name for messages, e.g. `ICACTIVER` with index 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegName {
    /// Name without the `GICD_`/`GICR_` prefix.
    pub name: &'static str,
    /// Index of a register array.
    pub index: Option<u32>,
}

impl fmt::Display for RegName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)?;
        if let Some(i) = self.index {
            write!(f, "{i}")?;
        }
        Ok(())
    }
}

/// Why a register access was not handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// No register there (reserved, or a feature the vGIC lacks).
    Reserved,
    /// The register does not allow this access size.
    Width,
    /// The offset is not aligned to the access size.
    Unaligned,
    /// Write to a read-only register.
    ReadOnly,
    /// Read of a write-only register.
    WriteOnly,
    /// A field holds a reserved value (e.g. `GICD_SGIR.TargetListFilter` 3).
    BadValue,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Why::Reserved => "reserved or unimplemented register",
            Why::Width => "access size not allowed",
            Why::Unaligned => "unaligned",
            Why::ReadOnly => "read-only register",
            Why::WriteOnly => "write-only register",
            Why::BadValue => "reserved field value",
        })
    }
}

/// An access the model did not perform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unhandled {
    /// The frame.
    pub frame: Frame,
    /// Offset into the frame's region.
    pub offset: u64,
    /// Access size in bytes.
    pub size: usize,
    /// The value of a write; `None` for a read.
    pub write: Option<u64>,
    /// The register there, if there is one.
    pub reg: Option<RegName>,
    /// Why.
    pub why: Why,
}

/// Errors of the vGIC. None changes any state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VgicError {
    /// A guest register access was not handled: log it and complete the
    /// access as read-as-zero / write-ignored.
    Unhandled(Unhandled),
    /// There is no such vCPU (an arch-code bug).
    NoSuchVcpu(usize),
    /// The INTID is not implemented (an arch-code or configuration bug).
    NoSuchIrq(u32),
    /// The operation does not apply to this interrupt.
    NotAllowed {
        /// The INTID.
        intid: u32,
        /// What was attempted.
        what: &'static str,
    },
}

fn width_name(size: usize) -> &'static str {
    match size {
        1 => "byte",
        2 => "halfword",
        4 => "word",
        8 => "doubleword",
        _ => "odd-sized",
    }
}

impl fmt::Display for VgicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VgicError::Unhandled(u) => {
                write!(f, "{}: unhandled {} ", u.frame, width_name(u.size))?;
                match (u.write, u.reg) {
                    (Some(v), Some(r)) => write!(f, "write {v:#x} to {r}")?,
                    (Some(v), None) => write!(f, "write {v:#x}")?,
                    (None, Some(r)) => write!(f, "read of {r}")?,
                    (None, None) => f.write_str("read")?,
                }
                write!(f, " at offset {:#x} ({})", u.offset, u.why)
            }
            VgicError::NoSuchVcpu(v) => write!(f, "vGIC: no vCPU {v}"),
            VgicError::NoSuchIrq(i) => write!(f, "vGIC: INTID {i} is not implemented"),
            VgicError::NotAllowed { intid, what } => write!(f, "vGIC: {what} is not possible for INTID {intid}"),
        }
    }
}

/// A set of vCPUs (bit `n`: vCPU `n`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuMask(pub u64);

impl VcpuMask {
    /// No vCPU.
    pub const EMPTY: VcpuMask = VcpuMask(0);

    /// Only vCPU `v` (empty if `v` ≥ 64).
    pub fn one(v: usize) -> Self {
        VcpuMask(1u64.checked_shl(v as u32).unwrap_or(0))
    }

    /// vCPUs `0..n`.
    pub fn all(n: usize) -> Self {
        VcpuMask(if n >= 64 { u64::MAX } else { (1u64 << n) - 1 })
    }

    /// vCPUs `0..n` but `v`.
    pub fn all_but(n: usize, v: usize) -> Self {
        VcpuMask(Self::all(n).0 & !Self::one(v).0)
    }

    /// Whether `v` is in the set.
    pub fn contains(&self, v: usize) -> bool {
        v < 64 && self.0 & (1 << v) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The vCPUs, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = usize> + use<> {
        let bits = self.0;
        (0..64).filter(move |v| bits & (1 << v) != 0)
    }
}

impl BitOr for VcpuMask {
    type Output = VcpuMask;
    fn bitor(self, o: VcpuMask) -> VcpuMask {
        VcpuMask(self.0 | o.0)
    }
}

impl BitOrAssign for VcpuMask {
    fn bitor_assign(&mut self, o: VcpuMask) {
        self.0 |= o.0;
    }
}

impl BitAnd for VcpuMask {
    type Output = VcpuMask;
    fn bitand(self, o: VcpuMask) -> VcpuMask {
        VcpuMask(self.0 & o.0)
    }
}

/// What to do to a physical interrupt linked to a virtual one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HwAction {
    /// Deactivate it (the guest dropped its virtual interrupt without
    /// deactivating it through the list register, e.g. by `ICPENDR`).
    Deactivate,
    /// Make it active (the guest made the virtual one pending or active by
    /// a register write; its deactivation will deactivate the physical one).
    Activate,
}

/// One operation on a physical interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HwOp {
    /// Physical INTID.
    pub pintid: u32,
    /// What to do.
    pub action: HwAction,
}

/// Up to [`MAX_LRS`] physical-interrupt operations (one call touches at
/// most one 32-interrupt register or the list registers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HwOps {
    ops: [HwOp; MAX_LRS],
    len: usize,
}

impl Default for HwOps {
    fn default() -> Self {
        HwOps { ops: [HwOp { pintid: 0, action: HwAction::Deactivate }; MAX_LRS], len: 0 }
    }
}

impl HwOps {
    fn push(&mut self, pintid: u32, action: HwAction) {
        if let Some(slot) = self.ops.get_mut(self.len) {
            *slot = HwOp { pintid, action };
            self.len += 1;
        }
    }

    /// The operations, in order.
    pub fn as_slice(&self) -> &[HwOp] {
        &self.ops[..self.len]
    }

    /// Keeps only the operations `keep` accepts, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&HwOp) -> bool) {
        let mut n = 0;
        for i in 0..self.len {
            if keep(&self.ops[i]) {
                self.ops[n] = self.ops[i];
                n += 1;
            }
        }
        self.len = n;
    }
}

/// What the arch code must do after a state change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Outcome {
    /// vCPUs to kick (make exit, fold and flush) or wake.
    pub kick: VcpuMask,
    /// Operations on physical interrupts.
    pub hw: HwOps,
}

/// An interrupt of a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Virq {
    /// SGI or PPI `intid` (0-31) of vCPU `vcpu`.
    Private {
        /// The vCPU.
        vcpu: usize,
        /// INTID 0-31.
        intid: u32,
    },
    /// SPI `intid` (32 and up).
    Spi(u32),
}

/// The state of an interrupt as the guest's registers show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqSnapshot {
    /// Enabled.
    pub enabled: bool,
    /// Pending.
    pub pending: bool,
    /// Active.
    pub active: bool,
    /// Priority.
    pub priority: u8,
    /// Edge-triggered.
    pub edge: bool,
    /// Group 1.
    pub group1: bool,
    /// Linked physical INTID.
    pub hw: Option<u32>,
    /// In the list registers of this vCPU.
    pub listed_on: Option<usize>,
}

/// What [`Vgic::flush`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushInfo {
    /// List registers filled (from the first); the rest were set invalid.
    pub used: usize,
    /// Interrupts that wanted a list register and did not get one.
    pub overflow: usize,
    /// Maintenance interrupts to enable.
    pub maintenance: Maintenance,
    /// A listed interrupt is pending with a priority value below the
    /// threshold given: the vCPU will take an interrupt when it runs.
    pub signalled: bool,
}

/// A domain's virtual GIC.
#[derive(Debug)]
pub struct Vgic {
    cfg: VgicConfig,
    state: spin::Mutex<State>,
}

// A domain's vGIC is shared by the physical CPUs running its vCPUs.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Vgic>();
};

impl Vgic {
    /// A vGIC in its reset state.
    pub fn new(cfg: VgicConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        Ok(Vgic { cfg, state: spin::Mutex::new(State::new(&cfg)) })
    }

    /// The configuration.
    pub fn config(&self) -> &VgicConfig {
        &self.cfg
    }

    fn check_vcpu(&self, vcpu: usize) -> Result<(), VgicError> {
        if vcpu < self.cfg.vcpus { Ok(()) } else { Err(VgicError::NoSuchVcpu(vcpu)) }
    }

    fn unhandled(&self, frame: Frame, offset: u64, size: usize, write: Option<u64>, why: Why) -> VgicError {
        let reg = match (self.cfg.version, frame) {
            (GicVersion::V2, Frame::Distributor) => v2::reg_name(offset),
            (GicVersion::V3, Frame::Distributor) => v3::dist_reg_name(offset),
            (GicVersion::V3, Frame::Redistributors) => v3::redist_reg_name(offset),
            (GicVersion::V2, Frame::Redistributors) => None,
        };
        VgicError::Unhandled(Unhandled { frame, offset, size, write, reg, why })
    }

    /// Checks size and alignment common to every register.
    fn check_access(&self, frame: Frame, offset: u64, size: usize, write: Option<u64>) -> Result<(), VgicError> {
        if !matches!(size, 1 | 2 | 4 | 8) {
            return Err(self.unhandled(frame, offset, size, write, Why::Width));
        }
        if !offset.is_multiple_of(size as u64) {
            return Err(self.unhandled(frame, offset, size, write, Why::Unaligned));
        }
        Ok(())
    }

    /// A guest read of `size` bytes (1, 2, 4, 8) at `offset` in `frame`,
    /// by vCPU `vcpu`.
    pub fn read(&self, frame: Frame, vcpu: usize, offset: u64, size: usize) -> Result<u64, VgicError> {
        self.check_vcpu(vcpu)?;
        self.check_access(frame, offset, size, None)?;
        let st = self.state.lock();
        let r = match (self.cfg.version, frame) {
            (GicVersion::V2, Frame::Distributor) => v2::read(&st, &self.cfg, vcpu, offset, size),
            (GicVersion::V3, Frame::Distributor) => v3::dist_read(&st, &self.cfg, offset, size),
            (GicVersion::V3, Frame::Redistributors) => v3::redist_read(&st, &self.cfg, offset, size),
            (GicVersion::V2, Frame::Redistributors) => Err(Why::Reserved),
        };
        drop(st);
        r.map_err(|why| self.unhandled(frame, offset, size, None, why))
    }

    /// A guest write of `value` (its low `size` bytes) at `offset` in
    /// `frame`, by vCPU `vcpu`.
    pub fn write(&self, frame: Frame, vcpu: usize, offset: u64, size: usize, value: u64) -> Result<Outcome, VgicError> {
        self.check_vcpu(vcpu)?;
        self.check_access(frame, offset, size, Some(value))?;
        let value = if size == 8 { value } else { value & ((1u64 << (size * 8)) - 1) };
        let mut out = Outcome::default();
        let mut st = self.state.lock();
        let r = match (self.cfg.version, frame) {
            (GicVersion::V2, Frame::Distributor) => v2::write(&mut st, &self.cfg, vcpu, offset, size, value, &mut out),
            (GicVersion::V3, Frame::Distributor) => v3::dist_write(&mut st, &self.cfg, offset, size, value, &mut out),
            (GicVersion::V3, Frame::Redistributors) => {
                v3::redist_write(&mut st, &self.cfg, offset, size, value, &mut out)
            }
            (GicVersion::V2, Frame::Redistributors) => Err(Why::Reserved),
        };
        drop(st);
        r.map(|()| out).map_err(|why| self.unhandled(frame, offset, size, Some(value), why))
    }

    /// vCPU `sender` wrote `value` to `ICC_SGI1R_EL1` (Group 1 SGIs: with a
    /// single security state, forwarded whatever the target's group).
    /// TargetList, Aff1-3 and RS select targets; IRM = 1 means all vCPUs
    /// but the sender. Unknown targets are ignored. GICv3 only.
    pub fn send_sgi_v3(&self, sender: usize, value: u64) -> Result<Outcome, VgicError> {
        self.send_sgi(sender, value, true)
    }

    /// vCPU `sender` wrote `value` to `ICC_SGI0R_EL1`: like
    /// [`Vgic::send_sgi_v3`], but only targets whose SGI is Group 0 get it.
    pub fn send_sgi0_v3(&self, sender: usize, value: u64) -> Result<Outcome, VgicError> {
        self.send_sgi(sender, value, false)
    }

    fn send_sgi(&self, sender: usize, value: u64, group1: bool) -> Result<Outcome, VgicError> {
        self.check_vcpu(sender)?;
        let intid = ((value >> 24) & 0xf) as u32;
        if self.cfg.version != GicVersion::V3 {
            return Err(VgicError::NotAllowed { intid, what: "an ICC_SGI1R SGI under GICv2" });
        }
        let mut st = self.state.lock();
        Ok(v3::send_sgi(&mut st, &self.cfg, sender, value, group1))
    }

    fn locate(&self, irq: Virq) -> Result<(usize, u32), VgicError> {
        match irq {
            Virq::Private { vcpu, intid } if intid < 32 => {
                self.check_vcpu(vcpu)?;
                Ok((vcpu, intid))
            }
            Virq::Private { intid, .. } => Err(VgicError::NoSuchIrq(intid)),
            Virq::Spi(intid) if (32..self.cfg.spi_end()).contains(&intid) => Ok((0, intid)),
            Virq::Spi(intid) => Err(VgicError::NoSuchIrq(intid)),
        }
    }

    /// Makes `irq` pending: an edge on a device's line, an SGI from the
    /// hypervisor, or — for a linked interrupt — its physical interrupt,
    /// which the arch code has acknowledged (it stays active until the
    /// guest deactivates the virtual one).
    pub fn raise(&self, irq: Virq) -> Result<Outcome, VgicError> {
        let (bank, intid) = self.locate(irq)?;
        let v2_sgi = self.cfg.version == GicVersion::V2 && intid < 16;
        let mut out = Outcome::default();
        self.state.lock().modify(&self.cfg, bank, intid, false, &mut out, |irq| {
            if v2_sgi {
                // An SGI from the hypervisor: it appears to come from the target itself.
                irq.add_sources(1 << (bank & 7))
            } else {
                !core::mem::replace(&mut irq.latch, true)
            }
        });
        Ok(out)
    }

    /// Sets the level of `irq`'s input line (a device model's output). For
    /// an edge-triggered interrupt a rising level is an edge. Not for SGIs
    /// or passed-through interrupts.
    pub fn set_level(&self, irq: Virq, level: bool) -> Result<Outcome, VgicError> {
        let (bank, intid) = self.locate(irq)?;
        if intid < 16 {
            return Err(VgicError::NotAllowed { intid, what: "a level on an SGI" });
        }
        let mut out = Outcome::default();
        let mut st = self.state.lock();
        if st.irq(bank, intid).is_some_and(|i| i.hw.is_some()) {
            return Err(VgicError::NotAllowed { intid, what: "a level on a passed-through interrupt" });
        }
        st.modify(&self.cfg, bank, intid, false, &mut out, |irq| {
            let rising = level && !irq.line;
            let old = (irq.line, irq.latch);
            irq.line = level;
            if irq.edge && rising {
                irq.latch = true;
            }
            old != (irq.line, irq.latch)
        });
        Ok(out)
    }

    /// Sets the level of a hardware-linked level interrupt's line as the
    /// hypervisor sees its source now: a per-CPU timer's output (enabled,
    /// condition met, not masked), sampled when its physical interrupt is
    /// taken and on every exit, as KVM asks the timer for its line level. A
    /// level interrupt's pending state is its line: once the guest turns
    /// the timer off, masks it or moves its compare value on, the interrupt
    /// is no longer pending (in `ISPENDR`) nor delivered.
    ///
    /// Call it before [`Vgic::fold`] on the vCPU's own CPU, so the fold
    /// merges what the guest left in the list register with the line as it
    /// is now. While the interrupt is not listed the [`Outcome`] keeps its
    /// physical interrupt active exactly while the virtual one is pending
    /// or active ([`HwAction`]): made active by hand when the line rose
    /// before the physical interrupt was taken (its deactivation through
    /// the list register then deactivates it), deactivated when the line
    /// fell before the guest took it. Only for linked PPIs and SPIs.
    pub fn set_hw_level(&self, irq: Virq, level: bool) -> Result<Outcome, VgicError> {
        let (bank, intid) = self.locate(irq)?;
        let mut out = Outcome::default();
        let mut st = self.state.lock();
        if st.irq(bank, intid).is_none_or(|i| i.hw.is_none()) {
            return Err(VgicError::NotAllowed {
                intid,
                what: "a sampled level on an interrupt not linked to hardware",
            });
        }
        st.modify(&self.cfg, bank, intid, true, &mut out, |irq| {
            let rising = level && !irq.line;
            let old = (irq.line, irq.latch);
            irq.line = level;
            if irq.edge && rising {
                irq.latch = true;
            }
            old != (irq.line, irq.latch)
        });
        Ok(out)
    }

    /// Links `irq` (a PPI or SPI) to physical INTID `pintid` (16-1019), or
    /// unlinks it with `None`. A linked interrupt is listed with the HW bit,
    /// so that the guest's deactivation deactivates the physical one.
    pub fn link_hw(&self, irq: Virq, pintid: Option<u32>) -> Result<(), VgicError> {
        let (bank, intid) = self.locate(irq)?;
        if intid < 16 {
            return Err(VgicError::NotAllowed { intid, what: "a physical link on an SGI" });
        }
        if let Some(p) = pintid
            && !(16..SPECIAL_INTID).contains(&p)
        {
            return Err(VgicError::NotAllowed { intid, what: "a link to a physical SGI or special INTID" });
        }
        let mut st = self.state.lock();
        if let Some(irq) = st.irq_mut(bank, intid) {
            irq.hw = pintid;
        }
        Ok(())
    }

    /// The vCPUs SPI `intid` is routed to now (for the arch code's physical
    /// routing of a passed-through SPI).
    pub fn spi_targets(&self, intid: u32) -> Result<VcpuMask, VgicError> {
        let (bank, intid) = self.locate(Virq::Spi(intid))?;
        let st = self.state.lock();
        Ok(st.irq(bank, intid).map_or(VcpuMask::EMPTY, |irq| State::route_mask(&self.cfg, irq)))
    }

    /// The state of `irq` as the guest's registers show it.
    pub fn snapshot(&self, irq: Virq) -> Result<IrqSnapshot, VgicError> {
        let (bank, intid) = self.locate(irq)?;
        let st = self.state.lock();
        let i = st.irq(bank, intid).ok_or(VgicError::NoSuchIrq(intid))?;
        Ok(IrqSnapshot {
            enabled: i.enabled,
            pending: i.pending_visible(),
            active: i.active_visible(),
            priority: i.priority,
            edge: i.edge,
            group1: i.group1,
            hw: i.hw,
            listed_on: i.listed.map(|l| usize::from(l.vcpu)),
        })
    }

    /// Fills the list registers `out` (as many as the hardware has, from
    /// `ICH_VTR_EL2.ListRegs + 1` or `GICH_VTR.ListRegs + 1`; at most
    /// [`MAX_LRS`] are used) for entering vCPU `vcpu`: its active interrupts,
    /// then its pending, enabled interrupts (group enabled in `GICD_CTLR`,
    /// routed to it), by priority and INTID. Unused entries are set
    /// [`Lr::INVALID`]. `threshold` is the vCPU's priority mask (or its
    /// running priority, if lower): it only decides
    /// [`FlushInfo::signalled`]; masked interrupts are listed all the same,
    /// because the guest can unmask them without trapping.
    ///
    /// Anything still listed from an earlier flush without a fold is taken
    /// back first as if the guest had not run.
    pub fn flush(&self, vcpu: usize, out: &mut [Lr], threshold: u8) -> Result<FlushInfo, VgicError> {
        self.check_vcpu(vcpu)?;
        let cfg = &self.cfg;
        let mut st = self.state.lock();
        let mut ignored = Outcome::default();
        let (stale, n) = st.take_listed(vcpu);
        for &intid in &stale[..n] {
            let intid = u32::from(intid);
            let state = st
                .irq(vcpu, intid)
                .and_then(|i| i.listed)
                .map_or(LrState::Invalid, |l| LrState::new(l.pending, l.active));
            st.unlist(cfg, vcpu, intid, state, &mut ignored);
        }
        let capacity = out.len().min(MAX_LRS);
        let mut sel = lr::Selection::new(capacity);
        for intid in (0..32).chain(32..cfg.spi_end()) {
            if let Some(key) = st.candidate(cfg, vcpu, intid) {
                sel.offer(key);
            }
        }
        let mut used = 0;
        for key in sel.chosen() {
            if let (Some(slot), Some(lr)) = (out.get_mut(used), st.list(cfg, vcpu, key.intid)) {
                *slot = lr;
                used += 1;
            }
        }
        drop(st);
        for slot in out.iter_mut().skip(used) {
            *slot = Lr::INVALID;
        }
        let maintenance = lr::maintenance(&mut out[..used], sel.overflow(), capacity);
        let signalled = out[..used].iter().any(|l| l.state == LrState::Pending && l.priority < threshold);
        Ok(FlushInfo { used, overflow: sel.overflow(), maintenance, signalled })
    }

    /// Takes the list registers back from vCPU `vcpu` after an exit: `lrs`
    /// are the registers written by the last [`Vgic::flush`], read back and
    /// decoded (in any order; omitted ones, e.g. those `ELRSR` shows empty,
    /// count as [`LrState::Invalid`]; entries for interrupts that were not
    /// listed are ignored). An interrupt the guest took is now active or
    /// done; one it has not taken is pending again.
    pub fn fold(&self, vcpu: usize, lrs: &[Lr]) -> Result<Outcome, VgicError> {
        self.check_vcpu(vcpu)?;
        let mut out = Outcome::default();
        let mut st = self.state.lock();
        let (listed, n) = st.take_listed(vcpu);
        for &intid in &listed[..n] {
            let intid = u32::from(intid);
            // At most one valid register holds an INTID; empty ones (such as
            // unused `Lr::INVALID`s, INTID 0) must not hide it.
            let state = lrs
                .iter()
                .find(|l| l.vintid == intid && l.state != LrState::Invalid)
                .map_or(LrState::Invalid, |l| l.state);
            st.unlist(&self.cfg, vcpu, intid, state, &mut out);
        }
        Ok(out)
    }

    /// Whether vCPU `vcpu` has a pending interrupt it can take with
    /// priority threshold `threshold` (its priority mask or running
    /// priority, whichever is lower): whether a vCPU in WFI should wake.
    /// Call it between fold and flush.
    pub fn has_pending(&self, vcpu: usize, threshold: u8) -> Result<bool, VgicError> {
        self.check_vcpu(vcpu)?;
        Ok(self.state.lock().signallable(&self.cfg, vcpu, threshold))
    }
}

/// The GICv3 CPU-interface registers that generate SGIs, which a guest's
/// writes reach the hypervisor through (`HCR_EL2.IMO`/`FMO` trap them, EC
/// 0x18). With one security state, as the model has, `ICC_ASGI1R_EL1`
/// generates Group 0 SGIs, like `ICC_SGI0R_EL1` (KVM does the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SgiRegister {
    /// `ICC_SGI1R_EL1` (S3_0_C12_C11_5): Group 1, [`Vgic::send_sgi_v3`].
    Sgi1r,
    /// `ICC_ASGI1R_EL1` (S3_0_C12_C11_6): Group 0 here, [`Vgic::send_sgi0_v3`].
    Asgi1r,
    /// `ICC_SGI0R_EL1` (S3_0_C12_C11_7): Group 0, [`Vgic::send_sgi0_v3`].
    Sgi0r,
}

impl SgiRegister {
    /// The SGI register a trapped `MSR` writes, and its source register
    /// (31 is `XZR`), from the ISS of the trap (Op0 \[21:20\], Op2
    /// \[19:17\], Op1 \[16:14\], CRn \[13:10\], Rt \[9:5\], CRm \[4:1\],
    /// direction \[0\], 0 = write). `None` for anything else, reads of
    /// these write-only registers included.
    pub fn from_trap(iss: u32) -> Option<(SgiRegister, u8)> {
        let (op0, op2, op1) = ((iss >> 20) & 3, (iss >> 17) & 7, (iss >> 14) & 7);
        let (crn, rt, crm, read) = ((iss >> 10) & 0xf, (iss >> 5) & 0x1f, (iss >> 1) & 0xf, iss & 1);
        if (op0, op1, crn, crm, read) != (3, 0, 12, 11, 0) {
            return None;
        }
        let reg = match op2 {
            5 => SgiRegister::Sgi1r,
            6 => SgiRegister::Asgi1r,
            7 => SgiRegister::Sgi0r,
            _ => return None,
        };
        Some((reg, rt as u8))
    }

    /// Whether the SGIs it generates are Group 1.
    pub fn group1(self) -> bool {
        self == SgiRegister::Sgi1r
    }
}

#[cfg(test)]
mod sgi_register_tests {
    use super::SgiRegister;

    /// The ISS of a trapped `MSR S<op0>_<op1>_C<crn>_C<crm>_<op2>, X<rt>`
    /// (`read`: an `MRS`).
    fn iss(op0: u32, op1: u32, crn: u32, crm: u32, op2: u32, rt: u32, read: bool) -> u32 {
        (op0 << 20) | (op2 << 17) | (op1 << 14) | (crn << 10) | (rt << 5) | (crm << 1) | u32::from(read)
    }

    #[test]
    fn sgi_registers_are_told_apart() {
        assert_eq!(SgiRegister::from_trap(iss(3, 0, 12, 11, 5, 3, false)), Some((SgiRegister::Sgi1r, 3)));
        assert_eq!(SgiRegister::from_trap(iss(3, 0, 12, 11, 6, 31, false)), Some((SgiRegister::Asgi1r, 31)));
        assert_eq!(SgiRegister::from_trap(iss(3, 0, 12, 11, 7, 0, false)), Some((SgiRegister::Sgi0r, 0)));
        assert!(SgiRegister::Sgi1r.group1() && !SgiRegister::Asgi1r.group1() && !SgiRegister::Sgi0r.group1());
        // Reads of the write-only registers, and their neighbours.
        assert_eq!(SgiRegister::from_trap(iss(3, 0, 12, 11, 5, 3, true)), None);
        assert_eq!(SgiRegister::from_trap(iss(3, 0, 12, 11, 4, 3, false)), None);
        assert_eq!(SgiRegister::from_trap(iss(3, 0, 12, 12, 5, 3, false)), None);
        assert_eq!(SgiRegister::from_trap(iss(3, 1, 12, 11, 5, 3, false)), None);
        assert_eq!(SgiRegister::from_trap(iss(2, 0, 12, 11, 5, 3, false)), None);
    }
}

#[cfg(test)]
mod tests;
