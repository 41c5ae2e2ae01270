//! The GICv2 distributor (`GICD`, 4 KiB) register map, Arm IHI 0048B
//! section 4.3: SGIs and PPIs are banked per vCPU, the rest shared.
//!
//! The virtual GIC has no Security Extensions: `GICD_CTLR` has
//! `EnableGrp0` (bit 0) and `EnableGrp1` (bit 1), `IGROUPR` is read/write.
//! `IPRIORITYR`, `ITARGETSR`, `CPENDSGIR` and `SPENDSGIR` take byte and word
//! accesses, everything else words only.

use super::dist::{self, BitReg};
use super::state::State;
use super::{IIDR, Outcome, RegName, VcpuMask, VgicConfig, Why};

/// `ICPIDR2`: ArchRev 2 (bits 7:4), JEDEC-assigned (bit 3), JEP106 Arm
/// identity bits 2:0.
const PIDR2_V2: u64 = 0x2b;

/// A register of the map, by what it is; byte registers carry the INTID of
/// the accessed byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reg {
    Ctlr,
    Typer,
    Iidr,
    /// A one-bit register array and its index.
    Bits(BitReg, u32),
    /// `IPRIORITYR`, from this INTID.
    Priority(u32),
    /// `ITARGETSR`, from this INTID.
    Targets(u32),
    /// `ICFGR` index.
    Config(u32),
    Sgir,
    /// `CPENDSGIR`, from this SGI.
    ClearSgiPending(u32),
    /// `SPENDSGIR`, from this SGI.
    SetSgiPending(u32),
    Pidr2,
    /// The other identification registers (read as zero).
    Ident,
}

impl Reg {
    /// Whether byte accesses are allowed (else words only).
    fn bytes(self) -> bool {
        matches!(self, Reg::Priority(_) | Reg::Targets(_) | Reg::ClearSgiPending(_) | Reg::SetSgiPending(_))
    }
}

fn decode(off: u64) -> Option<Reg> {
    Some(match off {
        0x000..=0x003 => Reg::Ctlr,
        0x004..=0x007 => Reg::Typer,
        0x008..=0x00b => Reg::Iidr,
        0x080..=0x3ff => Reg::Bits(BitReg::from_block((off - 0x80) / 0x80)?, ((off % 0x80) / 4) as u32),
        0x400..=0x7fb => Reg::Priority((off - 0x400) as u32),
        0x800..=0xbfb => Reg::Targets((off - 0x800) as u32),
        0xc00..=0xcff => Reg::Config(((off - 0xc00) / 4) as u32),
        0xf00..=0xf03 => Reg::Sgir,
        0xf10..=0xf1f => Reg::ClearSgiPending((off - 0xf10) as u32),
        0xf20..=0xf2f => Reg::SetSgiPending((off - 0xf20) as u32),
        0xfe8..=0xfeb => Reg::Pidr2,
        0xfd0..=0xfff => Reg::Ident,
        _ => return None,
    })
}

/// The register at `off`, for messages.
pub(crate) fn reg_name(off: u64) -> Option<RegName> {
    let (name, index) = match decode(off)? {
        Reg::Ctlr => ("CTLR", None),
        Reg::Typer => ("TYPER", None),
        Reg::Iidr => ("IIDR", None),
        Reg::Bits(r, n) => (r.name(), Some(n)),
        Reg::Priority(i) => ("IPRIORITYR", Some(i / 4)),
        Reg::Targets(i) => ("ITARGETSR", Some(i / 4)),
        Reg::Config(n) => ("ICFGR", Some(n)),
        Reg::Sgir => ("SGIR", None),
        Reg::ClearSgiPending(i) => ("CPENDSGIR", Some(i / 4)),
        Reg::SetSgiPending(i) => ("SPENDSGIR", Some(i / 4)),
        Reg::Pidr2 => ("ICPIDR2", None),
        Reg::Ident => ("identification register", None),
    };
    Some(RegName { name, index })
}

fn check_width(reg: Reg, size: usize) -> Result<(), Why> {
    if size == 4 || (size == 1 && reg.bytes()) { Ok(()) } else { Err(Why::Width) }
}

/// `GICD_TYPER`: ITLinesNumber (4:0), CPUNumber (7:5) = vCPUs - 1, no
/// Security Extensions, no LSPIs.
fn typer(cfg: &VgicConfig) -> u64 {
    u64::from(cfg.lines / 32 - 1) | ((cfg.vcpus as u64 - 1) << 5)
}

/// The `ITARGETSR` byte of INTID `intid` as vCPU `vcpu` sees it: its own
/// bit for SGIs and PPIs.
fn target_byte(st: &State, vcpu: usize, intid: u32) -> u8 {
    if intid < 32 {
        return 1 << (vcpu & 7);
    }
    st.irq(vcpu, intid).map_or(0, |irq| irq.targets)
}

/// The `SPENDSGIR` byte of SGI `sgi` of `vcpu`: the sources it is pending from.
fn sgi_sources(st: &State, vcpu: usize, sgi: u32) -> u8 {
    let Some(irq) = st.irq(vcpu, sgi) else { return 0 };
    let listed = irq.listed.filter(|l| l.pending && l.from_latch && !irq.cancel_pending).map_or(0, |l| 1 << l.source);
    irq.sources | listed
}

fn bytes(size: usize, f: impl Fn(u32) -> u8) -> u64 {
    (0..size as u32).fold(0, |v, i| v | u64::from(f(i)) << (8 * i))
}

/// A read by vCPU `vcpu` at `off`.
pub(crate) fn read(st: &State, cfg: &VgicConfig, vcpu: usize, off: u64, size: usize) -> Result<u64, Why> {
    let reg = decode(off).ok_or(Why::Reserved)?;
    check_width(reg, size)?;
    Ok(match reg {
        Reg::Ctlr => u64::from(st.ctlr),
        Reg::Typer => typer(cfg),
        Reg::Iidr => u64::from(IIDR),
        Reg::Bits(r, n) => u64::from(dist::read_bits(st, vcpu, n * 32, r)),
        Reg::Priority(first) => dist::read_priority(st, vcpu, first, size),
        Reg::Targets(first) => bytes(size, |i| target_byte(st, vcpu, first + i)),
        Reg::Config(n) => u64::from(dist::read_config(st, vcpu, n * 16)),
        Reg::Sgir => return Err(Why::WriteOnly),
        Reg::ClearSgiPending(first) | Reg::SetSgiPending(first) => bytes(size, |i| sgi_sources(st, vcpu, first + i)),
        Reg::Pidr2 => PIDR2_V2,
        Reg::Ident => 0,
    })
}

/// A write of `value` by vCPU `vcpu` at `off`.
pub(crate) fn write(
    st: &mut State,
    cfg: &VgicConfig,
    vcpu: usize,
    off: u64,
    size: usize,
    value: u64,
    out: &mut Outcome,
) -> Result<(), Why> {
    let reg = decode(off).ok_or(Why::Reserved)?;
    check_width(reg, size)?;
    let all = VcpuMask::all(cfg.vcpus).0 as u8;
    match reg {
        Reg::Ctlr => dist::write_ctlr(st, cfg, value as u32, out),
        Reg::Typer | Reg::Iidr | Reg::Pidr2 | Reg::Ident => return Err(Why::ReadOnly),
        Reg::Bits(r, n) => dist::write_bits(st, cfg, vcpu, n * 32, r, value as u32, out),
        Reg::Priority(first) => dist::write_priority(st, cfg, vcpu, first, size, value, out),
        Reg::Targets(first) => {
            for i in 0..size as u32 {
                let intid = first + i;
                if intid < 32 {
                    continue; // SGI/PPI bytes are read-only
                }
                let t = (value >> (8 * i)) as u8 & all;
                st.modify(cfg, vcpu, intid, false, out, |irq| core::mem::replace(&mut irq.targets, t) != t);
            }
        }
        Reg::Config(n) => dist::write_config(st, cfg, vcpu, n * 16, value as u32, out),
        Reg::Sgir => sgir(st, cfg, vcpu, value as u32, out)?,
        Reg::ClearSgiPending(first) => {
            for i in 0..size as u32 {
                let mask = (value >> (8 * i)) as u8 & all;
                st.modify(cfg, vcpu, first + i, false, out, |irq| {
                    let mut changed = irq.sources & mask != 0;
                    irq.sources &= !mask;
                    if let Some(l) = irq.listed
                        && l.pending
                        && l.from_latch
                        && mask & (1 << l.source) != 0
                        && !irq.cancel_pending
                    {
                        irq.cancel_pending = true;
                        changed = true;
                    }
                    changed
                });
            }
        }
        Reg::SetSgiPending(first) => {
            for i in 0..size as u32 {
                let mask = (value >> (8 * i)) as u8 & all;
                st.modify(cfg, vcpu, first + i, false, out, |irq| irq.add_sources(mask));
            }
        }
    }
    Ok(())
}

/// `GICD_SGIR`: SGIINTID (3:0), CPUTargetList (23:16), TargetListFilter
/// (25:24: 0 the list, 1 all but the sender, 2 the sender only, 3 reserved).
/// NSATT (bit 15) means nothing without Security Extensions.
fn sgir(st: &mut State, cfg: &VgicConfig, sender: usize, value: u32, out: &mut Outcome) -> Result<(), Why> {
    let sgi = value & 0xf;
    let all = VcpuMask::all(cfg.vcpus);
    let targets = match (value >> 24) & 3 {
        0 => VcpuMask(u64::from((value >> 16) & 0xff)) & all,
        1 => VcpuMask::all_but(cfg.vcpus, sender),
        2 => VcpuMask::one(sender),
        _ => return Err(Why::BadValue),
    };
    let from = 1u8 << (sender & 7);
    for t in targets.iter() {
        st.modify(cfg, t, sgi, false, out, |irq| irq.add_sources(from));
    }
    Ok(())
}
