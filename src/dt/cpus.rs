//! The CPUs under `/cpus` and how each one can be started.
//!
//! Every CPU node (`device_type = "cpu"`, or named `cpu@…`) is listed, in
//! blob order, with its MPIDR (from `reg`: one cell on 32-bit trees, two on
//! 64-bit ones, per `/cpus`' `#address-cells`) and a verdict, [`CpuBoot`]:
//! started by PSCI `CPU_ON`, by a spin table (write the entry point to
//! `cpu-release-addr`, then `sev`), by nothing the DT describes (Exynos5250
//! boards: platform code and a SYSRAM mailbox), by a method this hypervisor
//! does not know, skipped because disabled, or broken (the per-CPU report
//! names the property and what is wrong). A broken CPU does not make the
//! whole list an error: the others can still be started.

use core::fmt;

use super::walk::{self, Located};
use super::{DeviceTree, DtError, NodePath, Problem};

/// Most CPUs listed; more are counted in [`Cpus::dropped`].
pub const MAX_CPUS: usize = 32;

/// The affinity fields of MPIDR (Aff3, Aff2, Aff1, Aff0): what identifies a
/// CPU, and what a two-cell `reg` may carry.
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;
/// MPIDR affinity bits a one-cell `reg` may carry (Aff2, Aff1, Aff0).
pub const MPIDR_AFFINITY_MASK_32: u64 = 0x00ff_ffff;

/// How a CPU is to be started, or why it will not be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuBoot<'a> {
    /// `enable-method = "psci"`: PSCI `CPU_ON` with the MPIDR.
    Psci,
    /// `enable-method = "spin-table"`: write the entry point to
    /// `release_addr` (a 64-bit little-endian slot), clean it to the point
    /// of coherency, then `sev`. Several CPUs may share one address.
    SpinTable {
        /// `cpu-release-addr`, a CPU physical address.
        release_addr: u64,
    },
    /// No `enable-method`: only board-specific code can start it (Exynos5250
    /// "Arndale": a mailbox in SYSRAM and the PMU). On a single-CPU system
    /// this is the boot CPU itself.
    NoMethod,
    /// An `enable-method` this hypervisor does not implement, as written.
    Unknown(&'a str),
    /// `status` is not `"okay"`: skipped, not counted for bring-up.
    Disabled,
    /// A property is malformed or missing: cannot be started.
    Broken(CpuIssue),
}

/// What is wrong with a CPU node (see [`Cpu::error`] for the full error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuIssue {
    /// The property.
    pub prop: &'static str,
    /// What is wrong with it.
    pub problem: Problem,
}

/// One CPU node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu<'a> {
    /// Node name under `/cpus` (`cpu@100`).
    pub name: &'a str,
    /// The MPIDR affinity value; `None` when `reg` is missing, malformed,
    /// has bits outside the affinity fields or repeats another CPU's.
    pub mpidr: Option<u64>,
    /// How it starts.
    pub boot: CpuBoot<'a>,
}

impl<'a> Cpu<'a> {
    /// The node's full path.
    pub fn path(&self) -> NodePath {
        NodePath::from_names(["cpus", self.name].into_iter())
    }

    /// For a broken CPU, the error naming node and property.
    pub fn error(&self) -> Option<DtError> {
        match self.boot {
            CpuBoot::Broken(CpuIssue { prop, problem }) => Some(DtError::Prop { node: self.path(), prop, problem }),
            _ => None,
        }
    }

    /// Whether the hypervisor knows how to start it (PSCI or spin table,
    /// enabled, valid MPIDR).
    pub fn startable(&self) -> bool {
        self.mpidr.is_some() && matches!(self.boot, CpuBoot::Psci | CpuBoot::SpinTable { .. })
    }
}

impl fmt::Display for Cpu<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mpidr {
            Some(m) => write!(f, "{} (MPIDR {m:#x}): ", self.name)?,
            None => write!(f, "{} (no MPIDR): ", self.name)?,
        }
        match self.boot {
            CpuBoot::Psci => write!(f, "PSCI CPU_ON"),
            CpuBoot::SpinTable { release_addr } => write!(f, "spin table, release address {release_addr:#x}"),
            CpuBoot::NoMethod => write!(f, "no enable-method (board-specific bring-up)"),
            CpuBoot::Unknown(m) => write!(f, "unsupported enable-method \"{m}\""),
            CpuBoot::Disabled => write!(f, "disabled, skipped"),
            CpuBoot::Broken(CpuIssue { prop, problem }) => write!(f, "property {prop} {problem}"),
        }
    }
}

/// How many CPUs of each kind (for logs and docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuSummary {
    /// Started by PSCI.
    pub psci: usize,
    /// Started by a spin table.
    pub spin_table: usize,
    /// No enable-method.
    pub no_method: usize,
    /// Unknown enable-method.
    pub unknown: usize,
    /// Disabled.
    pub disabled: usize,
    /// Broken nodes.
    pub broken: usize,
}

/// The CPU nodes, in blob order (fixed capacity, no heap).
#[derive(Clone, Copy)]
pub struct Cpus<'a> {
    items: [Cpu<'a>; MAX_CPUS],
    len: usize,
    dropped: usize,
}

impl<'a> Cpus<'a> {
    const EMPTY: Cpu<'static> = Cpu { name: "", mpidr: None, boot: CpuBoot::Disabled };

    fn new() -> Self {
        Self { items: [Self::EMPTY; MAX_CPUS], len: 0, dropped: 0 }
    }

    fn push(&mut self, cpu: Cpu<'a>) {
        if self.len < MAX_CPUS {
            self.items[self.len] = cpu;
            self.len += 1;
        } else {
            self.dropped += 1;
        }
    }

    /// A list of these CPUs (beyond [`MAX_CPUS`] they are counted as dropped).
    pub fn from_slice(cpus: &[Cpu<'a>]) -> Self {
        let mut out = Self::new();
        cpus.iter().for_each(|c| out.push(*c));
        out
    }

    /// Every CPU node listed.
    pub fn as_slice(&self) -> &[Cpu<'a>] {
        &self.items[..self.len]
    }

    /// Listed CPU nodes that are not disabled (broken ones included).
    pub fn enabled(&self) -> usize {
        self.as_slice().iter().filter(|c| c.boot != CpuBoot::Disabled).count()
    }

    /// CPU nodes beyond [`MAX_CPUS`], not listed.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// The CPU with this MPIDR (affinity bits only).
    pub fn by_mpidr(&self, mpidr: u64) -> Option<&Cpu<'a>> {
        self.as_slice().iter().find(|c| c.mpidr == Some(mpidr & MPIDR_AFFINITY_MASK))
    }

    /// The CPUs to start from the boot CPU (whose MPIDR is `boot_mpidr`):
    /// every startable CPU but the boot CPU.
    pub fn secondaries(&self, boot_mpidr: u64) -> impl Iterator<Item = &Cpu<'a>> {
        let own = boot_mpidr & MPIDR_AFFINITY_MASK;
        self.as_slice().iter().filter(move |c| c.startable() && c.mpidr != Some(own))
    }

    /// Counts per kind.
    pub fn summary(&self) -> CpuSummary {
        let mut s = CpuSummary::default();
        for c in self.as_slice() {
            match c.boot {
                CpuBoot::Psci => s.psci += 1,
                CpuBoot::SpinTable { .. } => s.spin_table += 1,
                CpuBoot::NoMethod => s.no_method += 1,
                CpuBoot::Unknown(_) => s.unknown += 1,
                CpuBoot::Disabled => s.disabled += 1,
                CpuBoot::Broken(_) => s.broken += 1,
            }
        }
        s
    }
}

impl PartialEq for Cpus<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice() && self.dropped == other.dropped
    }
}

impl Eq for Cpus<'_> {}

impl fmt::Debug for Cpus<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cpus").field("cpus", &self.as_slice()).field("dropped", &self.dropped).finish()
    }
}

/// Whether a child of `/cpus` is a CPU node (as Linux decides: `device_type
/// = "cpu"` or the name `cpu`); `cpu-map`, `idle-states` and caches are not.
pub(crate) fn is_cpu_node(node: fdt::node::FdtNode<'_, '_>) -> bool {
    node.name.split('@').next() == Some("cpu")
        || node.property("device_type").and_then(|p| walk::first_string(p.value)) == Some("cpu")
}

impl<'a> DeviceTree<'a> {
    /// Every CPU node under `/cpus` with its MPIDR and how to start it.
    ///
    /// Errors only when `/cpus` itself is missing or has unusable
    /// `#address-cells`/`#size-cells`; problems of single CPUs are reported
    /// per CPU ([`CpuBoot::Broken`]).
    pub fn cpus(&self) -> Result<Cpus<'a>, DtError> {
        let at = self.locate("/cpus").ok_or(DtError::MissingNode("/cpus"))?;
        let (ac, sc) = walk::cells(at.node(), || at.path())?;
        if !(1..=2).contains(&ac) {
            return Err(at.err("#address-cells", Problem::Value(ac as u64)));
        }
        if sc != 0 {
            return Err(at.err("#size-cells", Problem::Value(sc as u64)));
        }
        let mut cpus = Cpus::new();
        for node in at.node().children().filter(|n| is_cpu_node(*n)) {
            let Some(cpu_at) = at.child(node) else { continue };
            let mut cpu = read_cpu(&cpu_at, ac);
            if let Some(m) = cpu.mpidr
                && cpus.as_slice().iter().any(|c| c.mpidr == Some(m))
            {
                cpu.mpidr = None;
                if cpu.boot != CpuBoot::Disabled {
                    cpu.boot = CpuBoot::Broken(CpuIssue { prop: "reg", problem: Problem::Duplicate(m) });
                }
            }
            cpus.push(cpu);
        }
        Ok(cpus)
    }
}

fn read_cpu<'a>(at: &Located<'_, 'a>, ac: usize) -> Cpu<'a> {
    let node = at.node();
    let broken = |prop, problem| CpuBoot::Broken(CpuIssue { prop, problem });
    let mask = if ac == 2 { MPIDR_AFFINITY_MASK } else { MPIDR_AFFINITY_MASK_32 };
    let mpidr = match at.prop("reg") {
        None => Err(Problem::Missing),
        Some(v) if v.len() != ac * 4 => Err(Problem::Length { len: v.len(), expected: ac * 4 }),
        Some(v) => match walk::read_cells(v, ac) {
            m if m & !mask != 0 => Err(Problem::ReservedBits(m)),
            m => Ok(m),
        },
    };
    let name = node.name;
    if !walk::enabled(node) {
        return Cpu { name, mpidr: mpidr.ok(), boot: CpuBoot::Disabled };
    }
    let mpidr = match mpidr {
        Ok(m) => m,
        Err(problem) => return Cpu { name, mpidr: None, boot: broken("reg", problem) },
    };
    let boot = match at.prop("enable-method") {
        None => CpuBoot::NoMethod,
        Some(v) => match walk::first_string(v) {
            None => broken("enable-method", Problem::NotString),
            Some("psci") => CpuBoot::Psci,
            Some("spin-table") => match at.prop("cpu-release-addr") {
                None => broken("cpu-release-addr", Problem::Missing),
                Some(a) if a.len() == 4 || a.len() == 8 => match walk::read_cells(a, a.len() / 4) {
                    // The release address is a 64-bit slot the firmware polls.
                    addr if addr.is_multiple_of(8) => CpuBoot::SpinTable { release_addr: addr },
                    addr => broken("cpu-release-addr", Problem::Misaligned { addr, align: 8 }),
                },
                Some(a) => broken("cpu-release-addr", Problem::NotOneOrTwoCells { len: a.len() }),
            },
            Some(other) => CpuBoot::Unknown(other),
        },
    };
    Cpu { name, mpidr: Some(mpidr), boot }
}
