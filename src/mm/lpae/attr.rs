//! Typed mapping attributes: memory type and access permissions.
//!
//! [`Attributes`] is what callers ask for and what the walker reports; the
//! descriptor bits that express it differ per regime and live in
//! [`super::desc`]. Permissions are one of four [`Access`] values, so a
//! mapping is readable by construction and "writable and executable" is a
//! distinct value that stage-1 map and protect refuse unless the caller
//! forces it ([`super::MapOptions::allow_write_execute`]): W^X is enforced by
//! the API, not by convention.

use core::fmt;

/// The memory type of a mapping. Every type is mapped Inner Shareable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryType {
    /// Normal memory, Inner and Outer Write-Back, Read- and Write-Allocate:
    /// RAM.
    Normal,
    /// Normal memory, Inner and Outer Non-cacheable: buffers shared with
    /// non-coherent observers.
    NormalNonCacheable,
    /// Device-nGnRE (ARMv7: Device): MMIO registers.
    Device,
    /// Device-nGnRnE (ARMv7: Strongly-ordered): MMIO that needs the write
    /// response from the end point.
    DeviceStrict,
}

impl MemoryType {
    /// True for the device types, which are never executable.
    pub const fn is_device(self) -> bool {
        matches!(self, MemoryType::Device | MemoryType::DeviceStrict)
    }
}

/// Access permissions of a mapping. Every mapping is readable; there is no
/// write-only or no-access mapping (an unmapped range is no-access).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read only, never executable: constants.
    ReadOnly,
    /// Read and write, never executable: data, stacks, MMIO.
    ReadWrite,
    /// Read and execute, never writable: code.
    ReadExecute,
    /// Read, write and execute. Stage-1 map/protect refuse it unless
    /// [`super::MapOptions::allow_write_execute`] is given; guest RAM at
    /// stage 2 is normally mapped this way.
    ReadWriteExecute,
}

impl Access {
    /// True if writes are allowed.
    pub const fn is_writable(self) -> bool {
        matches!(self, Access::ReadWrite | Access::ReadWriteExecute)
    }

    /// True if instruction fetches are allowed.
    pub const fn is_executable(self) -> bool {
        matches!(self, Access::ReadExecute | Access::ReadWriteExecute)
    }

    /// The access with these two permissions (read is always granted).
    pub const fn from_flags(writable: bool, executable: bool) -> Self {
        match (writable, executable) {
            (false, false) => Access::ReadOnly,
            (true, false) => Access::ReadWrite,
            (false, true) => Access::ReadExecute,
            (true, true) => Access::ReadWriteExecute,
        }
    }
}

/// What a mapping is: memory type plus access permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// The memory type.
    pub memory: MemoryType,
    /// The access permissions.
    pub access: Access,
}

impl Attributes {
    /// Code: Normal memory, read and execute.
    pub const CODE: Attributes = Attributes::new(MemoryType::Normal, Access::ReadExecute);
    /// Constants: Normal memory, read only.
    pub const RODATA: Attributes = Attributes::new(MemoryType::Normal, Access::ReadOnly);
    /// Data, BSS, stacks and heap: Normal memory, read and write.
    pub const DATA: Attributes = Attributes::new(MemoryType::Normal, Access::ReadWrite);
    /// MMIO: Device-nGnRE, read and write.
    pub const DEVICE: Attributes = Attributes::new(MemoryType::Device, Access::ReadWrite);

    /// Attributes with this memory type and access.
    pub const fn new(memory: MemoryType, access: Access) -> Self {
        Attributes { memory, access }
    }

    /// The same memory type with other permissions.
    pub const fn with_access(self, access: Access) -> Self {
        Attributes { memory: self.memory, access }
    }
}

impl fmt::Display for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let perms = match self.access {
            Access::ReadOnly => "r--",
            Access::ReadWrite => "rw-",
            Access::ReadExecute => "r-x",
            Access::ReadWriteExecute => "rwx",
        };
        write!(f, "{perms} {:?}", self.memory)
    }
}

/// MAIR attribute index of each stage-1 memory type.
pub(crate) const fn mair_index(memory: MemoryType) -> u64 {
    match memory {
        MemoryType::DeviceStrict => 0,
        MemoryType::Device => 1,
        MemoryType::NormalNonCacheable => 2,
        MemoryType::Normal => 3,
    }
}

/// The memory attribute indirection the stage-1 descriptors assume: the arch
/// code writes it to MAIR_EL2 (AArch64) or HMAIR0 (low word) and HMAIR1
/// (high word) on ARMv7 before turning the MMU on.
///
/// - Attr0 = 0x00: Device-nGnRnE (ARMv7 Strongly-ordered)
/// - Attr1 = 0x04: Device-nGnRE (ARMv7 Device)
/// - Attr2 = 0x44: Normal, Inner/Outer Non-cacheable
/// - Attr3 = 0xff: Normal, Inner/Outer Write-Back Non-transient, Read/Write-Allocate
///
/// Attr4..7 are 0 (Device-nGnRnE) and unused.
pub const MAIR: u64 = 0xff_44_04_00;

/// Stage-2 MemAttr[3:0] of each memory type (no indirection at stage 2).
pub(crate) const fn stage2_memattr(memory: MemoryType) -> u64 {
    match memory {
        MemoryType::DeviceStrict => 0b0000,
        MemoryType::Device => 0b0001,
        MemoryType::NormalNonCacheable => 0b0101,
        MemoryType::Normal => 0b1111,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_flags_round_trip() {
        for a in [Access::ReadOnly, Access::ReadWrite, Access::ReadExecute, Access::ReadWriteExecute] {
            assert_eq!(Access::from_flags(a.is_writable(), a.is_executable()), a);
        }
        assert!(!Attributes::CODE.access.is_writable() && Attributes::CODE.access.is_executable());
        assert!(Attributes::DATA.access.is_writable() && !Attributes::DATA.access.is_executable());
        assert!(Attributes::DEVICE.memory.is_device() && !MemoryType::NormalNonCacheable.is_device());
    }

    #[test]
    fn mair_bytes_match_the_indices() {
        let byte = |m| (MAIR >> (8 * mair_index(m))) & 0xff;
        assert_eq!(byte(MemoryType::DeviceStrict), 0x00);
        assert_eq!(byte(MemoryType::Device), 0x04);
        assert_eq!(byte(MemoryType::NormalNonCacheable), 0x44);
        assert_eq!(byte(MemoryType::Normal), 0xff);
    }
}
