//! A software table walker, written independently of the encoder.
//!
//! It decodes raw descriptors with its own bit positions (nothing from
//! [`super::desc`]), the way the MMU would, and is strict: besides the
//! architectural faults it reports any bit the encoder is never supposed to
//! set, any RES1 bit left clear and any memory-attribute encoding outside the
//! [`super::MAIR`] layout. Tests check the builder through it, so an encoding
//! mistake shows up as a walk fault or a wrong translation instead of being
//! decoded back by the same mistaken helper (Hafnium's "checked encoding"
//! idea). The arch code can also use it on live tables, e.g. to explain a
//! fault address in a crash dump.

use super::attr::{Access, Attributes, MAIR, MemoryType};
use super::geometry::Geometry;
use super::regime::{Regime, RegimeKind};
use super::table::TableMemory;
use crate::mm::addr::{Address, AnyAddr, PageSize, PhysAddr};
use core::fmt;

// Bit positions, from the Arm ARM, deliberately not shared with the encoder.
const W_VALID: u64 = 1;
const W_TABLE: u64 = 1 << 1;
const W_ADDR_47_12: u64 = ((1 << 48) - 1) & !((1 << 12) - 1);
const W_ADDR_51_48: u64 = 0xf << 48;
const W_LOW_IGNORED_11_2: u64 = 0xffc;
const W_TABLE_ATTRS_63_59: u64 = 0x1f << 59;
const W_AF: u64 = 1 << 10;
const W_NG: u64 = 1 << 11;
const W_NS: u64 = 1 << 5;
const W_AP1: u64 = 1 << 6;
const W_AP2: u64 = 1 << 7;
const W_CONTIGUOUS: u64 = 1 << 52;
const W_PXN: u64 = 1 << 53;
const W_XN: u64 = 1 << 54;
const W_UPPER_63_55: u64 = 0x1ff << 55;

/// Shareability of a mapping (SH, bits `[9:8]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shareability {
    /// Non-shareable (0b00).
    Non,
    /// Outer Shareable (0b10).
    Outer,
    /// Inner Shareable (0b11).
    Inner,
}

/// One translation found by the walker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// First input address of the leaf (block or page) that translates.
    pub input_base: u64,
    /// The output address: for [`super::translate`] that of the address
    /// asked about; for [`for_each_leaf`] that of `input_base`.
    pub output: PhysAddr,
    /// The leaf's level (1, 2 or 3).
    pub level: u8,
    /// The leaf's size.
    pub size: PageSize,
    /// Memory type and permissions.
    pub attrs: Attributes,
    /// Shareability.
    pub shareability: Shareability,
    /// The raw leaf descriptor.
    pub descriptor: u64,
}

/// Why a walk failed: the MMU's fault, or a descriptor this library would
/// never have written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkFault {
    /// The address is beyond the geometry's input size.
    InputOutOfRange(AnyAddr),
    /// An invalid descriptor at this level: nothing mapped.
    Translation {
        /// Level of the invalid descriptor.
        level: u8,
    },
    /// A reserved encoding (level-0 block, level-3 `01`).
    Reserved {
        /// Level.
        level: u8,
        /// The descriptor.
        descriptor: u64,
    },
    /// A table or output address beyond the output size.
    AddressSize {
        /// Level.
        level: u8,
        /// The descriptor.
        descriptor: u64,
    },
    /// The access flag is clear.
    AccessFlag {
        /// Level.
        level: u8,
    },
    /// RES0 or unused bits set, or RES1 bits clear (`bits` shows which).
    UnexpectedBits {
        /// Level.
        level: u8,
        /// The descriptor.
        descriptor: u64,
        /// The offending bits.
        bits: u64,
    },
    /// A memory-type encoding outside the layout this library uses.
    UnknownMemoryType {
        /// Level.
        level: u8,
        /// The descriptor.
        descriptor: u64,
    },
    /// Stage-2 permissions this library never writes (no access, write-only),
    /// or the reserved shareability 0b01.
    UnsupportedAttributes {
        /// Level.
        level: u8,
        /// The descriptor.
        descriptor: u64,
    },
}

impl fmt::Display for WalkFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WalkFault::InputOutOfRange(a) => write!(f, "{a} is beyond the input range"),
            WalkFault::Translation { level } => write!(f, "translation fault at level {level}"),
            WalkFault::Reserved { level, descriptor } => {
                write!(f, "reserved descriptor {descriptor:#018x} at level {level}")
            }
            WalkFault::AddressSize { level, descriptor } => {
                write!(f, "address size fault: descriptor {descriptor:#018x} at level {level}")
            }
            WalkFault::AccessFlag { level } => write!(f, "access flag fault at level {level}"),
            WalkFault::UnexpectedBits { level, descriptor, bits } => {
                write!(f, "descriptor {descriptor:#018x} at level {level} has unexpected bits {bits:#018x}")
            }
            WalkFault::UnknownMemoryType { level, descriptor } => {
                write!(f, "descriptor {descriptor:#018x} at level {level} has an unknown memory type")
            }
            WalkFault::UnsupportedAttributes { level, descriptor } => {
                write!(f, "descriptor {descriptor:#018x} at level {level} has unsupported attributes")
            }
        }
    }
}

/// Bytes covered by an entry at `level`, recomputed here.
const fn w_shift(level: u8) -> u32 {
    match level {
        0 => 39,
        1 => 30,
        2 => 21,
        _ => 12,
    }
}

/// Entries in the table at `level`.
fn w_entries(geometry: Geometry, level: u8) -> usize {
    if level == geometry.start_level() { 1 << (geometry.ia_bits() as u32 - w_shift(level)) } else { 512 }
}

/// Reads entry `index` of the table at `table` (a concatenated root spans
/// several pages).
fn w_read(mem: &impl TableMemory, table: u64, index: usize) -> u64 {
    let page = PhysAddr::new(table + (index / 512) as u64 * 4096);
    let ptr = mem.table_ptr(page).cast::<u64>();
    // SAFETY: index % 512 is inside the page, which the TableMemory contract
    // makes valid for reads; volatile since the MMU shares the memory.
    unsafe { ptr.add(index % 512).as_ptr().read_volatile() }
}

/// What `ia` translates to in the tables at `root`.
pub fn translate<R: Regime>(
    mem: &impl TableMemory,
    root: PhysAddr,
    geometry: Geometry,
    ia: R::Input,
) -> Result<Translation, WalkFault> {
    let addr = ia.to_u64();
    if addr >> geometry.ia_bits() != 0 {
        return Err(WalkFault::InputOutOfRange(ia.any()));
    }
    let mut table = root.as_u64();
    let mut level = geometry.start_level();
    loop {
        let index = ((addr >> w_shift(level)) as usize) & (w_entries(geometry, level) - 1);
        let raw = w_read(mem, table, index);
        match w_step(R::KIND, geometry, level, raw)? {
            Step::Next(next) => {
                table = next;
                level += 1;
            }
            Step::Leaf(mut t) => {
                let mask = (1u64 << w_shift(level)) - 1;
                t.input_base = addr & !mask;
                t.output = PhysAddr::new(t.output.as_u64() | (addr & mask));
                return Ok(t);
            }
        }
    }
}

/// Calls `f` for every leaf of the tables at `root`, in input-address order;
/// stops at the first descriptor that would fault for a reason other than
/// being invalid.
pub fn for_each_leaf<R: Regime>(
    mem: &impl TableMemory,
    root: PhysAddr,
    geometry: Geometry,
    mut f: impl FnMut(&Translation),
) -> Result<(), WalkFault> {
    w_visit(mem, R::KIND, geometry, root.as_u64(), geometry.start_level(), 0, &mut f)
}

fn w_visit(
    mem: &impl TableMemory,
    regime: RegimeKind,
    geometry: Geometry,
    table: u64,
    level: u8,
    base: u64,
    f: &mut impl FnMut(&Translation),
) -> Result<(), WalkFault> {
    for index in 0..w_entries(geometry, level) {
        let input = base + ((index as u64) << w_shift(level));
        let raw = w_read(mem, table, index);
        match w_step(regime, geometry, level, raw) {
            Err(WalkFault::Translation { .. }) => {}
            Err(e) => return Err(e),
            Ok(Step::Next(next)) => w_visit(mem, regime, geometry, next, level + 1, input, f)?,
            Ok(Step::Leaf(mut t)) => {
                t.input_base = input;
                f(&t);
            }
        }
    }
    Ok(())
}

enum Step {
    /// A table descriptor: the next table's address.
    Next(u64),
    /// A leaf; `input_base` is filled in by the caller, `output` is the
    /// leaf's base.
    Leaf(Translation),
}

/// Decodes one descriptor read at `level`.
fn w_step(regime: RegimeKind, geometry: Geometry, level: u8, raw: u64) -> Result<Step, WalkFault> {
    if raw & W_VALID == 0 {
        return Err(WalkFault::Translation { level });
    }
    let unexpected = |bits: u64| WalkFault::UnexpectedBits { level, descriptor: raw, bits };
    let oa_bits = geometry.oa_bits() as u32;
    if level < 3 && raw & W_TABLE != 0 {
        // Table: only the address and the type; no hierarchical attributes,
        // nothing in the ignored or RES0 fields.
        let stray = raw & (W_TABLE_ATTRS_63_59 | W_ADDR_51_48 | W_LOW_IGNORED_11_2 | (0x7f << 52));
        if stray != 0 {
            return Err(unexpected(stray));
        }
        let next = raw & W_ADDR_47_12;
        if next >> oa_bits != 0 {
            return Err(WalkFault::AddressSize { level, descriptor: raw });
        }
        return Ok(Step::Next(next));
    }
    if level == 0 || (level == 3 && raw & W_TABLE == 0) {
        return Err(WalkFault::Reserved { level, descriptor: raw });
    }
    let shift = w_shift(level);
    let output = raw & W_ADDR_47_12 & !((1 << shift) - 1);
    // Block: output address bits below the block size are RES0.
    let low_res0 = raw & W_ADDR_47_12 & ((1 << shift) - 1);
    if low_res0 != 0 || raw & W_ADDR_51_48 != 0 {
        return Err(unexpected(low_res0 | (raw & W_ADDR_51_48)));
    }
    if output >> oa_bits != 0 {
        return Err(WalkFault::AddressSize { level, descriptor: raw });
    }
    if raw & W_AF == 0 {
        return Err(WalkFault::AccessFlag { level });
    }
    let shareability = match (raw >> 8) & 0b11 {
        0b00 => Shareability::Non,
        0b10 => Shareability::Outer,
        0b11 => Shareability::Inner,
        _ => return Err(WalkFault::UnsupportedAttributes { level, descriptor: raw }),
    };
    let executable = raw & W_XN == 0;
    let (memory, writable) = match regime {
        RegimeKind::El2 | RegimeKind::Hyp => {
            // Single privilege level: AP[1] RES1; NS (Non-secure), nG, PXN
            // RES0; contiguous and software bits never used.
            if raw & W_AP1 == 0 {
                return Err(unexpected(W_AP1));
            }
            let stray = raw & (W_NS | W_NG | W_PXN | W_CONTIGUOUS | W_UPPER_63_55);
            if stray != 0 {
                return Err(unexpected(stray));
            }
            let attr_index = (raw >> 2) & 0b111;
            let memory = match (MAIR >> (8 * attr_index)) & 0xff {
                0x00 => MemoryType::DeviceStrict,
                0x04 => MemoryType::Device,
                0x44 => MemoryType::NormalNonCacheable,
                0xff => MemoryType::Normal,
                _ => return Err(WalkFault::UnknownMemoryType { level, descriptor: raw }),
            };
            (memory, raw & W_AP2 == 0)
        }
        RegimeKind::Stage2 => {
            // Bit 11 RES0, bit 53 RES0 without FEAT_XNX.
            let stray = raw & (W_NG | W_PXN | W_CONTIGUOUS | W_UPPER_63_55);
            if stray != 0 {
                return Err(unexpected(stray));
            }
            let memory = match (raw >> 2) & 0b1111 {
                0b0000 => MemoryType::DeviceStrict,
                0b0001 => MemoryType::Device,
                0b0101 => MemoryType::NormalNonCacheable,
                0b1111 => MemoryType::Normal,
                _ => return Err(WalkFault::UnknownMemoryType { level, descriptor: raw }),
            };
            let writable = match (raw >> 6) & 0b11 {
                0b01 => false,
                0b11 => true,
                _ => return Err(WalkFault::UnsupportedAttributes { level, descriptor: raw }),
            };
            (memory, writable)
        }
    };
    let size = match level {
        1 => PageSize::Size1G,
        2 => PageSize::Size2M,
        _ => PageSize::Size4K,
    };
    Ok(Step::Leaf(Translation {
        input_base: 0,
        output: PhysAddr::new(output),
        level,
        size,
        attrs: Attributes::new(memory, Access::from_flags(writable, executable)),
        shareability,
        descriptor: raw,
    }))
}
