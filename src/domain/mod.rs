//! Domains: a guest's memory (its stage-2 tables), its vCPUs, and the
//! handling of its traps (AArch64 so far).
//!
//! Dom0 is built from the kernel module in `/chosen` (the binding Xen uses:
//! `multiboot,kernel` + `multiboot,module`). Its RAM is mapped 1:1 (guest
//! physical = host physical) so devices passed through later can DMA without
//! an IOMMU, as Xen does. A vCPU runs at EL1 with HVC (and trapped SMC)
//! going to the SMC Calling Convention dispatcher, and any access outside
//! what the domain owns turns into an abort injected into the guest, with a
//! log line: a guest's mistake never stops the hypervisor.

mod tables;

use crate::arch::guest::{self, Stage2Maintenance};
use crate::arch::exception::ExceptionFrame;
use crate::boot::memory::FRAMES;
use crate::boot::relocate::DIRECTMAP_VA;
use crate::crash::esr::Syndrome;
use crate::dt::{Conduit, DtError, Region};
use crate::mm::addr::{IntermediatePhysAddr, PAGE_SIZE, PhysAddr};
use crate::mm::frames::FrameError;
use crate::mm::lpae::{Access, Attributes, CreateError, Geometry, MapError, MapOptions, MemoryType, PageTable, Stage2};
use crate::psci::fid;
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};
use log::{info, warn};
use tables::FrameTables;

/// Dom0's RAM when no `dom0_mem=` is given.
pub const DOM0_MEM_DEFAULT: u64 = 128 << 20;
/// SMCCC vendor-specific hypervisor call: write the byte in x1 to the
/// domain's console (used by the test guests; dom0 Linux gets a UART).
pub const HVC_CONSOLE_PUTC: u32 = 0x8600_0100;

/// A guest.
pub struct Domain {
    /// Domain number (0 for dom0).
    pub id: u16,
    /// VMID tagging its TLB entries.
    pub vmid: u16,
    /// Its RAM (guest physical = host physical for dom0).
    pub ram: Region,
    /// Its stage-2 tables.
    pub stage2: PageTable<Stage2, FrameTables, Stage2Maintenance>,
}

/// Why a domain could not be built.
#[derive(Debug)]
pub enum DomainError {
    /// No kernel module in `/chosen`.
    NoKernel,
    /// Reading the device tree failed.
    Dt(DtError),
    /// No memory for the domain.
    Memory(FrameError<'static>),
    /// The page allocator is not set up (no relocation on this boot).
    NoAllocator,
    /// Stage-2 tables.
    Map(MapError),
    /// Stage-2 tables.
    Create(CreateError),
    /// The stage-2 geometry is refused.
    Geometry(crate::mm::lpae::GeometryError),
    /// The kernel does not fit the domain's RAM.
    KernelTooLarge {
        /// Bytes needed (text offset + image size).
        need: u64,
        /// RAM size.
        have: u64,
    },
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainError::NoKernel => write!(f, "no multiboot,kernel module in /chosen"),
            DomainError::Dt(e) => write!(f, "device tree: {e}"),
            DomainError::Memory(e) => write!(f, "memory: {e}"),
            DomainError::NoAllocator => write!(f, "no page allocator"),
            DomainError::Map(e) => write!(f, "stage-2 tables: {e}"),
            DomainError::Create(e) => write!(f, "stage-2 tables: {e:?}"),
            DomainError::Geometry(e) => write!(f, "stage-2 geometry: {e:?}"),
            DomainError::KernelTooLarge { need, have } => {
                write!(f, "kernel needs {need:#x} bytes, the domain has {have:#x}")
            }
        }
    }
}

/// The firmware's PSCI conduit, for the hardware domain's SYSTEM_OFF.
static FIRMWARE_CONDUIT: AtomicU32 = AtomicU32::new(0);

/// Builds dom0 from the kernel module `kernel` with `mem` bytes of RAM and
/// runs its vCPU 0 on this CPU. Returns only on error.
pub fn start_dom0(kernel: Region, mem: u64, conduit: Conduit) -> DomainError {
    FIRMWARE_CONDUIT.store(if conduit == Conduit::Hvc { 2 } else { 1 }, Ordering::Relaxed);
    match build_dom0(kernel, mem) {
        Ok((dom, entry)) => {
            guest::load_stage2(dom.stage2.root(), dom.vmid);
            let mut dom = dom;
            dom.stage2.maintenance_mut().set_live();
            info!("d0: entering vCPU0 at {entry:#x} (EL1, MMU off), stage-2 root {}", dom.stage2.root());
            *DOM0.lock() = Some(dom);
            guest::run_vcpu(entry, 0, 0)
        }
        Err(e) => e,
    }
}

/// Dom0, once built.
pub static DOM0: spin::Mutex<Option<Domain>> = spin::Mutex::new(None);

/// Where Linux wants a 2 MiB-aligned base plus `text_offset`; an image with
/// no arm64 Image header is loaded at the base.
fn image_layout(image: &[u8]) -> (u64, u64) {
    let le64 = |o: usize| image.get(o..o + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    if image.get(0x38..0x3c) == Some(b"ARM\x64") {
        let size = le64(16);
        (le64(8), if size == 0 { image.len() as u64 } else { size })
    } else {
        (0, image.len() as u64)
    }
}

fn build_dom0(kernel: Region, mem: u64) -> Result<(Domain, u64), DomainError> {
    let mem = mem.next_multiple_of(2 << 20);
    let base = {
        let mut frames = FRAMES.lock();
        let frames = frames.as_mut().ok_or(DomainError::NoAllocator)?;
        frames.alloc(mem / PAGE_SIZE, (2 << 20) / PAGE_SIZE).map_err(DomainError::Memory)?
    };
    let ram = Region { base: base.as_u64(), size: mem };
    // SAFETY: the module is RAM the page allocator keeps claimed (a boot
    // module), mapped by the direct map.
    let image = unsafe { core::slice::from_raw_parts((DIRECTMAP_VA + kernel.base) as *const u8, kernel.size as usize) };
    let (text_offset, image_size) = image_layout(image);
    if text_offset + image_size.max(kernel.size) > mem {
        return Err(DomainError::KernelTooLarge { need: text_offset + image_size, have: mem });
    }
    let entry = ram.base + text_offset;
    let dst = (DIRECTMAP_VA + entry) as *mut u8;
    // SAFETY: `dst` is inside the domain's freshly allocated RAM.
    unsafe { core::ptr::copy_nonoverlapping(image.as_ptr(), dst, image.len()) };
    // The guest starts with its MMU (and caches) off: its first fetches and
    // loads read memory, so push the copy there.
    crate::arch::clean_dcache_range(dst as usize, image.len());

    let geometry = Geometry::new(1, guest::IPA_BITS, 48).map_err(DomainError::Geometry)?;
    let mut s2 = PageTable::<Stage2, _, _>::new(geometry, FrameTables, Stage2Maintenance::building())
        .map_err(DomainError::Create)?;
    let rwx = Attributes::new(MemoryType::Normal, Access::ReadWriteExecute);
    s2.map(IntermediatePhysAddr::new(ram.base), PhysAddr::new(ram.base), ram.size, rwx, MapOptions::new())
        .map_err(DomainError::Map)?;
    info!(
        "d0: {} MiB RAM at {} (1:1), kernel module {} copied to {entry:#x} (text_offset {text_offset:#x})",
        mem >> 20,
        ram,
        kernel
    );
    Ok((Domain { id: 0, vmid: 1, ram, stage2: s2 }, entry))
}

/// A guest console line, written out at each newline.
struct LineBuf {
    buf: [u8; 160],
    len: usize,
}

static CONSOLE: spin::Mutex<LineBuf> = spin::Mutex::new(LineBuf { buf: [0; 160], len: 0 });

fn console_putc(c: u8) {
    let mut l = CONSOLE.lock();
    if c != b'\n' && l.len < l.buf.len() {
        let n = l.len;
        l.buf[n] = c;
        l.len += 1;
        return;
    }
    let line = core::str::from_utf8(&l.buf[..l.len]).unwrap_or("(not UTF-8)");
    info!("d0v0: {line}");
    l.len = 0;
    if c != b'\n' {
        let n = l.len;
        l.buf[n] = c;
        l.len = 1;
    }
}

/// A synchronous trap from a guest: `frame` holds its registers and is
/// updated for the return.
pub fn guest_sync(frame: &mut ExceptionFrame) {
    let syn = Syndrome::new(frame.esr);
    match syn.ec {
        0x16 => smccc(frame),
        0x17 => {
            smccc(frame);
            frame.elr += 4; // a trapped SMC returns to the instruction itself
        }
        0x24 => {
            let ipa = guest::fault_ipa(frame.far);
            warn!(
                "d0v0: {} of IPA {ipa:#x} (VA {:#x}) at PC {:#x}: not the domain's memory nor a device; abort injected",
                if syn.is_write() { "write" } else { "read" },
                frame.far,
                frame.elr
            );
            guest::inject_data_abort(frame, frame.far);
        }
        ec => {
            warn!(
                "d0v0: unhandled trap EC {ec:#04x} ({}) at PC {:#x}; undefined instruction injected",
                syn.class_name(),
                frame.elr
            );
            guest::inject_undefined(frame);
        }
    }
}

fn smccc(frame: &mut ExceptionFrame) {
    let id = frame.x[0] as u32;
    let ret: i64 = match id {
        HVC_CONSOLE_PUTC => {
            console_putc(frame.x[1] as u8);
            0
        }
        fid::VERSION => 0x1_0001,
        fid::SYSTEM_OFF => {
            info!("d0: PSCI SYSTEM_OFF from the hardware domain: powering off");
            let c = if FIRMWARE_CONDUIT.load(Ordering::Relaxed) == 2 { Conduit::Hvc } else { Conduit::Smc };
            crate::arch::firmware_call(c, fid::SYSTEM_OFF, 0, 0, 0);
            -6
        }
        fid::SYSTEM_RESET => {
            info!("d0: PSCI SYSTEM_RESET from the hardware domain: resetting");
            let c = if FIRMWARE_CONDUIT.load(Ordering::Relaxed) == 2 { Conduit::Hvc } else { Conduit::Smc };
            crate::arch::firmware_call(c, fid::SYSTEM_RESET, 0, 0, 0);
            -6
        }
        other => {
            warn!("d0v0: unhandled SMCCC call {other:#010x}: NOT_SUPPORTED");
            -1
        }
    };
    frame.x[0] = ret as u64;
}
