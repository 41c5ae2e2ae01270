//! Translation regimes the tables can be built for.
//!
//! A regime fixes the input address type, which descriptor bits mean what
//! (see [`super::desc`]), and the limits on the geometry. The three regimes
//! are zero-sized marker types used as the `R` parameter of
//! [`super::PageTable`], so a stage-2 table takes [`IntermediatePhysAddr`]s
//! and a stage-1 table takes [`VirtAddr`]s, and mixing them does not compile.

use super::geometry::{Geometry, GeometryError};
use crate::mm::addr::{Address, IntermediatePhysAddr, VirtAddr};

/// The regime as a value, for code that encodes or decodes descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegimeKind {
    /// AArch64 EL2 stage 1 with HCR_EL2.E2H = 0 (TTBR0_EL2, one privilege level).
    El2,
    /// ARMv7 (or AArch32) Non-secure PL2 stage 1: HYP mode, HTTBR/HTCR.
    Hyp,
    /// EL1&0 stage 2 (VTTBR), AArch64 or ARMv7: the same descriptor format.
    Stage2,
}

/// A translation regime: what a [`super::PageTable`] is built for.
pub trait Regime: 'static {
    /// The input address type.
    type Input: Address;
    /// The regime as a value.
    const KIND: RegimeKind;
    /// Name for messages.
    const NAME: &'static str;
    /// Most input address bits the regime has.
    const MAX_IA_BITS: u8;
    /// Most output address bits the regime has.
    const MAX_OA_BITS: u8;
    /// Most 4 KiB pages a root table may span (stage 2 concatenates).
    const MAX_ROOT_PAGES: usize;
    /// True if mappings that are both writable and executable are refused
    /// unless forced. The hypervisor's own regimes enforce W^X; stage 2
    /// does not, since guest RAM is normally read-write-execute there and
    /// the guest's own stage 1 decides.
    const ENFORCE_WX: bool;

    /// Checks that `geometry` suits this regime.
    fn check_geometry(geometry: Geometry) -> Result<(), GeometryError> {
        let fail = |what| Err(GeometryError::Regime { regime: Self::NAME, what });
        if geometry.ia_bits() > Self::MAX_IA_BITS {
            return fail("too many input address bits");
        }
        if geometry.oa_bits() > Self::MAX_OA_BITS {
            return fail("too many output address bits");
        }
        if geometry.root_pages() > Self::MAX_ROOT_PAGES {
            return fail("the root table would need concatenated pages");
        }
        Ok(())
    }
}

/// AArch64 EL2 stage 1 (non-VHE): the hypervisor's own tables on AArch64.
#[derive(Debug)]
pub enum El2 {}

/// ARMv7 HYP stage 1 (LPAE long descriptors): the hypervisor's own tables
/// on ARMv7.
#[derive(Debug)]
pub enum Hyp {}

/// Stage 2 for guests, either architecture.
#[derive(Debug)]
pub enum Stage2 {}

impl Regime for El2 {
    type Input = VirtAddr;
    const KIND: RegimeKind = RegimeKind::El2;
    const NAME: &'static str = "AArch64 EL2 stage-1";
    const MAX_IA_BITS: u8 = 48;
    const MAX_OA_BITS: u8 = 48;
    const MAX_ROOT_PAGES: usize = 1;
    const ENFORCE_WX: bool = true;
}

impl Regime for Hyp {
    type Input = VirtAddr;
    const KIND: RegimeKind = RegimeKind::Hyp;
    const NAME: &'static str = "ARMv7 HYP stage-1";
    const MAX_IA_BITS: u8 = 32;
    const MAX_OA_BITS: u8 = 40;
    const MAX_ROOT_PAGES: usize = 1;
    const ENFORCE_WX: bool = true;
}

impl Regime for Stage2 {
    type Input = IntermediatePhysAddr;
    const KIND: RegimeKind = RegimeKind::Stage2;
    const NAME: &'static str = "stage-2";
    const MAX_IA_BITS: u8 = 48;
    const MAX_OA_BITS: u8 = 48;
    const MAX_ROOT_PAGES: usize = super::geometry::MAX_CONCATENATED;
    const ENFORCE_WX: bool = false;
}
