//! The GICv3 register maps, Arm IHI 0069 chapter 12: the distributor
//! (`GICD`, 64 KiB), the redistributors (`GICR`: per vCPU an `RD_base` and
//! an `SGI_base` 64 KiB frame, [`GICR_STRIDE`] apart, the last one flagged
//! by `GICR_TYPER.Last`), and SGI generation through `ICC_SGI1R_EL1`.
//!
//! The model has one security state (`GICD_CTLR.DS` reads 1: `EnableGrp0`
//! bit 0, `EnableGrp1` bit 1) and affinity routing always on (`ARE`, bit 4,
//! reads 1), so the distributor's registers for INTIDs 0-31, `ITARGETSR`,
//! `SGIR`, `CPENDSGIR`/`SPENDSGIR`, `IGRPMODR` and `NSACR` read as zero and
//! ignore writes, and the redistributors hold SGIs and PPIs. No LPIs, no
//! extended SPI/PPI ranges (their registers are reserved here), 1-of-N SPI
//! routing supported (`GICD_TYPER.No1N` = 0).

use super::dist::{self, BitReg};
use super::state::{IROUTER_MASK, State};
use super::{GICR_STRIDE, IIDR, Outcome, RegName, VcpuMask, VgicConfig, Why, vcpu_affinity, vcpu_of_affinity};

/// `GICD_PIDR2` / `GICR_PIDR2`: ArchRev 3 (bits 7:4), JEDEC-assigned,
/// JEP106 Arm identity bits 2:0.
const PIDR2_V3: u64 = 0x3b;
/// `GICD_CTLR.ARE` (bit 4): affinity routing, RAO/WI.
const CTLR_ARE: u32 = 1 << 4;
/// `GICD_CTLR.DS` (bit 6): single security state, RAO/WI.
const CTLR_DS: u32 = 1 << 6;
/// Offset of `SGI_base` in a redistributor.
const SGI_BASE: u64 = 0x1_0000;

/// A register of either map; byte registers carry the INTID of the
/// accessed byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reg {
    Ctlr,
    Typer,
    Typer2,
    Iidr,
    Statusr,
    /// A one-bit register array and its index.
    Bits(BitReg, u32),
    /// `IPRIORITYR`, from this INTID.
    Priority(u32),
    /// `ICFGR` index.
    Config(u32),
    /// `GICD_ITARGETSR` (RAZ/WI with affinity routing).
    Targets(u32),
    /// `GICD_SGIR` (WI with affinity routing).
    Sgir,
    /// `GICD_C/SPENDSGIR` (RAZ/WI with affinity routing).
    SgiPending(u32),
    /// `IGRPMODR` index (RAZ/WI with a single security state).
    Grpmod(u32),
    /// `NSACR` index (RAZ/WI with a single security state).
    Nsacr(u32),
    /// `GICD_IROUTER<n>`; `true` for the upper word.
    Irouter(u32, bool),
    /// `GICR_WAKER`.
    Waker,
    Pidr2,
    /// The other identification registers (read as zero).
    Ident,
}

impl Reg {
    fn check_width(self, off: u64, size: usize) -> Result<(), Why> {
        let ok = match self {
            Reg::Priority(_) | Reg::Targets(_) | Reg::SgiPending(_) => size == 1 || size == 4,
            // 64-bit registers: whole (aligned) or either word.
            Reg::Irouter(..) => size == 4 || (size == 8 && off.is_multiple_of(8)),
            Reg::Typer => size == 4 || size == 8,
            _ => size == 4,
        };
        if ok { Ok(()) } else { Err(Why::Width) }
    }

    fn name(self) -> RegName {
        let (name, index) = match self {
            Reg::Ctlr => ("CTLR", None),
            Reg::Typer => ("TYPER", None),
            Reg::Typer2 => ("TYPER2", None),
            Reg::Iidr => ("IIDR", None),
            Reg::Statusr => ("STATUSR", None),
            Reg::Bits(r, n) => (r.name(), Some(n)),
            Reg::Priority(i) => ("IPRIORITYR", Some(i / 4)),
            Reg::Config(n) => ("ICFGR", Some(n)),
            Reg::Targets(i) => ("ITARGETSR", Some(i / 4)),
            Reg::Sgir => ("SGIR", None),
            Reg::SgiPending(i) if i < 16 => ("CPENDSGIR", Some(i / 4)),
            Reg::SgiPending(i) => ("SPENDSGIR", Some((i - 16) / 4)),
            Reg::Grpmod(n) => ("IGRPMODR", Some(n)),
            Reg::Nsacr(n) => ("NSACR", Some(n)),
            Reg::Irouter(n, _) => ("IROUTER", Some(n)),
            Reg::Waker => ("WAKER", None),
            Reg::Pidr2 => ("PIDR2", None),
            Reg::Ident => ("identification register", None),
        };
        RegName { name, index }
    }
}

fn bits_at(off: u64) -> Option<Reg> {
    Some(Reg::Bits(BitReg::from_block((off - 0x80) / 0x80)?, ((off % 0x80) / 4) as u32))
}

fn decode_dist(off: u64) -> Option<Reg> {
    Some(match off {
        0x0000..=0x0003 => Reg::Ctlr,
        0x0004..=0x0007 => Reg::Typer,
        0x0008..=0x000b => Reg::Iidr,
        0x000c..=0x000f => Reg::Typer2,
        0x0010..=0x0013 => Reg::Statusr,
        0x0080..=0x03ff => bits_at(off)?,
        0x0400..=0x07fb => Reg::Priority((off - 0x400) as u32),
        0x0800..=0x0bfb => Reg::Targets((off - 0x800) as u32),
        0x0c00..=0x0cff => Reg::Config(((off - 0xc00) / 4) as u32),
        0x0d00..=0x0d7f => Reg::Grpmod(((off - 0xd00) / 4) as u32),
        0x0e00..=0x0eff => Reg::Nsacr(((off - 0xe00) / 4) as u32),
        0x0f00..=0x0f03 => Reg::Sgir,
        0x0f10..=0x0f2f => Reg::SgiPending((off - 0xf10) as u32),
        0x6000..=0x7fdf => Reg::Irouter(((off - 0x6000) / 8) as u32, off & 4 != 0),
        0xffe8..=0xffeb => Reg::Pidr2,
        0xffd0..=0xffff => Reg::Ident,
        _ => return None,
    })
}

/// Decodes an offset into one redistributor (below [`GICR_STRIDE`]).
fn decode_redist(off: u64) -> Option<Reg> {
    Some(match off {
        0x0000..=0x0003 => Reg::Ctlr,
        0x0004..=0x0007 => Reg::Iidr,
        0x0008..=0x000f => Reg::Typer,
        0x0010..=0x0013 => Reg::Statusr,
        0x0014..=0x0017 => Reg::Waker,
        0xffe8..=0xffeb => Reg::Pidr2,
        0xffd0..=0xffff => Reg::Ident,
        // SGI_base: only the registers for INTIDs 0-31 (no extended PPIs).
        0x1_0080..=0x1_03ff if (off % 0x80) < 4 => bits_at(off - SGI_BASE)?,
        0x1_0400..=0x1_041f => Reg::Priority((off - SGI_BASE - 0x400) as u32),
        0x1_0c00..=0x1_0c07 => Reg::Config(((off - SGI_BASE - 0xc00) / 4) as u32),
        0x1_0d00..=0x1_0d03 => Reg::Grpmod(0),
        0x1_0e00..=0x1_0e03 => Reg::Nsacr(0),
        _ => return None,
    })
}

/// The distributor register at `off`, for messages.
pub(crate) fn dist_reg_name(off: u64) -> Option<RegName> {
    decode_dist(off).map(Reg::name)
}

/// The redistributor register at `off` (from the first frame), for messages.
pub(crate) fn redist_reg_name(off: u64) -> Option<RegName> {
    decode_redist(off % GICR_STRIDE).map(Reg::name)
}

/// `GICD_TYPER`: ITLinesNumber (4:0), IDbits (23:19) = 9 (10-bit INTIDs);
/// CPUNumber 0 (affinity routing), no LPIs, no MBIs, No1N 0, A3V 0, RSS 0.
fn dist_typer(cfg: &VgicConfig) -> u64 {
    u64::from(cfg.lines / 32 - 1) | (9 << 19)
}

/// `GICR_TYPER` of vCPU `vcpu`'s redistributor: Affinity (63:32),
/// Processor_Number (23:8), Last (4) on the last one; no LPIs.
fn redist_typer(cfg: &VgicConfig, vcpu: usize) -> u64 {
    let last = u64::from(vcpu + 1 == cfg.vcpus);
    (u64::from(vcpu_affinity(vcpu)) << 32) | ((vcpu as u64 & 0xffff) << 8) | (last << 4)
}

/// The `size`-byte part at `off` of 64-bit register value `v` at `base`.
fn part(v: u64, off: u64, base: u64, size: usize) -> u64 {
    if size == 8 {
        v
    } else if off - base >= 4 {
        v >> 32
    } else {
        v & 0xffff_ffff
    }
}

/// A distributor read at `off`.
pub(crate) fn dist_read(st: &State, cfg: &VgicConfig, off: u64, size: usize) -> Result<u64, Why> {
    let reg = decode_dist(off).ok_or(Why::Reserved)?;
    reg.check_width(off, size)?;
    Ok(match reg {
        Reg::Ctlr => u64::from(st.ctlr | CTLR_ARE | CTLR_DS),
        Reg::Typer => dist_typer(cfg),
        Reg::Iidr => u64::from(IIDR),
        Reg::Bits(_, 0) | Reg::Config(0 | 1) => 0,
        Reg::Bits(r, n) => u64::from(dist::read_bits(st, 0, n * 32, r)),
        Reg::Priority(first) if first < 32 => 0,
        Reg::Priority(first) => dist::read_priority(st, 0, first, size),
        Reg::Config(n) => u64::from(dist::read_config(st, 0, n * 16)),
        Reg::Irouter(n, _) => {
            st.irq(0, n).filter(|_| n >= 32).map_or(0, |irq| part(irq.route, off, 0x6000 + 8 * u64::from(n), size))
        }
        Reg::Pidr2 => PIDR2_V3,
        Reg::Typer2 | Reg::Statusr | Reg::Targets(_) | Reg::Sgir | Reg::SgiPending(_) | Reg::Grpmod(_) => 0,
        Reg::Nsacr(_) | Reg::Ident => 0,
        Reg::Waker => return Err(Why::Reserved),
    })
}

/// A distributor write of `value` at `off`.
pub(crate) fn dist_write(
    st: &mut State,
    cfg: &VgicConfig,
    off: u64,
    size: usize,
    value: u64,
    out: &mut Outcome,
) -> Result<(), Why> {
    let reg = decode_dist(off).ok_or(Why::Reserved)?;
    reg.check_width(off, size)?;
    match reg {
        Reg::Ctlr => dist::write_ctlr(st, cfg, value as u32, out),
        Reg::Typer | Reg::Typer2 | Reg::Iidr | Reg::Pidr2 | Reg::Ident => return Err(Why::ReadOnly),
        Reg::Bits(_, 0) | Reg::Config(0 | 1) => {}
        Reg::Bits(r, n) => dist::write_bits(st, cfg, 0, n * 32, r, value as u32, out),
        Reg::Priority(first) if first < 32 => {}
        Reg::Priority(first) => dist::write_priority(st, cfg, 0, first, size, value, out),
        Reg::Config(n) => dist::write_config(st, cfg, 0, n * 16, value as u32, out),
        Reg::Irouter(n, _) if n < 32 => {}
        Reg::Irouter(n, hi) => {
            st.modify(cfg, 0, n, false, out, |irq| {
                let route = match (size, hi) {
                    (8, _) => value,
                    (_, false) => (irq.route & !0xffff_ffff) | value,
                    (_, true) => (irq.route & 0xffff_ffff) | (value << 32),
                } & IROUTER_MASK;
                core::mem::replace(&mut irq.route, route) != route
            });
        }
        Reg::Statusr | Reg::Targets(_) | Reg::Sgir | Reg::SgiPending(_) | Reg::Grpmod(_) | Reg::Nsacr(_) => {}
        Reg::Waker => return Err(Why::Reserved),
    }
    Ok(())
}

/// The vCPU whose redistributor `off` falls in, and the offset inside it.
fn frame(cfg: &VgicConfig, off: u64) -> Result<(usize, u64), Why> {
    let f = off / GICR_STRIDE;
    if f >= cfg.vcpus as u64 {
        return Err(Why::Reserved);
    }
    Ok((f as usize, off % GICR_STRIDE))
}

/// A read at `off` from the first redistributor.
pub(crate) fn redist_read(st: &State, cfg: &VgicConfig, off: u64, size: usize) -> Result<u64, Why> {
    let (v, inner) = frame(cfg, off)?;
    let reg = decode_redist(inner).ok_or(Why::Reserved)?;
    reg.check_width(inner, size)?;
    Ok(match reg {
        Reg::Ctlr | Reg::Statusr | Reg::Grpmod(_) | Reg::Nsacr(_) | Reg::Ident => 0,
        Reg::Iidr => u64::from(IIDR),
        Reg::Typer => part(redist_typer(cfg, v), inner, 0x8, size),
        Reg::Waker => {
            let sleep = u64::from(st.vcpus.get(v).is_some_and(|s| s.sleep));
            (sleep << 1) | (sleep << 2) // ProcessorSleep, ChildrenAsleep
        }
        Reg::Bits(r, _) => u64::from(dist::read_bits(st, v, 0, r)),
        Reg::Priority(first) => dist::read_priority(st, v, first, size),
        Reg::Config(n) => u64::from(dist::read_config(st, v, n * 16)),
        Reg::Pidr2 => PIDR2_V3,
        _ => return Err(Why::Reserved),
    })
}

/// A write of `value` at `off` from the first redistributor.
pub(crate) fn redist_write(
    st: &mut State,
    cfg: &VgicConfig,
    off: u64,
    size: usize,
    value: u64,
    out: &mut Outcome,
) -> Result<(), Why> {
    let (v, inner) = frame(cfg, off)?;
    let reg = decode_redist(inner).ok_or(Why::Reserved)?;
    reg.check_width(inner, size)?;
    match reg {
        Reg::Ctlr | Reg::Statusr | Reg::Grpmod(_) | Reg::Nsacr(_) => {}
        Reg::Iidr | Reg::Typer | Reg::Pidr2 | Reg::Ident => return Err(Why::ReadOnly),
        Reg::Waker => {
            if let Some(s) = st.vcpus.get_mut(v) {
                s.sleep = value & 2 != 0;
            }
        }
        Reg::Bits(r, _) => dist::write_bits(st, cfg, v, 0, r, value as u32, out),
        Reg::Priority(first) => dist::write_priority(st, cfg, v, first, size, value, out),
        Reg::Config(n) => dist::write_config(st, cfg, v, n * 16, value as u32, out),
        _ => return Err(Why::Reserved),
    }
    Ok(())
}

/// An SGI from `sender` through `ICC_SGI1R_EL1` (`group1`) or
/// `ICC_SGI0R_EL1`: INTID (27:24), TargetList (15:0) of Aff0 values
/// RS × 16 + bit, in Aff3.Aff2.Aff1 (55:48, 39:32, 23:16); IRM (40) = 1
/// targets every vCPU but the sender. With a single security state a
/// Group 1 request reaches either group, a Group 0 one only Group 0 SGIs.
pub(crate) fn send_sgi(st: &mut State, cfg: &VgicConfig, sender: usize, value: u64, group1: bool) -> Outcome {
    let mut out = Outcome::default();
    let sgi = ((value >> 24) & 0xf) as u32;
    let targets = if value & (1 << 40) != 0 {
        VcpuMask::all_but(cfg.vcpus, sender)
    } else {
        let high = (((value >> 48) & 0xff) << 24 | ((value >> 32) & 0xff) << 16 | ((value >> 16) & 0xff) << 8) as u32;
        let rs = ((value >> 44) & 0xf) as u32;
        (0..16u32)
            .filter(|bit| value & (1 << bit) != 0)
            .filter_map(|bit| vcpu_of_affinity(high | (rs * 16 + bit), cfg.vcpus))
            .fold(VcpuMask::EMPTY, |m, v| m | VcpuMask::one(v))
    };
    for t in targets.iter() {
        st.modify(cfg, t, sgi, false, &mut out, |irq| {
            if !group1 && irq.group1 {
                return false;
            }
            !core::mem::replace(&mut irq.latch, true)
        });
    }
    out
}
