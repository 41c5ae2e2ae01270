//! Table geometry: where a walk starts, how many input and output address
//! bits there are, and how an input address splits into table indices.
//!
//! With the 4 KiB granule every table is 4 KiB with 512 eight-byte entries,
//! and level `n` resolves address bits `[12 + 9 * (3 - n) + 8 : 12 + 9 * (3 - n)]`.
//! The root table (at the start level) may be smaller than a page (ARMv7 HYP
//! with a 32-bit VA: 4 entries) or, for stage 2 only, several concatenated
//! pages (a 40-bit IPA starting at level 1: 1024 entries in 2 pages).

use core::fmt;

/// Entries in one 4 KiB table.
pub const ENTRIES: usize = 512;
/// The deepest level: its entries map 4 KiB pages.
pub const LAST_LEVEL: u8 = 3;
/// Most 4 KiB pages that stage 2 may concatenate at the start level.
pub const MAX_CONCATENATED: usize = 16;

/// log2 of the region one entry at `level` (0..=3) covers.
pub const fn level_shift(level: u8) -> u32 {
    12 + 9 * (LAST_LEVEL - level) as u32
}

/// Bytes one entry at `level` (0..=3) covers: 512 GiB, 1 GiB, 2 MiB, 4 KiB.
pub const fn level_size(level: u8) -> u64 {
    1 << level_shift(level)
}

/// Why a geometry was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeometryError {
    /// The start level is not 0, 1 or 2.
    StartLevel(u8),
    /// The input size does not fit the start level: it must resolve at
    /// least 1 and at most 9 bits there (13 with stage-2 concatenation), and
    /// be at most 48 bits.
    InputBits {
        /// Start level.
        start_level: u8,
        /// Input address bits asked for.
        ia_bits: u8,
    },
    /// The output size is outside 32..=48 bits.
    OutputBits(u8),
    /// The geometry is valid but not for this translation regime (too many
    /// input or output bits, or a concatenated root at stage 1).
    Regime {
        /// The regime's name.
        regime: &'static str,
        /// What it cannot do.
        what: &'static str,
    },
}

impl fmt::Display for GeometryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GeometryError::StartLevel(l) => write!(f, "start level {l} is not 0, 1 or 2"),
            GeometryError::InputBits { start_level, ia_bits } => {
                write!(f, "a {ia_bits}-bit input address cannot start at level {start_level}")
            }
            GeometryError::OutputBits(b) => write!(f, "{b}-bit output addresses are not 32..=48 bits"),
            GeometryError::Regime { regime, what } => write!(f, "{regime} tables: {what}"),
        }
    }
}

/// The shape of one set of translation tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    start_level: u8,
    ia_bits: u8,
    oa_bits: u8,
}

impl Geometry {
    /// AArch64 EL2, 48-bit VA (TCR_EL2.T0SZ = 16): levels 0-3, 48-bit PA.
    pub const AARCH64_EL2_48: Geometry = Geometry { start_level: 0, ia_bits: 48, oa_bits: 48 };
    /// AArch64 EL2, 39-bit VA (TCR_EL2.T0SZ = 25): levels 1-3, 48-bit PA.
    pub const AARCH64_EL2_39: Geometry = Geometry { start_level: 1, ia_bits: 39, oa_bits: 48 };
    /// ARMv7 LPAE HYP (HTCR.T0SZ = 0): 32-bit VA, a 4-entry level-1 root,
    /// then levels 2 and 3; 40-bit PA.
    pub const ARMV7_HYP: Geometry = Geometry { start_level: 1, ia_bits: 32, oa_bits: 40 };

    /// A geometry starting at `start_level` (0..=2) with `ia_bits` of input
    /// and `oa_bits` (32..=48) of output address.
    pub const fn new(start_level: u8, ia_bits: u8, oa_bits: u8) -> Result<Self, GeometryError> {
        if start_level > 2 {
            return Err(GeometryError::StartLevel(start_level));
        }
        let shift = level_shift(start_level);
        // At least two root entries, at most 16 concatenated pages.
        if (ia_bits as u32) <= shift || ia_bits as u32 > shift + 9 + 4 || ia_bits > 48 {
            return Err(GeometryError::InputBits { start_level, ia_bits });
        }
        if oa_bits < 32 || oa_bits > 48 {
            return Err(GeometryError::OutputBits(oa_bits));
        }
        Ok(Geometry { start_level, ia_bits, oa_bits })
    }

    /// The same geometry with `oa_bits` of output address, e.g. to match the
    /// CPU's PARange (ID_AA64MMFR0_EL1) rather than the 48-bit maximum.
    pub const fn with_oa_bits(self, oa_bits: u8) -> Result<Self, GeometryError> {
        Self::new(self.start_level, self.ia_bits, oa_bits)
    }

    /// The level the walk starts at.
    pub const fn start_level(self) -> u8 {
        self.start_level
    }

    /// Input address bits.
    pub const fn ia_bits(self) -> u8 {
        self.ia_bits
    }

    /// Output address bits.
    pub const fn oa_bits(self) -> u8 {
        self.oa_bits
    }

    /// One past the largest input address.
    pub const fn ia_limit(self) -> u64 {
        1 << self.ia_bits
    }

    /// One past the largest output address.
    pub const fn oa_limit(self) -> u64 {
        1 << self.oa_bits
    }

    /// Entries in the root table (4 for ARMv7 HYP, 512 for AArch64 EL2,
    /// more than 512 for a concatenated stage-2 root).
    pub const fn root_entries(self) -> usize {
        1 << (self.ia_bits as u32 - level_shift(self.start_level))
    }

    /// 4 KiB pages the root table occupies (more than 1 only for a
    /// concatenated stage-2 root).
    pub const fn root_pages(self) -> usize {
        self.root_entries().div_ceil(ENTRIES)
    }

    /// Entries in a table at `level`.
    pub const fn entries_at(self, level: u8) -> usize {
        if level == self.start_level { self.root_entries() } else { ENTRIES }
    }

    /// The index of `ia` in the table at `level` that translates it.
    pub const fn index(self, level: u8, ia: u64) -> usize {
        ((ia >> level_shift(level)) as usize) & (self.entries_at(level) - 1)
    }

    /// TCR_EL2.T0SZ / VTCR_EL2.T0SZ for this geometry (AArch64).
    pub const fn aarch64_t0sz(self) -> u8 {
        64 - self.ia_bits
    }

    /// HTCR.T0SZ for this geometry (ARMv7 stage 1 HYP: 32-bit VA at most).
    /// The 4-bit field holds `32 - ia_bits`.
    pub const fn armv7_htcr_t0sz(self) -> u8 {
        32u8.saturating_sub(self.ia_bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_architectural_shapes() {
        let g = Geometry::AARCH64_EL2_48;
        assert_eq!((g.start_level(), g.root_entries(), g.root_pages(), g.aarch64_t0sz()), (0, 512, 1, 16));
        let g = Geometry::AARCH64_EL2_39;
        assert_eq!((g.start_level(), g.root_entries(), g.root_pages(), g.aarch64_t0sz()), (1, 512, 1, 25));
        let g = Geometry::ARMV7_HYP;
        assert_eq!((g.start_level(), g.root_entries(), g.root_pages()), (1, 4, 1));
        assert_eq!((g.ia_limit(), g.oa_limit(), g.armv7_htcr_t0sz()), (1 << 32, 1 << 40, 0));
        // The presets are exactly what `new` builds.
        for g in [Geometry::AARCH64_EL2_48, Geometry::AARCH64_EL2_39, Geometry::ARMV7_HYP] {
            assert_eq!(Geometry::new(g.start_level(), g.ia_bits(), g.oa_bits()), Ok(g));
        }
    }

    #[test]
    fn stage2_concatenated_roots() {
        // 40-bit IPA from level 1: 1024 entries in 2 pages (VTCR SL0 = 1).
        let g = Geometry::new(1, 40, 40).unwrap();
        assert_eq!((g.root_entries(), g.root_pages()), (1024, 2));
        assert_eq!(g.index(1, 0x80_0000_0000), 512);
        // 43-bit IPA from level 1: 16 pages, the most concatenation allows.
        assert_eq!(Geometry::new(1, 43, 48).unwrap().root_pages(), 16);
        assert_eq!(Geometry::new(1, 44, 48), Err(GeometryError::InputBits { start_level: 1, ia_bits: 44 }));
    }

    #[test]
    fn indices_split_the_address() {
        let g = Geometry::AARCH64_EL2_48;
        let va = (3 << 39) | (5 << 30) | (7 << 21) | (9 << 12) | 0xabc;
        assert_eq!([0, 1, 2, 3].map(|l| g.index(l, va)), [3, 5, 7, 9]);
        let g = Geometry::ARMV7_HYP;
        assert_eq!([1, 2, 3].map(|l| g.index(l, 0xffff_f000)), [3, 511, 511]);
        assert_eq!([level_size(0), level_size(1), level_size(2), level_size(3)], [1 << 39, 1 << 30, 1 << 21, 1 << 12]);
    }

    #[test]
    fn bad_geometries_are_refused() {
        assert_eq!(Geometry::new(3, 21, 48), Err(GeometryError::StartLevel(3)));
        assert_eq!(Geometry::new(0, 39, 48), Err(GeometryError::InputBits { start_level: 0, ia_bits: 39 }));
        assert_eq!(Geometry::new(0, 49, 48), Err(GeometryError::InputBits { start_level: 0, ia_bits: 49 }));
        assert_eq!(Geometry::new(1, 32, 52), Err(GeometryError::OutputBits(52)));
        assert_eq!(Geometry::ARMV7_HYP.with_oa_bits(31), Err(GeometryError::OutputBits(31)));
    }
}
