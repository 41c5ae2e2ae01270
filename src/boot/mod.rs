//! The boot CPU's path, from the entry stub to running the system.
//!
//! `boot/<arch>/` hands over here with the MMU off, on the boot stack, BSS
//! zeroed and the image's relocations applied. This module is architecture
//! independent: it brings up the console and log, refuses to run below the
//! hypervisor level, reads the device tree, prints the banner, and (until
//! domains exist) powers the machine off.

pub mod fatal;
#[cfg(target_arch = "aarch64")]
mod inputs;
#[cfg(target_arch = "aarch64")]
pub mod memory;
#[cfg(target_arch = "aarch64")]
pub mod relocate;

use crate::arch;
use crate::cmdline::{self, OptionError};
use crate::console::{self, pl011::Pl011};
use crate::dt::{Console, DeviceTree, DtError};
use crate::platform::{self, EarlyUart};
use crate::{logger, psci};
use log::{error, info, warn};

/// The hypervisor's copy of the device tree (compacted, see
/// `dt::normalize_into`): firmware trees are rarely above a few tens of KiB.
#[repr(C, align(8))]
struct DtCopy([u8; 256 << 10]);
static mut DT_COPY: DtCopy = DtCopy([0; 256 << 10]);

/// Rust entry point of the boot CPU, called by the stub in `boot/<arch>/`.
///
/// `dtb` is the device tree's physical address, `load` the address the image
/// was loaded at, `entry_level` the privilege level the stub was entered at
/// (AArch64: the EL number; ARMv7: the CPSR mode bits).
#[unsafe(no_mangle)]
pub extern "C" fn armature_boot_main(dtb: usize, load: usize, entry_level: usize) -> ! {
    let entered = arch::counter();
    let early = armature_early::info();
    let mmu_on = early.plan != 0 && early.error == 0;
    if mmu_on {
        if early.uart_va != 0 {
            // SAFETY: the early code mapped the platform's PL011 at `uart_va`
            // (Device memory, read/write) in the boot tables.
            console::set_uart(unsafe { Pl011::new(early.uart_va as usize) });
        }
    } else if let EarlyUart::Pl011(base) = platform::EARLY_UART {
        // SAFETY: the platform's early UART is a PL011 at this address, and
        // with the MMU off every physical address is accessible.
        console::set_uart(unsafe { Pl011::new(base) });
    }
    let privilege = arch::privilege();
    if !privilege.is_hyp {
        // Plain writes, no formatting: tell the user exactly why we stop.
        console::write_str("\nArmature: FATAL: not started at the hypervisor level.\n");
        console::write_str("Armature: ");
        console::write_str(privilege.text);
        console::write_str("\nArmature: halted.\n");
        arch::halt();
    }
    arch::init_cpu(0);
    logger::init(log::LevelFilter::Info);

    let (img_start, img_end) = arch::image_bounds();
    info!("Armature {} ({}, platform {})", crate::VERSION, arch::NAME, platform::NAME);
    info!("Load address: {load:#x} (image {img_start:#x}-{:#x}, {} KiB)", img_end - 1, (img_end - img_start) / 1024);
    info!("{}, entered at {}", privilege.text, arch::entry_level_name(entry_level));
    info!("DTB address: {dtb:#x}");
    if mmu_on {
        crate::timing::stamp_at(crate::timing::Stage::MmuOn, entered, arch::counter_frequency());
    }
    crate::timing::stamp(crate::timing::Stage::Banner);
    if early.error != 0 {
        fatal(format_args!("early MMU setup failed: {} (error {})", early_error_name(early.error), early.error));
    }
    let dt_addr = if mmu_on {
        report_early_mmu(&early);
        early.dtb_va as usize
    } else {
        dtb
    };
    // A blob that runs past the end of RAM is refused before it is read.
    #[cfg(target_arch = "aarch64")]
    if mmu_on {
        inputs::check_dtb(dt_addr, early.dtb_pa);
    }

    // SAFETY: the boot protocol passes the DTB's physical address; with the
    // MMU off it is readable there, with it on the early code mapped it
    // read-only at `dtb_va`. The header is checked before reading on, and
    // DT_COPY is used only here, once, by the boot CPU.
    let dt_copy = &raw mut DT_COPY;
    let (dt, dtb_size) = match unsafe { DeviceTree::copy_from_addr(dt_addr, &mut (*dt_copy).0) } {
        Ok(dt) => dt,
        Err(e) => fatal(format_args!("device tree at {dtb:#x} refused: {e}")),
    };
    info!("DTB: {dtb_size} bytes, valid; the hypervisor keeps a {}-byte copy", dt.total_size());
    // Everything the boot reads from the device tree, read once.
    let plan = dt.boot_plan();
    if let Ok(p) = &plan.psci {
        fatal::set_conduit(p.map(|p| p.conduit));
    }

    let bootargs = dt.bootargs().unwrap_or("");
    info!("Command line: \"{bootargs}\"");
    let opts = cmdline::parse(bootargs, |e| match e {
        OptionError::Unknown(w) => warn!("cmdline: unknown option \"{w}\" ignored"),
        OptionError::BadValue { name, value } => {
            warn!("cmdline: bad value \"{value}\" for {name}= ignored")
        }
    });
    fatal::set_action(opts.on_fatal);
    logger::set_level(match opts.console {
        cmdline::ConsoleChoice::DtUart => opts.log_level,
        cmdline::ConsoleChoice::None => log::LevelFilter::Error,
    });

    let banks = match plan.memory {
        Ok(banks) => {
            info!("Memory: {} bank(s), {} MiB", banks.as_slice().len(), banks.total() >> 20);
            for (i, b) in banks.as_slice().iter().enumerate() {
                info!("  bank {i}: {b} ({} MiB)", b.size >> 20);
            }
            if banks.dropped() > 0 {
                warn!("Memory: {} more bank(s) ignored (limit {})", banks.dropped(), crate::dt::MAX_BANKS);
            }
            banks
        }
        Err(e) => fatal(format_args!("device tree at {dtb:#x}: {e}")),
    };
    // Relocation and runtime tables exist on AArch64 only so far.
    #[cfg(not(target_arch = "aarch64"))]
    let _ = (&banks, dtb_size);
    #[cfg(target_arch = "aarch64")]
    let relocated = if !mmu_on {
        None
    } else {
        // What relocation and the page allocator must keep clear.
        let (reserved, modules) = match plan.reserved.and_then(|reserved| Ok((reserved, dt.boot_modules()?))) {
            Ok(keep) => keep,
            Err(e) => fatal(format_args!("relocation failed: {}", relocate::RelocError::Dt(e))),
        };
        // The inputs against the machine, before anything is copied.
        inputs::check_banks(&dt, &banks);
        let image = crate::dt::Region { base: early.load_pa, size: (img_end - img_start) as u64 };
        let dtb_region = crate::dt::Region { base: early.dtb_pa, size: dtb_size as u64 };
        let chosen = inputs::check_modules(&dt, &banks, &reserved, dtb_region, image);
        if modules.dropped() > 0 || modules.as_slice().len() != chosen.as_slice().len() {
            fatal(format_args!("boot modules: {} listed, {} kept clear", chosen.as_slice().len(), modules.as_slice().len()));
        }
        match relocate::relocate(&early, &banks, &reserved, &modules, plan.gic.as_ref().ok(), dtb_size) {
            Ok(r) => {
                match r.placement.below {
                    Some(b) => info!(
                        "Relocated: {:#x} -> {:#x} ({} KiB) in bank {}: highest free 2 MiB slot, below {b}; runtime tables: {} pages",
                        r.from, r.to, r.size >> 10, r.bank, r.tables
                    ),
                    None => info!(
                        "Relocated: {:#x} -> {:#x} ({} KiB) in bank {}: top of the bank; runtime tables: {} pages",
                        r.from, r.to, r.size >> 10, r.bank, r.tables
                    ),
                }
                info!("Relocated: original load region {:#x}-{:#x} released", r.from, r.from + r.size - 1);
                crate::timing::stamp(crate::timing::Stage::Relocated);
                if r.poisoned {
                    info!("Relocated: original load region poisoned (poison-old-image build)");
                }
                let image = crate::dt::Region { base: r.to, size: r.size };
                let firmware_dtb = crate::dt::Region { base: early.dtb_pa, size: dtb_size as u64 };
                info!("Memory: page allocator (banks minus claims):");
                if let Err(e) = memory::init(&banks, &reserved, &modules, image, firmware_dtb) {
                    fatal(format_args!("memory setup failed: {e}"));
                }
                Some(r)
            }
            Err(e) => fatal(format_args!("relocation failed: {e}")),
        }
    };

    match &plan.console {
        Ok(c) => {
            match dt.stdout_path() {
                Some((_, Some(raw))) if c.source == crate::dt::ConsoleSource::StdoutPath => {
                    info!("Console: stdout-path \"{raw}\" -> {} ({}) at {:#x}", c.node, c.compatible, c.region.base)
                }
                _ => info!("Console: {} -> {} ({}) at {:#x}", c.source, c.node, c.compatible, c.region.base),
            }
            switch_console(c, mmu_on.then_some(early.uart_pa));
        }
        Err(e) => warn!("Console: {e}; staying on the early console"),
    }

    match &plan.cpus {
        Ok(cpus) => info!("CPUs: {} in /cpus", cpus.enabled()),
        Err(e) => warn!("CPUs: {e}"),
    }
    info!("Boot plan from the device tree:");
    plan.report(&mut |line| info!("  {line}"));

    // Without PSCI (a spin-table board), the boot goes on: secondary CPUs
    // by spin table, but no power control (power-off becomes a halt).
    let conduit = match plan.psci.and_then(|p| p.ok_or(DtError::MissingNode("/psci"))) {
        Ok(p) => Some(p.conduit),
        Err(e) => {
            warn!("PSCI: {e}; no firmware power control (CPU_OFF, SYSTEM_OFF): power-off requests halt");
            None
        }
    };
    if let Some(conduit) = conduit {
        report_psci(conduit);
    }

    // The physical GIC: interrupt delivery to guests.
    #[cfg(target_arch = "aarch64")]
    if relocated.is_some() {
        init_gic(&plan.gic);
    }

    // Secondary CPUs, straight into the relocated image.
    #[cfg(target_arch = "aarch64")]
    if let Some(r) = relocated {
        match (&plan.cpus, &plan.psci) {
            (Ok(cpus), Ok(psci)) => {
                crate::smp::bring_up(cpus, psci.as_ref(), r.secondary_entry, r.bringup_root, |pa| {
                    (relocate::DIRECTMAP_VA + pa) as usize
                });
            }
            (Err(e), _) | (_, Err(e)) => warn!("CPUs: cannot start secondaries: {e}"),
        }
        crate::timing::stamp(crate::timing::Stage::CpusOnline);
    }

    if let Some(kind) = opts.crash_test {
        if cfg!(feature = "crashtest") {
            warn!("crashtest: faulting on purpose ({kind:?})");
            crate::crash::trigger(kind);
        } else {
            warn!("crashtest= ignored: this image was built without the crashtest feature");
        }
    }

    // Dom0, from the kernel module in /chosen (Xen's binding).
    #[cfg(target_arch = "aarch64")]
    if let Some(r) = relocated {
        match dt.dom0_modules() {
            Ok(Some(m)) => {
                let image = crate::dt::Region { base: r.to, size: r.size };
                let e = build_dom0(&dt, &plan, &opts, m, conduit, image);
                fatal(format_args!("dom0: {e}"));
            }
            Ok(None) => report_unused_modules(&dt),
            Err(e) => fatal(format_args!("dom0: cannot read the boot modules in /chosen: {e}")),
        }
    }

    info!("Boot complete: no domains to run yet");
    if let (true, Some(conduit)) = (opts.power_off_when_done, conduit) {
        info!("Powering off via PSCI SYSTEM_OFF");
        let ret = arch::firmware_call(conduit, psci::fid::SYSTEM_OFF, 0, 0, 0) as i32;
        let why = psci::PsciError::from_return(ret).err().map(|e| e.name()).unwrap_or("returned");
        fatal(format_args!("PSCI SYSTEM_OFF failed: {why}"));
    }
    if opts.power_off_when_done {
        info!("no PSCI firmware to power off: halting");
    } else {
        info!("halt requested: stopping");
    }
    arch::halt();
}

/// Logs the firmware's PSCI version and whether it has CPU_ON.
fn report_psci(conduit: crate::dt::Conduit) {
    let version = arch::firmware_call(conduit, psci::fid::VERSION, 0, 0, 0) as i32;
    match psci::PsciError::from_return(version) {
        Ok(v) => {
            let (major, minor) = psci::version_parts(v);
            info!("PSCI: firmware v{major}.{minor} via {conduit}");
            // PSCI 1.0+: ask whether CPU_ON is there, rather than assume it.
            if major >= 1 {
                let cpu_on = if cfg!(target_arch = "aarch64") { psci::fid::CPU_ON_64 } else { psci::fid::CPU_ON_32 };
                let r = arch::firmware_call(conduit, psci::fid::FEATURES, cpu_on.into(), 0, 0) as i32;
                match psci::PsciError::from_return(r) {
                    Ok(_) => info!("PSCI: CPU_ON ({cpu_on:#x}) supported (PSCI_FEATURES)"),
                    Err(e) => warn!("PSCI: PSCI_FEATURES says CPU_ON ({cpu_on:#x}) is {}", e.name()),
                }
            }
        }
        Err(e) => warn!("PSCI: PSCI_VERSION failed: {}", e.name()),
    }
}

/// Builds and starts dom0 from its boot modules: returns only on error.
/// Dom0 gets every host device but the GIC's hypervisor frames, the
/// hypervisor's memory and its console UART (emulated for dom0 at the same
/// address), and a device tree generated from the host's.
#[cfg(target_arch = "aarch64")]
fn build_dom0(
    dt: &DeviceTree<'_>,
    plan: &crate::dt::BootPlan<'_>,
    opts: &cmdline::Options,
    m: crate::dt::Dom0Modules<'_>,
    conduit: Option<crate::dt::Conduit>,
    image: crate::dt::Region,
) -> crate::domain::DomainError {
    use crate::domain::DomainError;
    use alloc::string::ToString;
    let host_gic = match plan.gic.as_ref() {
        Ok(g) => g,
        Err(e) => return DomainError::Dt(*e),
    };
    let gic = crate::domain::HostGic {
        version: host_gic.version,
        gicd: host_gic.dist,
        gicr: host_gic.redist.as_slice().first().copied(),
        gicc: host_gic.cpu_if,
        gicv: host_gic.vcpu_if,
    };
    let dom0_gic = match crate::dt::Dom0Gic::from_host(host_gic) {
        Ok(g) => g,
        Err(e) => return DomainError::DeviceTree(e.to_string()),
    };
    let hypervisor = [image];
    let pass = match dt.dom0_pass_through(&hypervisor) {
        Ok(p) => p,
        Err(e) => return DomainError::DeviceTree(alloc::format!("its devices: {e}")),
    };
    // The console UART is emulated; any other UART is passed through.
    let console = plan.console.as_ref().ok().filter(|c| c.is_pl011());
    let mut extra = alloc::vec::Vec::new();
    let mut spis = pass.spis.clone();
    let mut uart = None;
    for u in &pass.uarts {
        if console.is_some_and(|c| u.regions.first().is_some_and(|r| r.base == c.region.base)) {
            uart = console.map(|c| (c.region, u.spis.first().copied()));
        } else {
            extra.extend(u.regions.iter().copied());
            spis.extend(u.spis.iter().copied());
        }
    }
    spis.sort_unstable();
    spis.dedup();
    let exclude: alloc::vec::Vec<_> = uart.iter().map(|(r, _)| *r).collect();
    let reserved: alloc::vec::Vec<_> = pass.reserved_memory.iter().map(|r| r.region).collect();
    let pages = pass.pages(&extra, &exclude);
    let bootargs = m.bootargs.unwrap_or("");
    info!("dom0: command line \"{bootargs}\"");
    let stdout_path = console.map(|c| c.node.as_str().to_string());
    let mut make_dtb = |l: &crate::domain::Dom0Layout| -> Result<alloc::vec::Vec<u8>, alloc::string::String> {
        let mpidrs: alloc::vec::Vec<u64> = (0..l.nvcpus).map(crate::domain::Dom0Layout::vcpu_mpidr).collect();
        let cfg = crate::dt::Dom0Dt {
            memory: &[l.ram],
            vcpu_mpidrs: &mpidrs,
            bootargs: m.bootargs,
            initrd: l.initrd,
            stdout_path: stdout_path.as_deref(),
            gic: dom0_gic,
            hypervisor: &hypervisor,
        };
        dt.dom0_device_tree(&cfg).map_err(|e| e.to_string())
    };
    crate::domain::start_dom0(crate::domain::Dom0Spec {
        kernel: m.kernel,
        ramdisk: m.ramdisk,
        mem: opts.dom0_mem.unwrap_or(crate::domain::DOM0_MEM_DEFAULT),
        max_vcpus: opts.dom0_max_vcpus,
        conduit,
        gic: Some(gic),
        devices: crate::domain::PassThrough { pages: &pages, memory: &reserved, spis: &spis },
        uart,
        make_dtb: &mut make_dtb,
    })
}

/// Sets the physical GIC up for delivering interrupts to guests (GICv3, or
/// GICv2 with its virtual interface frames), reached through the direct map.
#[cfg(target_arch = "aarch64")]
fn init_gic(gic: &Result<crate::dt::Gic, DtError>) {
    use crate::dt::GicVersion;
    let dm = relocate::DIRECTMAP_VA;
    let g = match gic {
        Ok(g) => g,
        Err(e) => return warn!("GIC: {e}; no interrupt delivery to guests"),
    };
    match (g.version, g.cpu_if, g.hyp_if) {
        (GicVersion::V3, _, _) => {
            let gicr = g.redist.as_slice().first().copied().unwrap_or_default();
            let stride = g.redist_stride.map(|s| s as usize);
            crate::arch::gicv3::init((dm + g.dist.base) as usize, (dm + gicr.base) as usize, gicr.size as usize, stride);
            crate::gic::set_version(GicVersion::V3);
        }
        (GicVersion::V2, Some(gicc), Some(gich)) if g.vcpu_if.is_some() => {
            crate::gic::v2::init((dm + g.dist.base) as usize, (dm + gicc.base) as usize, (dm + gich.base) as usize);
            crate::gic::set_version(GicVersion::V2);
        }
        _ => return info!("GIC: {:?} at {} without a virtual interface: no interrupt delivery to guests", g.version, g.dist),
    }
    if crate::gic::init_cpu(0) {
        info!(
            "GIC: {:?}, distributor {}, {} list registers, EOImode 1",
            g.version,
            g.dist,
            crate::gic::nr_lrs()
        );
    } else {
        warn!("GIC: the boot CPU's interface could not be set up");
    }
}

/// Logs what the early MMU code did.
fn report_early_mmu(e: &armature_early::EarlyInfo) {
    const ALIAS: u64 = armature_early::layout::Plan::TemporaryAlias as u64;
    match e.plan {
        ALIAS => info!(
            "MMU: on; identity page {:#x} clashed with the runtime range at {:#x}: went through the temporary alias at {:#x}",
            e.idmap_pa, e.image_va, e.alias_va
        ),
        _ => info!("MMU: on; identity page {:#x} (no clash with the runtime range at {:#x})", e.idmap_pa, e.image_va),
    }
    info!(
        "MMU: image {:#x} -> VA {:#x}; boot tables at {:#x} ({} pages); removed {} identity and {} alias page(s)",
        e.load_pa, e.image_va, e.root_pa, e.tables_used, e.idmap_removed, e.alias_removed
    );
}

/// The early code's error codes (`armature_early::Error`) in words.
fn early_error_name(code: u64) -> &'static str {
    use armature_early::Error;
    match Error::from_code(code) {
        Some(Error::OutOfTables) => "out of boot page-table pages",
        Some(Error::Overlap) => "virtual address already mapped",
        Some(Error::BadAddress) => "address not page aligned or out of range",
        Some(Error::ImageTooLarge) => "image larger than the runtime image window",
        Some(Error::BadDtb) => "device tree too large or not a device tree (bad header at the DTB address)",
        Some(Error::PaRangeTooSmall) => "physical address range of the CPU too small",
        Some(Error::NotMapped) => "mapping to remove not found",
        None => "unknown early error",
    }
}

/// Moves the console to the device tree's UART when it is a PL011 we can
/// drive. With the MMU on only the early UART is mapped (`early_uart`).
fn switch_console(c: &Console<'_>, early_uart: Option<u64>) {
    let base = c.region.base;
    if !c.is_pl011() {
        warn!("Console: no driver for {}; staying on the early console", c.compatible);
        return;
    }
    if let Some(pa) = early_uart {
        if pa != base {
            warn!("Console: {base:#x} is not mapped yet; staying on the early UART at {pa:#x}");
        }
        return;
    }
    let Ok(base) = usize::try_from(base) else {
        warn!("Console: UART at {base:#x} is not addressable; staying on the early console");
        return;
    };
    if console::current_uart().map(|u| u.base()) == Some(base) {
        return;
    }
    // SAFETY: the device tree says a PL011 lives at `base`; with the MMU off
    // it is accessible.
    console::set_uart(unsafe { Pl011::new(base) });
    info!("Console: switched to the PL011 at {base:#x}");
}

/// Boot modules with no kernel among them: said, with each module, since
/// no dom0 will be built from them.
#[cfg(target_arch = "aarch64")]
fn report_unused_modules(dt: &DeviceTree<'_>) {
    let Ok(m) = dt.chosen_modules() else { return };
    if m.as_slice().is_empty() {
        return;
    }
    warn!(
        "dom0: /chosen has {} boot module(s) but no kernel (a multiboot,kernel module, or a first plain \
         multiboot,module): no dom0",
        m.as_slice().len()
    );
    for module in m.as_slice() {
        warn!("dom0:   {module} left unused");
    }
}

/// Reports an unrecoverable boot error and ends the boot as `on_fatal=`
/// says (power off by default).
fn fatal(args: core::fmt::Arguments<'_>) -> ! {
    error!("FATAL: {args}");
    fatal::stop();
}

/// [`fatal`], for the boot's submodules.
#[cfg(target_arch = "aarch64")]
pub(crate) fn fatal_error(args: core::fmt::Arguments<'_>) -> ! {
    fatal(args)
}
