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
use crate::arch::smp::NR_CPUS;
use crate::dt::gic::GicVersion;
use crate::mmio;
use crate::gic;
use crate::vgic::{Frame as VgicFrame, GICR_STRIDE, HwAction, Lr, MAX_LRS, Vgic, VgicConfig, Virq};
use crate::vpsci::{Action, PsciDomain, SmcccCall, StartInfo, UnhandledCalls, VcpuPower};
use core::sync::atomic::{AtomicU32, Ordering};
use crate::console::input::{DebugKey, Focus};
use crate::console::rx::{Action as ConsoleAction, ConsoleRx};
use crate::mmio::MmioDevice;
use crate::vpl011::Vpl011;
use log::{info, warn};
use tables::FrameTables;

/// Dom0's RAM when no `dom0_mem=` is given (Xen on Arm's default too).
pub const DOM0_MEM_DEFAULT: u64 = 512 << 20;
/// SMCCC vendor-specific hypervisor call: write the byte in x1 to the
/// domain's console (used by the test guests; dom0 Linux gets a UART).
pub const HVC_CONSOLE_PUTC: u32 = 0x8600_0100;

/// A guest. Shared by the physical CPUs running its vCPUs: the power state
/// of each vCPU is lock-free (PSCI `CPU_ON` races are settled by atomics in
/// [`crate::vpsci`]), the stage-2 tables have their own lock.
pub struct Domain {
    /// Domain number (0 for dom0).
    pub id: u16,
    /// VMID tagging its TLB entries.
    pub vmid: u16,
    /// Its RAM (guest physical = host physical for dom0).
    pub ram: Region,
    /// Number of vCPUs; vCPU `n` runs on physical CPU `n` (pinned), with
    /// the virtual MPIDR of [`crate::vgic::vcpu_mpidr`] (Aff0 = `n` below 16).
    pub nvcpus: usize,
    /// Root of its stage-2 tables (for VTTBR_EL2).
    pub stage2_root: PhysAddr,
    /// Its virtual counter offset (`CNTVOFF_EL2`, the same on every vCPU):
    /// the physical counter when it was built, so that its virtual counter
    /// starts near 0, as on Xen.
    pub cntvoff: u64,
    /// Its stage-2 tables.
    pub stage2: spin::Mutex<PageTable<Stage2, FrameTables, Stage2Maintenance>>,
    /// Power state of each vCPU (PSCI).
    pub power: [VcpuPower; NR_CPUS],
    /// SMCCC calls it made that are not handled.
    pub unhandled: UnhandledCalls,
    /// Its virtual GIC (emulated distributor and redistributors), if the
    /// host GIC could be described.
    pub vgic: Option<DomainVgic>,
    /// Its console UART (emulated), if it has one.
    pub uart: Option<DomainUart>,
}

/// A domain's emulated PL011 (dom0: at the host UART's address, which the
/// hypervisor keeps for its log), with the SPI it raises.
pub struct DomainUart {
    /// Where the guest sees it (one 4 KiB page).
    pub region: Region,
    /// Its SPI (level-triggered, not linked to a physical interrupt).
    pub spi: Option<u32>,
    /// The model; output goes to the hypervisor's console.
    pub dev: Vpl011<fn(u8)>,
}

/// Dom0's console output, written as it comes (see [`crate::console`]).
fn dom0_tx(byte: u8) {
    crate::console::with(|c| c.write_guest(&[byte]));
}

/// Who gets what is typed on the console (Ctrl-A three times switches),
/// and dom0's input on its way. Lock order: this, then dom0's UART, then
/// the vGIC.
static INPUT: spin::Mutex<ConsoleRx> = spin::Mutex::new(ConsoleRx::new());

/// A domain's virtual GIC and where the guest sees it (dom0: at the host
/// GIC's addresses).
pub struct DomainVgic {
    /// The model.
    pub model: Vgic,
    /// GICD.
    pub gicd: Region,
    /// GICR frames (GICv3), one per vCPU.
    pub gicr: Option<Region>,
    /// List registers used to deliver its interrupts (the hardware's
    /// number, at most [`MAX_LRS`]); 0 if the host GIC is not the one the
    /// model emulates and the vGIC is emulation only.
    pub nr_lrs: usize,
}

impl DomainVgic {
    /// Whether `ipa` is in its distributor or redistributor frames.
    pub fn covers(&self, ipa: u64) -> bool {
        (self.gicd.base <= ipa && ipa < self.gicd.end()) || self.gicr.is_some_and(|r| r.base <= ipa && ipa < r.end())
    }
}

/// What the hypervisor knows of the host GIC, for dom0's vGIC.
#[derive(Clone, Copy, Debug)]
pub struct HostGic {
    /// Programming model.
    pub version: GicVersion,
    /// GICD.
    pub gicd: Region,
    /// First GICR region (GICv3).
    pub gicr: Option<Region>,
    /// GICC: where the guest expects its CPU interface (GICv2).
    pub gicc: Option<Region>,
    /// GICV: the hardware virtual CPU interface mapped there (GICv2).
    pub gicv: Option<Region>,
}

/// Host devices given to dom0: their MMIO pages mapped 1:1 in stage 2,
/// their SPIs routed to the physical CPU of vCPU 0 and each linked to the
/// same virtual SPI (the guest deactivates it through the list register).
#[derive(Clone, Copy, Debug, Default)]
pub struct PassThrough<'s> {
    /// MMIO spans, whole pages, not overlapping.
    pub pages: &'s [Region],
    /// `/reserved-memory` regions dom0's device tree keeps (shared buffers,
    /// firmware tables): mapped 1:1 as Normal memory.
    pub memory: &'s [Region],
    /// Their SPIs' INTIDs.
    pub spis: &'s [u32],
}

/// Interrupt lines of dom0's vGIC: QEMU virt's 256 SPIs + 32. (Later: the
/// host's GICD_TYPER.)
const VGIC_LINES: u32 = 288;

impl PsciDomain for Domain {
    fn vcpus(&self) -> &[VcpuPower] {
        &self.power[..self.nvcpus]
    }

    fn vcpu_by_mpidr(&self, affinity: u64) -> Option<usize> {
        // MPIDR layout (Aff3 in 39:32) to the packed Aff3.Aff2.Aff1.Aff0.
        let packed = u32::try_from((affinity & 0xff_ffff) | ((affinity >> 8) & 0xff00_0000)).ok()?;
        crate::vgic::vcpu_of_affinity(packed, self.nvcpus)
    }

    fn is_guest_ram(&self, ipa: u64) -> bool {
        ipa >= self.ram.base && ipa < self.ram.end()
    }

    fn unhandled(&self) -> &UnhandledCalls {
        &self.unhandled
    }
}

/// Why a domain could not be built (once per boot: its size does not matter).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
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
    /// Dom0's device tree could not be made.
    DeviceTree(alloc::string::String),
    /// The kernel, ramdisk and device tree do not fit the domain's RAM.
    Placement(crate::bootcheck::PlaceError),
    /// The kernel module is not an arm64 Image.
    Kernel {
        /// The module.
        module: Region,
        /// What is wrong with it.
        error: crate::bootcheck::KernelError,
    },
    /// Dom0's kernel and ramdisk cannot be copied without one overwriting
    /// the other's module.
    CopyOrder(crate::bootcheck::CopyConflict),
    /// No free block of RAM as large as `dom0_mem=`.
    OutOfMemory {
        /// Bytes asked for.
        mem: u64,
        /// The largest free block, in bytes.
        largest: u64,
        /// Free memory in all, in bytes.
        free: u64,
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
            DomainError::DeviceTree(e) => write!(f, "its device tree: {e}"),
            DomainError::Placement(e) => write!(f, "{e}"),
            DomainError::CopyOrder(e) => write!(f, "{e}"),
            DomainError::Kernel { module, error } => write!(f, "kernel module at {module} refused: {error}"),
            DomainError::OutOfMemory { mem, largest, free } => write!(
                f,
                "dom0_mem={} MiB: no free block of RAM that large (largest free block {} MiB, {} MiB free in all); \
                 lower dom0_mem=",
                mem >> 20,
                largest >> 20,
                free >> 20
            ),
        }
    }
}

/// The firmware's PSCI conduit, for the hardware domain's SYSTEM_OFF.
static FIRMWARE_CONDUIT: AtomicU32 = AtomicU32::new(0);

/// What dom0 is built from.
pub struct Dom0Spec<'s> {
    /// The kernel module (an arm64 `Image`, or a flat binary loaded at the
    /// base of its RAM).
    pub kernel: Region,
    /// The initial ramdisk module, if any.
    pub ramdisk: Option<Region>,
    /// RAM in bytes (rounded up to 2 MiB).
    pub mem: u64,
    /// Most vCPUs (`dom0_max_vcpus=`); never more than the online CPUs.
    pub max_vcpus: Option<usize>,
    /// The firmware's PSCI conduit (for the hardware domain's SYSTEM_OFF),
    /// if there is PSCI firmware.
    pub conduit: Option<Conduit>,
    /// The host GIC, for the vGIC.
    pub gic: Option<HostGic>,
    /// Host devices passed through.
    pub devices: PassThrough<'s>,
    /// The host UART (its MMIO and SPI) dom0 gets an emulated PL011 at;
    /// the hypervisor keeps the real one (and its receive interrupt).
    pub uart: Option<(Region, Option<u32>)>,
    /// Makes dom0's device tree once its RAM, vCPUs and ramdisk place are
    /// known; an error is reported and the domain is not built.
    pub make_dtb: &'s mut dyn FnMut(&Dom0Layout) -> Result<alloc::vec::Vec<u8>, alloc::string::String>,
}

/// Where dom0's pieces are, for its device tree.
#[derive(Clone, Copy, Debug)]
pub struct Dom0Layout {
    /// Its RAM (guest physical = host physical).
    pub ram: Region,
    /// Number of vCPUs.
    pub nvcpus: usize,
    /// Where the ramdisk is in its RAM, if there is one.
    pub initrd: Option<Region>,
}

impl Dom0Layout {
    /// The virtual MPIDR of vCPU `n` (what its `/cpus` node's `reg` says).
    pub fn vcpu_mpidr(n: usize) -> u64 {
        crate::vgic::vcpu_mpidr(n) & crate::dt::MPIDR_AFFINITY_MASK
    }
}

/// Largest device tree dom0 may get (Linux's limit on arm64: 2 MiB).
const DTB_MAX: u64 = 2 << 20;

/// Builds dom0 from `spec` with one vCPU per online physical CPU (at most
/// `max_vcpus`), and runs its vCPU 0 on this CPU (the boot CPU). Returns
/// only on error.
pub fn start_dom0(spec: Dom0Spec<'_>) -> DomainError {
    FIRMWARE_CONDUIT.store(
        match spec.conduit {
            Some(Conduit::Hvc) => 2,
            Some(Conduit::Smc) => 1,
            None => 0,
        },
        Ordering::Relaxed,
    );
    let online = (crate::cpu::online_mask().trailing_ones() as usize).clamp(1, NR_CPUS);
    let nvcpus = spec.max_vcpus.map_or(online, |m| m.clamp(1, online));
    match build_dom0(spec, nvcpus) {
        Ok((dom, entry, dtb)) => {
            dom.stage2.lock().maintenance_mut().set_live();
            let dom = DOM0.call_once(|| dom);
            info!("d0: {} vCPU(s), pinned one per physical CPU; stage-2 root {}", dom.nvcpus, dom.stage2_root);
            start_console_input(dom);
            crate::timing::stamp(crate::timing::Stage::Dom0Built);
            // vCPU 0 starts at the kernel entry with x0 = its device tree,
            // like a CPU_ON from nowhere.
            let _ = dom.power[0].try_start(entry, dtb);
            match dom.power[0].take_start() {
                Some(start) => run_here(dom, 0, start),
                None => DomainError::NoKernel,
            }
        }
        Err(e) => e,
    }
}

/// Dom0, once built.
pub static DOM0: spin::Once<Domain> = spin::Once::new();

/// Runs vCPU `vcpu` of `dom` on this physical CPU from `start`.
fn run_here(dom: &Domain, vcpu: usize, start: StartInfo) -> ! {
    guest::load_stage2(dom.stage2_root, dom.vmid);
    if let Some(v) = lr_delivery(dom) {
        gic::clear_lrs();
        // The vCPU starts with both timers off (`run_vcpu`): whatever this
        // CPU's EL1 timers did before (firmware, an earlier run) is not
        // its interrupt.
        guest::stop_timers();
        sync_timer_lines(v, vcpu, [false, false]);
        flush_lrs(dom, vcpu);
    }
    info!("d0v{vcpu}: entering at {:#x} (EL1, MMU off), x0 = {:#x}", start.entry, start.context);
    if vcpu == 0 {
        crate::timing::stamp(crate::timing::Stage::Dom0Entered);
    }
    guest::run_vcpu(start.entry, start.context, crate::vgic::vcpu_mpidr(vcpu), dom.cntvoff)
}

/// Called by an idle physical CPU (`cpu`): if dom0's vCPU pinned to it has
/// been started (PSCI `CPU_ON`), run it. Returns if there is nothing to run.
pub fn run_pending(cpu: usize) {
    if let Some(dom) = DOM0.get()
        && let Some(start) = dom.power.get(cpu).and_then(VcpuPower::take_start)
    {
        run_here(dom, cpu, start);
    }
}

/// Copies `bytes` to `pa` in a domain's RAM (through the direct map) and
/// pushes them to memory: the guest starts with its MMU and caches off.
fn copy_in(pa: u64, bytes: &[u8]) {
    let dst = (DIRECTMAP_VA + pa) as *mut u8;
    // SAFETY: callers pass a range inside a domain's RAM, freshly allocated
    // for it and mapped by the direct map. `bytes` may be a boot module the
    // domain's RAM covers (its memory given back for `dom0_mem=`): `copy`
    // allows the overlap, and the caller orders the copies so that no
    // module is overwritten before it is copied.
    unsafe { core::ptr::copy(bytes.as_ptr(), dst, bytes.len()) };
    crate::arch::clean_dcache_range(dst as usize, bytes.len());

}

/// Gives the memory of boot modules already copied into a domain back to
/// the page allocator (they were claimed to keep them safe until then).
fn release_modules(modules: &[Option<Region>]) {
    let mut frames = FRAMES.lock();
    let Some(frames) = frames.as_mut() else { return };
    for m in modules.iter().flatten() {
        match frames.free_range(*m) {
            Ok(pages) => info!("d0: boot module {m} copied: {} KiB back to the page allocator", (pages * PAGE_SIZE) >> 10),
            Err(e) => warn!("d0: boot module {m} copied, but its memory could not be released: {e}"),
        }
    }
}

/// Decompresses the gzip-compressed kernel module `kernel` (`packed`) into
/// pages from the page allocator; returns where it is.
#[allow(clippy::result_large_err)]
fn gunzip_kernel(kernel: Region, packed: &[u8]) -> Result<Region, DomainError> {
    use crate::bootcheck::{GzipError, KernelError, gunzip_into, gzip_header};
    let bad = |e: GzipError| DomainError::Kernel { module: kernel, error: KernelError::BadGzip(e) };
    let size = u64::from(gzip_header(packed).map_err(bad)?.size);
    if size == 0 {
        return Err(DomainError::Kernel { module: kernel, error: KernelError::Empty });
    }
    let pages = size.div_ceil(PAGE_SIZE);
    let pa = {
        let mut frames = FRAMES.lock();
        let frames = frames.as_mut().ok_or(DomainError::NoAllocator)?;
        frames.alloc(pages, 1).map_err(DomainError::Memory)?
    };
    let region = Region { base: pa.as_u64(), size };
    // SAFETY: the pages were just allocated for this buffer alone, and the
    // direct map covers all RAM read/write.
    let out = unsafe { core::slice::from_raw_parts_mut((DIRECTMAP_VA + region.base) as *mut u8, size as usize) };
    let mut state = alloc::boxed::Box::<miniz_oxide::inflate::core::DecompressorOxide>::default();
    let result = gunzip_into(packed, out, &mut state);
    if let Err(e) = result {
        if let Some(frames) = FRAMES.lock().as_mut() {
            let _ = frames.free(pa, pages);
        }
        return Err(bad(e));
    }
    info!("d0: kernel module {kernel} is gzip-compressed: decompressed to {region} ({} KiB)", size >> 10);
    Ok(region)
}

/// A boot module's bytes (or the decompressed kernel's pages).
fn module(r: Region) -> &'static [u8] {
    // SAFETY: boot modules were checked to lie inside RAM, which the direct
    // map maps; the page allocator keeps them claimed until they have been
    // copied into dom0 (`release_modules`), and the slice is not used after.
    // The same holds for the pages a decompressed kernel is in.
    unsafe { core::slice::from_raw_parts((DIRECTMAP_VA + r.base) as *const u8, r.size as usize) }
}

#[allow(clippy::result_large_err)]
fn build_dom0(spec: Dom0Spec<'_>, nvcpus: usize) -> Result<(Domain, u64, u64), DomainError> {
    let Dom0Spec { kernel, ramdisk, mem, gic, devices, make_dtb, uart, .. } = spec;
    let mem = mem.next_multiple_of(2 << 20);
    // The kernel's format first: nothing is allocated or copied for a
    // module that is not an arm64 Image.
    let packed = module(kernel);
    // An Image.gz is decompressed first, into pages of its own (as Xen
    // and U-Boot accept them), freed once dom0's copy is made.
    let unpacked = if crate::bootcheck::is_gzip(packed) {
        Some(gunzip_kernel(kernel, packed)?)
    } else {
        None
    };
    let (image, source) = match unpacked {
        Some(r) => (module(r), r),
        None => (packed, kernel),
    };
    let header = crate::bootcheck::parse_kernel(image, image.len() as u64)
        .map_err(|error| DomainError::Kernel { module: kernel, error })?;
    let (text_offset, image_size) = (header.text_offset, header.image_size);
    let mut modules_released = false;
    let base = {
        let mut frames = FRAMES.lock();
        let frames = frames.as_mut().ok_or(DomainError::NoAllocator)?;
        // Below 4 GiB if it fits (32-bit DMA masters, as on Juno's low
        // bank), else anywhere.
        let (pages, align) = (mem / PAGE_SIZE, (2 << 20) / PAGE_SIZE);
        let alloc = |frames: &mut crate::mm::frames::FrameAllocator<'static>| {
            frames.alloc_below(PhysAddr::new(1 << 32), pages, align).or_else(|_| frames.alloc(pages, align))
        };
        match alloc(frames) {
            Ok(base) => base,
            Err(_) => {
                // The modules' own memory counts: give it back, and copy
                // them in an order that reads each before it is overwritten.
                let oom = |frames: &crate::mm::frames::FrameAllocator<'static>| DomainError::OutOfMemory {
                    mem,
                    largest: frames.largest_free().map_or(0, |f| f.region().size),
                    free: frames.free_pages() * PAGE_SIZE,
                };
                for m in [Some(kernel), ramdisk].into_iter().flatten() {
                    frames.free_range(m).map_err(|_| oom(frames))?;
                }
                modules_released = true;
                let base = alloc(frames).map_err(|_| oom(frames))?;
                info!("d0: {} MiB fit only with the boot modules' memory: their copies are ordered", mem >> 20);
                base
            }
        }
    };
    let ram = Region { base: base.as_u64(), size: mem };
    info!("d0: {} MiB RAM at {} (1:1)", mem >> 20, ram);
    let p = crate::bootcheck::place(ram, text_offset, image_size, ramdisk.map(|r| r.size), DTB_MAX, PAGE_SIZE)
        .map_err(DomainError::Placement)?;
    let (entry, dtb_addr, initrd) = (p.entry, p.dtb, p.initrd);
    let kernel_copy = (source, Region { base: entry, size: source.size });
    let ramdisk_copy = ramdisk.zip(initrd);
    let ramdisk_first =
        crate::bootcheck::ramdisk_first(kernel_copy, ramdisk_copy).map_err(DomainError::CopyOrder)?;
    let copy_ramdisk = || {
        if let Some((src, dst)) = ramdisk_copy {
            copy_in(dst.base, module(src));
        }
    };
    if ramdisk_first {
        copy_ramdisk();
    }
    copy_in(entry, image);
    if !ramdisk_first {
        copy_ramdisk();
    }
    let dtb = make_dtb(&Dom0Layout { ram, nvcpus, initrd }).map_err(DomainError::DeviceTree)?;
    if dtb.len() as u64 > DTB_MAX {
        return Err(DomainError::DeviceTree(alloc::format!("{} bytes, more than the 2 MiB Linux accepts", dtb.len())));
    }
    copy_in(dtb_addr, &dtb);

    let geometry = Geometry::new(1, guest::ipa_bits(), 48).map_err(DomainError::Geometry)?;
    let mut s2 = PageTable::<Stage2, _, _>::new(geometry, FrameTables, Stage2Maintenance::building())
        .map_err(DomainError::Create)?;
    let rwx = Attributes::new(MemoryType::Normal, Access::ReadWriteExecute);
    s2.map(IntermediatePhysAddr::new(ram.base), PhysAddr::new(ram.base), ram.size, rwx, MapOptions::new())
        .map_err(DomainError::Map)?;
    info!("d0: kernel module {kernel} copied to {entry:#x} (text_offset {text_offset:#x}, image size {image_size:#x})");
    match (ramdisk, initrd) {
        (Some(src), Some(dst)) => info!("d0: ramdisk module {src} copied to {dst}"),
        _ => info!("d0: no ramdisk"),
    }
    // Copied: the modules' memory is free for the hypervisor again.
    if !modules_released {
        release_modules(&[Some(kernel), ramdisk]);
    }
    if let Some(r) = unpacked
        && let Some(frames) = FRAMES.lock().as_mut()
        && let Err(e) = frames.free(PhysAddr::new(r.base), r.size.div_ceil(PAGE_SIZE))
    {
        warn!("d0: the decompressed kernel's pages {r} could not be freed: {e}");
    }
    info!("d0: device tree ({} bytes) at {dtb_addr:#x}", dtb.len());
    // GICv2 delivery: the guest's CPU interface is the hardware GICV,
    // mapped where the guest's device tree puts GICC (two 4 KiB pages).
    if let Some(HostGic { gicc: Some(c), gicv: Some(v), .. }) = gic.filter(|g| g.version == GicVersion::V2)
        && gic::version() == Some(GicVersion::V2)
    {
        let dev = Attributes::new(MemoryType::Device, Access::ReadWrite);
        s2.map(IntermediatePhysAddr::new(c.base), PhysAddr::new(v.base), 0x2000, dev, MapOptions::new())
            .map_err(DomainError::Map)?;
        info!("d0: GICV {v} mapped at the guest's GICC {:#x}", c.base);
    }
    let dev = Attributes::new(MemoryType::Device, Access::ReadWrite);
    let ipa_end = 1u64 << guest::ipa_bits();
    let mut skipped = 0;
    for p in devices.pages {
        if p.end() > ipa_end {
            warn!("d0: MMIO {p} is beyond the {}-bit guest physical space: not passed through", guest::ipa_bits());
            skipped += 1;
            continue;
        }
        s2.map(IntermediatePhysAddr::new(p.base), PhysAddr::new(p.base), p.size, dev, MapOptions::new())
            .map_err(DomainError::Map)?;
        log::debug!("d0: MMIO {p} passed through");
    }
    let rw = Attributes::new(MemoryType::Normal, Access::ReadWrite);
    for m in devices.memory {
        let base = m.base & !(PAGE_SIZE - 1);
        let size = (m.end() - base).next_multiple_of(PAGE_SIZE);
        s2.map(IntermediatePhysAddr::new(base), PhysAddr::new(base), size, rw, MapOptions::new())
            .map_err(DomainError::Map)?;
        info!("d0: reserved memory {m} passed through (1:1, Normal memory)");
    }
    info!(
        "d0: {} MMIO span(s), {} KiB in all, passed through (1:1, Device memory)",
        devices.pages.len() - skipped,
        devices.pages.iter().filter(|p| p.end() <= ipa_end).map(|p| p.size).sum::<u64>() >> 10
    );
    let stage2_root = s2.root();
    let vgic = gic.and_then(|g| {
        let model = Vgic::new(VgicConfig::new(g.version, nvcpus, VGIC_LINES))
            .map_err(|e| warn!("d0: no vGIC: {e}"))
            .ok()?;
        let gicr = g.gicr.map(|r| Region { base: r.base, size: (nvcpus as u64) * GICR_STRIDE });
        info!("d0: vGIC{} with {VGIC_LINES} lines: GICD {}{}", if g.version == GicVersion::V3 { "v3" } else { "v2" }, g.gicd,
            gicr.map_or(alloc::string::String::new(), |r| alloc::format!(", GICR {r}")));
        if gic::version() == Some(g.version) {
            // Each vCPU's EL1 timers are its physical CPU's: the virtual
            // timer's PPI 27 and the physical timer's PPI 30.
            for vcpu in 0..nvcpus {
                for t in TIMER_PPIS {
                    let _ = model.link_hw(Virq::Private { vcpu, intid: t }, Some(t));
                }
            }
            info!(
                "d0: interrupts: vCPU n's virtual and physical timers (PPIs 27 and 30) linked to the same PPIs of \
                 CPU n, pending while their output is high; SGIs through the vGIC (kick: SGI {})",
                gic::KICK_SGI
            );
            let mut linked = 0;
            for &spi in devices.spis {
                match model.link_hw(Virq::Spi(spi), Some(spi)) {
                    Ok(()) => {
                        gic::enable_spi(spi, 0);
                        linked += 1;
                    }
                    Err(e) => warn!("d0: SPI {spi} not passed through: {e}"),
                }
            }
            info!("d0: {linked} SPI(s) passed through, each linked to the same physical SPI (routed to CPU 0): {:?}", devices.spis);
        }
        let nr_lrs = if gic::version() == Some(g.version) { gic::nr_lrs().min(MAX_LRS) } else { 0 };
        Some(DomainVgic { model, gicd: g.gicd, gicr, nr_lrs })
    });
    let uart = uart.map(|(r, spi)| {
        let region = Region { base: r.base & !(PAGE_SIZE - 1), size: crate::vpl011::SIZE };
        info!(
            "d0: console: emulated PL011 at {region}{}, input with Ctrl-A x3",
            spi.map_or(alloc::string::String::new(), |s| alloc::format!(", SPI {s}"))
        );
        DomainUart { region, spi, dev: Vpl011::new(dom0_tx as fn(u8)) }
    });
    let dom = Domain {
        id: 0,
        vmid: 1,
        ram,
        nvcpus,
        stage2_root,
        cntvoff: crate::arch::counter(),
        stage2: spin::Mutex::new(s2),
        power: [const { VcpuPower::new() }; NR_CPUS],
        unhandled: UnhandledCalls::default(),
        vgic,
        uart,
    };
    Ok((dom, entry, dtb_addr))
}

/// Each vCPU's console hypercall output, logged a line at a time.
static CONSOLE: [spin::Mutex<crate::console::LineBuf<160>>; NR_CPUS] =
    [const { spin::Mutex::new(crate::console::LineBuf::new()) }; NR_CPUS];

/// The console hypercall (test guests): byte `c` from `vcpu`.
fn console_putc(vcpu: usize, c: u8) {
    let Some(l) = CONSOLE.get(vcpu) else { return };
    if let Some(line) = l.lock().push(c) {
        info!("d0v{vcpu}: {}", crate::console::Printable(line));
    }
}

/// Exceptions injected into each vCPU in a row, without a hypercall in
/// between: a guest whose exception vectors fault again forever.
static INJECTED: [AtomicU32; NR_CPUS] = [const { AtomicU32::new(0) }; NR_CPUS];
/// More than this many in a row and the domain is considered crashed.
const MAX_INJECTED_IN_A_ROW: u32 = 32;

fn injected(vcpu: usize, frame: &ExceptionFrame) {
    let n = INJECTED[vcpu].fetch_add(1, Ordering::Relaxed) + 1;
    if n > MAX_INJECTED_IN_A_ROW {
        crash_domain(vcpu, frame);
    }
}

/// The hardware domain cannot go on: say why and reset the machine, as Xen
/// does ("Hardware Dom0 crashed: rebooting machine").
fn crash_domain(vcpu: usize, frame: &ExceptionFrame) -> ! {
    log::error!(
        "d0v{vcpu}: {MAX_INJECTED_IN_A_ROW} exceptions injected in a row without progress (last at PC {:#x}, \
         ESR {:#x}): the guest cannot handle its own exceptions",
        frame.elr,
        frame.esr
    );
    log::error!("d0: hardware domain crashed: resetting the machine");
    firmware(fid::SYSTEM_RESET);
    crate::arch::halt()
}

/// A synchronous trap from a guest: `frame` holds its registers and is
/// updated for the return.
///
/// For most traps the list registers are folded back first, so that what
/// the handler reads of the vGIC (a guest's `ISPENDR`, say) is what the
/// guest has done, and refilled after. The frequent traps that do not read
/// the vGIC (the emulated UART's registers: every character Linux prints;
/// SGIs sent by the guest) leave them alone unless the handler made this
/// vCPU's interrupts change ([`REFRESH`]): the hardware keeps what the
/// guest does meanwhile, and the model's state of what is listed stays
/// right.
pub fn guest_sync(frame: &mut ExceptionFrame) {
    let vcpu = crate::cpu::this_cpu();
    let Some(dom) = DOM0.get() else {
        // Only `run_here` enters a guest, and only after DOM0 is set.
        log::error!("cpu{vcpu}: trap from a guest, but no domain exists");
        crate::arch::halt()
    };
    let syn = Syndrome::new(frame.esr);
    let (kind, leaves_lrs) = match syn.ec {
        0x16 | 0x17 => (Exit::Call, false),
        0x18 => (Exit::Gic, true),
        0x24 => {
            let ipa = mmio::fault_ipa(frame.far, guest::hpfar()).as_u64();
            if dom.uart.as_ref().is_some_and(|u| u.region.base <= ipa && ipa < u.region.end()) {
                (Exit::Uart, true)
            } else if dom.vgic.as_ref().is_some_and(|v| v.covers(ipa)) {
                (Exit::Gic, false)
            } else {
                (Exit::Other, false)
            }
        }
        _ => (Exit::Other, false),
    };
    count(vcpu, kind);
    if leaves_lrs {
        match (kind, dom.uart.as_ref()) {
            (Exit::Uart, Some(u)) => emulate_uart(dom, u, frame, vcpu),
            _ => guest_sync_inner(dom, frame, vcpu),
        }
        if REFRESH[vcpu].swap(false, Ordering::Relaxed) {
            fold_lrs(dom, vcpu);
            flush_lrs(dom, vcpu);
        }
        return;
    }
    fold_lrs(dom, vcpu);
    guest_sync_inner(dom, frame, vcpu);
    flush_lrs(dom, vcpu);
}

/// What a vCPU's exits were, counted per physical CPU (= vCPU), for the
/// log at power-off and the `q` debug key: where the hypervisor's time
/// goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    /// HVC or trapped SMC (SMCCC: PSCI, the console hypercall).
    Call = 0,
    /// A trapped access to the emulated UART.
    Uart,
    /// A trapped access to the vGIC (distributor, redistributors, SGIs).
    Gic,
    /// Anything else synchronous (aborts injected, undefined instructions).
    Other,
    /// A physical interrupt (timer, kick, passed-through device, console).
    Irq,
}

const EXIT_KINDS: usize = 5;
const EXIT_NAMES: [&str; EXIT_KINDS] = ["calls", "UART", "GIC", "other", "interrupts"];
static EXITS: [[core::sync::atomic::AtomicU64; EXIT_KINDS]; NR_CPUS] =
    [const { [const { core::sync::atomic::AtomicU64::new(0) }; EXIT_KINDS] }; NR_CPUS];

fn count(vcpu: usize, e: Exit) {
    if let Some(c) = EXITS.get(vcpu) {
        c[e as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Logs each vCPU's exits by kind.
fn log_exits(dom: &Domain) {
    for (vcpu, c) in EXITS.iter().enumerate().take(dom.nvcpus) {
        let mut line = alloc::format!("d{}v{vcpu}: exits:", dom.id);
        for (name, n) in EXIT_NAMES.iter().zip(c) {
            line.push_str(&alloc::format!(" {name} {}", n.load(Ordering::Relaxed)));
        }
        info!("{line}");
    }
}

/// A vGIC change made by this physical CPU concerns its own vCPU: its list
/// registers must be refreshed before it returns to the guest.
static REFRESH: [core::sync::atomic::AtomicBool; NR_CPUS] = [const { core::sync::atomic::AtomicBool::new(false) }; NR_CPUS];

fn guest_sync_inner(dom: &Domain, frame: &mut ExceptionFrame, vcpu: usize) {
    let syn = Syndrome::new(frame.esr);
    match syn.ec {
        0x18 if sgi_write(dom, frame, vcpu, syn.iss) => {
            INJECTED[vcpu].store(0, Ordering::Relaxed);
            frame.elr += 4;
        }
        0x16 => {
            INJECTED[vcpu].store(0, Ordering::Relaxed);
            smccc(dom, frame, vcpu)
        }
        0x17 => {
            INJECTED[vcpu].store(0, Ordering::Relaxed);
            frame.elr += 4; // a trapped SMC returns to the instruction itself
            smccc(dom, frame, vcpu);
        }
        0x24 => {
            let ipa = mmio::fault_ipa(frame.far, guest::hpfar());
            if !emulate_vgic(dom, frame, vcpu, ipa) {
                warn!(
                    "d0v{vcpu}: {} of IPA {ipa:#x} (VA {:#x}) at PC {:#x}: not the domain's memory nor a device; abort injected",
                    if syn.is_write() { "write" } else { "read" },
                    frame.far,
                    frame.elr
                );
                guest::inject_external_abort(frame);
                injected(vcpu, frame);
            }
        }
        0x20 => {
            let ipa = mmio::fault_ipa(frame.far, guest::hpfar());
            warn!(
                "d0v{vcpu}: instruction fetch from IPA {ipa:#x} (VA {:#x}): not the domain's memory; abort injected",
                frame.far
            );
            guest::inject_external_abort(frame);
            injected(vcpu, frame);
        }
        ec => {
            warn!(
                "d0v{vcpu}: unhandled trap EC {ec:#04x} ({}) at PC {:#x}; undefined instruction injected",
                syn.class_name(),
                frame.elr
            );
            guest::inject_undefined(frame);
            injected(vcpu, frame);
        }
    }
}

fn smccc(dom: &Domain, frame: &mut ExceptionFrame, vcpu: usize) {
    let id = frame.x[0] as u32;
    if id == HVC_CONSOLE_PUTC {
        console_putc(vcpu, frame.x[1] as u8);
        frame.x[0] = 0;
        return;
    }
    let call = SmcccCall::aarch64(vcpu, [frame.x[0], frame.x[1], frame.x[2], frame.x[3]]);
    let out = crate::vpsci::handle(dom, &call);
    frame.x[..4].copy_from_slice(&out.regs);
    if let Some(u) = out.unhandled
        && u.first
    {
        warn!("d0v{vcpu}: {u}: NOT_SUPPORTED (reported once per ID)");
    }
    match out.action {
        Action::Resume | Action::WaitForInterrupt => {}
        Action::StartVcpu { vcpu: target, entry, context } => {
            info!("d0v{vcpu}: PSCI CPU_ON vCPU{target} at {entry:#x} (context {context:#x})");
            // Its physical CPU waits in WFI (vCPU n is pinned to CPU n).
            gic::kick(target);
        }
        Action::StopVcpu => {
            info!("d0v{vcpu}: PSCI CPU_OFF");
            // Its interrupts were folded back on entry: leave no list
            // register (or maintenance condition) behind on an idle CPU.
            if let Some(v) = lr_delivery(dom) {
                gic::clear_lrs();
                gic::set_hcr(0);
                // Its timers stop with it, and their lines fall (their
                // physical PPIs are deactivated): an idle CPU takes no
                // timer interrupt for a vCPU that is off.
                guest::stop_timers();
                sync_timer_lines(v, vcpu, [false, false]);
            }
            dom.power[vcpu].stopped();
            if crate::vpsci::all_off(dom.vcpus()) {
                // Nobody is left to turn a vCPU on again: the domain is
                // over, as if it had asked for SYSTEM_OFF (not a hang with
                // every CPU idle).
                log_exits(dom);
                info!("d0: every vCPU is off: the domain has nothing left to run; powering off as for SYSTEM_OFF");
                firmware(fid::SYSTEM_OFF);
            }
            crate::smp::idle(vcpu)
        }
        Action::SystemOff => {
            log_exits(dom);
            info!("d0: PSCI SYSTEM_OFF from the hardware domain: powering off");
            firmware(fid::SYSTEM_OFF);
        }
        Action::SystemReset => {
            info!("d0: PSCI SYSTEM_RESET from the hardware domain: resetting");
            firmware(fid::SYSTEM_RESET);
        }
    }
}

/// The vGIC if interrupts are delivered through list registers.
fn lr_delivery(dom: &Domain) -> Option<&DomainVgic> {
    dom.vgic.as_ref().filter(|v| v.nr_lrs > 0)
}

/// Takes the list registers back into the vGIC model after the guest ran
/// (first thing on every exit).
fn fold_lrs(dom: &Domain, vcpu: usize) {
    let Some(v) = lr_delivery(dom) else { return };
    let mut lrs = [Lr::INVALID; MAX_LRS];
    for (i, lr) in lrs[..v.nr_lrs].iter_mut().enumerate() {
        *lr = gic::read_lr(i);
    }
    let (virt, phys) = guest::timer_outputs();
    sync_timer_lines(v, vcpu, [virt, phys]);
    if let Ok(out) = v.model.fold(vcpu, &lrs[..v.nr_lrs]) {
        apply(out, vcpu);
    }
}

/// Fills the list registers with what is pending for `vcpu` now (last
/// thing before every return to the guest).
fn flush_lrs(dom: &Domain, vcpu: usize) {
    REFRESH[vcpu].store(false, Ordering::Relaxed);
    let Some(v) = lr_delivery(dom) else { return };
    let mut lrs = [Lr::INVALID; MAX_LRS];
    match v.model.flush(vcpu, &mut lrs[..v.nr_lrs], 0xff) {
        Ok(info) => {
            for (i, lr) in lrs[..v.nr_lrs].iter().enumerate() {
                gic::write_lr(i, lr);
            }
            gic::set_hcr(info.maintenance.hcr_bits());
        }
        Err(e) => warn!("d0v{vcpu}: vGIC flush: {e}"),
    }
}

/// Carries out what a vGIC state change asks of the hardware: kicks the
/// physical CPUs of other vCPUs that must refresh, and keeps each
/// passed-through interrupt's physical state in step with the virtual one.
fn apply(out: crate::vgic::Outcome, me: usize) {
    if out.kick.contains(me) {
        REFRESH[me].store(true, Ordering::Relaxed);
    }
    kick(out.kick, me);
    for op in out.hw.as_slice() {
        let active = op.action == HwAction::Activate;
        match op.pintid {
            32.. => gic::set_spi_active(op.pintid, active),
            // A hardware-linked PPI (a timer) of this CPU.
            _ => gic::set_ppi_active(op.pintid, active),
        }
    }
}

/// The EL1 timers' PPIs, each linked to the same virtual PPI of the vCPU
/// pinned to the CPU: the virtual timer's, then the physical timer's.
const TIMER_PPIS: [u32; 2] = [gic::VTIMER_INTID, gic::PTIMER_INTID];

/// Gives the vGIC the vCPU's timer outputs (`levels`, in [`TIMER_PPIS`]
/// order) as the lines of their PPIs: a level interrupt is pending while
/// its line is high, so a timer turned off, masked or moved on is no
/// longer pending nor delivered (KVM samples its timers the same way).
/// Before [`Vgic::fold`](crate::vgic::Vgic::fold), on the vCPU's CPU.
fn sync_timer_lines(v: &DomainVgic, vcpu: usize, levels: [bool; 2]) {
    for (intid, level) in TIMER_PPIS.into_iter().zip(levels) {
        if let Ok(out) = v.model.set_hw_level(Virq::Private { vcpu, intid }, level) {
            apply(out, vcpu);
        }
    }
}

/// [`apply`], but for the physical interrupt `taken` that this CPU has
/// just acknowledged: it is active already.
fn apply_except(mut out: crate::vgic::Outcome, me: usize, taken: u32) {
    out.hw.retain(|op| !(op.pintid == taken && op.action == HwAction::Activate));
    apply(out, me);
}

/// Makes the physical CPUs running the vCPUs in `mask` (other than the
/// caller's, which refreshes on its way back) exit and refresh.
fn kick(mask: crate::vgic::VcpuMask, me: usize) {
    for v in mask.iter().filter(|&v| v != me) {
        gic::kick(v);
    }
}

/// A guest write to `ICC_SGI1R_EL1`, `ICC_ASGI1R_EL1` or `ICC_SGI0R_EL1`
/// (trapped: `HCR_EL2.IMO`/`FMO`): an SGI to other vCPUs through the vGIC,
/// Group 1 or Group 0 ([`crate::vgic::SgiRegister`]). Returns false if the
/// trap is not that.
fn sgi_write(dom: &Domain, frame: &ExceptionFrame, vcpu: usize, iss: u32) -> bool {
    let Some((reg, rt)) = crate::vgic::SgiRegister::from_trap(iss) else { return false };
    let Some(v) = lr_delivery(dom) else { return false };
    let value = if rt == 31 { 0 } else { frame.x[usize::from(rt)] };
    let sent = if reg.group1() { v.model.send_sgi_v3(vcpu, value) } else { v.model.send_sgi0_v3(vcpu, value) };
    match sent {
        Ok(out) => apply(out, vcpu),
        Err(e) => warn!("d0v{vcpu}: {reg:?} write {value:#x}: {e}"),
    }
    true
}

/// A physical interrupt while a vCPU ran: the virtual timer goes to the
/// vCPU (hardware-linked: the guest deactivates it), a kick or maintenance
/// interrupt only makes this CPU refresh its list registers.
pub fn guest_irq(frame: &mut ExceptionFrame) {
    let vcpu = crate::cpu::this_cpu();
    let Some(dom) = DOM0.get() else { return };
    count(vcpu, Exit::Irq);
    fold_lrs(dom, vcpu);
    take_irqs(dom, vcpu);
    flush_lrs(dom, vcpu);
    if DUMP[vcpu].swap(false, Ordering::Relaxed) {
        dump_vcpu(dom, vcpu, frame);
    }
}

/// A register dump of a vCPU was asked for (the `d` debug key): its
/// physical CPU prints it at its next exit (it is kicked).
static DUMP: [core::sync::atomic::AtomicBool; NR_CPUS] = [const { core::sync::atomic::AtomicBool::new(false) }; NR_CPUS];

/// Prints the registers of the vCPU this CPU runs: its general registers
/// and PC from the trap frame, its EL1 state from the hardware.
fn dump_vcpu(dom: &Domain, vcpu: usize, frame: &ExceptionFrame) {
    let c = guest::El1Context::save();
    let d = dom.id;
    let mode = match frame.spsr & 0xf {
        0b0101 => "EL1h",
        0b0100 => "EL1t",
        0b0000 => "EL0t",
        _ => "?",
    };
    info!("d{d}v{vcpu}: PC {:#018x} PSTATE {:#010x} ({mode}) SP_EL0 {:#018x} SP_EL1 {:#018x}", frame.elr, frame.spsr, c.sp_el0, c.sp_el1);
    for (i, r) in frame.x.chunks(4).enumerate() {
        let mut line = alloc::format!("d{d}v{vcpu}:");
        for (j, v) in r.iter().enumerate() {
            line.push_str(&alloc::format!(" x{:<2} {v:#018x}", i * 4 + j));
        }
        info!("{line}");
    }
    info!(
        "d{d}v{vcpu}: SCTLR_EL1 {:#x} TCR_EL1 {:#x} TTBR0_EL1 {:#x} TTBR1_EL1 {:#x} MAIR_EL1 {:#x}",
        c.sctlr, c.tcr, c.ttbr0, c.ttbr1, c.mair
    );
    info!(
        "d{d}v{vcpu}: VBAR_EL1 {:#x} ESR_EL1 {:#x} FAR_EL1 {:#x} ELR_EL1 {:#x} SPSR_EL1 {:#x} CNTV_CTL {:#x} CNTV_CVAL {:#x} \
         CNTP_CTL {:#x} CNTP_CVAL {:#x}",
        c.vbar, c.esr, c.far, c.elr, c.spsr, c.cntv_ctl, c.cntv_cval, c.cntp_ctl, c.cntp_cval
    );
}

/// A physical SError taken while a vCPU ran: an asynchronous external
/// abort the guest caused (a write to a device that failed later, say). The
/// guest gets a virtual SError, as the hardware would have given it without
/// the hypervisor; the hypervisor carries on.
pub fn guest_serror(frame: &mut ExceptionFrame) {
    let vcpu = crate::cpu::this_cpu();
    warn!("d0v{vcpu}: SError (ESR {:#x}) while the guest ran (PC {:#x}): virtual SError injected", frame.esr, frame.elr);
    guest::inject_serror();
}

/// Called by an idle physical CPU woken from WFI: takes what woke it (a
/// kick, or a passed-through interrupt that goes into the vGIC as it
/// would from a running vCPU). Nothing is lost: a kick only makes the CPU
/// look at its work again.
pub fn idle_irqs(cpu: usize) {
    match DOM0.get() {
        Some(dom) => take_irqs(dom, cpu),
        None => loop {
            let (id, token) = gic::ack();
            if id >= 1020 {
                break;
            }
            gic::eoi(token);
            gic::deactivate(token);
        },
    }
}

/// Acknowledges and dispatches every pending physical interrupt on the
/// physical CPU of `vcpu`.
fn take_irqs(dom: &Domain, vcpu: usize) {
    loop {
        let (id, token) = gic::ack();
        if id >= 1020 {
            break;
        }
        if TIMER_PPIS.contains(&id) {
            // One of the vCPU's timers fired: its line is high (the
            // physical PPI, acknowledged, is active until the guest
            // deactivates the virtual one).
            if let Some(v) = lr_delivery(dom)
                && let Ok(out) = v.model.set_hw_level(Virq::Private { vcpu, intid: id }, true)
            {
                apply_except(out, vcpu, id);
            }
            gic::eoi(token); // priority drop; the guest deactivates it
        } else if dom.uart.as_ref().is_some_and(|u| u.spi == Some(id)) {
            // The hypervisor's own UART: what was typed.
            console_input(dom, vcpu);
            gic::eoi(token);
            gic::deactivate(token);
        } else if id >= 32 {
            // A passed-through device's SPI: to whichever vCPU the guest
            // routed it (the model decides; kick it if it is elsewhere).
            if let Some(v) = lr_delivery(dom)
                && let Ok(out) = v.model.raise(Virq::Spi(id))
            {
                apply(out, vcpu);
            }
            gic::eoi(token); // priority drop; the guest deactivates it
        } else if id == gic::MAINTENANCE_INTID {
            // Level-sensitive: it stays asserted while its condition holds
            // (underflow or no-pending with UIE/NPIE, an EOI'd list
            // register with its EOI bit), and only the flush on the way
            // back rewrites the list registers. Turn UIE/NPIE off and stop
            // here: taking it again would loop forever (it did, on GICv2).
            gic::set_hcr(0);
            gic::eoi(token);
            gic::deactivate(token);
            break;
        } else {
            gic::eoi(token);
            gic::deactivate(token);
            if id != gic::KICK_SGI {
                warn!("d0v{vcpu}: unexpected physical interrupt {id}");
            }
        }
    }
}

/// Emulates a trapped access to the domain's virtual GIC (its
/// vGIC distributor and redistributors). Returns false if the address is
/// not one of them. An access that cannot be decoded (no syndrome) or that
/// the device refuses is logged; refused ones complete as read-as-zero /
/// write-ignored, undecodable ones get an abort.
fn emulate_vgic(dom: &Domain, frame: &mut ExceptionFrame, vcpu: usize, ipa: IntermediatePhysAddr) -> bool {
    let ipa = ipa.as_u64();
    let Some(v) = dom.vgic.as_ref() else { return false };
    let (region, what) = if v.gicd.base <= ipa && ipa < v.gicd.end() {
        (v.gicd, VgicFrame::Distributor)
    } else if let Some(r) = v.gicr.filter(|r| r.base <= ipa && ipa < r.end()) {
        (r, VgicFrame::Redistributors)
    } else {
        return false;
    };
    let Some(acc) = decode_or_abort(frame, vcpu, "vGIC") else { return true };
    let offset = acc.ipa.as_u64() - region.base;
    let size = acc.size.bytes() as usize;
    if acc.write {
        let value = acc.write_data(&frame.x);
        match v.model.write(what, vcpu, offset, size, value) {
            Ok(out) => apply(out, vcpu),
            Err(e) => warn!("d0v{vcpu} {e} (write ignored)"),
        }
    } else {
        let value = v.model.read(what, vcpu, offset, size).unwrap_or_else(|e| {
            warn!("d0v{vcpu} {e} (read as zero)");
            0
        });
        acc.complete_load(&mut frame.x, value);
    }
    frame.elr += u64::from(acc.insn_len);
    true
}

/// Decodes a trapped access to an emulated device (`what`, for the log);
/// one that cannot be decoded (no syndrome) gets an abort injected.
fn decode_or_abort(frame: &mut ExceptionFrame, vcpu: usize, what: &str) -> Option<mmio::MmioAccess> {
    match mmio::decode(frame.esr, frame.far, guest::hpfar()) {
        Ok(a) => Some(a),
        Err(e) => {
            warn!("d0v{vcpu}: {what} access at PC {:#x} cannot be emulated: {e}; abort injected", frame.elr);
            guest::inject_external_abort(frame);
            None
        }
    }
}

/// A trapped access to the domain's emulated UART.
fn emulate_uart(dom: &Domain, u: &DomainUart, frame: &mut ExceptionFrame, vcpu: usize) {
    let Some(acc) = decode_or_abort(frame, vcpu, "UART") else { return };
    let offset = acc.ipa.as_u64() - u.region.base;
    let result = if acc.write {
        u.dev.write(vcpu, offset, acc.size, acc.write_data(&frame.x))
    } else {
        u.dev.read(vcpu, offset, acc.size).map(|v| acc.complete_load(&mut frame.x, v))
    };
    match result {
        Ok(()) => frame.elr += u64::from(acc.insn_len),
        Err(e) => {
            warn!("d0v{vcpu}: vPL011 {acc} (offset {offset:#x}): {e}; abort injected");
            guest::inject_external_abort(frame);
            injected(vcpu, frame);
        }
    }
    if !acc.write {
        resume_console_input(dom, u);
    }
    uart_irq(dom, u, vcpu);
}

/// Forwards a change of the emulated UART's interrupt output to the vGIC.
fn uart_irq(dom: &Domain, u: &DomainUart, me: usize) {
    let (Some(v), Some(spi)) = (dom.vgic.as_ref(), u.spi) else { return };
    if let Some(Ok(out)) = u.dev.sync_irq(|level| v.model.set_level(Virq::Spi(spi), level)) {
        apply(out, me);
    }
}

/// Gives dom0 the console's input, and has the hypervisor's UART raise an
/// interrupt when something is typed.
fn start_console_input(dom: &Domain) {
    let (Some(u), Some(uart)) = (dom.uart.as_ref(), crate::console::current_uart()) else { return };
    let Some(spi) = u.spi else {
        warn!("d0: the console UART has no interrupt: no console input");
        return;
    };
    uart.enable_rx_interrupt();
    gic::enable_spi(spi, 0);
    INPUT.lock().set_focus(Focus::Dom0);
    info!("{}", Focus::Dom0.switch_message());
}

/// What was typed: to dom0's UART (through the queue of
/// [`crate::console::rx`]), or to the hypervisor's debug keys.
fn console_input(dom: &Domain, me: usize) {
    let (Some(u), Some(mut uart)) = (dom.uart.as_ref(), crate::console::current_uart()) else { return };
    INPUT.lock().on_interrupt(&mut uart, &u.dev, |a| console_action(dom, a));
    uart_irq(dom, u, me);
}

/// Dom0 read from its UART: queued input follows into the room it made
/// (and input held back by flow control is let in again).
fn resume_console_input(dom: &Domain, u: &DomainUart) {
    if let Some(mut uart) = crate::console::current_uart() {
        INPUT.lock().on_guest_read(&mut uart, &u.dev, |a| console_action(dom, a));
    }
}

/// An input switch or a debug key, from [`crate::console::rx`].
fn console_action(dom: &Domain, a: ConsoleAction) {
    match a {
        ConsoleAction::Switched(focus) => info!("{}", focus.switch_message()),
        ConsoleAction::DebugKey(b) => debug_key(dom, b),
    }
}

/// A key typed while the hypervisor has the console's input.
fn debug_key(dom: &Domain, byte: u8) {
    match DebugKey::from_byte(byte) {
        Ok(Some(DebugKey::Help)) | Err(_) => {
            if let Err(b) = DebugKey::from_byte(byte) {
                info!("'{}' ({b:#04x}) is not a debug key", crate::console::Printable(&[b]));
            }
            for line in DebugKey::help() {
                info!("{line}");
            }
        }
        Ok(Some(DebugKey::DumpVcpus)) => {
            let me = crate::cpu::this_cpu();
            for (n, p) in dom.power[..dom.nvcpus].iter().enumerate() {
                let state = p.state();
                info!("d0v{n}: on physical CPU {n}, {state:?}");
                if state == crate::vpsci::PowerState::On {
                    // Its CPU prints the registers at its next exit.
                    DUMP[n].store(true, Ordering::Relaxed);
                    if n != me {
                        gic::kick(n);
                    }
                }
            }
        }
        Ok(Some(DebugKey::DumpDomains)) => {
            info!("d{}: VMID {}, {} MiB RAM at {}, {} vCPU(s), stage-2 root {}", dom.id, dom.vmid, dom.ram.size >> 20, dom.ram, dom.nvcpus, dom.stage2_root);
            log_exits(dom);
        }
        Ok(Some(DebugKey::DumpInterrupts)) => match dom.vgic.as_ref() {
            Some(v) => {
                info!("d0: vGIC, {} list registers per CPU; enabled interrupts:", v.nr_lrs);
                let private = (0..dom.nvcpus).flat_map(|vcpu| (0..32).map(move |intid| Virq::Private { vcpu, intid }));
                for irq in private.chain((32..VGIC_LINES).map(Virq::Spi)) {
                    if let Some(s) = v.model.snapshot(irq).ok().filter(|s| s.enabled) {
                        info!(
                            "  {irq:?}: prio {:#04x}{}{}{}{}",
                            s.priority,
                            if s.pending { " pending" } else { "" },
                            if s.active { " active" } else { "" },
                            s.hw.map_or(alloc::string::String::new(), |p| alloc::format!(" hw {p}")),
                            s.listed_on.map_or(alloc::string::String::new(), |c| alloc::format!(" in LRs of vCPU{c}")),
                        );
                    }
                }
            }
            None => info!("d0: no vGIC"),
        },
        Ok(Some(DebugKey::Reboot)) => {
            info!("debug key 'R': resetting the machine");
            firmware(fid::SYSTEM_RESET);
        }
        Ok(None) => {}
    }
}

/// A PSCI call to the firmware (SYSTEM_OFF, SYSTEM_RESET); without PSCI
/// firmware, the machine halts instead.
fn firmware(f: u32) {
    let c = match FIRMWARE_CONDUIT.load(Ordering::Relaxed) {
        2 => Conduit::Hvc,
        1 => Conduit::Smc,
        _ => {
            log::error!("no PSCI firmware to carry out {f:#x}: halting");
            crate::arch::halt()
        }
    };
    crate::arch::firmware_call(c, f, 0, 0, 0);
}
