//! The PSCI node: version, conduit and function IDs.
//!
//! `compatible = "arm,psci"` is PSCI 0.1, whose function IDs are not fixed:
//! the node lists them (`cpu_suspend`, `cpu_off`, `cpu_on`, `migrate`) and
//! only the listed functions exist. `"arm,psci-0.2"` and `"arm,psci-1.0"`
//! use the standard IDs of DEN0022; such nodes may still list the 0.1
//! properties for old kernels (QEMU does), which are then ignored, as Linux
//! does. As in Linux, the first recognised entry of the node's `compatible`
//! list decides the version. `method` gives the conduit (`smc` or `hvc`).

use super::walk::{self, Flow};
use super::{Conduit, DeviceTree, DtError, NodePath, Problem};

/// The PSCI version the DT promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciVersion {
    /// `arm,psci`: function IDs from the DT.
    V0_1,
    /// `arm,psci-0.2`: standard function IDs.
    V0_2,
    /// `arm,psci-1.0`: standard function IDs, `PSCI_FEATURES`.
    V1_0,
}

/// PSCI functions whose ID may come from the DT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciFunction {
    /// CPU_SUSPEND.
    CpuSuspend,
    /// CPU_OFF.
    CpuOff,
    /// CPU_ON.
    CpuOn,
    /// MIGRATE.
    Migrate,
}

/// The PSCI 0.1 function-ID properties as listed in the node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PsciIds {
    /// `cpu_suspend`.
    pub cpu_suspend: Option<u32>,
    /// `cpu_off`.
    pub cpu_off: Option<u32>,
    /// `cpu_on`.
    pub cpu_on: Option<u32>,
    /// `migrate`.
    pub migrate: Option<u32>,
}

/// The firmware's PSCI interface as the DT describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Psci {
    /// The node (normally `/psci`).
    pub node: NodePath,
    /// The version from `compatible`.
    pub version: PsciVersion,
    /// `method`.
    pub conduit: Conduit,
    /// The 0.1 function-ID properties present in the node (used only for
    /// [`PsciVersion::V0_1`]).
    pub dt_ids: PsciIds,
}

impl Psci {
    /// The function ID to call for `f`, or `None` if the firmware does not
    /// offer it. `smc64` selects the SMC64 ID where PSCI 0.2+ has one (the
    /// AArch64 hypervisor); CPU_OFF only exists as SMC32.
    pub fn function_id(&self, f: PsciFunction, smc64: bool) -> Option<u32> {
        if self.version == PsciVersion::V0_1 {
            return match f {
                PsciFunction::CpuSuspend => self.dt_ids.cpu_suspend,
                PsciFunction::CpuOff => self.dt_ids.cpu_off,
                PsciFunction::CpuOn => self.dt_ids.cpu_on,
                PsciFunction::Migrate => self.dt_ids.migrate,
            };
        }
        let (low, wide) = match f {
            PsciFunction::CpuSuspend => (0x8400_0001, true),
            PsciFunction::CpuOff => (0x8400_0002, false),
            PsciFunction::CpuOn => (0x8400_0003, true),
            PsciFunction::Migrate => (0x8400_0005, true),
        };
        Some(if smc64 && wide { low | 0x4000_0000 } else { low })
    }
}

/// PSCI compatibles, newest first.
const COMPATIBLE: [&str; 3] = ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"];

impl DeviceTree<'_> {
    /// The PSCI node (a child of the root with a PSCI `compatible`), or
    /// `None` when there is none (spin-table and vendor-mailbox boards).
    /// A root child named `psci` without a known compatible is an error.
    pub fn psci(&self) -> Result<Option<Psci>, DtError> {
        let mut found = None;
        let mut named_psci = None;
        self.walk(&mut |at| {
            if at.ancestors().is_empty() {
                return Flow::Descend;
            }
            if let Some(c) = walk::compatible_with(at.node(), &COMPATIBLE) {
                found = Some((*at, c));
                return Flow::Stop;
            }
            if named_psci.is_none() && at.node().name.split('@').next() == Some("psci") {
                named_psci = Some(at.path());
            }
            Flow::Skip
        });
        let Some((at, compatible)) = found else {
            return match named_psci {
                Some(node) => Err(DtError::Prop { node, prop: "compatible", problem: Problem::UnknownString }),
                None => Ok(None),
            };
        };
        let version = match compatible {
            "arm,psci-1.0" => PsciVersion::V1_0,
            "arm,psci-0.2" => PsciVersion::V0_2,
            _ => PsciVersion::V0_1,
        };
        let conduit = match at.prop("method").map(walk::first_string) {
            None => return Err(at.err("method", Problem::Missing)),
            Some(Some("smc")) => Conduit::Smc,
            Some(Some("hvc")) => Conduit::Hvc,
            Some(Some(_)) => return Err(at.err("method", Problem::UnknownString)),
            Some(None) => return Err(at.err("method", Problem::NotString)),
        };
        // PSCI 0.1 needs its IDs well-formed; 0.2+ ignores them, so a
        // malformed one there is only dropped (Linux does not read them).
        let id = |name| match walk::read_u32_prop(&at, name) {
            Err(e) if version == PsciVersion::V0_1 => Err(e),
            r => Ok(r.unwrap_or(None)),
        };
        let dt_ids = PsciIds {
            cpu_suspend: id("cpu_suspend")?,
            cpu_off: id("cpu_off")?,
            cpu_on: id("cpu_on")?,
            migrate: id("migrate")?,
        };
        Ok(Some(Psci { node: at.path(), version, conduit, dt_ids }))
    }
}
