//! The device tree dom0 boots with, generated from the host's.
//!
//! Dom0 sees the machine almost as the host does: every device node is
//! copied as it is (all properties, all children, `phandle`s kept, disabled
//! nodes too), so that dom0's drivers find the hardware that is passed
//! through to it, at the same addresses (dom0 is mapped 1:1). What the
//! hypervisor owns or emulates is rewritten or left out:
//!
//! - **Generated:** `/memory@<base>` (dom0's banks only), `/chosen`
//!   (`bootargs`, `linux,initrd-start`/`-end` as 64-bit numbers,
//!   `stdout-path`; nothing from the host's `/chosen`: no boot modules, no
//!   `xen,*` or seeds), `/cpus` (one `cpu@<MPIDR>` per vCPU with the host's
//!   first CPU `compatible`, `enable-method = "psci"`, no `cpu-map`, idle
//!   states or caches) and `/psci` (PSCI 1.0/0.2 through HVC, served by the
//!   hypervisor).
//! - **Rewritten:** the root keeps only `compatible`, `model`,
//!   `#address-cells`, `#size-cells` and `interrupt-parent`. The GIC node
//!   keeps its name and properties (`phandle` included, which everything's
//!   `interrupt-parent` names) but its `reg` lists only what dom0's vGIC
//!   has: GICD + GICC (GICv2: no GICH/GICV) or GICD + the GICR regions
//!   (GICv3: no legacy frames), and it loses the maintenance `interrupts`
//!   and its MSI children (`arm,gic-v3-its`, `arm,gic-v2m-frame`: not
//!   emulated; `msi-parent`/`msi-map` naming them are removed wherever they
//!   are). The generic timer keeps the host's interrupts (the binding's
//!   four: secure and non-secure physical, virtual, hypervisor physical,
//!   and a fifth if the host lists one); on GICv2 their CPU mask names
//!   dom0's vCPUs.
//! - **Dropped:** host memory nodes, `/hypervisor`, `xen,xen` nodes, CPU PMU
//!   nodes (their interrupt is per physical CPU and not routed to guests;
//!   Xen hides them from dom0 too), and any node whose `reg` overlaps a
//!   region the hypervisor keeps for itself (its own memory, say, or a
//!   `/reserved-memory` region inside it). Aliases (and `__symbols__`)
//!   naming a dropped node go too.
//!
//! [`DeviceTree::dom0_pass_through`] lists what the hypervisor must give
//! dom0 for those copied nodes to work: their MMIO regions, translated to
//! CPU physical addresses through the buses' `ranges` (for PCI host bridges
//! also their address windows), and the SPIs that reach the GIC from their
//! `interrupts`, `interrupts-extended` and `interrupt-map` properties. UARTs
//! are listed apart, since the hypervisor may keep or emulate one.
//!
//! The tree is written with the `vm-fdt` crate, which needs the heap.

// Errors name the node (a `NodePath` inside `DtError`): large, but only on
// the cold path of building a domain.
#![allow(clippy::result_large_err)]

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use vm_fdt::{FdtWriter, FdtWriterNode};

use super::cpus::{self, MPIDR_AFFINITY_MASK};
use super::gic::{self, Gic, GicVersion, Irq, IrqKind};
use super::walk::{self, Flow, Located};
use super::{DeviceTree, DtError, MAX_DEPTH, Problem, Region, be32};

type Node<'b, 'a> = fdt::node::FdtNode<'b, 'a>;

/// What dom0's device tree is made of, besides the host's tree.
#[derive(Clone, Copy, Debug)]
pub struct Dom0Dt<'c> {
    /// Dom0's RAM banks (guest physical = host physical), in the order they
    /// are listed in `/memory`.
    pub memory: &'c [Region],
    /// Each vCPU's virtual MPIDR (affinity fields only), vCPU 0 first.
    pub vcpu_mpidrs: &'c [u64],
    /// Dom0's kernel command line (`/chosen/bootargs`).
    pub bootargs: Option<&'c str>,
    /// Dom0's initial ramdisk, already in its memory.
    pub initrd: Option<Region>,
    /// `/chosen/stdout-path`: the host path (or alias, with optional
    /// `:options`) of the UART dom0 uses as its console.
    pub stdout_path: Option<&'c str>,
    /// The GIC as dom0's vGIC presents it.
    pub gic: Dom0Gic<'c>,
    /// Host regions the hypervisor keeps for itself: nodes whose `reg`
    /// overlaps one are left out of dom0's tree.
    pub hypervisor: &'c [Region],
}

/// The GIC frames dom0 sees, at CPU physical addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dom0Gic<'c> {
    /// GICv2: distributor and CPU interface.
    V2 {
        /// GICD.
        dist: Region,
        /// GICC (backed by the host's GICV frame).
        cpu_if: Region,
    },
    /// GICv3: distributor and redistributor regions.
    V3 {
        /// GICD.
        dist: Region,
        /// GICR regions.
        redist: &'c [Region],
    },
}

impl<'c> Dom0Gic<'c> {
    /// The host GIC's own frames, as dom0 sees them when the vGIC emulates
    /// them in place. A GICv2 needs its GICC frame.
    pub fn from_host(gic: &'c Gic) -> Result<Self, Dom0DtError> {
        match gic.version {
            GicVersion::V3 => Ok(Dom0Gic::V3 { dist: gic.dist, redist: gic.redist.as_slice() }),
            GicVersion::V2 => {
                let cpu_if = gic.cpu_if.ok_or_else(|| {
                    Dom0DtError::Host(DtError::prop(gic.node.as_str(), "reg", Problem::TooFew { have: 1, need: 2 }))
                })?;
                Ok(Dom0Gic::V2 { dist: gic.dist, cpu_if })
            }
        }
    }

    /// The programming model.
    pub fn version(&self) -> GicVersion {
        match self {
            Dom0Gic::V2 { .. } => GicVersion::V2,
            Dom0Gic::V3 { .. } => GicVersion::V3,
        }
    }

    /// The frames in `reg` order, each with its name.
    fn frames(&self) -> Vec<(&'static str, Region)> {
        match *self {
            Dom0Gic::V2 { dist, cpu_if } => alloc::vec![("GICD", dist), ("GICC", cpu_if)],
            Dom0Gic::V3 { dist, redist } => {
                let mut v = alloc::vec![("GICD", dist)];
                v.extend(redist.iter().map(|r| ("GICR", *r)));
                v
            }
        }
    }
}

/// Why dom0's device tree (or pass-through plan) could not be made.
#[derive(Debug, PartialEq, Eq)]
pub enum Dom0DtError {
    /// The host tree lacks something required or has a malformed property.
    Host(DtError),
    /// [`Dom0Dt::memory`] is empty.
    NoMemory,
    /// A memory bank is empty or runs past the end of the address space.
    BadBank(Region),
    /// [`Dom0Dt::vcpu_mpidrs`] is empty.
    NoVcpus,
    /// A vCPU's MPIDR has bits set outside the affinity fields.
    BadMpidr {
        /// The vCPU.
        vcpu: usize,
        /// Its MPIDR.
        mpidr: u64,
    },
    /// A vCPU's MPIDR is the same as an earlier vCPU's.
    DuplicateMpidr {
        /// The vCPU.
        vcpu: usize,
        /// Its MPIDR.
        mpidr: u64,
    },
    /// The initrd is empty or runs past the end of the address space.
    BadInitrd(Region),
    /// `stdout-path` names no node that dom0's tree keeps.
    StdoutPath(String),
    /// The host GIC is not the version [`Dom0Dt::gic`] describes.
    GicVersion {
        /// The host GIC node.
        node: String,
        /// The host's version.
        host: GicVersion,
        /// The version dom0 is to see.
        dom0: GicVersion,
    },
    /// A GIC frame is none of the host GIC's `reg` entries and the GIC sits
    /// under a bus, where it cannot be written in the bus's address space.
    GicFrame {
        /// The host GIC node.
        node: String,
        /// Which frame (GICD, GICC, GICR).
        frame: &'static str,
        /// The frame.
        region: Region,
    },
    /// A number does not fit the cells the tree gives it.
    TooWide {
        /// The node written.
        node: String,
        /// The property.
        prop: &'static str,
        /// The number.
        value: u64,
        /// The cells available.
        cells: usize,
    },
    /// The FDT writer refused a node or property (a name it considers
    /// invalid, a string with a NUL, a duplicate `phandle`, ...).
    Write {
        /// The node written.
        node: String,
        /// The property, or `None` for the node itself.
        prop: Option<String>,
        /// What the writer said.
        error: vm_fdt::Error,
    },
}

impl From<DtError> for Dom0DtError {
    fn from(e: DtError) -> Self {
        Dom0DtError::Host(e)
    }
}

impl fmt::Display for Dom0DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dom0DtError::Host(e) => write!(f, "host device tree: {e}"),
            Dom0DtError::NoMemory => write!(f, "dom0 has no memory bank"),
            Dom0DtError::BadBank(r) => {
                write!(f, "dom0 memory bank at {:#x} (size {:#x}) is empty or wraps", r.base, r.size)
            }
            Dom0DtError::NoVcpus => write!(f, "dom0 has no vCPU"),
            Dom0DtError::BadMpidr { vcpu, mpidr } => {
                write!(f, "vCPU {vcpu}: MPIDR {mpidr:#x} has bits set outside Aff3..Aff0")
            }
            Dom0DtError::DuplicateMpidr { vcpu, mpidr } => {
                write!(f, "vCPU {vcpu}: MPIDR {mpidr:#x} is already used by an earlier vCPU")
            }
            Dom0DtError::BadInitrd(r) => {
                write!(f, "dom0 initrd at {:#x} (size {:#x}) is empty or wraps", r.base, r.size)
            }
            Dom0DtError::StdoutPath(p) => write!(f, "/chosen: stdout-path \"{p}\" names no node dom0's tree keeps"),
            Dom0DtError::GicVersion { node, host, dom0 } => {
                write!(f, "{node}: the host GIC is {host:?}, dom0 is to see {dom0:?}")
            }
            Dom0DtError::GicFrame { node, frame, region } => write!(
                f,
                "{node}: property reg: {frame} {region} is not one of the host GIC's frames (the GIC is on a bus)"
            ),
            Dom0DtError::TooWide { node, prop, value, cells } => {
                write!(f, "{node}: property {prop}: {value:#x} does not fit in {cells} cell(s)")
            }
            Dom0DtError::Write { node, prop: Some(p), error } => {
                write!(f, "{node}: property {p} cannot be written: {error}")
            }
            Dom0DtError::Write { node, prop: None, error } => write!(f, "{node}: node cannot be written: {error}"),
        }
    }
}

/// One MMIO region to map 1:1 into dom0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassThroughMmio {
    /// The node it belongs to (the first one, if several list it).
    pub node: String,
    /// The region, at CPU physical addresses.
    pub region: Region,
}

/// A UART found in the tree: the caller decides whether dom0 gets it
/// (mapped and routed like any device) or an emulation, or nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassThroughUart {
    /// The node.
    pub node: String,
    /// Its first `compatible` string (empty if it has none).
    pub compatible: String,
    /// Its `reg` regions, at CPU physical addresses.
    pub regions: Vec<Region>,
    /// The INTIDs of its SPIs.
    pub spis: Vec<u32>,
}

/// What the hypervisor gives dom0 so that the devices in its tree work.
///
/// SPIs of devices behind an interrupt nexus (a bus with `interrupt-map`,
/// such as the Arm motherboards' or a PCI bridge) come from the nexus's
/// whole `interrupt-map`, listed in [`PassThroughPlan::spis`] rather than
/// under the device: on FVP the UARTs' SPIs are there, not in
/// [`PassThroughUart::spis`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassThroughPlan {
    /// MMIO regions of the enabled devices (UARTs excepted), by base
    /// address, exact duplicates merged. Not rounded to pages: several
    /// devices can share one page (QEMU's virtio-mmio transports).
    pub mmio: Vec<PassThroughMmio>,
    /// INTIDs of the SPIs (and extended SPIs) those devices raise, sorted,
    /// without duplicates.
    pub spis: Vec<u32>,
    /// The enabled UARTs, left to the caller.
    pub uarts: Vec<PassThroughUart>,
    /// The `/reserved-memory` regions kept in dom0's tree.
    pub reserved_memory: Vec<PassThroughMmio>,
}

impl PassThroughPlan {
    /// The MMIO regions (and `extra`) as whole 4 KiB pages, sorted, with
    /// overlapping and adjacent spans merged: what stage 2 maps (a page
    /// is mapped once however many devices share it). `exclude` pages
    /// (an emulated device's) are cut out.
    pub fn pages(&self, extra: &[Region], exclude: &[Region]) -> Vec<Region> {
        const PAGE: u128 = 0x1000;
        // Ends in 128 bits: a region may run to the very top of the address
        // space, whose end (2^64) a u64 cannot hold; saturating there would
        // lose the last page (a zero-sized span).
        let span = |r: &Region| {
            let end = (u128::from(r.base) + u128::from(r.size)).min(1 << 64);
            (u128::from(r.base) & !(PAGE - 1), (end + PAGE - 1) & !(PAGE - 1))
        };
        let mut spans: Vec<(u128, u128)> = self
            .mmio
            .iter()
            .map(|m| m.region)
            .chain(extra.iter().copied())
            .filter(|r| r.size > 0)
            .map(|r| span(&r))
            .collect();
        spans.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::new();
        for (start, end) in spans {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        for x in exclude.iter().filter(|x| x.size > 0) {
            let (xs, xe) = span(x);
            merged = merged
                .into_iter()
                .flat_map(|(s, e)| {
                    let before = (s < xs.min(e)).then_some((s, xs.min(e)));
                    let after = (e > xe.max(s)).then_some((xe.max(s), e));
                    before.into_iter().chain(after)
                })
                .collect();
        }
        // The whole address space (2^64 bytes) is one page short of a size.
        let max = u128::from(u64::MAX) & !(PAGE - 1);
        merged.into_iter().map(|(s, e)| Region { base: s as u64, size: (e - s).min(max) as u64 }).collect()
    }
}

#[cfg(test)]
mod pages_tests {
    use super::*;

    /// Found by the `dt_plan` fuzz target: a device at the top of the
    /// address space gave a zero-sized (unaligned-looking) span instead of
    /// its last page.
    #[test]
    fn pages_at_the_top_of_the_address_space() {
        let top = Region { base: 0xffff_ffff_ffff_f000, size: 0x1000 };
        let plan = PassThroughPlan {
            mmio: alloc::vec![
                PassThroughMmio { node: "/a".into(), region: top },
                PassThroughMmio { node: "/b".into(), region: Region { base: 0xffff_ffff_ffff_e800, size: 0x10 } },
            ],
            ..Default::default()
        };
        assert_eq!(plan.pages(&[], &[]), [Region { base: 0xffff_ffff_ffff_e000, size: 0x2000 }]);
        // A region running past the top is cut there.
        let past = Region { base: 0xffff_ffff_ffff_ff00, size: 0x1000 };
        assert_eq!(plan.pages(&[past], &[Region { base: 0xffff_ffff_ffff_e000, size: 1 }]), [top]);
        // Every page of the address space but the last one that fits a size.
        let all = Region { base: 0, size: u64::MAX };
        assert_eq!(plan.pages(&[all], &[]), [Region { base: 0, size: 0xffff_ffff_ffff_f000 }]);
    }
}

/// How a host node is treated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Root,
    /// Left out, with its subtree.
    Drop,
    /// The GIC: `reg` and `interrupts` rewritten.
    Gic,
    /// The generic timer: `interrupts` rewritten.
    Timer,
    /// `/aliases` or `/__symbols__`: entries naming dropped nodes go.
    Aliases,
    /// Copied as it is.
    Copy,
}

/// Compatibles of the PSCI node.
const PSCI_COMPATIBLE: [&str; 3] = ["arm,psci", "arm,psci-0.2", "arm,psci-1.0"];
/// UART compatibles without "uart" in them.
const UART_COMPATIBLE: [&str; 5] = ["arm,pl011", "ns16550a", "ns16550", "ns16450", "ns8250"];

/// Everything about the host tree both the tree and the plan need.
struct Host<'d, 'a, 'c> {
    dt: &'d DeviceTree<'a>,
    gic: Gic,
    gic_path: String,
    gic_phandle: Option<u32>,
    timer_path: Option<String>,
    hypervisor: &'c [Region],
    /// Full paths of the nodes left out (each with its subtree).
    dropped: Vec<String>,
    /// Their phandles, and those of their descendants.
    dropped_phandles: Vec<u32>,
    /// Every phandle with the node's `#interrupt-cells` and `#address-cells`.
    phandles: Vec<(u32, Option<u32>, Option<u32>)>,
}

impl<'d, 'a, 'c> Host<'d, 'a, 'c> {
    fn new(dt: &'d DeviceTree<'a>, hypervisor: &'c [Region], need_timer: bool) -> Result<Self, Dom0DtError> {
        let gic = dt.gic()?;
        if gic.node.is_truncated() {
            return Err(DtError::MissingNode("GIC node (its path is too long)").into());
        }
        let gic_path = gic.node.as_str().to_string();
        let gic_at = dt.locate(&gic_path).ok_or(DtError::MissingNode("GIC node"))?;
        let gic_phandle = gic::phandle_of(gic_at.node());
        let timer_path = match dt.timer() {
            Ok(t) if !t.node.is_truncated() => Some(t.node.as_str().to_string()),
            Ok(_) => return Err(DtError::MissingNode("timer node (its path is too long)").into()),
            Err(e) if need_timer => return Err(e.into()),
            Err(_) => None,
        };
        let mut host = Host {
            dt,
            gic,
            gic_path,
            gic_phandle,
            timer_path,
            hypervisor,
            dropped: Vec::new(),
            dropped_phandles: Vec::new(),
            phandles: Vec::new(),
        };
        let mut err = None;
        let mut dropped = Vec::new();
        let mut dropped_phandles = Vec::new();
        let mut phandles = Vec::new();
        dt.walk(&mut |at| {
            let node = at.node();
            if let Some(ph) = gic::phandle_of(node) {
                let cells = |name| node.property(name).and_then(|p| gic::phandle_prop(p.value));
                phandles.push((ph, cells("#interrupt-cells"), cells("#address-cells")));
            }
            match host.classify(at) {
                Ok(Role::Drop) => {
                    dropped.push(path_of(at));
                    collect_phandles(node, &mut dropped_phandles, at.ancestors().len());
                    // Its subtree is still walked, for the phandle index.
                    Flow::Descend
                }
                Ok(_) => Flow::Descend,
                Err(e) => {
                    err = Some(e);
                    Flow::Stop
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        host.dropped = dropped;
        host.dropped_phandles = dropped_phandles;
        host.phandles = phandles;
        Ok(host)
    }

    /// How the node is treated (the same answer in every pass).
    fn classify(&self, at: &Located<'_, 'a>) -> Result<Role, Dom0DtError> {
        let depth = at.ancestors().len();
        if depth == 0 {
            return Ok(Role::Root);
        }
        let node = at.node();
        let path = path_of(at);
        if path == self.gic_path {
            return Ok(Role::Gic);
        }
        if self.timer_path.as_deref() == Some(path.as_str()) {
            return Ok(Role::Timer);
        }
        let base = node.name.split('@').next().unwrap_or("");
        if depth == 1 {
            match base {
                "chosen" | "cpus" | "psci" | "hypervisor" | "memory" => return Ok(Role::Drop),
                "aliases" | "__symbols__" => return Ok(Role::Aliases),
                _ => {}
            }
        }
        let device_type = node.property("device_type").and_then(|p| walk::first_string(p.value));
        if device_type == Some("memory")
            || walk::compatible_with(node, &PSCI_COMPATIBLE).is_some()
            || walk::compatible_with(node, &["xen,xen"]).is_some()
            || is_cpu_pmu(node)
        {
            return Ok(Role::Drop);
        }
        if parent_path(&path) == self.gic_path
            && walk::compatible_with(node, &["arm,gic-v3-its", "arm,gic-v2m-frame"]).is_some()
        {
            return Ok(Role::Drop);
        }
        if !self.hypervisor.is_empty() {
            for r in mmio_regions(at)? {
                if self.hypervisor.iter().any(|h| overlaps(*h, r)) {
                    return Ok(Role::Drop);
                }
            }
        }
        Ok(Role::Copy)
    }

    /// Whether the node at `path` (a full path) is left out.
    fn is_dropped(&self, path: &str) -> bool {
        self.dropped.iter().any(|d| path == d || (path.starts_with(d.as_str()) && path[d.len()..].starts_with('/')))
    }

    /// `#interrupt-cells` and `#address-cells` of the node with phandle `ph`.
    fn by_phandle(&self, ph: u32) -> Option<(Option<u32>, Option<u32>)> {
        self.phandles.iter().find(|p| p.0 == ph).map(|p| (p.1, p.2))
    }

    /// Whether an `msi-parent`/`msi-map` value names a dropped MSI controller.
    fn names_dropped_msi(&self, prop: &str, value: &[u8]) -> bool {
        let cells: Vec<u32> = value.chunks_exact(4).map(|c| be32(c, 0)).collect();
        let dropped = |ph: &u32| self.dropped_phandles.contains(ph);
        match prop {
            "msi-parent" => cells.first().is_some_and(dropped),
            // (rid-base, msi-controller, msi-base, length) with one msi cell.
            _ if value.len().is_multiple_of(16) => cells.chunks_exact(4).any(|e| dropped(&e[1])),
            _ => cells.iter().any(dropped),
        }
    }

    /// Whether the node's interrupt parent is the GIC. As Linux finds it:
    /// the node's `interrupt-parent`, else its parent in the tree, going up
    /// until a node with `#interrupt-cells` (an interrupt nexus such as a
    /// motherboard bus with an `interrupt-map` is one).
    fn interrupt_parent_is_gic(&self, at: &Located<'_, 'a>) -> bool {
        let Some(gic) = self.gic_phandle else { return false };
        let anc = at.ancestors();
        let mut cur = at.node();
        let mut k = anc.len();
        loop {
            if let Some(p) = cur.property("interrupt-parent") {
                return gic::phandle_prop(p.value) == Some(gic);
            }
            if k == 0 {
                return false;
            }
            k -= 1;
            cur = anc[k];
            if cur.property("#interrupt-cells").is_some() {
                return gic::phandle_of(cur) == Some(gic);
            }
        }
    }

    /// The GIC INTIDs of SPIs and extended SPIs the node raises, from
    /// `interrupts-extended` (else `interrupts`) and `interrupt-map`.
    fn spis(&self, at: &Located<'_, 'a>, out: &mut Vec<u32>) -> Result<(), Dom0DtError> {
        let gic_cells = self.gic.interrupt_cells;
        let mut push = |spec: &[u8], err: &dyn Fn(Problem) -> DtError| -> Result<(), Dom0DtError> {
            let irq = Irq::decode(spec).map_err(err)?;
            if matches!(irq.kind, IrqKind::Spi | IrqKind::ExtSpi) {
                out.push(irq.intid());
            }
            Ok(())
        };
        if let Some(v) = at.prop("interrupts-extended") {
            let bad = |p: Problem| at.err("interrupts-extended", p);
            let cells = words(v).ok_or_else(|| bad(Problem::NotMultiple { len: v.len(), stride: 4 }))?;
            let mut i = 0;
            while i < cells.len() {
                let ph = cells[i];
                let (ic, _) = self.by_phandle(ph).ok_or_else(|| bad(Problem::NoSuchNode))?;
                let ic = ic.ok_or_else(|| bad(Problem::InterruptCells(0)))? as usize;
                let spec = v
                    .get((i + 1) * 4..(i + 1 + ic) * 4)
                    .ok_or_else(|| bad(Problem::TooFew { have: i, need: i + 1 + ic }))?;
                if Some(ph) == self.gic_phandle && ic >= 3 {
                    push(spec, &bad)?;
                }
                i += 1 + ic;
            }
        } else if let Some(v) = at.prop("interrupts")
            && self.interrupt_parent_is_gic(at)
        {
            let bad = |p: Problem| at.err("interrupts", p);
            let stride = gic_cells * 4;
            if v.is_empty() || !v.len().is_multiple_of(stride) {
                return Err(bad(Problem::NotMultiple { len: v.len(), stride }).into());
            }
            for spec in v.chunks_exact(stride) {
                push(spec, &bad)?;
            }
        }
        if let Some(v) = at.prop("interrupt-map") {
            let bad = |p: Problem| at.err("interrupt-map", p);
            let cells = words(v).ok_or_else(|| bad(Problem::NotMultiple { len: v.len(), stride: 4 }))?;
            let small = |n: Option<u32>, default: Option<u32>, prop: &'static str| -> Result<usize, DtError> {
                match n.or(default) {
                    Some(n @ 0..=4) => Ok(n as usize),
                    Some(n) => Err(at.err(prop, Problem::Value(n as u64))),
                    None => Err(at.err(prop, Problem::Missing)),
                }
            };
            let child = small(walk::read_u32_prop(at, "#address-cells")?, Some(2), "#address-cells")?
                + small(walk::read_u32_prop(at, "#interrupt-cells")?, None, "#interrupt-cells")?;
            let mut i = 0;
            while i < cells.len() {
                let ph = *cells.get(i + child).ok_or_else(|| bad(Problem::TooFew { have: i, need: i + child + 1 }))?;
                let (ic, ac) = self.by_phandle(ph).ok_or_else(|| bad(Problem::NoSuchNode))?;
                let ac = small(ac, Some(0), "interrupt-map")?;
                let ic = small(ic, None, "interrupt-map")?;
                let start = i + child + 1 + ac;
                let spec = v
                    .get(start * 4..(start + ic) * 4)
                    .ok_or_else(|| bad(Problem::TooFew { have: i, need: start + ic }))?;
                if Some(ph) == self.gic_phandle && ic >= 3 {
                    push(spec, &bad)?;
                }
                i = start + ic;
            }
        }
        Ok(())
    }
}

/// Big-endian cells of a property whose length is a multiple of 4.
fn words(v: &[u8]) -> Option<Vec<u32>> {
    v.len().is_multiple_of(4).then(|| v.chunks_exact(4).map(|c| be32(c, 0)).collect())
}

/// Whether the node is a CPU's PMU (`arm,armv8-pmuv3`, `arm,cortex-a15-pmu`, ...).
fn is_cpu_pmu(node: Node<'_, '_>) -> bool {
    let Some(c) = node.property("compatible") else { return false };
    walk::strings(c.value).any(|s| {
        s == "arm,armv8-pmuv3"
            || s == "arm,armv7-pmu"
            || ((s.starts_with("arm,cortex-") || s.starts_with("arm,neoverse-")) && s.ends_with("-pmu"))
    })
}

/// Whether the node is a UART (`device_type = "serial"`, a known
/// compatible, or "uart" in one).
fn is_uart(node: Node<'_, '_>) -> bool {
    if node.property("device_type").and_then(|p| walk::first_string(p.value)) == Some("serial") {
        return true;
    }
    node.property("compatible")
        .is_some_and(|c| walk::strings(c.value).any(|s| UART_COMPATIBLE.contains(&s) || s.contains("uart")))
}

/// Whether the node is a PCI host bridge (or bridge): `device_type = "pci"`.
fn is_pci(node: Node<'_, '_>) -> bool {
    node.property("device_type").and_then(|p| walk::first_string(p.value)) == Some("pci")
}

/// The node's `reg` entries at CPU physical addresses, if it is memory
/// mapped: every bus above it has `ranges` (no `ranges` means a bus such as
/// I2C, whose addresses are not the CPU's), none is a PCI bus (whose
/// children's `reg` is config space), and addresses have sizes. Empty
/// regions are left out.
fn mmio_regions(at: &Located<'_, '_>) -> Result<Vec<Region>, DtError> {
    let mut out = Vec::new();
    let anc = at.ancestors();
    if at.prop("reg").is_none() || anc.is_empty() {
        return Ok(out);
    }
    if anc[1..].iter().any(|bus| bus.property("ranges").is_none() || is_pci(*bus)) {
        return Ok(out);
    }
    if at.parent_cells()?.1 == 0 {
        return Ok(out);
    }
    let mut i = 0;
    while let Some(r) = at.reg(i)? {
        if r.size != 0 {
            out.push(r);
        }
        i += 1;
    }
    Ok(out)
}

/// The CPU-side windows of a PCI host bridge's `ranges`.
fn pci_windows(at: &Located<'_, '_>) -> Result<Vec<Region>, DtError> {
    let mut out = Vec::new();
    let Some(v) = at.prop("ranges") else { return Ok(out) };
    let (cac, csc) = walk::cells(at.node(), || at.path())?;
    let (pac, _) = at.parent_cells()?;
    if cac == 0 || cac > 3 || pac == 0 || pac > 2 || csc == 0 || csc > 2 {
        return Err(at.err("ranges", Problem::CellCount { address: cac.max(pac), size: csc }));
    }
    let stride = (cac + pac + csc) * 4;
    if v.len() % stride != 0 {
        return Err(at.err("ranges", Problem::NotMultiple { len: v.len(), stride }));
    }
    for e in v.chunks_exact(stride) {
        let parent = walk::read_cells(&e[cac * 4..], pac);
        let size = walk::read_cells(&e[(cac + pac) * 4..], csc);
        if size != 0 {
            out.push(Region { base: at.translate(parent, size)?, size });
        }
    }
    Ok(out)
}

fn overlaps(a: Region, b: Region) -> bool {
    a.base < b.end() && b.base < a.end()
}

/// The node's full path.
fn path_of(at: &Located<'_, '_>) -> String {
    let mut s = String::new();
    for n in at.ancestors().iter().skip(1) {
        s.push('/');
        s.push_str(n.name);
    }
    if !at.ancestors().is_empty() {
        s.push('/');
        s.push_str(at.node().name);
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

fn parent_path(path: &str) -> &str {
    super::parent_path(path)
}

/// Pushes the phandles of `node` and its descendants.
fn collect_phandles(node: Node<'_, '_>, out: &mut Vec<u32>, depth: usize) {
    if let Some(ph) = gic::phandle_of(node) {
        out.push(ph);
    }
    if depth < MAX_DEPTH {
        for c in node.children() {
            collect_phandles(c, out, depth + 1);
        }
    }
}

/// Appends `value` as `cells` big-endian cells, if it fits.
fn push_cells(out: &mut Vec<u8>, value: u64, cells: usize) -> bool {
    match cells {
        1 if value <= u32::MAX as u64 => out.extend_from_slice(&(value as u32).to_be_bytes()),
        2 => out.extend_from_slice(&value.to_be_bytes()),
        _ => return false,
    }
    true
}

/// The FDT writer with the path of the node being written, for errors.
///
/// `vm-fdt` refuses property names longer than the specification's 31
/// characters, which real trees have (Exynos5250:
/// `samsung,exynos-sataphy-i2c-phandle`): such a property is written under
/// a placeholder name, renamed in the finished blob ([`Writer::finish`]).
struct Writer {
    w: FdtWriter,
    open: Vec<FdtWriterNode>,
    path: String,
    /// Names written under the placeholder `LONG_NAME` + their index.
    long_names: Vec<String>,
}

/// Prefix of placeholder property names (`?` is valid in property names,
/// and no real tree starts one with it).
const LONG_NAME: &str = "?armature-long-name-";

impl Writer {
    fn begin(&mut self, name: &str) -> Result<(), Dom0DtError> {
        if self.open.is_empty() {
            self.path = String::from("/");
        } else {
            if self.path != "/" {
                self.path.push('/');
            }
            self.path.push_str(name);
        }
        let n = self.w.begin_node(name).map_err(|error| Dom0DtError::Write {
            node: self.path.clone(),
            prop: None,
            error,
        })?;
        self.open.push(n);
        Ok(())
    }

    fn end(&mut self) -> Result<(), Dom0DtError> {
        if let Some(n) = self.open.pop() {
            self.w.end_node(n).map_err(|error| Dom0DtError::Write { node: self.path.clone(), prop: None, error })?;
            let cut = self.path.rfind('/').unwrap_or(0).max(1);
            self.path.truncate(cut);
        }
        Ok(())
    }

    fn prop(&mut self, name: &str, value: &[u8]) -> Result<(), Dom0DtError> {
        let err = |error| Dom0DtError::Write { node: self.path.clone(), prop: Some(name.to_string()), error };
        if name.starts_with(LONG_NAME) {
            return Err(err(vm_fdt::Error::InvalidPropertyName));
        }
        let r = if name == "phandle" && value.len() == 4 {
            self.w.property_phandle(be32(value, 0))
        } else {
            self.w.property(name, value)
        };
        match r {
            Err(vm_fdt::Error::InvalidPropertyName) if !name.is_empty() && !name.contains('\0') => {
                let i = match self.long_names.iter().position(|n| n == name) {
                    Some(i) => i,
                    None => {
                        self.long_names.push(name.to_string());
                        self.long_names.len() - 1
                    }
                };
                self.w.property(&format!("{LONG_NAME}{i}"), value).map_err(err)
            }
            r => r.map_err(err),
        }
    }

    /// The finished blob, placeholder property names replaced by the real
    /// ones (appended to the strings block).
    fn finish(self) -> Result<Vec<u8>, Dom0DtError> {
        let mut blob = self.w.finish().map_err(|error| Dom0DtError::Write { node: "/".into(), prop: None, error })?;
        if self.long_names.is_empty() {
            return Ok(blob);
        }
        let (off_strings, size_strings) = (be32(&blob, 12) as usize, be32(&blob, 32) as usize);
        let strings = &blob[off_strings..off_strings + size_strings];
        let mut remap = Vec::new();
        let mut extra = Vec::new();
        for (i, name) in self.long_names.iter().enumerate() {
            let placeholder = format!("{LONG_NAME}{i}\0");
            let old = (0..strings.len())
                .find(|&o| (o == 0 || strings[o - 1] == 0) && strings[o..].starts_with(placeholder.as_bytes()));
            if let Some(old) = old {
                remap.push((old as u32, (size_strings + extra.len()) as u32));
                extra.extend_from_slice(name.as_bytes());
                extra.push(0);
            }
        }
        let mut props = Vec::new();
        // The writer's output is well formed: the walk cannot fail.
        super::walk_structure(&blob, false, |off, _| props.push(off))?;
        for off in props {
            if be32(&blob, off) != 3 {
                continue; // not FDT_PROP
            }
            let name_off = be32(&blob, off + 8);
            if let Some(&(_, new)) = remap.iter().find(|(old, _)| *old == name_off) {
                blob[off + 8..off + 12].copy_from_slice(&new.to_be_bytes());
            }
        }
        blob.extend_from_slice(&extra);
        let total = blob.len() as u32;
        blob[4..8].copy_from_slice(&total.to_be_bytes());
        blob[32..36].copy_from_slice(&((size_strings + extra.len()) as u32).to_be_bytes());
        Ok(blob)
    }

    fn string(&mut self, name: &str, value: &str) -> Result<(), Dom0DtError> {
        if value.contains('\0') {
            return Err(Dom0DtError::Write {
                node: self.path.clone(),
                prop: Some(name.to_string()),
                error: vm_fdt::Error::InvalidString,
            });
        }
        let mut v = Vec::with_capacity(value.len() + 1);
        v.extend_from_slice(value.as_bytes());
        v.push(0);
        self.prop(name, &v)
    }

    /// `value` as `cells` cells, or an error naming the property.
    fn cells(&self, out: &mut Vec<u8>, prop: &'static str, value: u64, cells: usize) -> Result<(), Dom0DtError> {
        if push_cells(out, value, cells) {
            Ok(())
        } else {
            Err(Dom0DtError::TooWide { node: self.path.clone(), prop, value, cells })
        }
    }
}

impl Dom0Dt<'_> {
    /// Checks the settings that do not depend on the host tree.
    fn check(&self) -> Result<(), Dom0DtError> {
        if self.memory.is_empty() {
            return Err(Dom0DtError::NoMemory);
        }
        if let Some(b) = self.memory.iter().find(|b| b.size == 0 || b.base.checked_add(b.size).is_none()) {
            return Err(Dom0DtError::BadBank(*b));
        }
        if self.vcpu_mpidrs.is_empty() {
            return Err(Dom0DtError::NoVcpus);
        }
        for (vcpu, &mpidr) in self.vcpu_mpidrs.iter().enumerate() {
            if mpidr & !MPIDR_AFFINITY_MASK != 0 {
                return Err(Dom0DtError::BadMpidr { vcpu, mpidr });
            }
            if self.vcpu_mpidrs[..vcpu].contains(&mpidr) {
                return Err(Dom0DtError::DuplicateMpidr { vcpu, mpidr });
            }
        }
        if let Some(r) = self.initrd
            && (r.size == 0 || r.base.checked_add(r.size).is_none())
        {
            return Err(Dom0DtError::BadInitrd(r));
        }
        Ok(())
    }
}

impl<'a> DeviceTree<'a> {
    /// Dom0's flattened device tree, built from this (the host's) tree and
    /// `cfg` (see the module doc for what is copied, rewritten and dropped).
    pub fn dom0_device_tree(&self, cfg: &Dom0Dt<'_>) -> Result<Vec<u8>, Dom0DtError> {
        cfg.check()?;
        let mut host = Host::new(self, cfg.hypervisor, true)?;
        if host.gic.version != cfg.gic.version() {
            return Err(Dom0DtError::GicVersion {
                node: host.gic_path.clone(),
                host: host.gic.version,
                dom0: cfg.gic.version(),
            });
        }
        if let Some(sp) = cfg.stdout_path {
            self.check_stdout_path(&host, sp)?;
        }
        let host_cpus = self.host_cpus()?;
        let reused: Vec<u32> = host_cpus.each.iter().take(cfg.vcpu_mpidrs.len()).filter_map(|c| c.0).collect();
        host.dropped_phandles.retain(|p| !reused.contains(p));
        let w = FdtWriter::new().map_err(|error| Dom0DtError::Write { node: "/".into(), prop: None, error })?;
        let mut w = Writer { w, open: Vec::new(), path: String::new(), long_names: Vec::new() };
        let mut err = None;
        self.walk(&mut |at| {
            let depth = at.ancestors().len();
            let r = (|| {
                while w.open.len() > depth {
                    w.end()?;
                }
                host.emit(&mut w, at, cfg, &host_cpus)
            })();
            match r {
                Ok(flow) => flow,
                Err(e) => {
                    err = Some(e);
                    Flow::Stop
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        while !w.open.is_empty() {
            w.end()?;
        }
        w.finish()
    }

    /// What the hypervisor must map and route for the devices dom0's tree
    /// keeps: see [`PassThroughPlan`]. `hypervisor` is the same as
    /// [`Dom0Dt::hypervisor`]. Disabled nodes (and their subtrees), the GIC,
    /// the timer, memory, CPUs and PSCI are not in it.
    pub fn dom0_pass_through(&self, hypervisor: &[Region]) -> Result<PassThroughPlan, Dom0DtError> {
        let host = Host::new(self, hypervisor, false)?;
        let mut plan = PassThroughPlan::default();
        let mut err = None;
        self.walk(&mut |at| match host.plan_node(at, &mut plan) {
            Ok(flow) => flow,
            Err(e) => {
                err = Some(e);
                Flow::Stop
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        plan.mmio.sort_by_key(|m| (m.region.base, m.region.size));
        plan.mmio.dedup_by(|b, a| a.region == b.region);
        plan.spis.sort_unstable();
        plan.spis.dedup();
        Ok(plan)
    }

    fn check_stdout_path(&self, host: &Host<'_, 'a, '_>, sp: &str) -> Result<(), Dom0DtError> {
        let name = sp.split(':').next().unwrap_or(sp);
        let target = if name.starts_with('/') {
            Some(name)
        } else {
            self.locate("/aliases").and_then(|a| a.prop(name)).and_then(walk::first_string)
        };
        match target.and_then(|t| self.locate(t)) {
            Some(at) if !host.is_dropped(&path_of(&at)) => Ok(()),
            _ => Err(Dom0DtError::StdoutPath(sp.to_string())),
        }
    }

    /// What the generated CPU nodes take from the host's: the first CPU
    /// node's `compatible` (raw), and for each enabled CPU node in blob
    /// order its `phandle` and `#cooling-cells`. vCPU *n* runs on physical
    /// CPU *n*, so it stands for that CPU where other nodes name it (thermal
    /// cooling maps, say).
    fn host_cpus(&self) -> Result<HostCpus<'a>, Dom0DtError> {
        let cpus = self.locate("/cpus").ok_or(DtError::MissingNode("/cpus"))?;
        let cpu = cpus
            .node()
            .children()
            .find(|n| cpus::is_cpu_node(*n))
            .ok_or(DtError::MissingNode("a CPU node under /cpus"))?;
        let at = cpus.child(cpu).ok_or(DtError::MissingNode("a CPU node under /cpus"))?;
        let compatible = match at.prop("compatible") {
            Some(c) if walk::first_string(c).is_some_and(|s| !s.is_empty()) => c,
            Some(_) => return Err(at.err("compatible", Problem::NotString).into()),
            None => return Err(at.err("compatible", Problem::Missing).into()),
        };
        let each = cpus
            .node()
            .children()
            .filter(|n| cpus::is_cpu_node(*n) && walk::enabled(*n))
            .map(|n| (gic::phandle_of(n), n.property("#cooling-cells").map(|p| p.value)))
            .collect();
        Ok(HostCpus { compatible, each })
    }
}

/// See [`DeviceTree::host_cpus`].
struct HostCpus<'a> {
    compatible: &'a [u8],
    each: Vec<(Option<u32>, Option<&'a [u8]>)>,
}

impl<'a> Host<'_, 'a, '_> {
    /// Writes one host node (all but its children) into dom0's tree.
    fn emit(
        &self,
        w: &mut Writer,
        at: &Located<'_, 'a>,
        cfg: &Dom0Dt<'_>,
        cpus: &HostCpus<'_>,
    ) -> Result<Flow, Dom0DtError> {
        let node = at.node();
        let role = self.classify(at)?;
        if role == Role::Drop {
            return Ok(Flow::Skip);
        }
        w.begin(if role == Role::Root { "" } else { node.name })?;
        match role {
            Role::Root => {
                for p in node.properties() {
                    if matches!(p.name, "compatible" | "model" | "#address-cells" | "#size-cells" | "interrupt-parent")
                    {
                        w.prop(p.name, p.value)?;
                    }
                }
                let (ac, sc) = walk::cells(node, || at.path())?;
                self.emit_generated(w, cfg, cpus, ac, sc)?;
            }
            Role::Gic => {
                let has_nr = node.property("#redistributor-regions").is_some();
                for p in node.properties() {
                    if !matches!(p.name, "reg" | "interrupts" | "#redistributor-regions") {
                        self.copy_prop(w, p.name, p.value)?;
                    }
                }
                let reg = self.gic_reg(at, cfg)?;
                w.prop("reg", &reg)?;
                if let Dom0Gic::V3 { redist, .. } = cfg.gic
                    && (has_nr || redist.len() != 1)
                {
                    w.prop("#redistributor-regions", &(redist.len() as u32).to_be_bytes())?;
                }
            }
            Role::Timer => {
                let cells = self.dt.parent_interrupt_cells(at)?;
                for p in node.properties() {
                    if p.name != "interrupts" {
                        self.copy_prop(w, p.name, p.value)?;
                        continue;
                    }
                    // Every entry the host lists, whole: the binding's
                    // four (secure and non-secure physical, virtual,
                    // hypervisor physical; dom0 never runs at EL2, so the
                    // last is harmless) and the optional fifth.
                    let spec = cells * 4;
                    let have = p.value.len().checked_div(spec).unwrap_or(0);
                    if have < 4 {
                        return Err(at.err("interrupts", Problem::TooFew { have, need: 4 }).into());
                    }
                    let mut v = p.value[..have * spec].to_vec();
                    if cfg.gic.version() == GicVersion::V2 && cells >= 3 {
                        // GICv2 PPI flags carry a CPU mask in bits 15:8.
                        let mask = ((1u32 << cfg.vcpu_mpidrs.len().min(8)) - 1) << 8;
                        for spec in v.chunks_exact_mut(cells * 4) {
                            let flags = be32(spec, 8);
                            if flags & 0xff00 != 0 {
                                spec[8..12].copy_from_slice(&((flags & !0xff00) | mask).to_be_bytes());
                            }
                        }
                    }
                    w.prop("interrupts", &v)?;
                }
            }
            Role::Aliases => {
                for p in node.properties() {
                    let target =
                        walk::first_string(p.value).filter(|s| s.starts_with('/')).and_then(|s| self.dt.locate(s));
                    if target.is_some_and(|t| self.is_dropped(&path_of(&t))) {
                        continue;
                    }
                    self.copy_prop(w, p.name, p.value)?;
                }
            }
            Role::Copy => {
                for p in node.properties() {
                    self.copy_prop(w, p.name, p.value)?;
                }
            }
            Role::Drop => {}
        }
        Ok(Flow::Descend)
    }

    fn copy_prop(&self, w: &mut Writer, name: &str, value: &[u8]) -> Result<(), Dom0DtError> {
        if matches!(name, "msi-parent" | "msi-map") && self.names_dropped_msi(name, value) {
            return Ok(());
        }
        w.prop(name, value)
    }

    /// The GIC's `reg` for dom0: each frame as the host writes it, if the
    /// host lists it, else (GIC under the root only) encoded anew.
    fn gic_reg(&self, at: &Located<'_, 'a>, cfg: &Dom0Dt<'_>) -> Result<Vec<u8>, Dom0DtError> {
        let (ac, sc) = at.parent_cells()?;
        let raw = at.prop("reg").ok_or_else(|| at.err("reg", Problem::Missing))?;
        let stride = (ac + sc) * 4;
        let mut out = Vec::new();
        for (frame, region) in cfg.gic.frames() {
            let mut i = 0;
            let mut found = false;
            while let Some(r) = at.reg(i)? {
                if r == region {
                    out.extend_from_slice(&raw[i * stride..(i + 1) * stride]);
                    found = true;
                    break;
                }
                i += 1;
            }
            if found {
                continue;
            }
            if at.ancestors().len() != 1 {
                return Err(Dom0DtError::GicFrame { node: self.gic_path.clone(), frame, region });
            }
            let too_wide =
                |value, cells| Dom0DtError::TooWide { node: self.gic_path.clone(), prop: "reg", value, cells };
            if !push_cells(&mut out, region.base, ac) {
                return Err(too_wide(region.base, ac));
            }
            if !push_cells(&mut out, region.size, sc) {
                return Err(too_wide(region.size, sc));
            }
        }
        Ok(out)
    }

    /// `/chosen`, `/memory@…`, `/cpus` and `/psci`, inside the root.
    fn emit_generated(
        &self,
        w: &mut Writer,
        cfg: &Dom0Dt<'_>,
        cpus: &HostCpus<'_>,
        ac: usize,
        sc: usize,
    ) -> Result<(), Dom0DtError> {
        w.begin("chosen")?;
        if let Some(args) = cfg.bootargs {
            w.string("bootargs", args)?;
        }
        if let Some(r) = cfg.initrd {
            w.prop("linux,initrd-start", &r.base.to_be_bytes())?;
            w.prop("linux,initrd-end", &r.end().to_be_bytes())?;
        }
        if let Some(sp) = cfg.stdout_path {
            w.string("stdout-path", sp)?;
        }
        w.end()?;

        w.begin(&format!("memory@{:x}", cfg.memory[0].base))?;
        w.string("device_type", "memory")?;
        let mut reg = Vec::new();
        for b in cfg.memory {
            w.cells(&mut reg, "reg", b.base, ac)?;
            w.cells(&mut reg, "reg", b.size, sc)?;
        }
        w.prop("reg", &reg)?;
        w.end()?;

        w.begin("cpus")?;
        let cpu_ac = if cfg.vcpu_mpidrs.iter().any(|m| m >> 32 != 0) { 2 } else { 1 };
        w.prop("#address-cells", &(cpu_ac as u32).to_be_bytes())?;
        w.prop("#size-cells", &0u32.to_be_bytes())?;
        for (i, &mpidr) in cfg.vcpu_mpidrs.iter().enumerate() {
            w.begin(&format!("cpu@{mpidr:x}"))?;
            w.string("device_type", "cpu")?;
            w.prop("compatible", cpus.compatible)?;
            let mut reg = Vec::new();
            w.cells(&mut reg, "reg", mpidr, cpu_ac)?;
            w.prop("reg", &reg)?;
            w.string("enable-method", "psci")?;
            if let Some(&(phandle, cooling)) = cpus.each.get(i) {
                if let Some(c) = cooling {
                    w.prop("#cooling-cells", c)?;
                }
                if let Some(ph) = phandle {
                    w.prop("phandle", &ph.to_be_bytes())?;
                }
            }
            w.end()?;
        }
        w.end()?;

        w.begin("psci")?;
        w.prop("compatible", b"arm,psci-1.0\0arm,psci-0.2\0")?;
        w.string("method", "hvc")?;
        w.end()
    }

    /// Adds one node's part of the pass-through plan.
    fn plan_node(&self, at: &Located<'_, 'a>, plan: &mut PassThroughPlan) -> Result<Flow, Dom0DtError> {
        let node = at.node();
        match self.classify(at)? {
            Role::Root => return Ok(Flow::Descend),
            Role::Copy => {}
            _ => return Ok(Flow::Skip),
        }
        if !walk::enabled(node) {
            return Ok(Flow::Skip);
        }
        let path = path_of(at);
        let anc = at.ancestors();
        if anc.len() == 2 && anc[1].name == "reserved-memory" {
            for region in mmio_regions(at)? {
                plan.reserved_memory.push(PassThroughMmio { node: path.clone(), region });
            }
            return Ok(Flow::Skip);
        }
        let mut regions = mmio_regions(at)?;
        let mut spis = Vec::new();
        self.spis(at, &mut spis)?;
        let pci = is_pci(node);
        if pci {
            regions.extend(pci_windows(at)?);
        }
        if is_uart(node) {
            let compatible = node.property("compatible").and_then(|c| walk::first_string(c.value)).unwrap_or("");
            plan.uarts.push(PassThroughUart { node: path, compatible: compatible.to_string(), regions, spis });
        } else {
            plan.mmio.extend(regions.into_iter().map(|region| PassThroughMmio { node: path.clone(), region }));
            plan.spis.extend(spis);
        }
        // A PCI bus's children are functions behind the bridge: their `reg`
        // is config space and their interrupts go through `interrupt-map`.
        Ok(if pci { Flow::Skip } else { Flow::Descend })
    }
}
