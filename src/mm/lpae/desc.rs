//! Long-descriptor encoding, 4 KiB granule (VMSAv8-64 and ARMv7 LPAE).
//!
//! A descriptor is 64 bits. Bits `[1:0]` give its type: `x0` invalid, `11`
//! table (levels 0-2) or page (level 3), `01` block (levels 1 and 2 only; a
//! level-0 block or a level-3 `01` is reserved). Output and next-table
//! addresses sit in bits `[47:12]`. The attribute bits this module writes:
//!
//! | bits  | stage 1 (EL2 and HYP)              | stage 2                    |
//! |-------|------------------------------------|----------------------------|
//! | `4:2` | AttrIndx, index into [`super::MAIR`] | MemAttr`[2:0]`           |
//! | `5`   | NS: 0 (RES0 in Non-secure)         | MemAttr`[3]`               |
//! | `7:6` | AP`[2:1]`: AP`[1]`=1, AP`[2]`=RO   | S2AP: `[6]` read, `[7]` write |
//! | `9:8` | SH = 0b11, Inner Shareable         | SH = 0b11                  |
//! | `10`  | AF = 1 (no access-flag faults)     | AF = 1                     |
//! | `11`  | nG = 0 (global)                    | 0 (RES0)                   |
//! | `53`  | PXN = 0 (RES0)                     | 0 (RES0 without FEAT_XNX)  |
//! | `54`  | XN                                 | XN                         |
//!
//! Differences between the two single-privilege stage-1 regimes and the
//! EL1&0 regime their bits come from, which this encoding respects:
//!
//! - AArch64 EL2 with HCR_EL2.E2H = 0: AP`[1]` is RES1 (in EL1&0 it grants
//!   EL0 access; this regime has no EL0), PXN (bit 53) is
//!   RES0 and bit 54 is the only execute-never bit; table descriptors'
//!   APTable`[0]` and PXNTable are RES0. TLB entries are not ASID-tagged, so
//!   nG is written 0.
//! - ARMv7 HYP (HTTBR/HTCR, Non-secure PL2): the same, stated as "AP`[1]` is
//!   RES1 (SBO), PXN and nG are RES0, APTable`[0]` is SBZ, PXNTable is RES0 in
//!   the Non-secure PL2 stage-1 tables" (Arm ARM G5.5.3). Output addresses
//!   are 40 bits, so bits `[47:40]` must be zero: the builder refuses output
//!   addresses beyond the geometry's `oa_bits`, which is at most 40 for HYP.
//!
//! No hierarchical attributes (APTable, XNTable, PXNTable, NSTable) are set:
//! permissions live in the leaves only. Bits 55-58 (software) are not used.

use super::attr::{Attributes, mair_index, stage2_memattr};
use super::geometry::{LAST_LEVEL, level_size};
use super::regime::RegimeKind;
use crate::mm::addr::PhysAddr;
use core::fmt;

/// Valid bit.
pub(crate) const VALID: u64 = 1 << 0;
/// Table (levels 0-2) or page (level 3) when set; block when clear.
pub(crate) const TABLE_OR_PAGE: u64 = 1 << 1;
/// Output / next-table address, bits `[47:12]`.
pub(crate) const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;
/// Every bit that is neither the address nor the type: the attributes.
pub(crate) const ATTR_MASK: u64 = !(ADDR_MASK | VALID | TABLE_OR_PAGE);

const ATTR_INDX_SHIFT: u32 = 2;
const MEMATTR_SHIFT: u32 = 2;
/// Stage 1 AP`[1]`: RES1 in single-privilege regimes.
const AP1_RES1: u64 = 1 << 6;
/// Stage 1 AP`[2]`: read-only.
const AP2_READ_ONLY: u64 = 1 << 7;
/// Stage 2 S2AP`[0]`: reads allowed.
const S2AP_READ: u64 = 1 << 6;
/// Stage 2 S2AP`[1]`: writes allowed.
const S2AP_WRITE: u64 = 1 << 7;
/// Inner Shareable.
const SH_INNER: u64 = 0b11 << 8;
/// Access flag.
const AF: u64 = 1 << 10;
/// Execute-never (stage 1 single-privilege XN, stage 2 XN`[1]`).
const XN: u64 = 1 << 54;

/// The attribute bits of a leaf (block or page) with `attrs` in `regime`.
pub(crate) const fn leaf_attr_bits(regime: RegimeKind, attrs: Attributes) -> u64 {
    let xn = if attrs.access.is_executable() { 0 } else { XN };
    match regime {
        RegimeKind::El2 | RegimeKind::Hyp => {
            let ro = if attrs.access.is_writable() { 0 } else { AP2_READ_ONLY };
            (mair_index(attrs.memory) << ATTR_INDX_SHIFT) | AP1_RES1 | ro | SH_INNER | AF | xn
        }
        RegimeKind::Stage2 => {
            let w = if attrs.access.is_writable() { S2AP_WRITE } else { 0 };
            (stage2_memattr(attrs.memory) << MEMATTR_SHIFT) | S2AP_READ | w | SH_INNER | AF | xn
        }
    }
}

/// The attribute bits that only change permissions: a change confined to
/// them needs no break-before-make (Arm ARM D8.16.1: only changes of
/// memory type, shareability, cacheability, output address or block size
/// do), though it still needs a TLB invalidation to take effect.
pub(crate) const fn permission_bits(regime: RegimeKind) -> u64 {
    match regime {
        RegimeKind::El2 | RegimeKind::Hyp => AP2_READ_ONLY | XN,
        RegimeKind::Stage2 => S2AP_READ | S2AP_WRITE | XN,
    }
}

/// What a descriptor is, read at a given level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescriptorKind {
    /// Not valid: a translation fault.
    Invalid,
    /// A table descriptor pointing at the next level's table.
    Table(PhysAddr),
    /// A block (levels 1-2) or page (level 3) descriptor.
    Leaf {
        /// The output address of the block or page.
        output: PhysAddr,
        /// Its attribute bits: every bit but the address and the type.
        attrs: u64,
    },
    /// A reserved encoding (a level-0 block, a level-3 `01`).
    Reserved,
}

/// One raw long-format descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Descriptor(u64);

impl Descriptor {
    /// The invalid descriptor, all zeros (what every entry is written to
    /// when it is broken).
    pub const INVALID: Descriptor = Descriptor(0);

    /// A descriptor from its raw bits.
    pub const fn from_raw(raw: u64) -> Self {
        Descriptor(raw)
    }

    /// The raw bits.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// True if the valid bit is set.
    pub const fn is_valid(self) -> bool {
        self.0 & VALID != 0
    }

    /// A table descriptor (levels 0-2) pointing at the 4 KiB-aligned table
    /// `next` (which must be below 2^48; the builder checks it against the
    /// geometry), with no hierarchical attributes.
    pub const fn table(next: PhysAddr) -> Self {
        Descriptor((next.as_u64() & ADDR_MASK) | TABLE_OR_PAGE | VALID)
    }

    /// A leaf at `level` from an output address and attribute bits, without
    /// checks: the builder has already checked alignment and level.
    pub(crate) const fn leaf_raw(level: u8, output: u64, attr_bits: u64) -> Self {
        let ty = if level == LAST_LEVEL { TABLE_OR_PAGE | VALID } else { VALID };
        Descriptor((output & ADDR_MASK) | attr_bits | ty)
    }

    /// A block (level 1: 1 GiB, level 2: 2 MiB) or page (level 3: 4 KiB)
    /// descriptor mapping `output` with `attrs` in `regime`. `None` at level
    /// 0 (no blocks there with the 4 KiB granule), if `output` is not
    /// aligned to the leaf's size, or if it is not below 2^48.
    pub const fn leaf(regime: RegimeKind, level: u8, output: PhysAddr, attrs: Attributes) -> Option<Self> {
        if level == 0 || level > LAST_LEVEL {
            return None;
        }
        let oa = output.as_u64();
        if oa & (level_size(level) - 1) != 0 || oa & !ADDR_MASK != 0 {
            return None;
        }
        Some(Self::leaf_raw(level, oa, leaf_attr_bits(regime, attrs)))
    }

    /// What the descriptor is when read at `level`.
    pub const fn kind(self, level: u8) -> DescriptorKind {
        if self.0 & VALID == 0 {
            return DescriptorKind::Invalid;
        }
        let table_or_page = self.0 & TABLE_OR_PAGE != 0;
        if level < LAST_LEVEL && table_or_page {
            return DescriptorKind::Table(PhysAddr::new(self.0 & ADDR_MASK));
        }
        if level == 0 || (level == LAST_LEVEL && !table_or_page) {
            return DescriptorKind::Reserved;
        }
        DescriptorKind::Leaf {
            output: PhysAddr::new(self.0 & ADDR_MASK & !(level_size(level) - 1)),
            attrs: self.0 & ATTR_MASK,
        }
    }
}

impl fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Descriptor({:#018x})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::lpae::attr::{Access, MemoryType};

    /// Golden values worked out by hand from the Arm ARM field layout, so
    /// that an encoding change shows up as a diff of a number.
    #[test]
    fn golden_stage1_descriptors() {
        // EL2 page, code: AttrIndx 3 (0b01100), AP[1] (0x40), read-only
        // AP[2] (0x80), SH 0x300, AF 0x400, XN clear.
        let d = Descriptor::leaf(RegimeKind::El2, 3, PhysAddr::new(0x4020_1000), Attributes::CODE).unwrap();
        assert_eq!(d.raw(), 0x0000_0000_4020_1000 | 0b11 | 0xc | 0x40 | 0x80 | 0x300 | 0x400);
        assert_eq!(d.raw(), 0x0000_0000_4020_17cf);
        // EL2 2 MiB block, data: type 01, RW (AP[2] clear), XN set.
        let d = Descriptor::leaf(RegimeKind::El2, 2, PhysAddr::new(0x4020_0000), Attributes::DATA).unwrap();
        assert_eq!(d.raw(), 0x0040_0000_4020_074d);
        // EL2 1 GiB block, rodata: AP[2] set (0x80).
        let d = Descriptor::leaf(RegimeKind::El2, 1, PhysAddr::new(0x8000_0000), Attributes::RODATA).unwrap();
        assert_eq!(d.raw(), 0x0040_0000_8000_07cd);
        // HYP page, device at a 40-bit PA: AttrIndx 1 (0b00100), XN.
        let d = Descriptor::leaf(RegimeKind::Hyp, 3, PhysAddr::new(0xff_0900_0000), Attributes::DEVICE).unwrap();
        assert_eq!(d.raw(), 0x0040_00ff_0900_0747);
        // Strongly-ordered / nGnRnE: AttrIndx 0.
        let so = Attributes::new(MemoryType::DeviceStrict, Access::ReadWrite);
        let d = Descriptor::leaf(RegimeKind::Hyp, 3, PhysAddr::new(0x1000), so).unwrap();
        assert_eq!(d.raw(), 0x0040_0000_0000_1743);
        // Table descriptor: address | 0b11, nothing else.
        assert_eq!(Descriptor::table(PhysAddr::new(0x4100_0000)).raw(), 0x4100_0003);
    }

    #[test]
    fn golden_stage2_descriptors() {
        // Guest RAM, RWX: MemAttr 0b1111 (0x3c), S2AP 11 (0xc0), SH, AF, XN clear.
        let ram = Attributes::new(MemoryType::Normal, Access::ReadWriteExecute);
        let d = Descriptor::leaf(RegimeKind::Stage2, 2, PhysAddr::new(0x8000_0000), ram).unwrap();
        assert_eq!(d.raw(), 0x0000_0000_8000_07fd);
        // Passed-through device, RW: MemAttr 0b0001 (0x04), XN.
        let d = Descriptor::leaf(RegimeKind::Stage2, 3, PhysAddr::new(0x0900_0000), Attributes::DEVICE).unwrap();
        assert_eq!(d.raw(), 0x0040_0000_0900_07c7);
        // Read-only: S2AP 01.
        let d = Descriptor::leaf(RegimeKind::Stage2, 3, PhysAddr::new(0x1000), Attributes::RODATA).unwrap();
        assert_eq!(d.raw(), 0x0040_0000_0000_177f);
    }

    #[test]
    fn leaf_refuses_bad_levels_and_alignment() {
        let pa = PhysAddr::new(0x4000_0000);
        assert_eq!(Descriptor::leaf(RegimeKind::El2, 0, pa, Attributes::DATA), None);
        assert_eq!(Descriptor::leaf(RegimeKind::El2, 4, pa, Attributes::DATA), None);
        assert_eq!(Descriptor::leaf(RegimeKind::El2, 1, pa + 0x20_0000, Attributes::DATA), None);
        assert_eq!(Descriptor::leaf(RegimeKind::El2, 3, PhysAddr::new(1 << 48), Attributes::DATA), None);
        assert!(Descriptor::leaf(RegimeKind::El2, 2, pa + 0x20_0000, Attributes::DATA).is_some());
    }

    #[test]
    fn kinds_decode() {
        let page = Descriptor::leaf(RegimeKind::El2, 3, PhysAddr::new(0x5000), Attributes::DATA).unwrap();
        assert!(matches!(page.kind(3), DescriptorKind::Leaf { output, .. } if output == PhysAddr::new(0x5000)));
        // The same bits at level 2 are a table descriptor.
        assert!(matches!(page.kind(2), DescriptorKind::Table(_)));
        let block = Descriptor::leaf(RegimeKind::El2, 2, PhysAddr::new(0x20_0000), Attributes::DATA).unwrap();
        assert_eq!(block.kind(3), DescriptorKind::Reserved);
        assert_eq!(block.kind(0), DescriptorKind::Reserved);
        assert_eq!(Descriptor::INVALID.kind(1), DescriptorKind::Invalid);
        // Permission-only bits are a subset of the attribute bits.
        for r in [RegimeKind::El2, RegimeKind::Hyp, RegimeKind::Stage2] {
            assert_eq!(permission_bits(r) & !ATTR_MASK, 0);
        }
    }
}
