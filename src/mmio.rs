//! Trapped guest MMIO: decoding stage-2 data aborts, and dispatching the
//! access to an emulated device.
//!
//! This module owns the step from "a guest load or store faulted at stage 2"
//! to "a device model handled it": [`decode`] turns the syndrome (`ESR_EL2`,
//! `HSR` on ARMv7: exception class 0x24), `FAR_EL2`/`HDFAR` and
//! `HPFAR_EL2`/`HPFAR` into a typed [`MmioAccess`] — intermediate physical
//! address, size, direction, register, sign extension, register width — or
//! says why the access cannot be emulated ([`DecodeError`]); the caller then
//! injects an abort into the guest and logs the error. An [`MmioMap`] is a
//! domain's fixed set of emulated regions (IPA range → [`MmioDevice`]), and
//! [`MmioMap::emulate`] performs the access against the guest's registers
//! ([`GuestRegs`]) with the architecture's rules for loads (size, sign
//! extension, 32-bit register writes clearing the upper half) and stores
//! (`xzr`/`wzr`).
//!
//! Pure logic: plain values in, plain values out. The arch code reads the
//! registers, and afterwards advances the guest's PC by
//! [`MmioAccess::insn_len`]. Only little-endian guest data accesses are
//! modelled (a big-endian guest would need the data byte-reversed by size).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use crate::crash::esr::{Syndrome, fault_status_name};
use crate::mm::IntermediatePhysAddr;

/// Exception class of a data abort from a lower exception level (AArch64
/// `ESR_EL2.EC`; ARMv7 `HSR.EC` uses the same value).
pub const EC_DATA_ABORT_LOWER: u8 = 0x24;

/// Data-abort ISS fields (Arm ARM D24.2.40, ISS encoding for a Data Abort).
mod iss {
    /// Instruction syndrome valid: SAS, SSE, SRT, SF and AR hold.
    pub const ISV: u32 = 1 << 24;
    /// Syndrome access size, bits \[23:22\]: log2 of the size in bytes.
    pub const SAS_SHIFT: u32 = 22;
    /// Syndrome sign extend.
    pub const SSE: u32 = 1 << 21;
    /// Syndrome register transfer, bits \[20:16\].
    pub const SRT_SHIFT: u32 = 16;
    /// Sixty-four: the register is 64 bits wide (`Xt`, not `Wt`).
    pub const SF: u32 = 1 << 15;
    /// Acquire/release semantics (`LDAR`, `STLR`).
    pub const AR: u32 = 1 << 14;
    /// FAR not valid.
    pub const FNV: u32 = 1 << 10;
    /// Cache maintenance (or address translation) instruction.
    pub const CM: u32 = 1 << 8;
    /// Fault on the stage-2 translation of a stage-1 translation table walk.
    pub const S1PTW: u32 = 1 << 7;
    /// Write, not read.
    pub const WNR: u32 = 1 << 6;
}

/// How wide an access is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccessSize {
    /// 8 bits.
    Byte,
    /// 16 bits.
    Half,
    /// 32 bits.
    Word,
    /// 64 bits.
    Double,
}

impl AccessSize {
    /// From a syndrome's SAS field (log2 of the size in bytes).
    pub fn from_sas(sas: u32) -> Self {
        match sas & 3 {
            0 => AccessSize::Byte,
            1 => AccessSize::Half,
            2 => AccessSize::Word,
            _ => AccessSize::Double,
        }
    }

    /// Size in bytes.
    pub fn bytes(self) -> u64 {
        match self {
            AccessSize::Byte => 1,
            AccessSize::Half => 2,
            AccessSize::Word => 4,
            AccessSize::Double => 8,
        }
    }

    /// Size in bits.
    pub fn bits(self) -> u32 {
        self.bytes() as u32 * 8
    }

    /// A mask of the access's bits.
    pub fn mask(self) -> u64 {
        u64::MAX >> (64 - self.bits())
    }
}

impl fmt::Display for AccessSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-bit", self.bits())
    }
}

/// A guest load or store that trapped at stage 2, decoded from the syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// The address accessed.
    pub ipa: IntermediatePhysAddr,
    /// How many bytes.
    pub size: AccessSize,
    /// A store (else a load).
    pub write: bool,
    /// The transfer register, in the AArch64 view (`x0`–`x30`; 31 is
    /// `xzr`/`wzr`). For an AArch32 guest the architecture has already
    /// mapped the mode's banked register to this number.
    pub reg: u8,
    /// A sign-extending load (`LDRSB`, `LDRSH`, `LDRSW`). Never set for
    /// stores.
    pub sign_extend: bool,
    /// The register is 64 bits wide (`Xt`); else 32 (`Wt`, or any AArch32
    /// register), and a load clears its upper half.
    pub sixty_four: bool,
    /// The instruction has acquire/release semantics (`LDAR`, `STLR`): the
    /// emulation must be ordered like one (trapping already orders it
    /// against the guest's other accesses).
    pub acquire_release: bool,
    /// The length of the trapped instruction, by which the caller advances
    /// the guest's PC: 4, or 2 for a 16-bit T32 instruction.
    pub insn_len: u8,
}

impl MmioAccess {
    /// The register's name as written in A64 assembly (`x30`, `w1`, `wzr`).
    pub fn reg_name(&self) -> RegName {
        RegName { reg: self.reg, sixty_four: self.sixty_four }
    }

    /// The value a load writes to the register, given the data the device
    /// returned: the access's bits only, sign-extended to the register for
    /// `LDRS*`, and a 32-bit register's upper half cleared (as any write to
    /// `Wt` does). E.g. `0x80` read by `ldrsb w1` gives `0xffff_ff80`, by
    /// `ldrsb x1` `0xffff_ffff_ffff_ff80`.
    pub fn load_value(&self, data: u64) -> u64 {
        let bits = self.size.bits();
        let mut value = data & self.size.mask();
        if self.sign_extend && bits < 64 {
            let shift = 64 - bits;
            value = (((value << shift) as i64) >> shift) as u64;
        }
        if !self.sixty_four {
            value &= 0xffff_ffff;
        }
        value
    }

    /// The data a store writes, given the register's value: the low bytes
    /// of the access's size.
    pub fn store_value(&self, reg_value: u64) -> u64 {
        reg_value & self.size.mask()
    }

    /// The data a store writes, read from the guest's registers (register
    /// 31 is the zero register).
    pub fn write_data<R: GuestRegs + ?Sized>(&self, regs: &R) -> u64 {
        self.store_value(if self.reg == ZR { 0 } else { regs.reg(self.reg) })
    }

    /// Completes a load: writes [`load_value`](Self::load_value)`(data)` to
    /// the register, unless it is the zero register (the load is then only
    /// done for its side effects).
    pub fn complete_load<R: GuestRegs + ?Sized>(&self, regs: &mut R, data: u64) {
        if self.reg != ZR {
            regs.set_reg(self.reg, self.load_value(data));
        }
    }
}

impl fmt::Display for MmioAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.write {
            write!(f, "{} write of {} to {}", self.size, self.reg_name(), self.ipa)
        } else {
            let sign = if self.sign_extend { "sign-extending " } else { "" };
            write!(f, "{} {sign}read into {} from {}", self.size, self.reg_name(), self.ipa)
        }
    }
}

/// Register 31 in a load/store's transfer register field: the zero register.
const ZR: u8 = 31;

/// A general-purpose register's A64 name (see [`MmioAccess::reg_name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegName {
    reg: u8,
    sixty_four: bool,
}

impl fmt::Display for RegName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = if self.sixty_four { 'x' } else { 'w' };
        if self.reg == ZR { write!(f, "{prefix}zr") } else { write!(f, "{prefix}{}", self.reg) }
    }
}

/// The guest's general-purpose registers as the trap saved them, in the
/// AArch64 view (`x0`–`x30`). Register 31 never reaches these methods.
pub trait GuestRegs {
    /// The value of `x{n}`.
    fn reg(&self, n: u8) -> u64;
    /// Sets `x{n}`.
    fn set_reg(&mut self, n: u8, value: u64);
}

/// `x0`–`x30` as an array (what a saved register frame usually starts with).
impl GuestRegs for [u64; 31] {
    fn reg(&self, n: u8) -> u64 {
        self.get(usize::from(n)).copied().unwrap_or(0)
    }

    fn set_reg(&mut self, n: u8, value: u64) {
        if let Some(r) = self.get_mut(usize::from(n)) {
            *r = value;
        }
    }
}

/// Why a data abort cannot be emulated as an MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The syndrome is not a data abort from a lower exception level.
    NotDataAbort {
        /// Its exception class.
        ec: u8,
    },
    /// `FnV`: the fault address is not known (only its page).
    FarNotValid {
        /// The faulting page.
        page: IntermediatePhysAddr,
    },
    /// Not a stage-2 translation, access-flag or permission fault (an
    /// external abort, an alignment or address-size fault, …).
    NotATrap {
        /// The address.
        ipa: IntermediatePhysAddr,
        /// The data fault status code.
        dfsc: u8,
    },
    /// The fault is on the guest's own stage-1 table walk (its page tables
    /// are not in RAM); the IPA is the table entry's.
    StageOneWalk {
        /// The address of the table entry.
        ipa: IntermediatePhysAddr,
    },
    /// A cache maintenance or address translation instruction on the
    /// address (KVM skips these for emulated devices; this module leaves
    /// the choice to the caller).
    CacheMaintenance {
        /// The address.
        ipa: IntermediatePhysAddr,
    },
    /// ISV = 0: the syndrome does not describe the access (load/store pair,
    /// writeback addressing, SIMD/FP register, exclusive or atomic
    /// instruction, several registers), so it cannot be emulated without
    /// decoding the instruction, which the hypervisor does not do.
    NoSyndrome {
        /// The address.
        ipa: IntermediatePhysAddr,
        /// A store.
        write: bool,
    },
}

impl DecodeError {
    /// The faulting address, where the syndrome gives one.
    pub fn ipa(&self) -> Option<IntermediatePhysAddr> {
        match *self {
            DecodeError::NotDataAbort { .. } => None,
            DecodeError::FarNotValid { page: ipa }
            | DecodeError::NotATrap { ipa, .. }
            | DecodeError::StageOneWalk { ipa }
            | DecodeError::CacheMaintenance { ipa }
            | DecodeError::NoSyndrome { ipa, .. } => Some(ipa),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeError::NotDataAbort { ec } => {
                write!(f, "exception class {ec:#04x} is not a data abort from the guest")
            }
            DecodeError::FarNotValid { page } => {
                write!(f, "access to the page at {page} with no valid fault address (FnV)")
            }
            DecodeError::NotATrap { ipa, dfsc } => {
                write!(f, "access to {ipa}: {} (DFSC {dfsc:#04x}) is not an MMIO trap", fault_status_name(dfsc))
            }
            DecodeError::StageOneWalk { ipa } => {
                write!(f, "guest page-table walk touched {ipa}, which is not RAM")
            }
            DecodeError::CacheMaintenance { ipa } => {
                write!(f, "cache maintenance or address translation on {ipa}")
            }
            DecodeError::NoSyndrome { ipa, write } => {
                let what = if write { "write to" } else { "read from" };
                write!(
                    f,
                    "{what} {ipa} has no instruction syndrome (ISV=0: pair, writeback, SIMD, \
                     exclusive or atomic access), cannot emulate"
                )
            }
        }
    }
}

/// The IPA of a stage-2 fault: the page from `HPFAR_EL2.FIPA` (bits
/// \[43:4\] hold IPA bits \[51:12\]; ARMv7's `HPFAR` bits \[31:4\] hold IPA bits
/// \[39:12\], the same layout) and the offset in the page from the fault
/// address (`FAR_EL2`/`HDFAR`, the guest's virtual address).
pub fn fault_ipa(far: u64, hpfar: u64) -> IntermediatePhysAddr {
    let fipa = (hpfar >> 4) & ((1 << 40) - 1);
    IntermediatePhysAddr::new((fipa << 12) | (far & 0xfff))
}

/// True for the fault status codes a trapped MMIO access produces: a
/// translation fault (the region is not mapped at stage 2; 0x2b is level
/// −1 with 52-bit IPAs), an access-flag fault, or a permission fault (the
/// region is mapped read-only to trap writes).
fn is_trap_fault(dfsc: u8) -> bool {
    matches!(dfsc, 0x04..=0x0f | 0x2b)
}

/// Exception class of an instruction abort from a lower exception level.
pub const EC_INSTRUCTION_ABORT_LOWER: u8 = 0x20;

/// The syndrome (`ESR_EL1`) of the synchronous external abort a guest gets
/// for the stage-2 abort `esr_el2` it caused (an access to an IPA with
/// nothing behind it, or one an emulated device refuses), as taken at EL1
/// (the caller lowers the EC for an abort from EL0): the same kind of abort
/// (data or instruction), `IL` set, fault status 0x10 (synchronous external
/// abort, not on a table walk), the FAR valid, and for a data abort the
/// direction (`WnR`) and `CM` of the access that faulted. A write must read
/// as a write in the guest's own handler: Linux, for one, reports and
/// handles faults by it.
pub fn external_abort_esr(esr_el2: u64) -> u64 {
    const EC_SHIFT: u64 = 26;
    const IL: u64 = 1 << 25;
    const SYNC_EXTERNAL_ABORT: u64 = 0x10;
    let s = Syndrome::new(esr_el2);
    if s.ec == EC_INSTRUCTION_ABORT_LOWER {
        // Instruction abort taken without a change in EL: EC 0x21.
        return (0x21 << EC_SHIFT) | IL | SYNC_EXTERNAL_ABORT;
    }
    // Data abort taken without a change in EL: EC 0x25.
    let kept = u64::from(s.iss & (iss::WNR | iss::CM));
    (0x25 << EC_SHIFT) | IL | kept | SYNC_EXTERNAL_ABORT
}

/// Decodes a data abort taken to the hypervisor from a guest: `esr` is
/// `ESR_EL2` (`HSR`), `far` is `FAR_EL2` (`HDFAR`), `hpfar` is `HPFAR_EL2`
/// (`HPFAR`).
pub fn decode(esr: u64, far: u64, hpfar: u64) -> Result<MmioAccess, DecodeError> {
    let s = Syndrome::new(esr);
    if s.ec != EC_DATA_ABORT_LOWER {
        return Err(DecodeError::NotDataAbort { ec: s.ec });
    }
    let ipa = fault_ipa(far, hpfar);
    if s.iss & iss::FNV != 0 {
        return Err(DecodeError::FarNotValid { page: ipa.align_down(crate::mm::PAGE_SIZE) });
    }
    let dfsc = s.fault_status();
    if !is_trap_fault(dfsc) {
        return Err(DecodeError::NotATrap { ipa, dfsc });
    }
    if s.iss & iss::S1PTW != 0 {
        return Err(DecodeError::StageOneWalk { ipa });
    }
    if s.iss & iss::CM != 0 {
        return Err(DecodeError::CacheMaintenance { ipa });
    }
    let write = s.iss & iss::WNR != 0;
    if s.iss & iss::ISV == 0 {
        return Err(DecodeError::NoSyndrome { ipa, write });
    }
    Ok(MmioAccess {
        ipa,
        size: AccessSize::from_sas(s.iss >> iss::SAS_SHIFT),
        write,
        reg: ((s.iss >> iss::SRT_SHIFT) & 0x1f) as u8,
        sign_extend: !write && s.iss & iss::SSE != 0,
        sixty_four: s.iss & iss::SF != 0,
        acquire_release: s.iss & iss::AR != 0,
        insn_len: if s.il { 4 } else { 2 },
    })
}

// ----------------------------------------------------------------------------
// Devices and dispatch

/// What a device (or the dispatcher) says is wrong with an access; the
/// dispatcher adds the address and the access ([`AccessError`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioError {
    /// No emulated region contains the address.
    Unmapped,
    /// The address is not a multiple of the access size.
    Unaligned,
    /// The device does not support this access size at this offset.
    BadSize,
    /// Nothing at this offset (and the device does not read it as zero).
    NoRegister,
    /// A write to a read-only register.
    ReadOnly,
    /// A read of a write-only register.
    WriteOnly,
    /// Another device-specific refusal.
    Device(&'static str),
}

impl fmt::Display for MmioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MmioError::Unmapped => f.write_str("no emulated device there"),
            MmioError::Unaligned => f.write_str("not aligned to its size"),
            MmioError::BadSize => f.write_str("access size not supported there"),
            MmioError::NoRegister => f.write_str("no register at that offset"),
            MmioError::ReadOnly => f.write_str("register is read-only"),
            MmioError::WriteOnly => f.write_str("register is write-only"),
            MmioError::Device(why) => f.write_str(why),
        }
    }
}

/// An emulated device. Called from any physical CPU running one of the
/// domain's vCPUs, concurrently: state needs interior mutability with its
/// own locking. Offsets are from the region's base and naturally aligned
/// to the size; the region is wholly inside it.
pub trait MmioDevice: Send + Sync {
    /// A read of `size` at `offset` by vCPU `vcpu`: the data, in the low
    /// bits (bits above the size are ignored).
    fn read(&self, vcpu: usize, offset: u64, size: AccessSize) -> Result<u64, MmioError>;
    /// A write of `value` (already cut to `size`) at `offset` by `vcpu`.
    fn write(&self, vcpu: usize, offset: u64, size: AccessSize, value: u64) -> Result<(), MmioError>;
}

/// Where in the map an access fell, for errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionHit {
    /// The region's name.
    pub name: &'static str,
    /// The offset into it.
    pub offset: u64,
}

/// A failed emulated access: the access (address, size, direction,
/// register), where it fell, and what went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessError {
    /// The access.
    pub access: MmioAccess,
    /// The region it fell into, if any.
    pub region: Option<RegionHit>,
    /// What went wrong.
    pub error: MmioError,
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.access)?;
        if let Some(RegionHit { name, offset }) = self.region {
            write!(f, " ({name} + {offset:#x})")?;
        }
        write!(f, ": {}", self.error)
    }
}

/// Why a region could not be added to an [`MmioMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The size is zero.
    Empty(&'static str),
    /// Base or size is not a multiple of 8 (so that a naturally aligned
    /// access is always wholly inside one region).
    Misaligned(&'static str),
    /// The region runs past the top of the address space.
    Overflow(&'static str),
    /// The region overlaps another.
    Overlaps {
        /// The region being added.
        name: &'static str,
        /// The region it overlaps.
        other: &'static str,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MapError::Empty(n) => write!(f, "MMIO region {n} is empty"),
            MapError::Misaligned(n) => write!(f, "MMIO region {n}: base and size must be multiples of 8"),
            MapError::Overflow(n) => write!(f, "MMIO region {n} runs past the end of the address space"),
            MapError::Overlaps { name, other } => write!(f, "MMIO region {name} overlaps {other}"),
        }
    }
}

/// One emulated region.
#[derive(Clone)]
pub struct Region {
    base: IntermediatePhysAddr,
    size: u64,
    name: &'static str,
    device: Arc<dyn MmioDevice>,
}

impl Region {
    /// The first address.
    pub fn base(&self) -> IntermediatePhysAddr {
        self.base
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The name errors use.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn contains(&self, ipa: IntermediatePhysAddr) -> bool {
        ipa.checked_offset_from(self.base).is_some_and(|o| o < self.size)
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:#x}+{:#x}", self.name, self.base.as_u64(), self.size)
    }
}

/// A domain's emulated MMIO regions, built when the domain is, then only
/// read (from any CPU).
#[derive(Clone, Debug, Default)]
pub struct MmioMap {
    /// Sorted by base, disjoint.
    regions: Vec<Region>,
}

impl MmioMap {
    /// An empty map.
    pub const fn new() -> Self {
        Self { regions: Vec::new() }
    }

    /// Adds `device` at [`base`, `base + size`).
    pub fn add(
        &mut self,
        base: IntermediatePhysAddr,
        size: u64,
        name: &'static str,
        device: Arc<dyn MmioDevice>,
    ) -> Result<(), MapError> {
        if size == 0 {
            return Err(MapError::Empty(name));
        }
        if !base.is_aligned(8) || !size.is_multiple_of(8) {
            return Err(MapError::Misaligned(name));
        }
        let end = base.as_u64().checked_add(size).ok_or(MapError::Overflow(name))?;
        let at = self.regions.partition_point(|r| r.base < base);
        let before = at.checked_sub(1).and_then(|i| self.regions.get(i));
        if let Some(r) = before.filter(|r| r.base.as_u64() + r.size > base.as_u64()) {
            return Err(MapError::Overlaps { name, other: r.name });
        }
        if let Some(r) = self.regions.get(at).filter(|r| r.base.as_u64() < end) {
            return Err(MapError::Overlaps { name, other: r.name });
        }
        self.regions.insert(at, Region { base, size, name, device });
        Ok(())
    }

    /// The regions, by address.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The region containing `ipa`, and the offset into it.
    pub fn find(&self, ipa: IntermediatePhysAddr) -> Option<(&Region, u64)> {
        let at = self.regions.partition_point(|r| r.base <= ipa);
        let r = self.regions.get(at.checked_sub(1)?).filter(|r| r.contains(ipa))?;
        Some((r, ipa - r.base))
    }

    /// The device and offset for `access`, checked.
    fn route(&self, access: &MmioAccess) -> Result<(&Region, u64), AccessError> {
        let fail = |region, error| AccessError { access: *access, region, error };
        let (r, offset) = self.find(access.ipa).ok_or(fail(None, MmioError::Unmapped))?;
        if !offset.is_multiple_of(access.size.bytes()) {
            return Err(fail(Some(RegionHit { name: r.name, offset }), MmioError::Unaligned));
        }
        // Aligned, with base and size multiples of 8: the whole access is in
        // the region.
        Ok((r, offset))
    }

    /// Performs a load from a device: the data, cut to the access size
    /// (before sign extension; see [`MmioAccess::load_value`]).
    pub fn read(&self, vcpu: usize, access: &MmioAccess) -> Result<u64, AccessError> {
        let (r, offset) = self.route(access)?;
        let data = r.device.read(vcpu, offset, access.size).map_err(|error| AccessError {
            access: *access,
            region: Some(RegionHit { name: r.name, offset }),
            error,
        })?;
        Ok(data & access.size.mask())
    }

    /// Performs a store of `value` (cut to the access size) to a device.
    pub fn write(&self, vcpu: usize, access: &MmioAccess, value: u64) -> Result<(), AccessError> {
        let (r, offset) = self.route(access)?;
        r.device.write(vcpu, offset, access.size, access.store_value(value)).map_err(|error| AccessError {
            access: *access,
            region: Some(RegionHit { name: r.name, offset }),
            error,
        })
    }

    /// Emulates `access` by vCPU `vcpu` against its registers: a store
    /// writes the transfer register's data ([`MmioAccess::write_data`]), a
    /// load sets the register ([`MmioAccess::complete_load`]). On success
    /// the caller advances the PC by [`MmioAccess::insn_len`]; on error the
    /// registers are unchanged and the caller injects an abort.
    pub fn emulate<R: GuestRegs + ?Sized>(
        &self,
        vcpu: usize,
        access: &MmioAccess,
        regs: &mut R,
    ) -> Result<(), AccessError> {
        if access.write {
            self.write(vcpu, access, access.write_data(regs))
        } else {
            let data = self.read(vcpu, access)?;
            access.complete_load(regs, data);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_external_aborts_keep_the_direction() {
        // A stage-2 translation fault (level 1) on a 32-bit store with a
        // syndrome (ISV, SAS 2, SRT 3, WnR): the guest sees a data abort
        // from EL1, a synchronous external abort, a write, no syndrome.
        let store = (0x24 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | (3 << 16) | (1 << 6) | 0x05;
        assert_eq!(external_abort_esr(store), 0x9600_0050);
        // The same as a load: WnR clear.
        assert_eq!(external_abort_esr(store & !(1 << 6)), 0x9600_0010);
        // A store pair (no syndrome), a permission fault.
        assert_eq!(external_abort_esr((0x24 << 26) | (1 << 25) | (1 << 6) | 0x0f), 0x9600_0050);
        // Cache maintenance (CM and WnR set, as DC IVAC reports).
        assert_eq!(external_abort_esr((0x24 << 26) | (1 << 25) | (1 << 8) | (1 << 6) | 0x06), 0x9600_0150);
        // S1PTW, FnV, SAS and the fault status of the stage-2 fault are
        // the hypervisor's business, not the guest's.
        assert_eq!(external_abort_esr((0x24 << 26) | (1 << 25) | (1 << 10) | (1 << 7) | 0x07), 0x9600_0010);
        // An instruction fetch: EC 0x21, IL, external abort.
        assert_eq!(external_abort_esr((0x20 << 26) | (1 << 25) | 0x06), 0x8600_0010);
    }
    use std::format;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// `HPFAR_EL2` for a fault at `ipa`: FIPA (IPA\[51:12\]) in bits \[43:4\].
    fn hpfar(ipa: u64) -> u64 {
        (ipa >> 12) << 4
    }

    /// The guest's virtual address: a different page, the same offset.
    fn far(ipa: u64) -> u64 {
        0xffff_8000_0abc_d000 | (ipa & 0xfff)
    }

    const DEV: u64 = 0x0900_0010;

    fn decode_at(esr: u64, ipa: u64) -> Result<MmioAccess, DecodeError> {
        decode(esr, far(ipa), hpfar(ipa))
    }

    /// What an access with these fields decodes to.
    fn access(size: AccessSize, write: bool, reg: u8, sign_extend: bool, sixty_four: bool) -> MmioAccess {
        MmioAccess {
            ipa: IntermediatePhysAddr::new(DEV),
            size,
            write,
            reg,
            sign_extend,
            sixty_four,
            acquire_release: false,
            insn_len: 4,
        }
    }

    use AccessSize::{Byte, Double, Half, Word};

    // Hand-assembled ESR_EL2 values: EC 0x24 in [31:26] (0x9000_0000), IL
    // [25] (0x0200_0000), ISV [24] (0x0100_0000), SAS [23:22], SSE [21],
    // SRT [20:16], SF [15], AR [14], WnR [6], DFSC [5:0] (0x07: level-3
    // translation fault, 0x06 level 2, 0x0f level-3 permission fault).
    #[test]
    fn decodes_loads_and_stores() {
        let cases: &[(&str, u64, MmioAccess)] = &[
            // SAS 0, SRT 1: 0x9300_0000 | 0x1_0000 | 0x07.
            ("ldrb w1, [x0]", 0x9301_0007, access(Byte, false, 1, false, false)),
            // SAS 1 (0x40_0000), SSE (0x20_0000), SRT 2, SF (0x8000), level 2.
            ("ldrsh x2, [x3]", 0x9362_8006, access(Half, false, 2, true, true)),
            // SAS 3 (0xc0_0000), SRT 30 (0x1e_0000), SF, WnR (0x40).
            ("str x30, [x4]", 0x93de_8047, access(Double, true, 30, false, true)),
            // SAS 1, SRT 31 (0x1f_0000), WnR.
            ("strh wzr, [x5]", 0x935f_0047, access(Half, true, 31, false, false)),
            // SSE, SRT 1.
            ("ldrsb w1, [x0]", 0x9321_0007, access(Byte, false, 1, true, false)),
            // SAS 2 (0x80_0000), SSE, SRT 5, SF.
            ("ldrsw x5, [x6]", 0x93a5_8007, access(Word, false, 5, true, true)),
            // SAS 2, SRT 7.
            ("ldr w7, [x8]", 0x9387_0007, access(Word, false, 7, false, false)),
            // SAS 3, SRT 31, SF: a load into xzr.
            ("ldr xzr, [x0]", 0x93df_8007, access(Double, false, 31, false, true)),
            // SAS 2, WnR, DFSC 0x0f: a write to a region mapped read-only.
            ("str w0, [x1] (permission fault)", 0x9380_004f, access(Word, true, 0, false, false)),
            // A store with SSE set (RES0 for stores): not sign-extending.
            ("strb w0, [x1] with SSE", 0x9320_0047, access(Byte, true, 0, false, false)),
        ];
        for (insn, esr, expected) in cases {
            assert_eq!(decode_at(*esr, DEV), Ok(*expected), "{insn}: ESR {esr:#x}");
        }
    }

    #[test]
    fn acquire_release_and_thumb() {
        // ldar w3, [x1]: SAS 2, SRT 3, AR (0x4000).
        let a = decode_at(0x9383_4007, DEV).unwrap();
        assert!(a.acquire_release && !a.write && !a.sixty_four);
        assert_eq!((a.size, a.reg), (Word, 3));
        // stlr x0, [x1]: SAS 3, SF, AR, WnR.
        let a = decode_at(0x93c0_c047, DEV).unwrap();
        assert!(a.acquire_release && a.write && a.sixty_four);
        // A 16-bit T32 `ldr r1, [r0]` from an AArch32 guest: IL = 0,
        // so 0x9000_0000 | ISV | SAS 2 | SRT 1 | 0x07.
        let a = decode_at(0x9181_0007, DEV).unwrap();
        assert_eq!((a.size, a.reg, a.sixty_four, a.insn_len), (Word, 1, false, 2));
        assert_eq!(decode_at(0x9301_0007, DEV).unwrap().insn_len, 4);
    }

    #[test]
    fn fault_ipa_from_hpfar_and_far() {
        assert_eq!(fault_ipa(far(DEV), hpfar(DEV)), IntermediatePhysAddr::new(DEV));
        // HPFAR_EL2 bit 63 (NS) and bits [3:0] (RES0) are not address bits;
        // nor are FAR bits above the page offset.
        assert_eq!(fault_ipa(0xffff_ffff_ffff_f123, (1 << 63) | hpfar(0x4000_0000) | 0xf).as_u64(), 0x4000_0123);
        // The largest IPA: FIPA all ones gives IPA[51:12].
        assert_eq!(fault_ipa(0xabc, 0x0000_0fff_ffff_fff0).as_u64(), 0x000f_ffff_ffff_fabc);
        // ARMv7: HPFAR[31:4] = IPA[39:12].
        assert_eq!(fault_ipa(0x1234_5678, 0xfff0_0000).as_u64(), 0xff_f000_0678);
    }

    #[test]
    fn undecodable_aborts() {
        let ipa = IntermediatePhysAddr::new(DEV);
        // ISV = 0: ldp x0, x1, [x2] and stp x0, x1, [x2].
        assert_eq!(decode_at(0x9200_0007, DEV), Err(DecodeError::NoSyndrome { ipa, write: false }));
        assert_eq!(decode_at(0x9200_0047, DEV), Err(DecodeError::NoSyndrome { ipa, write: true }));
        // Not data aborts from the guest: an HVC (EC 0x16), and a data
        // abort at EL2 itself (EC 0x25).
        assert_eq!(decode_at(0x5a00_0000, DEV), Err(DecodeError::NotDataAbort { ec: 0x16 }));
        assert_eq!(decode_at(0x9600_0010, DEV), Err(DecodeError::NotDataAbort { ec: 0x25 }));
        // FnV (0x400) with EA (0x200), external abort.
        let page = IntermediatePhysAddr::new(DEV & !0xfff);
        assert_eq!(decode_at(0x9200_0610, DEV), Err(DecodeError::FarNotValid { page }));
        // Synchronous external abort, alignment fault, address size fault.
        for dfsc in [0x10, 0x21, 0x00] {
            assert_eq!(decode_at(0x9300_0000 | dfsc, DEV), Err(DecodeError::NotATrap { ipa, dfsc: dfsc as u8 }));
        }
        // S1PTW (0x80): the guest's page table is at DEV.
        assert_eq!(decode_at(0x9200_0087, DEV), Err(DecodeError::StageOneWalk { ipa }));
        // CM (0x100) with WnR: `dc civac` on the device.
        assert_eq!(decode_at(0x9200_0147, DEV), Err(DecodeError::CacheMaintenance { ipa }));
        // Access flag and level -1 translation faults are traps.
        assert!(decode_at(0x9301_000b, DEV).is_ok());
        assert!(decode_at(0x9301_002b, DEV).is_ok());
    }

    #[test]
    fn decode_errors_name_the_address() {
        let e = decode_at(0x9200_0047, DEV).unwrap_err();
        assert_eq!(e.ipa(), Some(IntermediatePhysAddr::new(DEV)));
        assert_eq!(
            format!("{e}"),
            "write to IPA 0x9000010 has no instruction syndrome (ISV=0: pair, writeback, SIMD, exclusive or \
             atomic access), cannot emulate"
        );
        let e = decode_at(0x9300_0010, DEV).unwrap_err();
        assert_eq!(
            format!("{e}"),
            "access to IPA 0x9000010: synchronous external abort (DFSC 0x10) is not an MMIO trap"
        );
        let e = decode_at(0x5a00_0000, DEV).unwrap_err();
        assert_eq!(e.ipa(), None);
        assert_eq!(format!("{e}"), "exception class 0x16 is not a data abort from the guest");
    }

    #[test]
    fn decode_never_panics() {
        // Every ISS bit pattern over a few fault codes, with IL both ways.
        for hi in 0..0x800u64 {
            for low in [0x00, 0x07, 0x0f, 0x10, 0x21, 0x2b, 0x3f, 0x47, 0x87, 0x147, 0x7ff] {
                let esr = (0x24 << 26) | (hi << 14) | low;
                if let Ok(a) = decode(esr, u64::MAX, u64::MAX) {
                    assert!(a.reg <= 31 && a.insn_len >= 2);
                    assert!(!(a.write && a.sign_extend));
                }
            }
        }
    }

    #[test]
    fn load_values_follow_the_architecture() {
        // (size, sign_extend, sixty_four, data from the device, register value)
        let cases: &[(&str, AccessSize, bool, bool, u64, u64)] = &[
            ("ldrb w", Byte, false, false, 0xdead_beef_0000_12ff, 0xff),
            ("ldrb x (no such insn, SF=1)", Byte, false, true, 0x1ff, 0xff),
            ("ldrsb w 0x80", Byte, true, false, 0x80, 0xffff_ff80),
            ("ldrsb x 0x80", Byte, true, true, 0x80, 0xffff_ffff_ffff_ff80),
            ("ldrsb x 0x7f", Byte, true, true, 0xff7f, 0x7f),
            ("ldrsb w 0xff", Byte, true, false, 0xff, 0xffff_ffff),
            ("ldrh w", Half, false, false, 0xffff_8001, 0x8001),
            ("ldrsh w 0x8000", Half, true, false, 0x8000, 0xffff_8000),
            ("ldrsh x 0xffff", Half, true, true, 0xffff, u64::MAX),
            ("ldrsh x 0x7fff", Half, true, true, 0x7fff, 0x7fff),
            ("ldr w", Word, false, false, 0x1_0000_0001, 1),
            ("ldr w 0xffffffff", Word, false, false, 0xffff_ffff, 0xffff_ffff),
            ("ldrsw x 0x80000000", Word, true, true, 0x8000_0000, 0xffff_ffff_8000_0000),
            ("ldrsw x 0x7fffffff", Word, true, true, 0xffff_ffff_7fff_ffff, 0x7fff_ffff),
            ("ldr x", Double, false, true, u64::MAX, u64::MAX),
            (
                "ldr x with SSE (meaningless at 64 bits)",
                Double,
                true,
                true,
                0x8000_0000_0000_0000,
                0x8000_0000_0000_0000,
            ),
            ("64-bit access into a 32-bit register", Double, false, false, 0x1234_5678_9abc_def0, 0x9abc_def0),
        ];
        for &(what, size, sign_extend, sixty_four, data, expected) in cases {
            let a = access(size, false, 1, sign_extend, sixty_four);
            assert_eq!(a.load_value(data), expected, "{what}: data {data:#x}");
        }
    }

    #[test]
    fn store_data_and_the_zero_register() {
        let mut regs = [0u64; 31];
        for (i, r) in regs.iter_mut().enumerate() {
            *r = 0x1111_1111_1111_1111 * (i as u64 % 15 + 1);
        }
        regs[30] = 0x1122_3344_5566_7788;
        regs[1] = 0xffff_ffff_ffff_abcd;
        assert_eq!(access(Double, true, 30, false, true).write_data(&regs), 0x1122_3344_5566_7788);
        assert_eq!(access(Word, true, 30, false, false).write_data(&regs), 0x5566_7788);
        assert_eq!(access(Half, true, 1, false, false).write_data(&regs), 0xabcd);
        assert_eq!(access(Byte, true, 1, false, false).write_data(&regs), 0xcd);
        assert_eq!(access(Half, true, 31, false, false).write_data(&regs), 0, "wzr");
        assert_eq!(access(Double, true, 31, false, true).write_data(&regs), 0, "xzr");

        // A load into the zero register changes nothing.
        let before = regs;
        access(Double, false, 31, false, true).complete_load(&mut regs, 0x5555);
        assert_eq!(regs, before);
        // A 32-bit load clears the upper half of the X register.
        access(Byte, false, 1, false, false).complete_load(&mut regs, 0x42);
        assert_eq!(regs[1], 0x42);
        // Out-of-range register numbers (not produced by decode) are ignored.
        assert_eq!(regs.reg(40), 0);
        regs.set_reg(40, 1);
        assert_eq!(regs, {
            let mut r = before;
            r[1] = 0x42;
            r
        });
    }

    #[test]
    fn access_display() {
        assert_eq!(format!("{}", decode_at(0x93de_8047, DEV).unwrap()), "64-bit write of x30 to IPA 0x9000010");
        assert_eq!(format!("{}", decode_at(0x935f_0047, DEV).unwrap()), "16-bit write of wzr to IPA 0x9000010");
        assert_eq!(
            format!("{}", decode_at(0x9362_8006, DEV).unwrap()),
            "16-bit sign-extending read into x2 from IPA 0x9000010"
        );
        assert_eq!(format!("{}", decode_at(0x9301_0007, DEV).unwrap()), "8-bit read into w1 from IPA 0x9000010");
    }

    /// Little-endian byte-addressable memory; returns junk above the access
    /// size (which the dispatcher must drop) and counts accesses.
    struct Scratch {
        bytes: Mutex<[u8; 0x100]>,
        reads: AtomicUsize,
        last_vcpu: AtomicUsize,
    }

    impl Scratch {
        fn new() -> Arc<Self> {
            Arc::new(Scratch {
                bytes: Mutex::new([0; 0x100]),
                reads: AtomicUsize::new(0),
                last_vcpu: AtomicUsize::new(99),
            })
        }
    }

    impl MmioDevice for Scratch {
        fn read(&self, vcpu: usize, offset: u64, size: AccessSize) -> Result<u64, MmioError> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.last_vcpu.store(vcpu, Ordering::Relaxed);
            let b = self.bytes.lock().unwrap();
            let o = offset as usize;
            let v = (0..size.bytes() as usize).fold(0u64, |v, i| v | u64::from(b[o + i]) << (8 * i));
            Ok(v | (0xa5a5_a5a5_a5a5_a5a5 & !size.mask()))
        }

        fn write(&self, vcpu: usize, offset: u64, size: AccessSize, value: u64) -> Result<(), MmioError> {
            assert_eq!(value & !size.mask(), 0, "value not cut to size");
            self.last_vcpu.store(vcpu, Ordering::Relaxed);
            let mut b = self.bytes.lock().unwrap();
            for i in 0..size.bytes() as usize {
                b[offset as usize + i] = (value >> (8 * i)) as u8;
            }
            Ok(())
        }
    }

    /// An identification block: a 32-bit read-only register at 0, nothing
    /// else.
    struct IdRegs;

    impl MmioDevice for IdRegs {
        fn read(&self, _: usize, offset: u64, size: AccessSize) -> Result<u64, MmioError> {
            match (offset, size) {
                (0, Word) => Ok(0x4115_0011),
                (0, _) => Err(MmioError::BadSize),
                _ => Err(MmioError::NoRegister),
            }
        }

        fn write(&self, _: usize, _: u64, _: AccessSize, _: u64) -> Result<(), MmioError> {
            Err(MmioError::ReadOnly)
        }
    }

    fn ipa(a: u64) -> IntermediatePhysAddr {
        IntermediatePhysAddr::new(a)
    }

    fn map(scratch: &Arc<Scratch>) -> MmioMap {
        let mut m = MmioMap::new();
        m.add(ipa(0x0900_0000), 0x100, "scratch", scratch.clone()).unwrap();
        m.add(ipa(0x0800_0000), 0x1000, "idregs", Arc::new(IdRegs)).unwrap();
        m
    }

    #[test]
    fn emulate_stores_and_loads_through_registers() {
        let scratch = Scratch::new();
        let m = map(&scratch);
        let mut regs = [0u64; 31];
        regs[30] = 0x8877_6655_4433_8001;

        // str x30, [x4] at 0x0900_0010.
        let a = decode_at(0x93de_8047, 0x0900_0010).unwrap();
        m.emulate(2, &a, &mut regs).unwrap();
        assert_eq!(scratch.last_vcpu.load(Ordering::Relaxed), 2);
        assert_eq!(scratch.bytes.lock().unwrap()[0x10..0x18], [0x01, 0x80, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);

        // ldrsh x2, [x3] at 0x0900_0010: 0x8001, sign-extended.
        regs[2] = 0x1234;
        m.emulate(1, &decode_at(0x9362_8006, 0x0900_0010).unwrap(), &mut regs).unwrap();
        assert_eq!(regs[2], 0xffff_ffff_ffff_8001);
        // ldrb w1, [x0] at 0x0900_0017: 0x88, upper bits of x1 cleared.
        regs[1] = u64::MAX;
        m.emulate(1, &decode_at(0x9301_0007, 0x0900_0017).unwrap(), &mut regs).unwrap();
        assert_eq!(regs[1], 0x88);
        // ldrsw x5, [x6] at 0x0900_0014: 0x8877_6655 sign-extended.
        m.emulate(1, &decode_at(0x93a5_8007, 0x0900_0014).unwrap(), &mut regs).unwrap();
        assert_eq!(regs[5], 0xffff_ffff_8877_6655);
        // ldr w7, [x8]: the device's junk above 32 bits is dropped.
        m.emulate(1, &decode_at(0x9387_0007, 0x0900_0010).unwrap(), &mut regs).unwrap();
        assert_eq!(regs[7], 0x4433_8001);

        // strh wzr, [x5] at 0x0900_0012 zeroes two bytes, whatever x5 holds.
        m.emulate(0, &decode_at(0x935f_0047, 0x0900_0012).unwrap(), &mut regs).unwrap();
        assert_eq!(scratch.bytes.lock().unwrap()[0x10..0x18], [0x01, 0x80, 0, 0, 0x55, 0x66, 0x77, 0x88]);

        // ldr xzr, [x0]: the device is read (side effects), no register changes.
        let (reads, before) = (scratch.reads.load(Ordering::Relaxed), regs);
        m.emulate(0, &decode_at(0x93df_8007, 0x0900_0010).unwrap(), &mut regs).unwrap();
        assert_eq!(scratch.reads.load(Ordering::Relaxed), reads + 1);
        assert_eq!(regs, before);

        // The first and last bytes of a region.
        m.emulate(0, &decode_at(0x9301_0007, 0x0900_0000).unwrap(), &mut regs).unwrap();
        m.emulate(0, &decode_at(0x9301_0007, 0x0900_00ff).unwrap(), &mut regs).unwrap();
        m.emulate(0, &decode_at(0x93de_8047, 0x0900_00f8).unwrap(), &mut regs).unwrap();
    }

    #[test]
    fn unmapped_and_unaligned_accesses_fail_with_the_address() {
        let scratch = Scratch::new();
        let m = map(&scratch);
        let mut regs = [7u64; 31];
        for addr in [0x0, 0x08ff_fff8, 0x0800_1000, 0x0900_0100, 0x0a00_0000, !7] {
            let a = MmioAccess { ipa: ipa(addr), ..decode_at(0x9387_0007, DEV).unwrap() };
            let e = m.emulate(0, &a, &mut regs).unwrap_err();
            assert_eq!((e.error, e.region), (MmioError::Unmapped, None), "{addr:#x}");
            assert_eq!(e.access, a);
        }
        assert_eq!(regs, [7; 31], "registers untouched");
        let a = decode_at(0x9387_0007, 0x0a00_0004).unwrap();
        assert_eq!(
            format!("{}", m.emulate(3, &a, &mut regs).unwrap_err()),
            "32-bit read into w7 from IPA 0xa000004: no emulated device there"
        );

        // ldr w7 at offset 2: misaligned.
        let a = decode_at(0x9387_0007, 0x0900_0012).unwrap();
        let e = m.emulate(0, &a, &mut regs).unwrap_err();
        assert_eq!(e.error, MmioError::Unaligned);
        assert_eq!(e.region, Some(RegionHit { name: "scratch", offset: 0x12 }));
        assert_eq!(format!("{e}"), "32-bit read into w7 from IPA 0x9000012 (scratch + 0x12): not aligned to its size");
        // str x30 at offset 4.
        assert_eq!(
            m.emulate(0, &decode_at(0x93de_8047, 0x0900_0004).unwrap(), &mut regs).unwrap_err().error,
            MmioError::Unaligned
        );
        assert_eq!(scratch.reads.load(Ordering::Relaxed), 0);
        assert_eq!(*scratch.bytes.lock().unwrap(), [0; 0x100]);
    }

    #[test]
    fn device_errors_name_region_and_offset() {
        let scratch = Scratch::new();
        let m = map(&scratch);
        let mut regs = [0u64; 31];
        // ldr w7 of the ID register works; a byte read of it, a write, and
        // a read of an empty offset do not.
        m.emulate(0, &decode_at(0x9387_0007, 0x0800_0000).unwrap(), &mut regs).unwrap();
        assert_eq!(regs[7], 0x4115_0011);
        let e = m.emulate(0, &decode_at(0x9301_0007, 0x0800_0000).unwrap(), &mut regs).unwrap_err();
        assert_eq!(e.error, MmioError::BadSize);
        let e = m.emulate(0, &decode_at(0x9380_004f, 0x0800_0000).unwrap(), &mut regs).unwrap_err();
        assert_eq!(format!("{e}"), "32-bit write of w0 to IPA 0x8000000 (idregs + 0x0): register is read-only");
        let e = m.emulate(0, &decode_at(0x9387_0007, 0x0800_0ffc).unwrap(), &mut regs).unwrap_err();
        assert_eq!((e.error, e.region), (MmioError::NoRegister, Some(RegionHit { name: "idregs", offset: 0xffc })));
        assert_eq!(regs[7], 0x4115_0011, "a failed load leaves the register alone");
    }

    #[test]
    fn map_building_and_lookup() {
        let s = Scratch::new();
        let dev = || -> Arc<dyn MmioDevice> { s.clone() };
        let mut m = MmioMap::new();
        m.add(ipa(0x1000), 0x1000, "b", dev()).unwrap();
        m.add(ipa(0x3000), 0x1000, "d", dev()).unwrap();
        // Adjacent on both sides is fine.
        m.add(ipa(0x2000), 0x1000, "c", dev()).unwrap();
        m.add(ipa(0x0ff8), 0x8, "a", dev()).unwrap();
        assert_eq!(m.regions().iter().map(Region::name).collect::<Vec<_>>(), ["a", "b", "c", "d"]);

        assert_eq!(m.add(ipa(0x1800), 0x10, "x", dev()), Err(MapError::Overlaps { name: "x", other: "b" }));
        assert_eq!(m.add(ipa(0x0ff0), 0x10, "x", dev()), Err(MapError::Overlaps { name: "x", other: "a" }));
        assert_eq!(m.add(ipa(0x0), 0x10000, "x", dev()), Err(MapError::Overlaps { name: "x", other: "a" }));
        assert_eq!(m.add(ipa(0x3ff8), 0x10, "x", dev()), Err(MapError::Overlaps { name: "x", other: "d" }));
        assert_eq!(m.add(ipa(0x5000), 0, "x", dev()), Err(MapError::Empty("x")));
        assert_eq!(m.add(ipa(0x5004), 8, "x", dev()), Err(MapError::Misaligned("x")));
        assert_eq!(m.add(ipa(0x5000), 12, "x", dev()), Err(MapError::Misaligned("x")));
        assert_eq!(m.add(ipa(!7), 16, "x", dev()), Err(MapError::Overflow("x")));
        assert_eq!(format!("{}", MapError::Overlaps { name: "x", other: "b" }), "MMIO region x overlaps b");
        assert_eq!(m.regions().len(), 4);

        let hit = |a: u64| m.find(ipa(a)).map(|(r, o)| (r.name(), o));
        assert_eq!(hit(0x0ff7), None);
        assert_eq!(hit(0x0ff8), Some(("a", 0)));
        assert_eq!(hit(0x0fff), Some(("a", 7)));
        assert_eq!(hit(0x1000), Some(("b", 0)));
        assert_eq!(hit(0x2fff), Some(("c", 0xfff)));
        assert_eq!(hit(0x3abc), Some(("d", 0xabc)));
        assert_eq!(hit(0x4000), None);
        assert_eq!(hit(u64::MAX), None);
        assert_eq!(MmioMap::new().find(ipa(0)).map(|(r, _)| r.name()), None);
    }
}
