//! LPAE (long-descriptor) translation tables with the 4 KiB granule, shared
//! by AArch64 EL2, ARMv7 HYP and stage 2 of either.
//!
//! This module owns the translation-table format and the algorithms on it:
//! descriptor encoding ([`desc`]), typed attributes ([`attr`]), table shapes
//! ([`geometry`]), the regimes ([`regime`]), a builder that maps, unmaps and
//! re-protects ranges with break-before-make ([`table`]) and an independent
//! software walker that checks the builder's output ([`walk`]).
//!
//! It contains no architecture code: table memory comes from a
//! [`TableAllocator`] and every cache/TLB maintenance step is a call on a
//! [`Maintenance`] implementation, both supplied by the arch code (or by the
//! host tests, which count live tables and record the maintenance sequence).
//! The arch code programs the registers the tables assume: [`MAIR`] into
//! MAIR_EL2 / HMAIR0-1, [`Geometry::aarch64_t0sz`] or
//! [`Geometry::armv7_htcr_t0sz`] into TCR_EL2 / HTCR, and
//! [`PageTable::root`] into TTBR0_EL2 / HTTBR.

pub mod attr;
pub mod desc;
pub mod geometry;
pub mod regime;
pub mod table;
pub mod walk;

#[cfg(test)]
mod tests;

pub use attr::{Access, Attributes, MAIR, MemoryType};
pub use desc::{Descriptor, DescriptorKind};
pub use geometry::{Geometry, GeometryError};
pub use regime::{El2, Hyp, Regime, RegimeKind, Stage2};
pub use table::{
    CreateError, EntryWrite, Invalidation, Maintenance, MapError, MapOptions, NoMaintenance, PageTable, TableAllocator,
    TableMemory, TablePage,
};
pub use walk::{Shareability, Translation, WalkFault, for_each_leaf, translate};
