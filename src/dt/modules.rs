//! The boot modules of `/chosen` (Xen's `multiboot,module` binding) with
//! their node names and roles, read strictly: one `reg` entry each, and no
//! more modules than the hypervisor can keep clear of ([`MAX_MODULES`]).
//!
//! Roles follow Xen: `multiboot,kernel` and `multiboot,ramdisk` say what a
//! module is; of the modules that are only `multiboot,module`, the first is
//! the kernel and the second the ramdisk.

use super::walk;
use super::{DeviceTree, DtError, MAX_BANKS};
use crate::bootcheck::{Module, Role};
use core::fmt;

/// Most boot modules kept clear of relocation and of the page allocator
/// (the capacity of [`super::Regions`]); more are refused, not dropped.
pub const MAX_MODULES: usize = MAX_BANKS;

/// The boot modules of `/chosen`, in blob order.
#[derive(Clone, Copy, Debug)]
pub struct ChosenModules<'a> {
    items: [Module<'a>; MAX_MODULES],
    len: usize,
}

impl<'a> ChosenModules<'a> {
    /// The modules.
    pub fn as_slice(&self) -> &[Module<'a>] {
        &self.items[..self.len]
    }
}

/// Why the boot modules could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModulesError<'a> {
    /// A property could not be read.
    Dt(DtError),
    /// More modules than [`MAX_MODULES`].
    TooMany(usize),
    /// A module's `reg` holds more than one entry with `/chosen`'s cells.
    Entries {
        /// The node.
        name: &'a str,
        /// Bytes of `reg`.
        len: usize,
        /// `/chosen`'s `#address-cells` and `#size-cells`.
        cells: (usize, usize),
    },
}

impl fmt::Display for ModulesError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModulesError::Dt(e) => write!(f, "{e}"),
            ModulesError::TooMany(n) => write!(
                f,
                "/chosen has {n} boot modules, more than the {MAX_MODULES} Armature keeps clear of: refusing \
                 rather than overwriting some"
            ),
            ModulesError::Entries { name, len, cells: (ac, sc) } => write!(
                f,
                "/chosen/{name}: reg has {len} bytes, {} entries with /chosen's #address-cells = <{ac}> and \
                 #size-cells = <{sc}>; a boot module has exactly one (do the cells match the reg?)",
                len / ((ac + sc) * 4).max(1)
            ),
        }
    }
}

impl From<DtError> for ModulesError<'_> {
    fn from(e: DtError) -> Self {
        ModulesError::Dt(e)
    }
}

impl<'a> DeviceTree<'a> {
    /// Every enabled `multiboot,module` child of `/chosen`, with its role.
    #[allow(clippy::result_large_err)]
    pub fn chosen_modules(&self) -> Result<ChosenModules<'a>, ModulesError<'a>> {
        const NONE: Module<'static> =
            Module { name: "", region: super::Region { base: 0, size: 0 }, role: Role::Other };
        let mut out = ChosenModules { items: [NONE; MAX_MODULES], len: 0 };
        let Some(at) = self.locate("/chosen") else { return Ok(out) };
        let mut total = 0;
        let mut guessed = 0;
        for child in at.node().children() {
            if walk::compatible_with(child, &["multiboot,module"]).is_none() || !walk::enabled(child) {
                continue;
            }
            total += 1;
            let Some(c) = at.child(child) else { continue };
            let region = c.reg_untranslated(0)?.ok_or_else(|| c.err("reg", super::Problem::Missing))?;
            if c.reg_untranslated(1)?.is_some() {
                let len = c.prop("reg").map_or(0, <[u8]>::len);
                return Err(ModulesError::Entries { name: child.name, len, cells: c.parent_cells()? });
            }
            let role = if walk::compatible_with(child, &["multiboot,kernel"]).is_some() {
                Role::Kernel
            } else if walk::compatible_with(child, &["multiboot,ramdisk"]).is_some() {
                Role::Ramdisk
            } else if is_plain(child) {
                guessed += 1;
                match guessed {
                    1 => Role::Kernel,
                    2 => Role::Ramdisk,
                    _ => Role::Other,
                }
            } else {
                Role::Other
            };
            if let Some(slot) = out.items.get_mut(out.len) {
                *slot = Module { name: child.name, region, role };
                out.len += 1;
            }
        }
        if total > MAX_MODULES {
            return Err(ModulesError::TooMany(total));
        }
        Ok(out)
    }
}

impl<'a> DeviceTree<'a> {
    /// The memory node (`device_type = "memory"`) whose `reg` holds a bank
    /// starting at `base`, for error messages.
    pub fn memory_node_at(&self, base: u64) -> Option<super::NodePath> {
        let mut found = None;
        self.walk(&mut |at| {
            if at.ancestors().is_empty() {
                return walk::Flow::Descend;
            }
            let is_mem = at.node().property("device_type").and_then(|p| walk::first_string(p.value)) == Some("memory");
            let mut i = 0;
            while is_mem && let Ok(Some(r)) = at.reg(i) {
                if r.base == base {
                    found = Some(at.path());
                    return walk::Flow::Stop;
                }
                i += 1;
            }
            walk::Flow::Skip
        });
        found
    }
}

/// Whether `node`'s only compatible is `multiboot,module`.
fn is_plain(node: fdt::node::FdtNode<'_, '_>) -> bool {
    node.property("compatible").is_some_and(|p| p.value.split(|&b| b == 0).filter(|s| !s.is_empty()).count() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dt::Region;
    use alloc::vec::Vec;
    use vm_fdt::FdtWriter;

    /// A tree whose `/chosen` has #address-cells `ac`, #size-cells 2 and
    /// `modules`: (compatibles, reg cells).
    fn tree(ac: u32, modules: &[(&[&str], &[u32])]) -> Vec<u8> {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let chosen = w.begin_node("chosen").unwrap();
        w.property_u32("#address-cells", ac).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        for (i, (compat, reg)) in modules.iter().enumerate() {
            let n = w.begin_node(&alloc::format!("module@{i}")).unwrap();
            w.property_string_list("compatible", compat.iter().map(|s| s.to_string()).collect()).unwrap();
            w.property_array_u32("reg", reg).unwrap();
            w.end_node(n).unwrap();
        }
        w.end_node(chosen).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    const K: &[&str] = &["multiboot,kernel", "multiboot,module"];
    const R: &[&str] = &["multiboot,ramdisk", "multiboot,module"];
    const PLAIN: &[&str] = &["multiboot,module"];

    fn roles(blob: &[u8]) -> Vec<(Role, u64)> {
        let dt = DeviceTree::new(blob).unwrap();
        dt.chosen_modules().unwrap().as_slice().iter().map(|m| (m.role, m.region.base)).collect()
    }

    #[test]
    fn explicit_roles_and_regions() {
        let blob = tree(2, &[(K, &[0, 0x4a00_0000, 0, 0x1000]), (R, &[0, 0x4c00_0000, 0, 0x2000])]);
        let dt = DeviceTree::new(&blob).unwrap();
        let m = dt.chosen_modules().unwrap();
        assert_eq!(m.as_slice()[0].name, "module@0");
        assert_eq!(m.as_slice()[1].region, Region { base: 0x4c00_0000, size: 0x2000 });
        assert_eq!(roles(&blob), [(Role::Kernel, 0x4a00_0000), (Role::Ramdisk, 0x4c00_0000)]);
        let d = dt.dom0_modules().unwrap().unwrap();
        assert_eq!((d.kernel.base, d.ramdisk.map(|r| r.base)), (0x4a00_0000, Some(0x4c00_0000)));
    }

    /// Xen: of plain `multiboot,module` nodes, the first is the kernel, the
    /// second the ramdisk, later ones nothing.
    #[test]
    fn plain_modules_are_kernel_then_ramdisk() {
        let blob = tree(
            2,
            &[(PLAIN, &[0, 0x4a00_0000, 0, 1]), (PLAIN, &[0, 0x4b00_0000, 0, 1]), (PLAIN, &[0, 0x4c00_0000, 0, 1])],
        );
        assert_eq!(
            roles(&blob),
            [(Role::Kernel, 0x4a00_0000), (Role::Ramdisk, 0x4b00_0000), (Role::Other, 0x4c00_0000)]
        );
        let d = DeviceTree::new(&blob).unwrap().dom0_modules().unwrap().unwrap();
        assert_eq!((d.kernel.base, d.ramdisk.map(|r| r.base)), (0x4a00_0000, Some(0x4b00_0000)));
        // A ramdisk alone: no kernel, so no dom0 modules.
        let blob = tree(2, &[(R, &[0, 0x4c00_0000, 0, 1])]);
        assert_eq!(DeviceTree::new(&blob).unwrap().dom0_modules().unwrap(), None);
    }

    /// `#address-cells = <1>` with a reg written for two: two entries,
    /// refused by name instead of read as a module at 0.
    #[test]
    fn a_reg_that_does_not_match_the_cells_is_refused() {
        let blob = tree(1, &[(K, &[0, 0x4a00_0000, 0, 0x1000, 0, 0x1000])]);
        let dt = DeviceTree::new(&blob).unwrap();
        let e = dt.chosen_modules().unwrap_err();
        assert_eq!(e, ModulesError::Entries { name: "module@0", len: 24, cells: (1, 2) });
        let text = alloc::format!("{e}");
        assert!(
            text.contains("/chosen/module@0: reg has 24 bytes, 2 entries") && text.contains("#address-cells = <1>"),
            "{text}"
        );
        // Not a whole number of entries: the DT reader's own error.
        let blob = tree(1, &[(K, &[0, 0x4a00_0000, 0, 0x1000])]);
        assert!(matches!(DeviceTree::new(&blob).unwrap().chosen_modules(), Err(ModulesError::Dt(_))));
    }

    #[test]
    fn more_modules_than_kept_are_refused() {
        let regs: Vec<[u32; 4]> = (0..=MAX_MODULES as u32).map(|i| [0, 0x4000_0000 + i * 0x1000, 0, 0x1000]).collect();
        let mods: Vec<(&[&str], &[u32])> = regs.iter().map(|r| (R, &r[..])).collect();
        let blob = tree(2, &mods);
        let dt = DeviceTree::new(&blob).unwrap();
        assert_eq!(dt.chosen_modules().unwrap_err(), ModulesError::TooMany(MAX_MODULES + 1));
        let blob = tree(2, &mods[..MAX_MODULES]);
        assert_eq!(DeviceTree::new(&blob).unwrap().chosen_modules().unwrap().as_slice().len(), MAX_MODULES);
    }
}
