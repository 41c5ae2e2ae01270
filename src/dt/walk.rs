//! Finding nodes and reading their cells without the heap.
//!
//! Nodes are found either by full path ([`lookup`]) or by a depth-first walk
//! of the whole tree ([`walk`]); both keep the chain of ancestors, which
//! `reg` translation through the parents' `ranges` needs, and the node's
//! full path, which every error names.
//!
//! Path lookup goes through `children()` itself instead of the `fdt` crate's
//! `find_node`: that one falls back to resolving the path as an alias and
//! recurses without bound when an alias names itself.

use core::fmt;

use super::{DtError, MAX_DEPTH, Problem, Region, be32};

type Node<'b, 'a> = fdt::node::FdtNode<'b, 'a>;

/// Longest node path kept in full; longer ones keep their last part (the
/// node's own name) and are shown with a leading "…".
pub const NODE_PATH_CAP: usize = 80;

/// A node's full path (`/soc/serial@12c20000`), stored inline so that errors
/// and plans can name nodes without a heap.
#[derive(Clone, Copy)]
pub struct NodePath {
    buf: [u8; NODE_PATH_CAP],
    len: u8,
    /// The front of the path was cut off.
    cut: bool,
}

impl NodePath {
    /// The path `s`; beyond [`NODE_PATH_CAP`] bytes only its end is kept.
    pub fn new(s: &str) -> Self {
        let mut p = Self { buf: [0; NODE_PATH_CAP], len: 0, cut: false };
        let mut start = s.len().saturating_sub(NODE_PATH_CAP);
        while !s.is_char_boundary(start) {
            start += 1;
        }
        p.cut = start > 0;
        let kept = &s.as_bytes()[start..];
        p.buf[..kept.len()].copy_from_slice(kept);
        p.len = kept.len() as u8;
        p
    }

    /// The path of the node whose ancestors' names (root excluded) and own
    /// name are `names`, root first.
    pub(crate) fn from_names<'n>(names: impl DoubleEndedIterator<Item = &'n str> + Clone) -> Self {
        let mut p = Self { buf: [0; NODE_PATH_CAP], len: 0, cut: false };
        let total: usize = names.clone().map(|n| n.len() + 1).sum();
        if total == 0 {
            p.buf[0] = b'/';
            p.len = 1;
            return p;
        }
        // Fill from the end: each component is "/name".
        let mut pos = NODE_PATH_CAP;
        for name in names.rev() {
            for part in [name.as_bytes(), b"/"] {
                let n = part.len().min(pos);
                p.buf[pos - n..pos].copy_from_slice(&part[part.len() - n..]);
                pos -= n;
            }
            if pos == 0 {
                break;
            }
        }
        p.cut = total > NODE_PATH_CAP;
        // Drop a partial UTF-8 character at the cut.
        while pos < NODE_PATH_CAP && p.cut && (p.buf[pos] & 0xc0) == 0x80 {
            pos += 1;
        }
        p.buf.copy_within(pos.., 0);
        p.len = (NODE_PATH_CAP - pos) as u8;
        p
    }

    /// The path as text (its end only, if it was cut).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }

    /// Whether the front of the path was cut off (longer than [`NODE_PATH_CAP`]).
    pub fn is_truncated(&self) -> bool {
        self.cut
    }
}

impl PartialEq for NodePath {
    fn eq(&self, other: &Self) -> bool {
        self.cut == other.cut && self.as_str() == other.as_str()
    }
}

impl Eq for NodePath {}

impl PartialEq<&str> for NodePath {
    fn eq(&self, other: &&str) -> bool {
        !self.cut && self.as_str() == *other
    }
}

impl fmt::Display for NodePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cut {
            f.write_str("…")?;
        }
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for NodePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// A node together with its ancestors (root first); its path is built from
/// their names when needed.
#[derive(Clone, Copy)]
pub(crate) struct Located<'b, 'a> {
    /// `nodes[0]` is the root, `nodes[len - 1]` the node itself.
    nodes: [Node<'b, 'a>; MAX_DEPTH + 1],
    len: usize,
}

impl<'b, 'a> Located<'b, 'a> {
    fn root(root: Node<'b, 'a>) -> Self {
        Self { nodes: [root; MAX_DEPTH + 1], len: 1 }
    }

    fn push(&mut self, child: Node<'b, 'a>) -> bool {
        if self.len > MAX_DEPTH {
            return false;
        }
        self.nodes[self.len] = child;
        self.len += 1;
        true
    }

    fn pop(&mut self) {
        self.len -= 1;
    }

    /// `child` (a child of this node) located below this node.
    pub fn child(&self, child: Node<'b, 'a>) -> Option<Self> {
        let mut c = *self;
        c.push(child).then_some(c)
    }

    /// The node itself.
    pub fn node(&self) -> Node<'b, 'a> {
        self.nodes[self.len - 1]
    }

    /// Root first, parent last (empty for the root).
    pub fn ancestors(&self) -> &[Node<'b, 'a>] {
        &self.nodes[..self.len - 1]
    }

    /// The node's full path.
    pub fn path(&self) -> NodePath {
        self.ancestor_path(self.len - 1)
    }

    /// The path of the ancestor at `depth` (0 = root; `len - 1` = the node).
    fn ancestor_path(&self, depth: usize) -> NodePath {
        NodePath::from_names(self.nodes[1..=depth].iter().map(|n| n.name))
    }

    /// An error about property `prop` of this node.
    pub fn err(&self, prop: &'static str, problem: Problem) -> DtError {
        DtError::Prop { node: self.path(), prop, problem }
    }

    /// `#address-cells`/`#size-cells` the parent gives this node.
    pub fn parent_cells(&self) -> Result<(usize, usize), DtError> {
        let depth = self.len.saturating_sub(2);
        cells(self.nodes[depth], || self.ancestor_path(depth))
    }

    /// The `index`-th `reg` entry, translated to a CPU physical address
    /// through every ancestor's `ranges`. `Ok(None)` past the last entry.
    pub fn reg(&self, index: usize) -> Result<Option<Region>, DtError> {
        match self.reg_untranslated(index)? {
            Some(r) => Ok(Some(Region { base: self.translate(r.base, r.size)?, size: r.size })),
            None => Ok(None),
        }
    }

    /// The `index`-th `reg` entry as written, in the parent's address space
    /// (for nodes that are not on a bus, such as `/chosen` modules, whose
    /// addresses are physical already). `Ok(None)` past the last entry.
    pub fn reg_untranslated(&self, index: usize) -> Result<Option<Region>, DtError> {
        let (ac, sc) = self.parent_cells()?;
        let value = self.prop("reg").ok_or_else(|| self.err("reg", Problem::Missing))?;
        if ac == 0 || ac > 2 || sc > 2 {
            return Err(self.err("reg", Problem::CellCount { address: ac, size: sc }));
        }
        let stride = (ac + sc) * 4;
        if value.len() % stride != 0 || value.is_empty() {
            return Err(self.err("reg", Problem::NotMultiple { len: value.len(), stride }));
        }
        let Some(entry) = value.get(index * stride..(index + 1) * stride) else { return Ok(None) };
        let base = read_cells(entry, ac);
        let size = read_cells(&entry[ac * 4..], sc);
        Ok(Some(Region { base, size }))
    }

    /// Every `reg` entry, pushed onto `out`; returns how many there were.
    pub fn reg_all(&self, out: &mut super::Regions) -> Result<usize, DtError> {
        let mut i = 0;
        while let Some(r) = self.reg(i)? {
            out.push(r);
            i += 1;
        }
        Ok(i)
    }

    /// Translates an address in this node's parent's address space (a
    /// `reg` address, or the parent side of this node's own `ranges`) up to
    /// the root.
    pub fn translate(&self, mut addr: u64, size: u64) -> Result<u64, DtError> {
        let anc = self.ancestors();
        // anc[i] is a bus whose children's addresses map into anc[i - 1]'s.
        for i in (1..anc.len()).rev() {
            let bus = anc[i];
            let bus_path = || self.ancestor_path(i);
            let Some(ranges) = bus.property("ranges") else {
                return Err(DtError::Prop { node: bus_path(), prop: "ranges", problem: Problem::Missing });
            };
            if ranges.value.is_empty() {
                continue; // identity
            }
            let (cac, csc) = cells(bus, bus_path)?;
            let (pac, _) = cells(anc[i - 1], || self.ancestor_path(i - 1))?;
            let bad = |problem| DtError::Prop { node: bus_path(), prop: "ranges", problem };
            if cac == 0 || cac > 2 || pac == 0 || pac > 2 || csc == 0 || csc > 2 {
                return Err(bad(Problem::CellCount { address: cac.max(pac), size: csc }));
            }
            let stride = (cac + pac + csc) * 4;
            if ranges.value.len() % stride != 0 {
                return Err(bad(Problem::NotMultiple { len: ranges.value.len(), stride }));
            }
            let hit = ranges.value.chunks_exact(stride).find_map(|e| {
                let child = read_cells(e, cac);
                let parent = read_cells(&e[cac * 4..], pac);
                let len = read_cells(&e[(cac + pac) * 4..], csc);
                let off = addr.checked_sub(child)?;
                (off < len && size <= len - off).then(|| parent.wrapping_add(off))
            });
            addr = hit.ok_or_else(|| bad(Problem::NotCovered { addr }))?;
        }
        Ok(addr)
    }

    /// A property's raw value.
    pub fn prop(&self, name: &str) -> Option<&'a [u8]> {
        self.node().property(name).map(|p| p.value)
    }
}

/// `#address-cells` and `#size-cells` of `node` (defaults 2 and 1).
pub(crate) fn cells(node: Node<'_, '_>, path: impl Fn() -> NodePath) -> Result<(usize, usize), DtError> {
    let get = |name: &'static str, default: usize| -> Result<usize, DtError> {
        match node.property(name) {
            None => Ok(default),
            Some(p) if p.value.len() == 4 && be32(p.value, 0) <= 4 => Ok(be32(p.value, 0) as usize),
            Some(p) if p.value.len() != 4 => Err(DtError::Prop {
                node: path(),
                prop: name,
                problem: Problem::Length { len: p.value.len(), expected: 4 },
            }),
            Some(p) => {
                Err(DtError::Prop { node: path(), prop: name, problem: Problem::Value(be32(p.value, 0) as u64) })
            }
        }
    };
    Ok((get("#address-cells", 2)?, get("#size-cells", 1)?))
}

/// Reads `n` (at most 2) big-endian cells; the caller checked the length.
pub(crate) fn read_cells(b: &[u8], n: usize) -> u64 {
    (0..n).fold(0u64, |v, i| (v << 32) | be32(b, i * 4) as u64)
}

/// A one- or two-cell number property (`cpu-release-addr`, `redistributor-stride`).
pub(crate) fn read_u64_prop(at: &Located<'_, '_>, name: &'static str) -> Result<Option<u64>, DtError> {
    match at.prop(name) {
        None => Ok(None),
        Some(v) if v.len() == 4 || v.len() == 8 => Ok(Some(read_cells(v, v.len() / 4))),
        Some(v) => Err(at.err(name, Problem::NotOneOrTwoCells { len: v.len() })),
    }
}

/// A one-cell property.
pub(crate) fn read_u32_prop(at: &Located<'_, '_>, name: &'static str) -> Result<Option<u32>, DtError> {
    match at.prop(name) {
        None => Ok(None),
        Some(v) if v.len() == 4 => Ok(Some(be32(v, 0))),
        Some(v) => Err(at.err(name, Problem::Length { len: v.len(), expected: 4 })),
    }
}

/// The strings of a string-list property (stops at the first non-UTF-8 one).
pub(crate) fn strings(value: &[u8]) -> impl Iterator<Item = &str> {
    let body = value.strip_suffix(&[0]).unwrap_or(value);
    let mut parts = body.split(|&b| b == 0);
    if value.is_empty() {
        // `split` yields one empty item for an empty slice.
        parts.next();
    }
    parts.map_while(|s| core::str::from_utf8(s).ok())
}

/// The first string of a string property, if it is one.
pub(crate) fn first_string(value: &[u8]) -> Option<&str> {
    strings(value).next()
}

/// The first entry of the node's `compatible` list that is one of `names`.
pub(crate) fn compatible_with<'n>(node: Node<'_, '_>, names: &[&'n str]) -> Option<&'n str> {
    let value = node.property("compatible")?.value;
    strings(value).find_map(|c| names.iter().copied().find(|n| *n == c))
}

/// `status` absent, `"okay"` or `"ok"`.
pub(crate) fn enabled(node: Node<'_, '_>) -> bool {
    match node.property("status") {
        None => true,
        Some(p) => matches!(first_string(p.value), Some("okay" | "ok")),
    }
}

/// The node at a full path (`/a/b@1`), with its ancestors. A component
/// without a unit address also matches `name@unit` (first such child), as
/// the DT specification allows.
pub(crate) fn lookup<'b, 'a>(fdt: &'b fdt::Fdt<'a>, path: &str) -> Option<Located<'b, 'a>> {
    let rest = path.strip_prefix('/')?;
    let mut at = Located::root(fdt.find_node("/")?);
    for comp in rest.split('/').filter(|c| !c.is_empty()) {
        let node = at.node();
        let exact = node.children().find(|c| c.name == comp);
        let child = match exact {
            Some(c) => c,
            None if !comp.contains('@') => node.children().find(|c| c.name.split('@').next() == Some(comp))?,
            None => return None,
        };
        if !at.push(child) {
            return None;
        }
    }
    Some(at)
}

/// What a [`walk`] visitor wants next.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Visit this node's children, then go on.
    Descend,
    /// Do not visit this node's children.
    Skip,
    /// End the walk.
    Stop,
}

/// Visits every node depth-first, parents before children, in blob order.
pub(crate) fn walk<'b, 'a>(fdt: &'b fdt::Fdt<'a>, visit: &mut dyn FnMut(&Located<'b, 'a>) -> Flow) {
    fn rec<'b, 'a>(at: &mut Located<'b, 'a>, visit: &mut dyn FnMut(&Located<'b, 'a>) -> Flow) -> bool {
        match visit(at) {
            Flow::Stop => return true,
            Flow::Skip => return false,
            Flow::Descend => {}
        }
        for child in at.node().children() {
            if !at.push(child) {
                return false; // deeper than the validator allows: cannot happen
            }
            let stop = rec(at, visit);
            at.pop();
            if stop {
                return true;
            }
        }
        false
    }
    if let Some(root) = fdt.find_node("/") {
        rec(&mut Located::root(root), visit);
    }
}
