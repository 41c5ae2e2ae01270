//! The hypervisor's virtual address map at boot, and the decision between
//! the two boot paths.
//!
//! ```text
//!  IMAGE_VA                       image window (IMAGE_WINDOW): text RX, rodata R, data/bss RW
//!  IMAGE_VA + FIXMAP_OFFSET       fixmap: early UART page, then the DTB (FIXMAP_DTB_WINDOW)
//!  IMAGE_VA + RUNTIME_SPAN        temporary alias of the image (clash path only)
//!  load address (VA == PA)        identity page: the MMU switch code (.text.idmap, one page)
//! ```
//!
//! The identity page must be mapped at its physical address while the MMU is
//! switched on. When that address falls inside the runtime range
//! `[IMAGE_VA, IMAGE_VA + RUNTIME_SPAN)` the two mappings clash: one virtual
//! address would need two translations. Then the image is first mapped at a
//! temporary alias instead of its runtime address ([`Plan::TemporaryAlias`]):
//! enable the MMU, move to the alias, replace the identity entry with the
//! runtime mapping, move to the runtime address, remove the alias.

/// Page size (4 KiB granule).
pub const PAGE: u64 = 4096;

/// Where the image runs. Default: 10 TiB, far above any RAM on the supported
/// boards. The `clash-test` build puts it at 1 GiB, which is inside QEMU
/// virt's RAM, so a load address there clashes.
pub const IMAGE_VA: u64 = if cfg!(feature = "clash-test") { 0x0000_0000_4000_0000 } else { 0x0000_0a00_0000_0000 };
/// Largest image (text to end of BSS).
pub const IMAGE_WINDOW: u64 = 32 << 20;
/// Offset of the fixmap from [`IMAGE_VA`].
pub const FIXMAP_OFFSET: u64 = 1 << 30;
/// Virtual address of the early UART page.
pub const FIXMAP_UART_VA: u64 = IMAGE_VA + FIXMAP_OFFSET;
/// Virtual address of the 2 MiB-aligned window the DTB is mapped in.
pub const FIXMAP_DTB_VA: u64 = IMAGE_VA + FIXMAP_OFFSET + (2 << 20);
/// Size of the DTB window: a 2 MiB DTB at any offset in a 2 MiB block.
pub const FIXMAP_DTB_WINDOW: u64 = 4 << 20;
/// The whole runtime range the identity page must not fall into.
pub const RUNTIME_SPAN: u64 = 2 << 30;
/// Virtual address of the temporary alias (clash path only).
pub const ALIAS_VA: u64 = IMAGE_VA + RUNTIME_SPAN;
/// Largest virtual or physical address bit used (48-bit VA, TTBR0_EL2).
pub const VA_BITS: u32 = 48;

// Build-time checks of the map (as Xen's build_assertions()): the alias is
// clear of the runtime range, the fixmap inside it, the image window below
// the fixmap, and everything inside the 48-bit virtual range.
const _: () = assert!(!overlaps(ALIAS_VA, IMAGE_WINDOW, IMAGE_VA, RUNTIME_SPAN));
const _: () = assert!(FIXMAP_DTB_VA + FIXMAP_DTB_WINDOW <= IMAGE_VA + RUNTIME_SPAN);
const _: () = assert!(IMAGE_WINDOW <= FIXMAP_OFFSET);
const _: () = assert!((ALIAS_VA + IMAGE_WINDOW) >> VA_BITS == 0);

/// Which way the boot goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Plan {
    /// The identity page lies outside the runtime range: map both at once.
    IdentityOnly = 1,
    /// The identity page clashes with the runtime range: go through the alias.
    TemporaryAlias = 2,
}

/// True when `[a, a + a_len)` and `[b, b + b_len)` overlap (no overflow).
pub const fn overlaps(a: u64, a_len: u64, b: u64, b_len: u64) -> bool {
    a < b.wrapping_add(b_len) && b < a.wrapping_add(a_len)
}

/// Chooses the path for an identity page at `idmap_pa` and an image at `image_va`.
pub const fn plan(idmap_pa: u64, image_va: u64) -> Plan {
    if overlaps(idmap_pa, PAGE, image_va, RUNTIME_SPAN) {
        Plan::TemporaryAlias
    } else {
        Plan::IdentityOnly
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_addresses_outside_the_runtime_range_need_no_alias() {
        assert_eq!(plan(0x4020_0000, 0x0a00_0000_0000), Plan::IdentityOnly);
        assert_eq!(plan(0x8_8000_0000, 0x0a00_0000_0000), Plan::IdentityOnly);
        // Right below and right above the range.
        assert_eq!(plan(0x3fff_f000, 0x4000_0000), Plan::IdentityOnly);
        assert_eq!(plan(0x4000_0000 + RUNTIME_SPAN, 0x4000_0000), Plan::IdentityOnly);
    }

    #[test]
    fn load_addresses_inside_the_runtime_range_clash() {
        for pa in [0x4000_0000, 0x4020_0000, 0x4040_0000, 0x7fe0_0000, 0x4000_0000 + RUNTIME_SPAN - PAGE] {
            assert_eq!(plan(pa, 0x4000_0000), Plan::TemporaryAlias, "{pa:#x}");
        }
    }

}
