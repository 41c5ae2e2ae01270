//! A small, independent flattened-device-tree reader for the host.
//!
//! Tests dump the DTB QEMU generates for a machine (`-M …,dumpdtb=`) and
//! derive from it what Armature must print (memory banks, console, CPU
//! count, PSCI conduit). This reader is deliberately separate from
//! Armature's own `dt` module, so a bug there cannot hide itself by also
//! shaping the expectation. It reads the whole tree into memory and answers
//! path lookups; it does not translate addresses through `ranges`.
//!
//! Edits go through `fdtput` (device-tree-compiler): [`fdtput`], [`cells`]
//! and [`add_chosen_module`].

use crate::{Error, Result, process};
use std::ffi::OsStr;
use std::path::Path;

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// A device tree node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    /// Full name with unit address (`memory@40000000`); empty for the root.
    pub name: String,
    /// Properties in blob order.
    pub props: Vec<(String, Vec<u8>)>,
    /// Child nodes in blob order.
    pub children: Vec<Node>,
}

impl Node {
    /// The raw value of property `name`.
    pub fn prop(&self, name: &str) -> Option<&[u8]> {
        self.props.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    /// The strings of a string or string-list property.
    pub fn strings(&self, name: &str) -> Vec<&str> {
        let Some(v) = self.prop(name) else { return Vec::new() };
        v.split(|&b| b == 0).filter(|s| !s.is_empty()).filter_map(|s| std::str::from_utf8(s).ok()).collect()
    }

    /// The first string of a string property.
    pub fn string(&self, name: &str) -> Option<&str> {
        self.strings(name).into_iter().next()
    }

    /// A single-cell property.
    pub fn u32(&self, name: &str) -> Option<u32> {
        self.prop(name).filter(|v| v.len() == 4).map(|v| u32::from_be_bytes(v.try_into().unwrap()))
    }

    /// The child named `name`: exact full name, or the name without unit
    /// address when exactly one child has it.
    pub fn child(&self, name: &str) -> Option<&Node> {
        if let Some(c) = self.children.iter().find(|c| c.name == name) {
            return Some(c);
        }
        let mut it = self.children.iter().filter(|c| c.base_name() == name);
        match (it.next(), it.next()) {
            (Some(c), None) => Some(c),
            _ => None,
        }
    }

    /// Name without the unit address (`memory` for `memory@40000000`).
    pub fn base_name(&self) -> &str {
        self.name.split('@').next().unwrap_or("")
    }

    /// `status` absent, "okay" or "ok".
    pub fn is_enabled(&self) -> bool {
        matches!(self.string("status"), None | Some("okay" | "ok"))
    }
}

/// A parsed device tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fdt {
    /// The root node.
    pub root: Node,
    /// `totalsize` from the header.
    pub total_size: usize,
}

fn be32(b: &[u8], off: usize) -> Result<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_be_bytes(s.try_into().unwrap()))
        .ok_or_else(|| Error::new(format!("device tree truncated at offset {off:#x}")))
}

fn cstr(b: &[u8], off: usize) -> Result<&str> {
    let rest = b.get(off..).ok_or_else(|| Error::new(format!("string offset {off:#x} out of range")))?;
    let len = rest.iter().position(|&c| c == 0).ok_or_else(|| Error::new("unterminated string in device tree"))?;
    std::str::from_utf8(&rest[..len]).map_err(|_| Error::new("device tree string is not UTF-8"))
}

impl Fdt {
    /// Parses a DTB.
    pub fn parse(blob: &[u8]) -> Result<Fdt> {
        if be32(blob, 0)? != FDT_MAGIC {
            return Err(Error::new("not a device tree (bad magic)"));
        }
        let total_size = be32(blob, 4)? as usize;
        let blob = blob.get(..total_size).ok_or_else(|| Error::new("device tree shorter than its totalsize"))?;
        let off_struct = be32(blob, 8)? as usize;
        let off_strings = be32(blob, 12)? as usize;
        let strings = &blob[off_strings.min(blob.len())..];
        let mut pos = off_struct;
        // Stack of open nodes; the root is pushed by its FDT_BEGIN_NODE.
        let mut stack: Vec<Node> = Vec::new();
        let mut root = None;
        loop {
            let tag = be32(blob, pos)?;
            pos += 4;
            match tag {
                FDT_BEGIN_NODE => {
                    let name = cstr(blob, pos)?.to_string();
                    pos = (pos + name.len() + 1).next_multiple_of(4);
                    stack.push(Node { name, ..Node::default() });
                }
                FDT_END_NODE => {
                    let node = stack.pop().ok_or_else(|| Error::new("unbalanced FDT_END_NODE"))?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(node),
                        None => root = Some(node),
                    }
                }
                FDT_PROP => {
                    let len = be32(blob, pos)? as usize;
                    let nameoff = be32(blob, pos + 4)? as usize;
                    let value = blob
                        .get(pos + 8..pos + 8 + len)
                        .ok_or_else(|| Error::new("property value out of range"))?
                        .to_vec();
                    pos = (pos + 8 + len).next_multiple_of(4);
                    let name = cstr(strings, nameoff)?.to_string();
                    stack.last_mut().ok_or_else(|| Error::new("property outside a node"))?.props.push((name, value));
                }
                FDT_NOP => {}
                FDT_END => break,
                other => return Err(Error::new(format!("bad structure token {other:#x} at {:#x}", pos - 4))),
            }
        }
        let root = root.ok_or_else(|| Error::new("device tree has no root node"))?;
        Ok(Fdt { root, total_size })
    }

    /// The node at absolute `path` (`/`, `/chosen`, `/cpus/cpu@0`).
    pub fn node(&self, path: &str) -> Option<&Node> {
        path.split('/').filter(|c| !c.is_empty()).try_fold(&self.root, |node, comp| node.child(comp))
    }

    /// An alias resolved to its path, or `path` itself if it is absolute.
    pub fn resolve_alias<'a>(&'a self, path: &'a str) -> Option<&'a str> {
        if path.starts_with('/') { Some(path) } else { self.node("/aliases")?.string(path) }
    }

    /// `#address-cells` and `#size-cells` a node at `parent` gives its children.
    fn cells(&self, parent: &str) -> (usize, usize) {
        let p = self.node(parent);
        let ac = p.and_then(|n| n.u32("#address-cells")).unwrap_or(2) as usize;
        let sc = p.and_then(|n| n.u32("#size-cells")).unwrap_or(1) as usize;
        (ac, sc)
    }

    /// The `(address, size)` pairs of `path`'s `reg`, untranslated.
    pub fn reg(&self, path: &str) -> Vec<(u64, u64)> {
        let Some(node) = self.node(path) else { return Vec::new() };
        let parent = match path.trim_end_matches('/').rfind('/') {
            Some(0) | None => "/",
            Some(i) => &path[..i],
        };
        decode_reg(node.prop("reg").unwrap_or(&[]), self.cells(parent))
    }

    /// RAM banks `(base, size)` of every enabled memory node, sorted by base.
    pub fn memory_banks(&self) -> Vec<(u64, u64)> {
        let cells = self.cells("/");
        let mut banks: Vec<_> = self
            .root
            .children
            .iter()
            .filter(|n| n.string("device_type") == Some("memory") && n.is_enabled())
            .flat_map(|n| decode_reg(n.prop("reg").unwrap_or(&[]), cells))
            .filter(|&(_, size)| size != 0)
            .collect();
        banks.sort();
        banks
    }

    /// The enabled CPU nodes under `/cpus`.
    pub fn cpu_count(&self) -> usize {
        self.node("/cpus").map_or(0, |cpus| {
            cpus.children.iter().filter(|c| c.string("device_type") == Some("cpu") && c.is_enabled()).count()
        })
    }

    /// `/chosen/stdout-path`, as written.
    pub fn stdout_path(&self) -> Option<&str> {
        self.node("/chosen")?.string("stdout-path")
    }

    /// `/psci`'s `method` ("smc" or "hvc").
    pub fn psci_method(&self) -> Option<&str> {
        self.node("/psci")?.string("method")
    }

    /// The highest PSCI version named in `/psci`'s `compatible`
    /// (`arm,psci-1.0` gives (1, 0); plain `arm,psci` is (0, 1)).
    pub fn psci_version(&self) -> Option<(u16, u16)> {
        self.node("/psci")?
            .strings("compatible")
            .into_iter()
            .filter_map(|c| match c.strip_prefix("arm,psci") {
                Some("") => Some((0, 1)),
                Some(v) => {
                    let (maj, min) = v.strip_prefix('-')?.split_once('.')?;
                    Some((maj.parse().ok()?, min.parse().ok()?))
                }
                None => None,
            })
            .max()
    }
}

fn decode_reg(value: &[u8], (ac, sc): (usize, usize)) -> Vec<(u64, u64)> {
    let read = |cells: &[u8]| {
        cells.chunks_exact(4).fold(0u64, |acc, c| (acc << 32) | u64::from(u32::from_be_bytes(c.try_into().unwrap())))
    };
    let stride = (ac + sc) * 4;
    if stride == 0 {
        return Vec::new();
    }
    value.chunks_exact(stride).map(|e| (read(&e[..ac * 4]), read(&e[ac * 4..]))).collect()
}

/// Runs `fdtput <dtb> <args>`, editing the blob in place.
pub fn fdtput<S: AsRef<OsStr>>(dtb: &Path, args: &[S]) -> Result<()> {
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
    let what = format!("fdtput {} {}", dtb.display(), shown.join(" "));
    process::run_checked(process::tool("fdtput", "device-tree-compiler")?.arg(dtb).args(args), &what).map(drop)
}

/// Two big-endian cells of a 64-bit value, as `fdtput -t x` takes them.
pub fn cells(v: u64) -> [String; 2] {
    [format!("{:x}", v >> 32), format!("{:x}", v & 0xffff_ffff)]
}

/// Adds a boot module to `/chosen` (the Xen binding): two address and size
/// cells in `/chosen`, and a `module@<addr>` node with `compatible` =
/// `compatibles` followed by `multiboot,module`, and `reg` = `addr`, `size`.
pub fn add_chosen_module(dtb: &Path, addr: u64, size: u64, compatibles: &[&str]) -> Result<()> {
    fdtput(dtb, &["-t", "x", "/chosen", "#address-cells", "2"])?;
    fdtput(dtb, &["-t", "x", "/chosen", "#size-cells", "2"])?;
    let node = format!("/chosen/module@{addr:x}");
    fdtput(dtb, &["-c", node.as_str()])?;
    let mut compatible = vec!["-t", "s", node.as_str(), "compatible"];
    compatible.extend(compatibles);
    compatible.push("multiboot,module");
    fdtput(dtb, &compatible)?;
    let ([ah, al], [sh, sl]) = (cells(addr), cells(size));
    fdtput(dtb, &["-t", "x", node.as_str(), "reg", &ah, &al, &sh, &sl])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Fdt {
        let path = crate::paths::workspace_root().join("tests/fixtures/dtb").join(name);
        Fdt::parse(&std::fs::read(&path).unwrap()).unwrap()
    }

    #[test]
    fn cells_split_high_and_low() {
        assert_eq!(cells(0x1_7fff_f008), ["1".to_string(), "7ffff008".to_string()]);
        assert_eq!(cells(0x1000), ["0".to_string(), "1000".to_string()]);
    }

    #[test]
    fn qemu_virt_gicv3() {
        let dt = fixture("qemu-virt-gicv3-smp4.dtb");
        assert_eq!(dt.memory_banks(), [(0x4000_0000, 0x4000_0000)]);
        assert_eq!(dt.cpu_count(), 4);
        assert_eq!(dt.stdout_path(), Some("/pl011@9000000"));
        assert_eq!(dt.psci_method(), Some("smc"));
        assert_eq!(dt.psci_version(), Some((1, 0)));
        assert_eq!(dt.reg("/pl011@9000000"), [(0x900_0000, 0x1000)]);
        assert_eq!(dt.node("/pl011").map(|n| n.name.as_str()), Some("pl011@9000000"));
        assert!(dt.node("/no/such/node").is_none());
    }

    #[test]
    fn qemu_virt_arm32() {
        let dt = fixture("qemu-virt-arm32-smp2.dtb");
        assert_eq!(dt.cpu_count(), 2);
        assert_eq!(dt.memory_banks().len(), 1);
    }

    #[test]
    fn disabled_nodes_and_aliases() {
        let dt = fixture("nested-ranges.dtb");
        // The disabled memory node is left out; two banks in one reg.
        assert_eq!(dt.memory_banks(), [(0x8000_0000, 0x8000_0000), (0x8_8000_0000, 0x8000_0000)]);
        assert_eq!(dt.stdout_path(), Some("serial0:115200n8"));
        assert!(dt.resolve_alias("serial0").unwrap().ends_with("serial@90000"));
        assert_eq!(dt.node("/chosen").unwrap().string("xen,xen-bootargs"), Some("loglvl=debug"));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Fdt::parse(b"not a dtb at all").is_err());
        assert!(Fdt::parse(&[0xd0, 0x0d, 0xfe, 0xed, 0, 0, 0x10, 0]).is_err());
    }
}
