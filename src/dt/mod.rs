//! Reading the flattened device tree (FDT) that firmware handed over.
//!
//! This module owns everything the hypervisor learns from the DT: memory
//! banks, the console (`/chosen/stdout-path`, through `/aliases`), the CPUs,
//! the PSCI conduit and the command line. It wraps the `fdt` crate, which can
//! panic on malformed input, behind a strict header check and only uses its
//! non-panicking calls; every error names what was wrong and where.
//! Addresses in `reg` are translated through the parents' `ranges`, which
//! boards with nested buses (FVP, Juno) need.
//!
//! [`DeviceTree::boot_plan`] gathers everything the boot CPU needs to bring
//! up the machine into one [`BootPlan`]: CPUs and how to start each one
//! ([`cpus`]), PSCI ([`psci`]), the GIC ([`gic`]), the generic timer
//! ([`timer`]), the console, memory banks and reserved memory ([`plan`]).
//! [`dom0`] builds the device tree dom0 boots with from the host's, and the
//! list of devices passed through to it.
//! Submodules, each with its own doc:
//! - `walk`: finding nodes (by path or a depth-first walk) with their
//!   ancestors, `reg` translation, cell and string readers.

use core::fmt;

pub mod cpus;
pub mod dom0;
pub mod gic;
pub mod modules;
pub mod plan;
pub mod psci;
pub mod timer;
mod walk;

pub use cpus::{Cpu, CpuBoot, CpuIssue, CpuSummary, Cpus, MAX_CPUS, MPIDR_AFFINITY_MASK, MPIDR_AFFINITY_MASK_32};
pub use dom0::{Dom0Dt, Dom0DtError, Dom0Gic, PassThroughMmio, PassThroughPlan, PassThroughUart};
pub use gic::{Gic, GicVersion, Irq, IrqKind};
pub use modules::{ChosenModules, MAX_MODULES, ModulesError};
pub use plan::{BootPlan, Console, ConsoleSource, Dom0Modules, MAX_RESERVED, Reserved, ReservedRegion};
pub use psci::{Psci, PsciFunction, PsciIds, PsciVersion};
pub use timer::{Timer, TimerKind};
pub use walk::{NODE_PATH_CAP, NodePath};

/// Largest DT accepted (Linux's limit for arm64 is 2 MiB).
pub const MAX_DT_SIZE: usize = 2 << 20;
/// FDT magic number.
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// Size of the FDT header.
pub const HEADER_SIZE: usize = 40;
/// Most memory banks the hypervisor tracks.
pub const MAX_BANKS: usize = 16;

/// Why a device tree was refused, or what a lookup could not find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtError {
    /// The DTB address is 0 or not 8-byte aligned.
    BadAddress(usize),
    /// The header magic is wrong.
    BadMagic(u32),
    /// `totalsize` is smaller than the header or larger than [`MAX_DT_SIZE`].
    BadSize(u32),
    /// The buffer is shorter than `totalsize`.
    Truncated {
        /// Bytes available.
        have: usize,
        /// Bytes the header claims.
        need: usize,
    },
    /// A header field points outside the blob or is misaligned.
    BadBlock(&'static str),
    /// The FDT version is too old or too new.
    BadVersion(u32),
    /// The `fdt` crate refused the blob.
    Parse,
    /// The tree does not fit the buffer it is copied into.
    TooLargeToCopy {
        /// Bytes the compacted tree needs.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The structure block is malformed at this byte offset into the blob.
    BadStructure {
        /// Offset of the offending token from the start of the blob.
        offset: usize,
        /// What is wrong there.
        what: &'static str,
    },
    /// A node that is required is missing.
    MissingNode(&'static str),
    /// A property is missing or malformed.
    BadProperty {
        /// Node path (or what it is).
        node: &'static str,
        /// Property name.
        prop: &'static str,
    },
    /// No `/memory` node with a usable `reg`.
    NoMemory,
    /// A `reg` address cannot be translated to a CPU physical address.
    Untranslatable,
    /// A property of a node is missing or malformed.
    Prop {
        /// The node's full path.
        node: NodePath,
        /// The property.
        prop: &'static str,
        /// What is wrong with it.
        problem: Problem,
    },
}

impl DtError {
    /// A [`DtError::Prop`] error.
    pub fn prop(node: &str, prop: &'static str, problem: Problem) -> Self {
        DtError::Prop { node: NodePath::new(node), prop, problem }
    }
}

/// What is wrong with a property (see [`DtError::Prop`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The property is absent but required.
    Missing,
    /// The value has the wrong length.
    Length {
        /// Bytes present.
        len: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// A number that must be one or two cells has another length.
    NotOneOrTwoCells {
        /// Bytes present.
        len: usize,
    },
    /// The value is not a whole number of entries.
    NotMultiple {
        /// Bytes present.
        len: usize,
        /// Bytes per entry.
        stride: usize,
    },
    /// Fewer entries than required.
    TooFew {
        /// Entries present.
        have: usize,
        /// Entries required.
        need: usize,
    },
    /// `#address-cells`/`#size-cells` this code cannot read an address with.
    CellCount {
        /// Address cells.
        address: usize,
        /// Size cells.
        size: usize,
    },
    /// A number out of the allowed range.
    Value(u64),
    /// A string value (method, compatible, ...) that is not recognised.
    UnknownString,
    /// Not a string (or not UTF-8).
    NotString,
    /// An MPIDR with bits set outside the affinity fields.
    ReservedBits(u64),
    /// The same MPIDR as an earlier CPU.
    Duplicate(u64),
    /// An interrupt that must be a PPI is not.
    NotPpi,
    /// `interrupts` whose interrupt parent has this `#interrupt-cells`
    /// (a GIC specifier needs 3 or 4).
    InterruptCells(usize),
    /// The address is outside every `ranges` entry of this bus.
    NotCovered {
        /// The address, in the bus's child address space.
        addr: u64,
    },
    /// The path or alias does not lead to a node.
    NoSuchNode,
    /// An address that must be aligned to this many bytes is not.
    Misaligned {
        /// The address.
        addr: u64,
        /// The required alignment.
        align: u64,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Problem::Misaligned { addr, align } => write!(f, "address {addr:#x} is not {align}-byte aligned"),
            Problem::Missing => write!(f, "is missing"),
            Problem::Length { len, expected } => write!(f, "is {len} bytes long, expected {expected}"),
            Problem::NotOneOrTwoCells { len } => write!(f, "is {len} bytes long, expected 4 or 8 (one or two cells)"),
            Problem::NotMultiple { len, stride } => {
                write!(f, "is {len} bytes long, not a non-zero multiple of the {stride}-byte entry")
            }
            Problem::TooFew { have, need } => write!(f, "has {have} entries where at least {need} are required"),
            Problem::CellCount { address, size } => {
                write!(f, "cannot be read with #address-cells = {address}, #size-cells = {size}")
            }
            Problem::Value(v) => write!(f, "has unsupported value {v:#x}"),
            Problem::UnknownString => write!(f, "has an unrecognised value"),
            Problem::NotString => write!(f, "is not a string"),
            Problem::ReservedBits(v) => write!(f, "MPIDR {v:#x} has bits set outside Aff3..Aff0"),
            Problem::Duplicate(v) => write!(f, "MPIDR {v:#x} is already used by another CPU"),
            Problem::NotPpi => write!(f, "is not a PPI"),
            Problem::InterruptCells(n) => {
                write!(f, "belongs to an interrupt parent with #interrupt-cells = {n}, not a GIC's 3 or 4")
            }
            Problem::NotCovered { addr } => write!(f, "covers no child address {addr:#x}"),
            Problem::NoSuchNode => write!(f, "names no node"),
        }
    }
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DtError::BadAddress(a) => write!(f, "DTB address {a:#x} is null or not 8-byte aligned"),
            DtError::BadMagic(m) => {
                write!(f, "bad magic {m:#010x} (expected {FDT_MAGIC:#010x}): not a device tree")
            }
            DtError::BadSize(s) => write!(f, "totalsize {s:#x} out of range (40..={MAX_DT_SIZE:#x})"),
            DtError::Truncated { have, need } => {
                write!(f, "blob truncated: {have:#x} bytes available, header says {need:#x}")
            }
            DtError::BadBlock(what) => write!(f, "header field {what} points outside the blob"),
            DtError::BadVersion(v) => write!(f, "unsupported FDT version {v} (need 16 or 17)"),
            DtError::Parse => write!(f, "structure block could not be parsed"),
            DtError::TooLargeToCopy { need, have } => {
                write!(f, "tree needs {need:#x} bytes once compacted, the hypervisor keeps at most {have:#x}")
            }
            DtError::BadStructure { offset, what } => {
                write!(f, "malformed structure block at offset {offset:#x}: {what}")
            }
            DtError::MissingNode(n) => write!(f, "required node {n} is missing"),
            DtError::BadProperty { node, prop } => {
                write!(f, "property {prop} of {node} is missing or malformed")
            }
            DtError::NoMemory => write!(f, "no memory node with a usable reg property"),
            DtError::Untranslatable => write!(f, "reg address cannot be translated through ranges"),
            DtError::Prop { node, prop, problem } => write!(f, "{node}: property {prop} {problem}"),
        }
    }
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Checks an FDT header and returns the blob's `totalsize`.
///
/// `header` needs only the first [`HEADER_SIZE`] bytes; the caller makes
/// sure `totalsize` bytes are really there before using the whole blob.
pub fn validate_header(header: &[u8]) -> Result<usize, DtError> {
    if header.len() < HEADER_SIZE {
        return Err(DtError::Truncated { have: header.len(), need: HEADER_SIZE });
    }
    let magic = be32(header, 0);
    if magic != FDT_MAGIC {
        return Err(DtError::BadMagic(magic));
    }
    let total = be32(header, 4);
    if (total as usize) < HEADER_SIZE || total as usize > MAX_DT_SIZE {
        return Err(DtError::BadSize(total));
    }
    let version = be32(header, 20);
    let last_comp = be32(header, 24);
    if version < 16 || last_comp > 17 {
        return Err(DtError::BadVersion(version));
    }
    let within = |off: u32, size: u32, what: &'static str| -> Result<(), DtError> {
        let end = off as u64 + size as u64;
        if (off as usize) < HEADER_SIZE || end > total as u64 { Err(DtError::BadBlock(what)) } else { Ok(()) }
    };
    let off_struct = be32(header, 8);
    let off_strings = be32(header, 12);
    let off_rsvmap = be32(header, 16);
    let size_strings = be32(header, 32);
    let size_struct = be32(header, 36);
    within(off_struct, size_struct, "off_dt_struct/size_dt_struct")?;
    within(off_strings, size_strings, "off_dt_strings/size_dt_strings")?;
    within(off_rsvmap, 16, "off_mem_rsvmap")?;
    if !off_struct.is_multiple_of(4) {
        return Err(DtError::BadBlock("off_dt_struct alignment"));
    }
    if !off_rsvmap.is_multiple_of(8) {
        return Err(DtError::BadBlock("off_mem_rsvmap alignment"));
    }
    Ok(total as usize)
}

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
/// Deepest node nesting accepted.
pub(crate) const MAX_DEPTH: usize = 32;

/// Walks the whole structure block of a blob whose header passed
/// [`validate_header`] and checks every token, so that the `fdt` crate's
/// parser (which panics on malformed input) only ever sees well-formed trees.
pub fn validate_structure(blob: &[u8]) -> Result<(), DtError> {
    walk_structure(blob, false, |_, _| {})
}

/// The structure walk behind [`validate_structure`]. With `allow_nops`, an
/// FDT_NOP may stand anywhere (as the specification allows; libfdt leaves
/// them when it edits a tree). `token` is called with the offset and length
/// of every token except NOPs.
fn walk_structure(blob: &[u8], allow_nops: bool, mut token: impl FnMut(usize, usize)) -> Result<(), DtError> {
    let off_struct = be32(blob, 8) as usize;
    let size_struct = be32(blob, 36) as usize;
    let off_strings = be32(blob, 12) as usize;
    let size_strings = be32(blob, 32) as usize;
    let strings = &blob[off_strings..off_strings + size_strings];
    let end = off_struct + size_struct;
    let bad = |offset: usize, what: &'static str| Err(DtError::BadStructure { offset, what });
    let mut pos = off_struct;
    let mut depth = 0usize;
    let mut seen_root = false;
    // Bit d set: the node open at depth d already has a subnode, so a
    // property there would break the spec's "properties first" order.
    let mut has_child: u64 = 0;
    // Set while inside a run of FDT_NOP tokens. The `fdt` crate only
    // tolerates NOPs directly before an FDT_END_NODE (or FDT_END).
    let mut after_nop = false;
    loop {
        if pos + 4 > end {
            return bad(pos, "structure block ends without FDT_END");
        }
        let tag_at = pos;
        let tag = be32(blob, pos);
        pos += 4;
        if after_nop && !allow_nops && !matches!(tag, FDT_NOP | FDT_END_NODE | FDT_END) {
            return bad(tag_at, "FDT_NOP before a property or node is not supported");
        }
        after_nop = tag == FDT_NOP;
        match tag {
            FDT_BEGIN_NODE => {
                if depth == 0 && seen_root {
                    return bad(tag_at, "second root node");
                }
                seen_root = true;
                if depth > 0 {
                    has_child |= 1 << depth;
                }
                let Some(len) = blob[pos..end].iter().position(|&b| b == 0) else {
                    return bad(tag_at, "node name not NUL-terminated");
                };
                if core::str::from_utf8(&blob[pos..pos + len]).is_err() {
                    return bad(tag_at, "node name is not UTF-8");
                }
                pos = (pos + len + 1 + 3) & !3;
                depth += 1;
                if depth > MAX_DEPTH {
                    return bad(tag_at, "nodes nested too deeply");
                }
                has_child &= !(1 << depth);
            }
            FDT_END_NODE => {
                if depth == 0 {
                    return bad(tag_at, "FDT_END_NODE without a node");
                }
                depth -= 1;
            }
            FDT_PROP => {
                if depth == 0 {
                    return bad(tag_at, "property outside any node");
                }
                if has_child & (1 << depth) != 0 {
                    return bad(tag_at, "property after a subnode");
                }
                if pos + 8 > end {
                    return bad(tag_at, "property header truncated");
                }
                let len = be32(blob, pos) as usize;
                let name_off = be32(blob, pos + 4) as usize;
                pos += 8;
                if len > end - pos {
                    return bad(tag_at, "property value runs past the structure block");
                }
                let Some(name) = strings.get(name_off..) else {
                    return bad(tag_at, "property name offset outside the strings block");
                };
                let Some(nlen) = name.iter().position(|&b| b == 0) else {
                    return bad(tag_at, "property name not NUL-terminated");
                };
                if core::str::from_utf8(&name[..nlen]).is_err() {
                    return bad(tag_at, "property name is not UTF-8");
                }
                pos = (pos + len + 3) & !3;
            }
            FDT_NOP => {}
            FDT_END => {
                if depth != 0 {
                    return bad(tag_at, "FDT_END inside an open node");
                }
                if !seen_root {
                    return bad(tag_at, "no root node");
                }
                token(tag_at, 4);
                return Ok(());
            }
            _ => return bad(tag_at, "unknown token"),
        }
        if pos > end {
            return bad(tag_at, "token runs past the structure block");
        }
        if tag != FDT_NOP {
            token(tag_at, pos - tag_at);
        }
    }
}

/// Copies the device tree `src` into `buf`, compacted (header, reservation
/// map, structure, strings, nothing else) and without FDT_NOP tokens, and
/// returns the copy. libfdt-based editors (U-Boot's `fdt` command, `fdtput`)
/// leave NOPs, which the specification allows anywhere but the `fdt` crate
/// does not parse everywhere. The copy is also the hypervisor's own: the
/// firmware's DTB memory can then be reused.
pub fn normalize_into<'b>(src: &[u8], buf: &'b mut [u8]) -> Result<&'b [u8], DtError> {
    let total = validate_header(src)?;
    if src.len() < total {
        return Err(DtError::Truncated { have: src.len(), need: total });
    }
    let src = &src[..total];
    let mut struct_len = 0;
    walk_structure(src, true, |_, len| struct_len += len)?;
    // The reservation map runs up to its all-zero entry.
    let rsv = be32(src, 16) as usize;
    let mut rsv_len = 0;
    loop {
        let e = rsv + rsv_len;
        if e + 16 > total {
            return Err(DtError::BadBlock("off_mem_rsvmap (no terminating entry)"));
        }
        rsv_len += 16;
        if src[e..e + 16].iter().all(|&b| b == 0) {
            break;
        }
    }
    let (off_strings, size_strings) = (be32(src, 12) as usize, be32(src, 32) as usize);
    let off_rsv_new = HEADER_SIZE;
    let off_struct_new = off_rsv_new + rsv_len;
    let off_strings_new = off_struct_new + struct_len;
    let need = off_strings_new + size_strings;
    if need > buf.len() {
        return Err(DtError::TooLargeToCopy { need, have: buf.len() });
    }
    buf[..HEADER_SIZE].copy_from_slice(&src[..HEADER_SIZE]);
    buf[off_rsv_new..off_struct_new].copy_from_slice(&src[rsv..rsv + rsv_len]);
    let mut w = off_struct_new;
    walk_structure(src, true, |off, len| {
        buf[w..w + len].copy_from_slice(&src[off..off + len]);
        w += len;
    })?;
    buf[off_strings_new..need].copy_from_slice(&src[off_strings..off_strings + size_strings]);
    for (field, value) in [
        (4, need),
        (8, off_struct_new),
        (12, off_strings_new),
        (16, off_rsv_new),
        (36, struct_len),
    ] {
        buf[field..field + 4].copy_from_slice(&(value as u32).to_be_bytes());
    }
    Ok(&buf[..need])
}

/// A physical address range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl Region {
    /// One past the last byte (saturating).
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#014x}-{:#014x}", self.base, self.end().saturating_sub(1))
    }
}

/// A fixed-capacity list of regions (there is no heap this early).
#[derive(Clone, Copy)]
pub struct Regions {
    items: [Region; MAX_BANKS],
    len: usize,
    dropped: usize,
}

impl Default for Regions {
    fn default() -> Self {
        Self { items: [Region::default(); MAX_BANKS], len: 0, dropped: 0 }
    }
}

impl fmt::Debug for Regions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()?;
        if self.dropped > 0 {
            write!(f, " (+{} dropped)", self.dropped)?;
        }
        Ok(())
    }
}

impl PartialEq for Regions {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice() && self.dropped == other.dropped
    }
}

impl Eq for Regions {}

impl Regions {
    /// Regions from a slice (beyond [`MAX_BANKS`] they are counted as dropped).
    pub fn from_slice(rs: &[Region]) -> Self {
        let mut out = Self::default();
        rs.iter().for_each(|r| out.push(*r));
        out
    }

    /// Adds a region; beyond [`MAX_BANKS`] it is counted in [`Regions::dropped`].
    pub fn push(&mut self, r: Region) {
        if self.len < MAX_BANKS {
            self.items[self.len] = r;
            self.len += 1;
        } else {
            self.dropped += 1;
        }
    }

    /// The regions.
    pub fn as_slice(&self) -> &[Region] {
        &self.items[..self.len]
    }

    /// How many regions did not fit.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// Sum of the sizes.
    pub fn total(&self) -> u64 {
        self.as_slice().iter().map(|r| r.size).sum()
    }
}

/// How PSCI calls reach the firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    /// Secure monitor call (firmware at EL3).
    Smc,
    /// Hypervisor call (only meaningful for guests).
    Hvc,
}

impl fmt::Display for Conduit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Conduit::Smc => "SMC",
            Conduit::Hvc => "HVC",
        })
    }
}

/// The console named by `/chosen/stdout-path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StdoutInfo<'a> {
    /// The `stdout-path` value as written (may be an alias, may carry `:options`).
    pub raw: &'a str,
    /// The node path after alias resolution, without options.
    pub path: &'a str,
    /// The first compatible string of the node.
    pub compatible: &'a str,
    /// The CPU physical address of its first `reg` entry.
    pub base: u64,
}

/// A validated device tree.
pub struct DeviceTree<'a> {
    fdt: fdt::Fdt<'a>,
    bytes: &'a [u8],
}

impl<'a> DeviceTree<'a> {
    /// Validates `bytes` (which must hold the whole blob) and wraps it.
    pub fn new(bytes: &'a [u8]) -> Result<Self, DtError> {
        let total = validate_header(bytes)?;
        if bytes.len() < total {
            return Err(DtError::Truncated { have: bytes.len(), need: total });
        }
        let bytes = &bytes[..total];
        validate_structure(bytes)?;
        let fdt = fdt::Fdt::new(bytes).map_err(|_| DtError::Parse)?;
        // `fdt` panics on a missing root in several calls: refuse such trees here.
        fdt.find_node("/").ok_or(DtError::MissingNode("/"))?;
        Ok(Self { fdt, bytes })
    }

    /// Copies the DT at address `addr` into `buf` (compacted, without
    /// FDT_NOP tokens: see [`normalize_into`]) and wraps the copy. Returns the
    /// tree and the size of the original blob.
    ///
    /// # Safety
    /// `addr` must be readable for the header and for `totalsize` bytes
    /// after it (MMU off, or mapped), and stay unchanged during the call.
    pub unsafe fn copy_from_addr(addr: usize, buf: &'a mut [u8]) -> Result<(Self, usize), DtError> {
        if addr == 0 || !addr.is_multiple_of(8) {
            return Err(DtError::BadAddress(addr));
        }
        // SAFETY: the caller guarantees the header is readable.
        let header = unsafe { core::slice::from_raw_parts(addr as *const u8, HEADER_SIZE) };
        let total = validate_header(header)?;
        // SAFETY: the caller guarantees `totalsize` bytes are readable.
        let src = unsafe { core::slice::from_raw_parts(addr as *const u8, total) };
        let copy = normalize_into(src, buf)?;
        Ok((Self::new(copy)?, total))
    }

    /// The blob's size in bytes.
    pub fn total_size(&self) -> usize {
        self.bytes.len()
    }

    /// The whole blob.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The underlying parser, for lookups this wrapper does not offer.
    ///
    /// Beware: its `find_node` falls back to alias resolution and recurses
    /// without bound on an alias that names itself; this wrapper never uses it
    /// with anything but `/`.
    pub fn raw(&self) -> &fdt::Fdt<'a> {
        &self.fdt
    }

    /// The node at a full path, with its ancestors.
    pub(crate) fn locate(&self, path: &str) -> Option<walk::Located<'_, 'a>> {
        walk::lookup(&self.fdt, path)
    }

    /// Visits every node depth-first.
    pub(crate) fn walk<'b>(&'b self, visit: &mut dyn FnMut(&walk::Located<'b, 'a>) -> walk::Flow) {
        walk::walk(&self.fdt, visit)
    }

    /// The `index`-th `reg` entry of the node at `path` (a full path),
    /// translated to a CPU physical address through every parent's `ranges`.
    pub fn reg(&self, path: &str, index: usize) -> Result<Region, DtError> {
        let at = self.locate(path).ok_or_else(|| DtError::prop(path, "reg", Problem::NoSuchNode))?;
        at.reg(index)?.ok_or_else(|| at.err("reg", Problem::TooFew { have: index, need: index + 1 }))
    }

    /// RAM banks from every `memory` node (`device_type = "memory"`) that is
    /// not disabled, in blob order. A `reg` that is not a whole number of
    /// entries is an error naming the node.
    pub fn memory_banks(&self) -> Result<Regions, DtError> {
        let mut banks = Regions::default();
        let mut err = None;
        self.walk(&mut |at| {
            if at.ancestors().is_empty() {
                return walk::Flow::Descend; // the root
            }
            let node = at.node();
            let is_mem = node.property("device_type").and_then(|p| walk::first_string(p.value)) == Some("memory");
            if is_mem && walk::enabled(node) && node.property("reg").is_some() {
                let mut all = Regions::default();
                match at.reg_all(&mut all) {
                    Ok(_) => all.as_slice().iter().filter(|r| r.size != 0).for_each(|r| banks.push(*r)),
                    Err(e) => {
                        err = Some(e);
                        return walk::Flow::Stop;
                    }
                }
                banks.dropped += all.dropped();
            }
            walk::Flow::Skip // memory nodes sit directly under the root
        });
        if let Some(e) = err {
            return Err(e);
        }
        if banks.as_slice().is_empty() {
            return Err(DtError::NoMemory);
        }
        Ok(banks)
    }

    /// Resolves an alias (`serial0`) or returns `path` if it is already absolute.
    pub fn resolve_alias(&self, path: &'a str) -> Option<&'a str> {
        if path.starts_with('/') {
            return Some(path);
        }
        let aliases = self.locate("/aliases")?;
        walk::first_string(aliases.prop(path)?)
    }

    /// The console named by `/chosen/stdout-path` (or `linux,stdout-path`).
    pub fn stdout(&self) -> Result<StdoutInfo<'a>, DtError> {
        let chosen = self.locate("/chosen").ok_or(DtError::MissingNode("/chosen"))?;
        let raw = chosen
            .prop("stdout-path")
            .or_else(|| chosen.prop("linux,stdout-path"))
            .and_then(walk::first_string)
            .ok_or(DtError::BadProperty { node: "/chosen", prop: "stdout-path" })?;
        let name = raw.split(':').next().unwrap_or(raw);
        let path =
            self.resolve_alias(name).ok_or_else(|| DtError::prop("/chosen", "stdout-path", Problem::NoSuchNode))?;
        let at = self.locate(path).ok_or_else(|| DtError::prop("/chosen", "stdout-path", Problem::NoSuchNode))?;
        let compatible =
            at.prop("compatible").and_then(walk::first_string).ok_or_else(|| at.err("compatible", Problem::Missing))?;
        let base = self.reg(path, 0)?.base;
        Ok(StdoutInfo { raw, path, compatible, base })
    }

    /// The number of enabled CPU nodes under `/cpus`.
    pub fn cpu_count(&self) -> Result<usize, DtError> {
        let cpus = self.locate("/cpus").ok_or(DtError::MissingNode("/cpus"))?;
        Ok(cpus.node().children().filter(|n| cpus::is_cpu_node(*n) && walk::enabled(*n)).count())
    }

    /// The PSCI conduit from `/psci`'s `method`.
    pub fn psci_conduit(&self) -> Result<Conduit, DtError> {
        let psci = self.locate("/psci").ok_or(DtError::MissingNode("/psci"))?;
        match psci.prop("method").and_then(walk::first_string) {
            Some("smc") => Ok(Conduit::Smc),
            Some("hvc") => Ok(Conduit::Hvc),
            _ => Err(DtError::BadProperty { node: "/psci", prop: "method" }),
        }
    }

    /// The hypervisor's command line: `armature,bootargs`, else
    /// `xen,xen-bootargs`, else `bootargs` of `/chosen`.
    pub fn bootargs(&self) -> Option<&'a str> {
        let chosen = self.locate("/chosen")?;
        ["armature,bootargs", "xen,xen-bootargs", "bootargs"]
            .iter()
            .find_map(|name| chosen.prop(name).and_then(walk::first_string))
    }
}

/// The parent of a full node path (`/a/b` -> `/a`, `/a` -> `/`).
pub fn parent_path(path: &str) -> &str {
    match path.trim_end_matches('/').rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

#[cfg(test)]
mod binding_check;
#[cfg(test)]
mod dom0_tests;
#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod tests;
