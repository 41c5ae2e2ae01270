//! Checks on what the boot loader hands over, made before anything is
//! copied: the boot modules of `/chosen` (inside RAM, not empty, not over
//! one another, the DTB, reserved memory or the hypervisor), the format of
//! dom0's kernel (an arm64 `Image`, and nothing else by name: gzip, ARMv7
//! zImage, zeros, a header alone), and the placement of dom0's kernel,
//! ramdisk and device tree in its RAM with checked arithmetic.
//!
//! Pure logic (no hardware access), unit tested on the host.

use crate::dt::Region;
use core::fmt;

/// What a boot module is for (Xen's binding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `multiboot,kernel`, or the first plain `multiboot,module`.
    Kernel,
    /// `multiboot,ramdisk`, or the second plain `multiboot,module`.
    Ramdisk,
    /// Anything else (a device tree, an XSM policy, a later plain module).
    Other,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Kernel => "kernel",
            Role::Ramdisk => "ramdisk",
            Role::Other => "module",
        })
    }
}

/// One boot module: its `/chosen` child node and its `reg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module<'a> {
    /// The node's name (`module@4a000000`).
    pub name: &'a str,
    /// Its first (and only) `reg` entry.
    pub region: Region,
    /// What it is for.
    pub role: Role,
}

/// Something else in memory a module must not overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keep<'a> {
    /// What it is (`the device tree`, `the hypervisor's load region`).
    pub what: &'a str,
    /// Where.
    pub region: Region,
}

/// Why the boot modules are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleError<'a> {
    /// A module of size 0.
    Empty(Module<'a>),
    /// `base + size` is beyond the 64-bit address space.
    Wraps(Module<'a>),
    /// Not inside any RAM bank at all.
    OutsideRam(Module<'a>),
    /// Starts in a RAM bank but runs past its end.
    Straddles {
        /// The module.
        module: Module<'a>,
        /// The bank it starts in.
        bank: Region,
    },
    /// Two modules share memory.
    Overlap(Module<'a>, Module<'a>),
    /// A module lies over something else that must stay.
    Over(Module<'a>, Keep<'a>),
}

impl fmt::Display for Module<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/chosen/{} ({}) at {}", self.name, self.role, self.region)
    }
}

impl fmt::Display for ModuleError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleError::Empty(m) => write!(f, "boot module /chosen/{} ({}): reg gives size 0", m.name, m.role),
            ModuleError::Wraps(m) => write!(
                f,
                "boot module /chosen/{} ({}): reg {:#x} + size {:#x} is beyond the 64-bit address space",
                m.name, m.role, m.region.base, m.region.size
            ),
            ModuleError::OutsideRam(m) => {
                write!(f, "boot module {m} is not in RAM (outside every /memory bank)")
            }
            ModuleError::Straddles { module, bank } => write!(
                f,
                "boot module {module} runs {:#x} bytes past the end of the RAM bank {bank}",
                module.region.end() - bank.end()
            ),
            ModuleError::Overlap(a, b) => write!(f, "boot modules overlap: {a} and {b}"),
            ModuleError::Over(m, k) => write!(f, "boot module {m} overlaps {} at {}", k.what, k.region),
        }
    }
}

/// Whether two regions share a byte.
pub fn overlaps(a: Region, b: Region) -> bool {
    a.size != 0 && b.size != 0 && a.base < b.end() && b.base < a.end()
}

/// Checks every module: not empty, inside one RAM bank (`banks`), not over
/// another module nor over anything in `keep`. The first problem found is
/// returned (modules in order).
pub fn check_modules<'a>(modules: &[Module<'a>], banks: &[Region], keep: &[Keep<'a>]) -> Result<(), ModuleError<'a>> {
    for (i, m) in modules.iter().enumerate() {
        let r = m.region;
        if r.size == 0 {
            return Err(ModuleError::Empty(*m));
        }
        if r.base.checked_add(r.size).is_none() {
            return Err(ModuleError::Wraps(*m));
        }
        match banks.iter().find(|b| b.base <= r.base && r.base < b.end()) {
            None => return Err(ModuleError::OutsideRam(*m)),
            Some(b) if r.end() > b.end() => return Err(ModuleError::Straddles { module: *m, bank: *b }),
            Some(_) => {}
        }
        if let Some(other) = modules[..i].iter().find(|o| overlaps(o.region, r)) {
            return Err(ModuleError::Overlap(*other, *m));
        }
        if let Some(k) = keep.iter().find(|k| overlaps(k.region, r)) {
            return Err(ModuleError::Over(*m, *k));
        }
    }
    Ok(())
}

/// Dom0's kernel and ramdisk among `modules`: the first of each role.
pub fn dom0_roles<'m, 'a>(modules: &'m [Module<'a>]) -> (Option<&'m Module<'a>>, Option<&'m Module<'a>>) {
    let first = |role| modules.iter().find(|m| m.role == role);
    (first(Role::Kernel), first(Role::Ramdisk))
}

/// Size of the arm64 `Image` header.
pub const IMAGE_HEADER_SIZE: usize = 64;
/// `magic` of the arm64 `Image` header, at offset 0x38.
const ARM64_MAGIC: &[u8; 4] = b"ARM\x64";
/// The ARMv7 zImage magic (`0x016f2818`, little endian) at offset 0x24.
const ZIMAGE_MAGIC: u32 = 0x016f_2818;

/// What the arm64 `Image` header of dom0's kernel says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arm64Image {
    /// `text_offset`: where the image goes above a 2 MiB aligned base.
    pub text_offset: u64,
    /// `image_size`: bytes the image occupies once loaded (BSS included);
    /// at least the module's size.
    pub image_size: u64,
}

/// Why dom0's kernel is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelError {
    /// A module of size 0.
    Empty,
    /// Only zeros in its first bytes.
    Zeros,
    /// gzip data (`1f 8b`): a compressed `Image.gz` (decompressed by the
    /// caller first; this error is for gzip inside gzip).
    Gzip,
    /// gzip data that cannot be decompressed.
    BadGzip(GzipError),
    /// An ARMv7 (32-bit) zImage.
    Zimage,
    /// Shorter than the 64-byte header.
    TooShort(u64),
    /// No `ARM\x64` magic at offset 0x38: not an arm64 Image.
    NoMagic([u8; 8]),
    /// The header's flags say big-endian.
    BigEndian,
    /// The first instruction does not branch inside the module: a header
    /// alone, or a corrupt one.
    EntryOutside {
        /// Where the first branch goes, from the start of the image.
        target: u64,
        /// The module's size.
        size: u64,
    },
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::Empty => write!(f, "the module is empty (size 0)"),
            KernelError::Zeros => write!(f, "its first bytes are all zeros: not an arm64 Image"),
            KernelError::Gzip => write!(f, "it is gzip-compressed twice (an Image.gz.gz?)"),
            KernelError::BadGzip(e) => write!(f, "it is gzip-compressed (an Image.gz), but {e}"),
            KernelError::Zimage => {
                write!(f, "it is an ARMv7 (32-bit) zImage: dom0 on AArch64 needs an arm64 Image")
            }
            KernelError::TooShort(n) => {
                write!(f, "it has {n} bytes, fewer than the 64-byte arm64 Image header: not an arm64 Image")
            }
            KernelError::NoMagic(b) => write!(
                f,
                "no arm64 Image magic (\"ARM\\x64\" at offset 0x38); it starts with {:02x} {:02x} {:02x} {:02x} \
                 {:02x} {:02x} {:02x} {:02x}: not an arm64 Image",
                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]
            ),
            KernelError::BigEndian => write!(f, "its Image header says big-endian: Armature runs little-endian guests"),
            KernelError::EntryOutside { target, size } => write!(
                f,
                "its first instruction branches to offset {target:#x}, outside the module ({size:#x} bytes): \
                 an Image header without its code?"
            ),
        }
    }
}

/// Reads the arm64 `Image` header of dom0's kernel (`bytes`: the whole
/// module, or at least its first page) of `size` bytes. Anything else is
/// refused by name.
pub fn parse_kernel(bytes: &[u8], size: u64) -> Result<Arm64Image, KernelError> {
    if size == 0 || bytes.is_empty() {
        return Err(KernelError::Empty);
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Err(KernelError::Gzip);
    }
    let le32 = |o: usize| bytes.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let le64 =
        |o: usize| bytes.get(o..o + 8).map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
    if le32(0x24) == Some(ZIMAGE_MAGIC) {
        return Err(KernelError::Zimage);
    }
    let head = &bytes[..bytes.len().min(IMAGE_HEADER_SIZE)];
    if head.iter().all(|&b| b == 0) {
        return Err(KernelError::Zeros);
    }
    if size < IMAGE_HEADER_SIZE as u64 || bytes.len() < IMAGE_HEADER_SIZE {
        return Err(KernelError::TooShort(size));
    }
    if bytes.get(0x38..0x3c) != Some(&ARM64_MAGIC[..]) {
        let mut first = [0u8; 8];
        first.copy_from_slice(&bytes[..8]);
        return Err(KernelError::NoMagic(first));
    }
    let (text_offset, image_size, flags) = (le64(8).unwrap_or(0), le64(16).unwrap_or(0), le64(24).unwrap_or(0));
    if image_size != 0 && flags & 1 != 0 {
        return Err(KernelError::BigEndian);
    }
    // The entry is offset 0: `b stext`, or (EFI stub) an instruction
    // whose first bytes are "MZ" (`add x13, x18, #0x16`, or `ccmp` in
    // newer kernels), then `b primary_entry`.
    let (at, insn) = if bytes.starts_with(b"MZ") { (4, le32(4).unwrap_or(0)) } else { (0, le32(0).unwrap_or(0)) };
    if insn >> 26 == 0b000101 {
        // B imm26: a signed word offset from the instruction.
        let imm = i64::from(((insn & 0x03ff_ffff) << 6) as i32 >> 6) * 4;
        let target = (at as i64).wrapping_add(imm) as u64;
        if target >= size {
            return Err(KernelError::EntryOutside { target, size });
        }
    }
    // Before Linux 3.17 `image_size` was 0 (and text_offset 0x80000).
    let image_size = if image_size == 0 { size } else { image_size.max(size) };
    Ok(Arm64Image { text_offset, image_size })
}

/// Whether a kernel module is gzip data (`1f 8b`, deflate).
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b, 8])
}

/// Why gzip data cannot be decompressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GzipError {
    /// The header is cut short or uses reserved flags.
    Header,
    /// The deflate data is corrupt (or cut short).
    Data,
    /// The output is not as long as the trailer says (`have`, `want`).
    Length {
        /// Bytes decompressed.
        have: u64,
        /// `ISIZE` of the trailer.
        want: u64,
    },
    /// The CRC-32 of the output is not the trailer's.
    Crc,
}

impl fmt::Display for GzipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GzipError::Header => write!(f, "its gzip header is cut short or has reserved flags"),
            GzipError::Data => write!(f, "its gzip data is corrupt or cut short"),
            GzipError::Length { have, want } => {
                write!(f, "it decompresses to {have:#x} bytes, its gzip trailer says {want:#x}")
            }
            GzipError::Crc => write!(f, "its decompressed data fails the gzip CRC-32 check"),
        }
    }
}

/// A gzip member: where its deflate data is, and its trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gzip {
    /// Offset of the deflate data.
    pub data: usize,
    /// Uncompressed size (`ISIZE`, modulo 4 GiB).
    pub size: u32,
    /// CRC-32 of the uncompressed data.
    pub crc: u32,
}

/// Reads a gzip member's header (RFC 1952) and trailer.
pub fn gzip_header(b: &[u8]) -> Result<Gzip, GzipError> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    if !is_gzip(b) || b.len() < 18 {
        return Err(GzipError::Header);
    }
    let flags = b[3];
    if flags & 0xe0 != 0 {
        return Err(GzipError::Header);
    }
    let mut at = 10usize;
    if flags & FEXTRA != 0 {
        let xlen = b.get(at..at + 2).ok_or(GzipError::Header)?;
        at += 2 + usize::from(u16::from_le_bytes([xlen[0], xlen[1]]));
    }
    for f in [FNAME, FCOMMENT] {
        if flags & f != 0 {
            let len = b.get(at..).and_then(|r| r.iter().position(|&c| c == 0)).ok_or(GzipError::Header)?;
            at += len + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    let t = b.len() - 8;
    if at > t {
        return Err(GzipError::Header);
    }
    let le = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    Ok(Gzip { data: at, crc: le(t), size: le(t + 4) })
}

/// CRC-32 (IEEE, reflected), as gzip uses.
pub fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, e) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
        *e = c;
    }
    !data.iter().fold(!0u32, |c, &b| table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8))
}

/// Decompresses the gzip member `b` into `out` (exactly as long as its
/// trailer's size) and checks length and CRC-32. `state` is the inflater's
/// (large) state, provided by the caller.
pub fn gunzip_into(
    b: &[u8],
    out: &mut [u8],
    state: &mut miniz_oxide::inflate::core::DecompressorOxide,
) -> Result<(), GzipError> {
    use miniz_oxide::inflate::TINFLStatus;
    use miniz_oxide::inflate::core::{decompress, inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF};
    let g = gzip_header(b)?;
    let input = &b[g.data..b.len() - 8];
    state.init();
    let (status, _, written) = decompress(state, input, out, 0, TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF);
    match status {
        TINFLStatus::Done => {}
        TINFLStatus::HasMoreOutput => {
            return Err(GzipError::Length { have: out.len() as u64 + 1, want: u64::from(g.size) });
        }
        _ => return Err(GzipError::Data),
    }
    if written != out.len() || written as u32 != g.size {
        return Err(GzipError::Length { have: written as u64, want: u64::from(g.size) });
    }
    if crc32(out) != g.crc {
        return Err(GzipError::Crc);
    }
    Ok(())
}

/// Where dom0's pieces go in its RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dom0Placement {
    /// The kernel's entry (and load address): base + `text_offset`.
    pub entry: u64,
    /// The device tree's address (the last `dtb_max` bytes of RAM).
    pub dtb: u64,
    /// The ramdisk, right below the device tree, page aligned.
    pub initrd: Option<Region>,
}

/// Why dom0's pieces do not fit its RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaceError {
    /// `text_offset` of the kernel.
    pub text_offset: u64,
    /// `image_size` of the kernel.
    pub image_size: u64,
    /// The ramdisk's size.
    pub ramdisk: u64,
    /// Room kept for the device tree.
    pub dtb: u64,
    /// The RAM.
    pub ram: Region,
}

impl fmt::Display for PlaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let need = self.text_offset.checked_add(self.image_size).and_then(|n| n.checked_add(self.ramdisk));
        let need = need.and_then(|n| n.checked_add(self.dtb));
        write!(
            f,
            "the kernel (text_offset {:#x}, image_size {:#x}), ramdisk ({:#x} bytes) and device tree ({:#x}) ",
            self.text_offset, self.image_size, self.ramdisk, self.dtb
        )?;
        match need {
            Some(n) => write!(f, "need {n:#x} bytes ({} MiB)", n.div_ceil(1 << 20))?,
            None => write!(f, "need more than the 64-bit address space")?,
        }
        write!(f, "; dom0 has {} MiB at {} (dom0_mem=)", self.ram.size >> 20, self.ram)
    }
}

/// Places the kernel at `text_offset` from RAM's base, the device tree in
/// the last `dtb_max` bytes, the ramdisk (`ramdisk` bytes) right below it,
/// page aligned; nothing may overlap or leave the RAM. Every sum is checked.
pub fn place(
    ram: Region,
    text_offset: u64,
    image_size: u64,
    ramdisk: Option<u64>,
    dtb_max: u64,
    page: u64,
) -> Result<Dom0Placement, PlaceError> {
    let err = PlaceError { text_offset, image_size, ramdisk: ramdisk.unwrap_or(0), dtb: dtb_max, ram };
    let ram_end = ram.base.checked_add(ram.size).ok_or(err)?;
    let dtb = ram_end.checked_sub(dtb_max).filter(|&d| d >= ram.base).ok_or(err)?;
    let entry = ram.base.checked_add(text_offset).ok_or(err)?;
    let kernel_end = entry.checked_add(image_size).ok_or(err)?;
    let initrd = match ramdisk {
        Some(size) => {
            let base = dtb.checked_sub(size).ok_or(err)? & !(page - 1);
            if base < ram.base {
                return Err(err);
            }
            Some(Region { base, size })
        }
        None => None,
    };
    let low = initrd.map_or(dtb, |r| r.base);
    if kernel_end > low {
        return Err(err);
    }
    Ok(Dom0Placement { entry, dtb, initrd })
}

/// In which order dom0's kernel and ramdisk are copied when its RAM may
/// cover the modules themselves (their memory given back to make room for
/// `dom0_mem=`): a copy must not overwrite the other module before that one
/// is copied. `kernel` and `ramdisk` are (source, destination) pairs.
/// `Ok(true)`: the ramdisk first; `Ok(false)`: the kernel first; `Err`:
/// each destination lies over the other's source.
pub fn ramdisk_first(kernel: (Region, Region), ramdisk: Option<(Region, Region)>) -> Result<bool, CopyConflict> {
    let Some(rd) = ramdisk else { return Ok(false) };
    match (overlaps(kernel.1, rd.0), overlaps(rd.1, kernel.0)) {
        (true, true) => Err(CopyConflict { kernel, ramdisk: rd }),
        (kernel_over_ramdisk, _) => Ok(kernel_over_ramdisk),
    }
}

/// Dom0's kernel and ramdisk would each be copied over the other's module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyConflict {
    /// The kernel module and where it goes.
    pub kernel: (Region, Region),
    /// The ramdisk module and where it goes.
    pub ramdisk: (Region, Region),
}

impl fmt::Display for CopyConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the kernel module {} goes to {}, over the ramdisk module {}, which goes to {}, over the kernel \
             module: load the modules elsewhere or lower dom0_mem=",
            self.kernel.0, self.kernel.1, self.ramdisk.0, self.ramdisk.1
        )
    }
}

/// What the machine does after a fatal error (`on_fatal=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFatal {
    /// PSCI SYSTEM_OFF (the default).
    PowerOff,
    /// Stop, leaving the machine as it is (for a debugger).
    Halt,
    /// PSCI SYSTEM_RESET after this many seconds.
    Reset(u32),
}

impl OnFatal {
    /// Parses `on_fatal=`'s value: `poweroff`, `halt`, `reset` or
    /// `reset:<seconds>`.
    pub fn parse(v: &str) -> Option<OnFatal> {
        match v {
            "poweroff" => Some(OnFatal::PowerOff),
            "halt" => Some(OnFatal::Halt),
            "reset" => Some(OnFatal::Reset(0)),
            _ => v.strip_prefix("reset:").and_then(|s| s.parse().ok()).map(OnFatal::Reset),
        }
    }

    /// Packs it into a word (for an atomic).
    pub const fn encode(self) -> u64 {
        match self {
            OnFatal::PowerOff => 0,
            OnFatal::Halt => 1,
            OnFatal::Reset(s) => 2 | ((s as u64) << 8),
        }
    }

    /// The inverse of [`OnFatal::encode`].
    pub const fn decode(w: u64) -> OnFatal {
        match w & 0xff {
            1 => OnFatal::Halt,
            2 => OnFatal::Reset((w >> 8) as u32),
            _ => OnFatal::PowerOff,
        }
    }
}

#[cfg(test)]
#[path = "bootcheck_tests.rs"]
mod tests;
