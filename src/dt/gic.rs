//! The GIC: version, register frames, maintenance interrupt, MSI frames;
//! and GIC interrupt specifiers ([`Irq`]).
//!
//! `arm,gic-v3` is a GICv3/v4: `reg` holds GICD, then
//! `#redistributor-regions` (default 1) GICR regions, then optionally the
//! legacy GICC, GICH and GICV frames; `arm,gic-v3-its` children are ITSes.
//! The other compatibles are GICv2-style (memory-mapped CPU interface):
//! `reg` holds GICD and GICC, and only with the virtualization extensions
//! also GICH and GICV; a v2 GIC without them cannot host a vGIC.
//! `arm,gic-v2m-frame` children are MSI frames. `interrupts` is the vGIC
//! maintenance interrupt. Every address is translated through `ranges`.
//!
//! When several GICs exist, the one the root's `interrupt-parent` names wins,
//! else the first enabled one in blob order.

use core::fmt;

use super::walk::{self, Flow, Located};
use super::{DeviceTree, DtError, NodePath, Problem, Region, Regions, be32};

/// GIC architecture version, from `compatible`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv1/v2 programming model (memory-mapped GICC/GICH/GICV).
    V2,
    /// GICv3/v4 (redistributors, system-register CPU interface).
    V3,
}

/// Compatibles of GICv1/v2-style controllers.
const V2_COMPATIBLE: [&str; 12] = [
    "arm,gic-400",
    "arm,cortex-a15-gic",
    "arm,cortex-a7-gic",
    "arm,cortex-a9-gic",
    "arm,cortex-a5-gic",
    "arm,pl390",
    "arm,arm11mp-gic",
    "arm,arm1176jzf-devchip-gic",
    "arm,eb11mp-gic",
    "arm,tc11mp-gic",
    "qcom,msm-qgic2",
    "brcm,brahma-b15-gic",
];

/// The kind of a GIC interrupt specifier (its first cell).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqKind {
    /// 0: shared peripheral interrupt, INTID 32 + n.
    Spi,
    /// 1: private peripheral interrupt, INTID 16 + n.
    Ppi,
    /// 2: extended SPI (GICv3.1), INTID 4096 + n.
    ExtSpi,
    /// 3: extended PPI (GICv3.1), INTID 1056 + n.
    ExtPpi,
}

/// A GIC interrupt specifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Irq {
    /// Kind.
    pub kind: IrqKind,
    /// Number within its kind, as written in the DT.
    pub number: u32,
    /// Third cell: trigger in bits 3:0 (1 edge rising, 4 level high, 8 level
    /// low), GICv2 PPI CPU mask in bits 15:8.
    pub flags: u32,
}

impl Irq {
    /// The GIC INTID.
    pub fn intid(&self) -> u32 {
        self.number
            + match self.kind {
                IrqKind::Spi => 32,
                IrqKind::Ppi => 16,
                IrqKind::ExtSpi => 4096,
                IrqKind::ExtPpi => 1056,
            }
    }

    /// Whether it is level-triggered (flags 4 or 8).
    pub fn level(&self) -> bool {
        self.flags & 0xc != 0
    }

    /// Decodes one specifier (at least three cells).
    pub(crate) fn decode(cells: &[u8]) -> Result<Irq, Problem> {
        let (kind, max) = match be32(cells, 0) {
            0 => (IrqKind::Spi, 987),
            1 => (IrqKind::Ppi, 15),
            2 => (IrqKind::ExtSpi, 1023),
            3 => (IrqKind::ExtPpi, 63),
            k => return Err(Problem::Value(k as u64)),
        };
        let number = be32(cells, 4);
        if number > max {
            return Err(Problem::Value(number as u64));
        }
        Ok(Irq { kind, number, flags: be32(cells, 8) })
    }
}

impl fmt::Display for Irq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            IrqKind::Spi => "SPI",
            IrqKind::Ppi => "PPI",
            IrqKind::ExtSpi => "ESPI",
            IrqKind::ExtPpi => "EPPI",
        };
        write!(f, "{kind} {} (INTID {}, flags {:#x})", self.number, self.intid(), self.flags)
    }
}

/// Decodes every specifier of `interrupts` with `cells` cells each.
pub(crate) fn decode_interrupts(at: &Located<'_, '_>, cells: usize, out: &mut [Option<Irq>]) -> Result<usize, DtError> {
    let value = at.prop("interrupts").ok_or_else(|| at.err("interrupts", Problem::Missing))?;
    let stride = cells * 4;
    if value.is_empty() || value.len() % stride != 0 {
        return Err(at.err("interrupts", Problem::NotMultiple { len: value.len(), stride }));
    }
    for (slot, spec) in out.iter_mut().zip(value.chunks_exact(stride)) {
        *slot = Some(Irq::decode(spec).map_err(|p| at.err("interrupts", p))?);
    }
    Ok(value.len() / stride)
}

/// A GIC's `#interrupt-cells` (at least 3).
fn interrupt_cells_of(at: &Located<'_, '_>) -> Result<usize, DtError> {
    match walk::read_u32_prop(at, "#interrupt-cells")? {
        None => Err(at.err("#interrupt-cells", Problem::Missing)),
        Some(n @ 3..=4) => Ok(n as usize),
        Some(n) => Err(at.err("#interrupt-cells", Problem::Value(n as u64))),
    }
}

/// The interrupt controller: everything a vGIC and the hypervisor's own
/// interrupt handling need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gic {
    /// The node.
    pub node: NodePath,
    /// The recognised compatible string.
    pub compatible: &'static str,
    /// Programming model.
    pub version: GicVersion,
    /// `#interrupt-cells` (3, or 4 with GICv3 PPI partitions).
    pub interrupt_cells: usize,
    /// GICD.
    pub dist: Region,
    /// GICR regions (GICv3 only).
    pub redist: Regions,
    /// `redistributor-stride`, if given (GICv3 only).
    pub redist_stride: Option<u64>,
    /// GICC: the memory-mapped CPU interface (v2; optional legacy frame on v3).
    pub cpu_if: Option<Region>,
    /// GICH: virtual interface control (virtualization extensions only).
    pub hyp_if: Option<Region>,
    /// GICV: virtual CPU interface (virtualization extensions only).
    pub vcpu_if: Option<Region>,
    /// The vGIC maintenance interrupt (`interrupts`).
    pub maintenance: Option<Irq>,
    /// Enabled MSI frames: ITSes (v3) or GICv2m frames (v2).
    pub msi: Regions,
}

impl Gic {
    /// Whether a vGIC is possible: GICv3 needs only the maintenance
    /// interrupt (its virtual interface is in system registers); GICv2 also
    /// needs the GICH and GICV frames.
    pub fn supports_vgic(&self) -> bool {
        self.maintenance.is_some()
            && match self.version {
                GicVersion::V3 => true,
                GicVersion::V2 => self.hyp_if.is_some() && self.vcpu_if.is_some(),
            }
    }
}

impl<'a> DeviceTree<'a> {
    /// The interrupt controller (see the module doc for which one).
    pub fn gic(&self) -> Result<Gic, DtError> {
        let root_parent = self.locate("/").and_then(|r| phandle_prop(r.prop("interrupt-parent")?));
        let mut first = None;
        let mut named = None;
        self.walk(&mut |at| {
            let node = at.node();
            if node.property("interrupt-controller").is_none() || !walk::enabled(node) {
                return Flow::Descend;
            }
            let Some((version, compat)) = gic_compatible(node) else { return Flow::Descend };
            if first.is_none() {
                first = Some((*at, version, compat));
            }
            if root_parent.is_some() && phandle_of(node) == root_parent {
                named = Some((*at, version, compat));
                return Flow::Stop;
            }
            Flow::Skip
        });
        let (at, version, compatible) = named
            .or(first)
            .ok_or(DtError::MissingNode("interrupt controller (arm,gic-v3, arm,gic-400, arm,cortex-a15-gic, ...)"))?;
        read_gic(&at, version, compatible)
    }

    /// The `#interrupt-cells` of the interrupt parent of `at` (its own or
    /// inherited `interrupt-parent`).
    pub(crate) fn parent_interrupt_cells(&self, at: &Located<'_, 'a>) -> Result<usize, DtError> {
        let mut ph = phandle_prop(at.prop("interrupt-parent").unwrap_or_default());
        for anc in at.ancestors().iter().rev() {
            if ph.is_some() {
                break;
            }
            ph = anc.property("interrupt-parent").and_then(|p| phandle_prop(p.value));
        }
        let ph = ph.ok_or_else(|| at.err("interrupt-parent", Problem::Missing))?;
        let mut found = None;
        self.walk(&mut |c| {
            if phandle_of(c.node()) == Some(ph) {
                found =
                    Some(walk::read_u32_prop(c, "#interrupt-cells").and_then(|n| {
                        n.ok_or_else(|| c.err("#interrupt-cells", Problem::Missing)).map(|n| n as usize)
                    }));
                return Flow::Stop;
            }
            Flow::Descend
        });
        found.ok_or_else(|| at.err("interrupt-parent", Problem::NoSuchNode))?
    }
}

pub(crate) fn phandle_prop(v: &[u8]) -> Option<u32> {
    (v.len() == 4).then(|| be32(v, 0))
}

pub(crate) fn phandle_of(node: fdt::node::FdtNode<'_, '_>) -> Option<u32> {
    node.property("phandle").or_else(|| node.property("linux,phandle")).and_then(|p| phandle_prop(p.value))
}

fn gic_compatible(node: fdt::node::FdtNode<'_, '_>) -> Option<(GicVersion, &'static str)> {
    if let Some(c) = walk::compatible_with(node, &["arm,gic-v3"]) {
        return Some((GicVersion::V3, c));
    }
    walk::compatible_with(node, &V2_COMPATIBLE).map(|c| (GicVersion::V2, c))
}

fn read_gic(at: &Located<'_, '_>, version: GicVersion, compatible: &'static str) -> Result<Gic, DtError> {
    let interrupt_cells = interrupt_cells_of(at)?;
    let mut regs = Regions::default();
    let n = at.reg_all(&mut regs)?;
    let reg = |i: usize| regs.as_slice().get(i).copied();
    let mut redist = Regions::default();
    let mut redist_stride = None;
    let legacy; // index of GICC
    match version {
        GicVersion::V2 => {
            if n < 2 {
                return Err(at.err("reg", Problem::TooFew { have: n, need: 2 }));
            }
            legacy = 1;
        }
        GicVersion::V3 => {
            let nr = match walk::read_u32_prop(at, "#redistributor-regions")? {
                None => 1,
                Some(0) => return Err(at.err("#redistributor-regions", Problem::Value(0))),
                Some(v) => v as usize,
            };
            if n < 1 + nr {
                return Err(at.err("reg", Problem::TooFew { have: n, need: 1 + nr }));
            }
            for i in 1..=nr {
                match reg(i) {
                    Some(r) => redist.push(r),
                    None => redist.dropped += 1,
                }
            }
            redist_stride = walk::read_u64_prop(at, "redistributor-stride")?;
            legacy = 1 + nr;
        }
    }
    let mut maintenance = [None];
    if at.prop("interrupts").is_some() {
        decode_interrupts(at, interrupt_cells, &mut maintenance)?;
    }
    let mut msi = Regions::default();
    let msi_compatible = match version {
        GicVersion::V3 => "arm,gic-v3-its",
        GicVersion::V2 => "arm,gic-v2m-frame",
    };
    for child in at.node().children() {
        if walk::compatible_with(child, &[msi_compatible]).is_none() || !walk::enabled(child) {
            continue;
        }
        let Some(c) = at.child(child) else { continue };
        let r = c.reg(0)?.ok_or_else(|| c.err("reg", Problem::TooFew { have: 0, need: 1 }))?;
        msi.push(r);
    }
    Ok(Gic {
        node: at.path(),
        compatible,
        version,
        interrupt_cells,
        dist: reg(0).ok_or_else(|| at.err("reg", Problem::TooFew { have: 0, need: 1 }))?,
        redist,
        redist_stride,
        cpu_if: reg(legacy),
        hyp_if: reg(legacy + 1),
        vcpu_if: reg(legacy + 2),
        maintenance: maintenance[0],
        msi,
    })
}
