//! Typed addresses and the sizes of the 4 KiB translation granule.
//!
//! This module owns the three address spaces the hypervisor deals with —
//! physical ([`PhysAddr`]), its own virtual ([`VirtAddr`]) and a guest's
//! intermediate physical ([`IntermediatePhysAddr`]) — as distinct newtypes
//! over `u64`, so that one cannot be passed where another is expected without
//! an explicit conversion. Addresses are 64-bit on both architectures: ARMv7
//! LPAE output addresses are 40 bits wide even though its virtual addresses
//! are 32 bits.
//!
//! Only the 4 KiB granule is supported: [`PAGE_SIZE`], and the block sizes
//! that granule gives at levels 2 and 1 ([`PageSize`]).

use core::fmt;
use core::ops::{Add, Sub};

/// log2 of the translation granule.
pub const PAGE_SHIFT: u32 = 12;
/// The translation granule: 4 KiB.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// A level-2 block: 2 MiB.
pub const SIZE_2M: u64 = 1 << 21;
/// A level-1 block: 1 GiB.
pub const SIZE_1G: u64 = 1 << 30;

/// Which address space an address belongs to, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddrKind {
    /// A physical address.
    Phys,
    /// A hypervisor virtual address (stage-1 input).
    Virt,
    /// A guest intermediate physical address (stage-2 input).
    Ipa,
}

impl fmt::Display for AddrKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddrKind::Phys => "PA",
            AddrKind::Virt => "VA",
            AddrKind::Ipa => "IPA",
        })
    }
}

/// An address of any kind, tagged with its kind: what errors carry, so that
/// they can name the address and say what it is (`VA 0x4020_0000`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AnyAddr {
    /// The address space.
    pub kind: AddrKind,
    /// The address.
    pub addr: u64,
}

impl fmt::Display for AnyAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:#x}", self.kind, self.addr)
    }
}

/// What the three address newtypes have in common; the translation-table
/// code is generic over its input address type through this trait.
pub trait Address: Copy + Eq + Ord + fmt::Debug {
    /// The address space of this type.
    const KIND: AddrKind;
    /// Wraps a raw address.
    fn from_u64(addr: u64) -> Self;
    /// The raw address.
    fn to_u64(self) -> u64;
    /// The address tagged with its kind, for error messages.
    fn any(self) -> AnyAddr {
        AnyAddr { kind: Self::KIND, addr: self.to_u64() }
    }
}

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// Wraps a raw address.
            pub const fn new(addr: u64) -> Self {
                Self(addr)
            }

            /// The raw address.
            pub const fn as_u64(self) -> u64 {
                self.0
            }

            /// True if the address is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                debug_assert!(align.is_power_of_two());
                self.0 & (align - 1) == 0
            }

            /// True if the address is 4 KiB aligned.
            pub const fn is_page_aligned(self) -> bool {
                self.is_aligned(PAGE_SIZE)
            }

            /// The address rounded down to a multiple of `align` (a power of two).
            pub const fn align_down(self, align: u64) -> Self {
                debug_assert!(align.is_power_of_two());
                Self(self.0 & !(align - 1))
            }

            /// The address rounded up to a multiple of `align` (a power of
            /// two), or `None` if that overflows.
            pub const fn align_up(self, align: u64) -> Option<Self> {
                debug_assert!(align.is_power_of_two());
                match self.0.checked_add(align - 1) {
                    Some(a) => Some(Self(a & !(align - 1))),
                    None => None,
                }
            }

            /// The offset of the address inside its 4 KiB page.
            pub const fn page_offset(self) -> u64 {
                self.0 & (PAGE_SIZE - 1)
            }

            /// `self + offset`, or `None` if that overflows.
            pub const fn checked_add(self, offset: u64) -> Option<Self> {
                match self.0.checked_add(offset) {
                    Some(a) => Some(Self(a)),
                    None => None,
                }
            }

            /// `self - other` in bytes, or `None` if `other` is above `self`.
            pub const fn checked_offset_from(self, other: Self) -> Option<u64> {
                self.0.checked_sub(other.0)
            }
        }

        impl Address for $name {
            const KIND: AddrKind = $kind;
            fn from_u64(addr: u64) -> Self {
                Self(addr)
            }
            fn to_u64(self) -> u64 {
                self.0
            }
        }

        /// Adds a byte offset; panics on overflow like integer addition.
        impl Add<u64> for $name {
            type Output = Self;
            fn add(self, offset: u64) -> Self {
                Self(self.0 + offset)
            }
        }

        /// The distance in bytes between two addresses of the same kind;
        /// panics if `rhs` is above `self`, like integer subtraction.
        impl Sub for $name {
            type Output = u64;
            fn sub(self, rhs: Self) -> u64 {
                self.0 - rhs.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:#x})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} {:#x}", $kind, self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address_type!(
    /// A physical address (up to 48 bits on AArch64, 40 bits with ARMv7 LPAE).
    PhysAddr,
    AddrKind::Phys
);
address_type!(
    /// A virtual address in the hypervisor's own translation regime (AArch64
    /// EL2 or ARMv7 HYP): the input of its stage-1 tables.
    VirtAddr,
    AddrKind::Virt
);
address_type!(
    /// A guest intermediate physical address: the input of stage-2 tables.
    IntermediatePhysAddr,
    AddrKind::Ipa
);

impl VirtAddr {
    /// The virtual address of a pointer (the hypervisor runs with its own
    /// address space, so a pointer's value is a `VirtAddr`).
    pub fn from_ptr<T>(ptr: *const T) -> Self {
        Self(ptr as usize as u64)
    }
}

/// The three sizes a mapping can have with the 4 KiB granule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSize {
    /// A level-3 page: 4 KiB.
    Size4K,
    /// A level-2 block: 2 MiB.
    Size2M,
    /// A level-1 block: 1 GiB.
    Size1G,
}

impl PageSize {
    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => PAGE_SIZE,
            PageSize::Size2M => SIZE_2M,
            PageSize::Size1G => SIZE_1G,
        }
    }

    /// The translation-table level whose leaf entries have this size.
    pub const fn level(self) -> u8 {
        match self {
            PageSize::Size4K => 3,
            PageSize::Size2M => 2,
            PageSize::Size1G => 1,
        }
    }

    /// The size of a leaf entry at `level`, if that level can hold leaves
    /// (level 0 cannot with the 4 KiB granule).
    pub const fn at_level(level: u8) -> Option<Self> {
        match level {
            1 => Some(PageSize::Size1G),
            2 => Some(PageSize::Size2M),
            3 => Some(PageSize::Size4K),
            _ => None,
        }
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PageSize::Size4K => "4K",
            PageSize::Size2M => "2M",
            PageSize::Size1G => "1G",
        })
    }
}

/// A 4 KiB physical page frame, by frame number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageFrame(u64);

impl PageFrame {
    /// The frame that starts at `pa`, or `None` if `pa` is not page aligned.
    pub const fn from_start(pa: PhysAddr) -> Option<Self> {
        if pa.is_page_aligned() { Some(Self(pa.as_u64() >> PAGE_SHIFT)) } else { None }
    }

    /// The frame that contains `pa`.
    pub const fn containing(pa: PhysAddr) -> Self {
        Self(pa.as_u64() >> PAGE_SHIFT)
    }

    /// The frame with this number.
    pub const fn from_number(number: u64) -> Self {
        Self(number)
    }

    /// The frame number.
    pub const fn number(self) -> u64 {
        self.0
    }

    /// The physical address of the frame's first byte.
    pub const fn start(self) -> PhysAddr {
        PhysAddr(self.0 << PAGE_SHIFT)
    }
}

/// True if `value` is a multiple of `align` (a power of two).
pub const fn is_aligned(value: u64, align: u64) -> bool {
    debug_assert!(align.is_power_of_two());
    value & (align - 1) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::format;

    #[test]
    fn alignment_helpers() {
        let a = PhysAddr::new(0x4020_1234);
        assert!(!a.is_page_aligned());
        assert_eq!(a.align_down(PAGE_SIZE), PhysAddr::new(0x4020_1000));
        assert_eq!(a.align_up(PAGE_SIZE), Some(PhysAddr::new(0x4020_2000)));
        assert_eq!(a.align_down(SIZE_2M), PhysAddr::new(0x4020_0000));
        assert_eq!(a.align_up(SIZE_2M), Some(PhysAddr::new(0x4040_0000)));
        assert_eq!(a.page_offset(), 0x234);
        assert!(PhysAddr::new(0x4000_0000).is_aligned(SIZE_1G));
        assert_eq!(VirtAddr::new(u64::MAX).align_up(PAGE_SIZE), None);
        assert_eq!(VirtAddr::new(u64::MAX - 1).checked_add(2), None);
        assert_eq!(VirtAddr::new(0x2000) - VirtAddr::new(0x1000), 0x1000);
        assert_eq!(VirtAddr::new(0x1000).checked_offset_from(VirtAddr::new(0x2000)), None);
        assert!(is_aligned(0x20_0000, SIZE_2M) && !is_aligned(0x20_1000, SIZE_2M));
    }

    #[test]
    fn kinds_print_and_tag() {
        assert_eq!(format!("{}", PhysAddr::new(0x1000)), "PA 0x1000");
        assert_eq!(format!("{}", VirtAddr::new(0x1000)), "VA 0x1000");
        assert_eq!(format!("{:?}", IntermediatePhysAddr::new(0x1000)), "IntermediatePhysAddr(0x1000)");
        assert_eq!(IntermediatePhysAddr::new(0x8000).any(), AnyAddr { kind: AddrKind::Ipa, addr: 0x8000 });
        assert_eq!(format!("{}", IntermediatePhysAddr::new(0x8000).any()), "IPA 0x8000");
    }

    #[test]
    fn page_frames_and_sizes() {
        assert_eq!(PageFrame::from_start(PhysAddr::new(0x4000_1000)).map(PageFrame::number), Some(0x40001));
        assert_eq!(PageFrame::from_start(PhysAddr::new(0x4000_1001)), None);
        assert_eq!(PageFrame::containing(PhysAddr::new(0x4000_1fff)).start(), PhysAddr::new(0x4000_1000));
        assert_eq!(PageFrame::from_number(3).start(), PhysAddr::new(0x3000));
        for size in [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G] {
            assert_eq!(PageSize::at_level(size.level()), Some(size));
        }
        assert_eq!(PageSize::at_level(0), None);
        assert_eq!(PageSize::Size2M.bytes(), 512 * PAGE_SIZE);
        assert_eq!(PageSize::Size1G.bytes(), 512 * SIZE_2M);
    }
}
