//! Reading the flattened device tree (FDT) that firmware handed over.
//!
//! This module owns everything the hypervisor learns from the DT: memory
//! banks, the console (`/chosen/stdout-path`, through `/aliases`), the CPUs,
//! the PSCI conduit and the command line. It wraps the `fdt` crate, which can
//! panic on malformed input, behind a strict header check and only uses its
//! non-panicking calls; every error names what was wrong and where.
//! Addresses in `reg` are translated through the parents' `ranges`, which
//! boards with nested buses (FVP, Juno) need.

use core::fmt;

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
            DtError::BadStructure { offset, what } => {
                write!(f, "malformed structure block at offset {offset:#x}: {what}")
            }
            DtError::MissingNode(n) => write!(f, "required node {n} is missing"),
            DtError::BadProperty { node, prop } => {
                write!(f, "property {prop} of {node} is missing or malformed")
            }
            DtError::NoMemory => write!(f, "no memory node with a usable reg property"),
            DtError::Untranslatable => write!(f, "reg address cannot be translated through ranges"),
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
        if (off as usize) < HEADER_SIZE || end > total as u64 {
            Err(DtError::BadBlock(what))
        } else {
            Ok(())
        }
    };
    let off_struct = be32(header, 8);
    let off_strings = be32(header, 12);
    let off_rsvmap = be32(header, 16);
    let size_strings = be32(header, 32);
    let size_struct = be32(header, 36);
    within(off_struct, size_struct, "off_dt_struct/size_dt_struct")?;
    within(off_strings, size_strings, "off_dt_strings/size_dt_strings")?;
    within(off_rsvmap, 16, "off_mem_rsvmap")?;
    if off_struct % 4 != 0 {
        return Err(DtError::BadBlock("off_dt_struct alignment"));
    }
    if off_rsvmap % 8 != 0 {
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
const MAX_DEPTH: usize = 32;

/// Walks the whole structure block of a blob whose header passed
/// [`validate_header`] and checks every token, so that the `fdt` crate's
/// parser (which panics on malformed input) only ever sees well-formed trees.
pub fn validate_structure(blob: &[u8]) -> Result<(), DtError> {
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
        if after_nop && !matches!(tag, FDT_NOP | FDT_END_NODE | FDT_END) {
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
                return Ok(());
            }
            _ => return bad(tag_at, "unknown token"),
        }
        if pos > end {
            return bad(tag_at, "token runs past the structure block");
        }
    }
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
#[derive(Clone, Copy, Debug)]
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

impl Regions {
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

/// Reads `n` big-endian cells (n <= 2 is meaningful for addresses; more is truncated to 64 bits).
fn read_cells(b: &[u8], n: usize) -> Option<u64> {
    if b.len() < n * 4 {
        return None;
    }
    let mut v: u64 = 0;
    for i in 0..n {
        v = (v << 32) | be32(b, i * 4) as u64;
    }
    Some(v)
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

    /// Wraps the DT at physical address `addr` (MMU off or identity-mapped).
    ///
    /// # Safety
    /// `addr` must be readable for the header and for `totalsize` bytes after
    /// it, and stay unchanged for `'a`.
    pub unsafe fn from_addr(addr: usize) -> Result<Self, DtError> {
        if addr == 0 || addr % 8 != 0 {
            return Err(DtError::BadAddress(addr));
        }
        // SAFETY: the caller guarantees the header is readable.
        let header = unsafe { core::slice::from_raw_parts(addr as *const u8, HEADER_SIZE) };
        let total = validate_header(header)?;
        // SAFETY: the caller guarantees `totalsize` bytes are readable.
        let all = unsafe { core::slice::from_raw_parts(addr as *const u8, total) };
        Self::new(all)
    }

    /// The blob's size in bytes.
    pub fn total_size(&self) -> usize {
        self.bytes.len()
    }

    /// The underlying parser, for lookups this wrapper does not offer.
    pub fn raw(&self) -> &fdt::Fdt<'a> {
        &self.fdt
    }

    fn node(&self, path: &str) -> Option<fdt::node::FdtNode<'_, 'a>> {
        self.fdt.find_node(path)
    }

    /// `#address-cells` and `#size-cells` a node gives its children (defaults 2 and 1).
    fn child_cells(&self, path: &str) -> Result<(usize, usize), DtError> {
        let node = self.node(path).ok_or(DtError::Untranslatable)?;
        let get = |name: &str, default: usize| -> Result<usize, DtError> {
            match node.property(name) {
                None => Ok(default),
                Some(p) => match read_cells(p.value, 1) {
                    Some(v) if v <= 4 => Ok(v as usize),
                    _ => Err(DtError::BadProperty { node: "(a bus node)", prop: "#address-cells/#size-cells" }),
                },
            }
        };
        Ok((get("#address-cells", 2)?, get("#size-cells", 1)?))
    }

    /// The `index`-th `reg` entry of the node at `path` (a full path),
    /// translated to a CPU physical address through every parent's `ranges`.
    pub fn reg(&self, path: &'a str, index: usize) -> Result<Region, DtError> {
        let node = self.node(path).ok_or(DtError::MissingNode("(reg lookup)"))?;
        let parent = parent_path(path);
        let (ac, sc) = self.child_cells(parent)?;
        let reg = node
            .property("reg")
            .ok_or(DtError::BadProperty { node: "(device)", prop: "reg" })?;
        let stride = (ac + sc) * 4;
        let entry = reg
            .value
            .get(index * stride..(index + 1) * stride)
            .ok_or(DtError::BadProperty { node: "(device)", prop: "reg" })?;
        let mut addr = read_cells(entry, ac).ok_or(DtError::Untranslatable)?;
        let size = read_cells(&entry[ac * 4..], sc).ok_or(DtError::Untranslatable)?;
        // Walk up: each bus between the node and the root maps its children's
        // addresses into its own parent's address space.
        let mut bus = parent;
        while bus != "/" {
            addr = self.translate_one(bus, addr, size)?;
            bus = parent_path(bus);
        }
        Ok(Region { base: addr, size })
    }

    /// Translates `addr` from the child address space of `bus` into its parent's.
    fn translate_one(&self, bus: &str, addr: u64, size: u64) -> Result<u64, DtError> {
        let node = self.node(bus).ok_or(DtError::Untranslatable)?;
        let ranges = node.property("ranges").ok_or(DtError::Untranslatable)?;
        if ranges.value.is_empty() {
            return Ok(addr); // identity
        }
        let (cac, csc) = self.child_cells(bus)?;
        let (pac, _) = self.child_cells(parent_path(bus))?;
        let stride = (cac + pac + csc) * 4;
        if stride == 0 {
            return Err(DtError::Untranslatable);
        }
        for e in ranges.value.chunks_exact(stride) {
            let child = read_cells(e, cac).ok_or(DtError::Untranslatable)?;
            let parent = read_cells(&e[cac * 4..], pac).ok_or(DtError::Untranslatable)?;
            let len = read_cells(&e[(cac + pac) * 4..], csc).ok_or(DtError::Untranslatable)?;
            if addr >= child && addr.wrapping_sub(child) < len && size <= len - (addr - child) {
                return Ok(addr - child + parent);
            }
        }
        Err(DtError::Untranslatable)
    }

    /// RAM banks from every `memory` node (`device_type = "memory"`) that is not disabled.
    pub fn memory_banks(&self) -> Result<Regions, DtError> {
        let mut banks = Regions::default();
        let (ac, sc) = self.child_cells("/")?;
        let root = self.node("/").ok_or(DtError::MissingNode("/"))?;
        for node in root.children() {
            let is_mem = node.property("device_type").and_then(|p| p.as_str()) == Some("memory");
            if !is_mem || !status_okay(&node) {
                continue;
            }
            let Some(reg) = node.property("reg") else { continue };
            let stride = (ac + sc) * 4;
            if stride == 0 {
                continue;
            }
            for e in reg.value.chunks_exact(stride) {
                let base = read_cells(e, ac).ok_or(DtError::NoMemory)?;
                let size = read_cells(&e[ac * 4..], sc).ok_or(DtError::NoMemory)?;
                if size != 0 {
                    banks.push(Region { base, size });
                }
            }
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
        let aliases = self.fdt.find_node("/aliases")?;
        aliases.property(path)?.as_str()
    }

    /// The console named by `/chosen/stdout-path` (or `linux,stdout-path`).
    pub fn stdout(&self) -> Result<StdoutInfo<'a>, DtError> {
        let chosen = self.node("/chosen").ok_or(DtError::MissingNode("/chosen"))?;
        let raw = chosen
            .property("stdout-path")
            .or_else(|| chosen.property("linux,stdout-path"))
            .and_then(|p| p.as_str())
            .ok_or(DtError::BadProperty { node: "/chosen", prop: "stdout-path" })?;
        let name = raw.split(':').next().unwrap_or(raw);
        let path = self
            .resolve_alias(name)
            .ok_or(DtError::BadProperty { node: "/aliases", prop: "(stdout-path alias)" })?;
        let node = self.node(path).ok_or(DtError::MissingNode("(stdout-path target)"))?;
        let compatible = node
            .compatible()
            .and_then(|c| c.all().next())
            .ok_or(DtError::BadProperty { node: "(stdout-path target)", prop: "compatible" })?;
        let base = self.reg(path, 0)?.base;
        Ok(StdoutInfo { raw, path, compatible, base })
    }

    /// The number of enabled CPU nodes under `/cpus`.
    pub fn cpu_count(&self) -> Result<usize, DtError> {
        let cpus = self.node("/cpus").ok_or(DtError::MissingNode("/cpus"))?;
        Ok(cpus
            .children()
            .filter(|n| n.property("device_type").and_then(|p| p.as_str()) == Some("cpu"))
            .filter(status_okay)
            .count())
    }

    /// The PSCI conduit from `/psci`'s `method`.
    pub fn psci_conduit(&self) -> Result<Conduit, DtError> {
        let psci = self.node("/psci").ok_or(DtError::MissingNode("/psci"))?;
        match psci.property("method").and_then(|p| p.as_str()) {
            Some("smc") => Ok(Conduit::Smc),
            Some("hvc") => Ok(Conduit::Hvc),
            _ => Err(DtError::BadProperty { node: "/psci", prop: "method" }),
        }
    }

    /// The hypervisor's command line: `armature,bootargs`, else
    /// `xen,xen-bootargs`, else `bootargs` of `/chosen`.
    pub fn bootargs(&self) -> Option<&'a str> {
        let chosen = self.node("/chosen")?;
        ["armature,bootargs", "xen,xen-bootargs", "bootargs"]
            .iter()
            .find_map(|name| chosen.property(name).and_then(|p| p.as_str()))
    }
}

/// `status` absent, `"okay"` or `"ok"`.
fn status_okay(node: &fdt::node::FdtNode<'_, '_>) -> bool {
    match node.property("status").and_then(|p| p.as_str()) {
        None => true,
        Some(s) => s == "okay" || s == "ok",
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
mod tests;
