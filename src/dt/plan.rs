//! The boot plan: everything the boot CPU reads from the device tree before
//! it brings up the machine, gathered in one [`BootPlan`].
//!
//! Each part is read on its own and kept as a `Result`, so that one broken
//! part (say, the timer node) neither hides the others nor decides on its
//! own what is fatal: the boot code does. This module also reads the console
//! (stdout-path, else the `serial0` alias, else the first enabled PL011) and
//! the reserved memory (`/memreserve/` entries and `/reserved-memory`).

use core::fmt;

use super::cpus::{CpuBoot, Cpus};
use super::gic::{Gic, GicVersion};
use super::psci::{Psci, PsciVersion};
use super::timer::{Timer, TimerKind};
use super::walk::{self, Flow, Located};
use super::{DeviceTree, DtError, NodePath, Problem, Region, Regions, be32};

/// Most `/reserved-memory` regions kept; more are counted as dropped.
pub const MAX_RESERVED: usize = 16;

/// Where the console was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleSource {
    /// `/chosen/stdout-path` (or `linux,stdout-path`).
    StdoutPath,
    /// No stdout-path: the `serial0` alias.
    Serial0Alias,
    /// Neither: the first enabled `arm,pl011` in blob order.
    FirstPl011,
}

impl fmt::Display for ConsoleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConsoleSource::StdoutPath => "stdout-path",
            ConsoleSource::Serial0Alias => "serial0 alias",
            ConsoleSource::FirstPl011 => "first PL011",
        })
    }
}

/// The console UART.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Console<'a> {
    /// How it was found.
    pub source: ConsoleSource,
    /// The node.
    pub node: NodePath,
    /// Its first `compatible` string (`arm,pl011`, `samsung,exynos4210-uart`).
    pub compatible: &'a str,
    /// Its first `reg` entry, as a CPU physical address.
    pub region: Region,
    /// Options after `:` in stdout-path (`115200n8`).
    pub options: Option<&'a str>,
}

impl Console<'_> {
    /// Whether it is a PL011 (the only UART with a driver so far).
    pub fn is_pl011(&self) -> bool {
        self.compatible == "arm,pl011"
    }
}

/// Dom0's boot modules (see [`DeviceTree::dom0_modules`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dom0Modules<'a> {
    /// The kernel image.
    pub kernel: Region,
    /// The initial ramdisk, if any.
    pub ramdisk: Option<Region>,
    /// Dom0's command line, if any.
    pub bootargs: Option<&'a str>,
}

/// One region of `/reserved-memory`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservedRegion<'a> {
    /// The child node's name (`vram@18000000`).
    pub name: &'a str,
    /// The region.
    pub region: Region,
    /// `no-map`: must not be mapped at all (not even cacheable).
    pub no_map: bool,
}

/// Memory that is not free RAM although inside a memory bank.
#[derive(Clone, Copy)]
pub struct Reserved<'a> {
    /// `/memreserve/` entries of the blob header.
    pub memreserve: Regions,
    nodes: [ReservedRegion<'a>; MAX_RESERVED],
    len: usize,
    dropped: usize,
}

impl<'a> Reserved<'a> {
    const EMPTY: ReservedRegion<'static> =
        ReservedRegion { name: "", region: Region { base: 0, size: 0 }, no_map: false };

    /// A reservation list (beyond [`MAX_RESERVED`] nodes are counted as dropped).
    pub fn new(memreserve: Regions, nodes: &[ReservedRegion<'a>]) -> Self {
        let mut r = Self { memreserve, nodes: [Self::EMPTY; MAX_RESERVED], len: 0, dropped: 0 };
        nodes.iter().for_each(|n| r.push(*n));
        r
    }

    fn push(&mut self, n: ReservedRegion<'a>) {
        if self.len < MAX_RESERVED {
            self.nodes[self.len] = n;
            self.len += 1;
        } else {
            self.dropped += 1;
        }
    }

    /// Static `/reserved-memory` children (with `reg`; regions the OS would
    /// allocate dynamically, with only `size`, are not listed).
    pub fn nodes(&self) -> &[ReservedRegion<'a>] {
        &self.nodes[..self.len]
    }

    /// `/reserved-memory` regions beyond [`MAX_RESERVED`].
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// Every reserved region, `/memreserve/` first.
    pub fn regions(&self) -> impl Iterator<Item = Region> + '_ {
        self.memreserve.as_slice().iter().copied().chain(self.nodes().iter().map(|n| n.region))
    }
}

impl PartialEq for Reserved<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.memreserve == other.memreserve && self.nodes() == other.nodes() && self.dropped == other.dropped
    }
}

impl Eq for Reserved<'_> {}

impl fmt::Debug for Reserved<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reserved")
            .field("memreserve", &self.memreserve)
            .field("nodes", &self.nodes())
            .field("dropped", &self.dropped)
            .finish()
    }
}

/// Everything the boot CPU learns from the DT, part by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootPlan<'a> {
    /// RAM banks.
    pub memory: Result<Regions, DtError>,
    /// Reserved memory.
    pub reserved: Result<Reserved<'a>, DtError>,
    /// The console UART.
    pub console: Result<Console<'a>, DtError>,
    /// The CPUs and how to start each.
    pub cpus: Result<Cpus<'a>, DtError>,
    /// PSCI (`None`: the DT has no PSCI node).
    pub psci: Result<Option<Psci>, DtError>,
    /// The interrupt controller.
    pub gic: Result<Gic, DtError>,
    /// The generic timer.
    pub timer: Result<Timer, DtError>,
}

impl<'a> DeviceTree<'a> {
    /// Reads the whole boot plan.
    pub fn boot_plan(&self) -> BootPlan<'a> {
        BootPlan {
            memory: self.memory_banks(),
            reserved: self.reserved(),
            console: self.console(),
            cpus: self.cpus(),
            psci: self.psci(),
            gic: self.gic(),
            timer: self.timer(),
        }
    }

    /// The console: `/chosen/stdout-path` (through `/aliases`), else the
    /// `serial0` alias, else the first enabled `arm,pl011`. A stdout-path or
    /// alias that names no node is an error, not a reason to fall back.
    pub fn console(&self) -> Result<Console<'a>, DtError> {
        if let Some((prop, raw)) = self.stdout_path() {
            let raw = raw.ok_or_else(|| DtError::prop("/chosen", prop, Problem::NotString))?;
            let (name, options) = match raw.split_once(':') {
                Some((n, o)) => (n, Some(o)),
                None => (raw, None),
            };
            let at = self
                .resolve_alias(name)
                .and_then(|p| self.locate(p))
                .ok_or_else(|| DtError::prop("/chosen", prop, Problem::NoSuchNode))?;
            return uart(&at, ConsoleSource::StdoutPath, options);
        }
        let serial0 = self.locate("/aliases").and_then(|a| a.prop("serial0"));
        if let Some(v) = serial0 {
            let at = walk::first_string(v)
                .and_then(|p| self.locate(p))
                .ok_or_else(|| DtError::prop("/aliases", "serial0", Problem::NoSuchNode))?;
            return uart(&at, ConsoleSource::Serial0Alias, None);
        }
        let mut found = None;
        self.walk(&mut |at| {
            if walk::compatible_with(at.node(), &["arm,pl011"]).is_some() && walk::enabled(at.node()) {
                found = Some(*at);
                return Flow::Stop;
            }
            Flow::Descend
        });
        let at =
            found.ok_or(DtError::MissingNode("console (no stdout-path, no serial0 alias, no enabled arm,pl011)"))?;
        uart(&at, ConsoleSource::FirstPl011, None)
    }

    /// `/chosen/stdout-path` (else `linux,stdout-path`): the property's name
    /// and its value as written (alias, `:options` and all; `None` when it is
    /// not a string), or `None` when there is neither.
    pub fn stdout_path(&self) -> Option<(&'static str, Option<&'a str>)> {
        let c = self.locate("/chosen")?;
        let (prop, v) = match c.prop("stdout-path") {
            Some(v) => ("stdout-path", v),
            None => ("linux,stdout-path", c.prop("linux,stdout-path")?),
        };
        Some((prop, walk::first_string(v)))
    }

    /// The `/memreserve/` entries of the blob header.
    pub fn memreserve(&self) -> Result<Regions, DtError> {
        let b = self.bytes;
        let mut off = be32(b, 16) as usize;
        let mut out = Regions::default();
        while off + 16 <= b.len() {
            let addr = walk::read_cells(&b[off..off + 8], 2);
            let size = walk::read_cells(&b[off + 8..off + 16], 2);
            if addr == 0 && size == 0 {
                return Ok(out);
            }
            if size != 0 {
                out.push(Region { base: addr, size });
            }
            off += 16;
        }
        Err(DtError::BadBlock("off_mem_rsvmap (no terminating entry)"))
    }

    /// The first enabled device compatible with `compatible`: its first
    /// `reg` (translated) and first interrupt (decoded with the
    /// `#interrupt-cells` of its interrupt parent), for devices handed to a
    /// guest.
    pub fn device(&self, compatible: &str) -> Result<Option<(Region, Option<super::gic::Irq>)>, DtError> {
        let mut found: Option<Result<(Region, Option<super::gic::Irq>), DtError>> = None;
        self.walk(&mut |at| {
            let node = at.node();
            if walk::compatible_with(node, &[compatible]).is_none() || !walk::enabled(node) {
                return walk::Flow::Descend;
            }
            let r = at.reg(0).and_then(|reg| {
                let reg = reg.ok_or_else(|| at.err("reg", super::Problem::Missing))?;
                let mut irqs = [None; 1];
                let n = if node.property("interrupts").is_some() {
                    let cells = self.parent_interrupt_cells(at)?;
                    if cells < 3 {
                        return Err(at.err("interrupts", Problem::InterruptCells(cells)));
                    }
                    super::gic::decode_interrupts(at, cells, &mut irqs)?
                } else {
                    0
                };
                Ok((reg, if n > 0 { irqs[0] } else { None }))
            });
            found = Some(r);
            walk::Flow::Stop
        });
        found.transpose()
    }

    /// Boot modules in `/chosen` (`multiboot,module` nodes, the binding Xen
    /// uses: kernel, ramdisk, …), as physical regions. They must never be
    /// overwritten before they are used.
    pub fn boot_modules(&self) -> Result<Regions, DtError> {
        let mut out = Regions::default();
        let Some(at) = self.locate("/chosen") else { return Ok(out) };
        for child in at.node().children() {
            if walk::compatible_with(child, &["multiboot,module"]).is_none() || !walk::enabled(child) {
                continue;
            }
            let Some(c) = at.child(child) else { continue };
            let mut i = 0;
            while let Some(r) = c.reg_untranslated(i)? {
                out.push(r);
                i += 1;
            }
        }
        Ok(out)
    }

    /// Dom0's boot modules from `/chosen`, with the bindings Xen uses: the
    /// first kernel module and the first ramdisk module (roles as
    /// [`DeviceTree::chosen_modules`] gives them: `multiboot,kernel`,
    /// `multiboot,ramdisk`, else the first and second plain
    /// `multiboot,module`), and dom0's command line:
    /// `/chosen/armature,dom0-bootargs`, else `/chosen/xen,dom0-bootargs`,
    /// else the kernel module's `bootargs`. `None` when there is no kernel
    /// module.
    #[allow(clippy::result_large_err)]
    pub fn dom0_modules(&self) -> Result<Option<Dom0Modules<'a>>, super::ModulesError<'a>> {
        let Some(at) = self.locate("/chosen") else { return Ok(None) };
        let modules = self.chosen_modules()?;
        let (kernel, ramdisk) = crate::bootcheck::dom0_roles(modules.as_slice());
        let Some(kernel) = kernel else { return Ok(None) };
        let module_args = at
            .node()
            .children()
            .find(|c| c.name == kernel.name)
            .and_then(|c| c.property("bootargs"))
            .and_then(|p| walk::first_string(p.value));
        let chosen = |name| at.node().property(name).and_then(|p| walk::first_string(p.value));
        let bootargs = chosen("armature,dom0-bootargs").or_else(|| chosen("xen,dom0-bootargs")).or(module_args);
        Ok(Some(Dom0Modules { kernel: kernel.region, ramdisk: ramdisk.map(|r| r.region), bootargs }))
    }

    /// `/memreserve/` entries and the enabled `/reserved-memory` children
    /// with a `reg`, translated like any `reg`.
    pub fn reserved(&self) -> Result<Reserved<'a>, DtError> {
        let mut r = Reserved::new(self.memreserve()?, &[]);
        let Some(at) = self.locate("/reserved-memory") else { return Ok(r) };
        for child in at.node().children() {
            if !walk::enabled(child) || child.property("reg").is_none() {
                continue;
            }
            let Some(c) = at.child(child) else { continue };
            let mut regs = Regions::default();
            c.reg_all(&mut regs)?;
            r.dropped += regs.dropped();
            let no_map = child.property("no-map").is_some();
            for region in regs.as_slice() {
                r.push(ReservedRegion { name: child.name, region: *region, no_map });
            }
        }
        Ok(r)
    }
}

fn uart<'a>(at: &Located<'_, 'a>, source: ConsoleSource, options: Option<&'a str>) -> Result<Console<'a>, DtError> {
    let compatible =
        at.prop("compatible").and_then(walk::first_string).ok_or_else(|| at.err("compatible", Problem::Missing))?;
    let region = at.reg(0)?.ok_or_else(|| at.err("reg", Problem::TooFew { have: 0, need: 1 }))?;
    Ok(Console { source, node: at.path(), compatible, region, options })
}

/// A line sink for [`BootPlan::report`].
pub type Sink<'s> = &'s mut dyn FnMut(fmt::Arguments<'_>);

impl BootPlan<'_> {
    /// Describes the plan, one line per call of `out` (for the boot log):
    /// every part, every CPU, and every error.
    pub fn report(&self, out: Sink<'_>) {
        match &self.memory {
            Ok(banks) => {
                for b in banks.as_slice() {
                    out(format_args!("memory: {b} ({} MiB)", b.size >> 20));
                }
                if banks.dropped() > 0 {
                    out(format_args!("memory: {} more bank(s) ignored", banks.dropped()));
                }
            }
            Err(e) => out(format_args!("memory: {e}")),
        }
        match &self.reserved {
            Ok(r) => {
                for m in r.memreserve.as_slice() {
                    out(format_args!("reserved: {m} (/memreserve/)"));
                }
                for n in r.nodes() {
                    let no_map = if n.no_map { ", no-map" } else { "" };
                    out(format_args!("reserved: {} ({}{no_map})", n.region, n.name));
                }
            }
            Err(e) => out(format_args!("reserved: {e}")),
        }
        match &self.console {
            Ok(c) => out(format_args!("console: {} ({}) at {:#x} [{}]", c.node, c.compatible, c.region.base, c.source)),
            Err(e) => out(format_args!("console: {e}")),
        }
        match &self.cpus {
            Ok(cpus) => {
                let s = cpus.summary();
                out(format_args!(
                    "cpus: {} node(s): {} PSCI, {} spin-table, {} without enable-method, {} unknown, {} disabled, {} broken",
                    cpus.as_slice().len(),
                    s.psci,
                    s.spin_table,
                    s.no_method,
                    s.unknown,
                    s.disabled,
                    s.broken
                ));
                for c in cpus.as_slice() {
                    out(format_args!("cpu: {c}"));
                }
                if cpus.dropped() > 0 {
                    out(format_args!("cpus: {} more CPU node(s) ignored", cpus.dropped()));
                }
                let needs_psci = cpus.as_slice().iter().any(|c| c.boot == CpuBoot::Psci);
                if needs_psci && !matches!(self.psci, Ok(Some(_))) {
                    out(format_args!("cpus: enable-method psci, but no usable PSCI node"));
                }
            }
            Err(e) => out(format_args!("cpus: {e}")),
        }
        match &self.psci {
            Ok(Some(p)) => {
                let v = match p.version {
                    PsciVersion::V0_1 => "0.1 (function IDs from the DT)",
                    PsciVersion::V0_2 => "0.2",
                    PsciVersion::V1_0 => "1.0",
                };
                out(format_args!("psci: {} v{v} via {}", p.node, p.conduit));
            }
            Ok(None) => out(format_args!("psci: none")),
            Err(e) => out(format_args!("psci: {e}")),
        }
        match &self.gic {
            Ok(g) => {
                let v = match g.version {
                    GicVersion::V2 => "v2",
                    GicVersion::V3 => "v3",
                };
                out(format_args!("gic: {v} {} ({}), GICD {}", g.node, g.compatible, g.dist));
                for r in g.redist.as_slice() {
                    out(format_args!("gic: GICR {r}"));
                }
                for (name, r) in [("GICC", g.cpu_if), ("GICH", g.hyp_if), ("GICV", g.vcpu_if)] {
                    if let Some(r) = r {
                        out(format_args!("gic: {name} {r}"));
                    }
                }
                for r in g.msi.as_slice() {
                    out(format_args!("gic: MSI frame {r}"));
                }
                match g.maintenance {
                    Some(m) => out(format_args!("gic: maintenance {m}")),
                    None => out(format_args!("gic: no maintenance interrupt")),
                }
                if !g.supports_vgic() {
                    out(format_args!("gic: no vGIC possible (needs GICH, GICV and a maintenance interrupt)"));
                }
            }
            Err(e) => out(format_args!("gic: {e}")),
        }
        match &self.timer {
            Ok(t) => {
                let k = match t.kind {
                    TimerKind::Armv8 => "armv8",
                    TimerKind::Armv7 => "armv7",
                };
                out(format_args!(
                    "timer: {k} INTIDs secure {} non-secure {} virtual {} hyp {}{}",
                    t.secure_phys.intid(),
                    t.nonsecure_phys.intid(),
                    t.virt.intid(),
                    t.hyp_phys.intid(),
                    if t.always_on { ", always-on" } else { "" }
                ));
                if let Some(hv) = t.hyp_virt {
                    out(format_args!("timer: hyp virtual {hv}"));
                }
                if let Some(hz) = t.clock_frequency {
                    out(format_args!("timer: clock-frequency {hz} Hz (CNTFRQ not set by firmware)"));
                }
            }
            Err(e) => out(format_args!("timer: {e}")),
        }
    }
}
