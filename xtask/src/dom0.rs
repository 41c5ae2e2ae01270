//! Linux as dom0: the boot recipes, with Xen's device-tree bindings so that
//! the same recipe boots Armature or Xen, and what dom0's `/init` reports
//! ([`crate::initramfs`]).
//!
//! The hypervisor finds dom0 in `/chosen` (Xen's
//! `docs/misc/arm/device-tree/booting.txt`): `#address-cells` and
//! `#size-cells` set to 2, a `module@<addr>` node for the kernel
//! (`compatible = "multiboot,kernel", "multiboot,module"`) and one for the
//! initramfs (`"multiboot,ramdisk", "multiboot,module"`), each with
//! `reg = <addr size>`, the hypervisor's options in `xen,xen-bootargs` and
//! dom0's command line in `xen,dom0-bootargs`. Two ways to get there:
//!
//! - **U-Boot** ([`uboot`]): Debian's U-Boot as `-bios`; distro boot runs
//!   the `boot.scr` of a virtio disk holding the hypervisor, the kernel
//!   `Image` and the initramfs; the script loads them to [`UBOOT_KERNEL_ADDR`]
//!   and the 16 MiB boundary after the kernel, adds the nodes with `fdt`
//!   commands and `booti`s the hypervisor at `kernel_addr_r` (0x40400000);
//! - **direct** ([`direct`]): QEMU's `-kernel` (the hypervisor lands at
//!   0x40200000), `-dtb` = QEMU's own device tree for the machine with the
//!   nodes added by `fdtput`, and the kernel and initramfs put at
//!   [`DIRECT_KERNEL_ADDR`] and after it by QEMU's generic loader.
//!
//! Bare Linux (no hypervisor, [`bare`]) uses `-kernel`/`-initrd`, for the
//! benchmark's baseline.

use crate::initramfs::{DONE_MARKER, SHELL_WORD, USERSPACE_MARKER};
use crate::qemu::{Drive, Qemu};
use crate::runner::Expect;
use crate::uboot::{self, BootScript, Environment, Module, UbootBoot};
use crate::{Arch, Context, Result};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// U-Boot path: where the script loads dom0's kernel (clear of the
/// hypervisor at `kernel_addr_r` 0x40400000; Debian's 31 MiB Image does not
/// fit below `ramdisk_addr_r` with it).
pub const UBOOT_KERNEL_ADDR: u64 = 0x4500_0000;
/// Direct path: where QEMU's loader puts dom0's kernel (clear of the
/// hypervisor at 0x40200000 and of QEMU's DTB at 0x48000000).
pub const DIRECT_KERNEL_ADDR: u64 = 0x4a00_0000;
/// The initramfs goes to the first multiple of this after the kernel.
pub const MODULE_ALIGN: u64 = 16 << 20;
/// Name of the kernel on the boot disk.
pub const KERNEL_FILE: &str = "vmlinuz";
/// Name of the initramfs on the boot disk.
pub const INITRD_FILE: &str = "initrd";

/// Armature's dom0 command line: the PL011 Armature emulates for dom0.
pub const ARMATURE_DOM0_ARGS: &str = "console=ttyAMA0 earlycon=pl011,0x9000000 rdinit=/init panic=-1";
/// Xen's dom0 command line: Xen keeps the PL011 and gives dom0 its console hypercall.
pub const XEN_DOM0_ARGS: &str = "console=hvc0 earlycon=xenboot rdinit=/init panic=-1";
/// Bare Linux's command line.
pub const BARE_ARGS: &str = "console=ttyAMA0 rdinit=/init panic=-1";

/// Xen's options for `cpus` CPUs: the PL011 console, 512 MiB and every CPU
/// for dom0, no scrubbing, and dom0's WFI not trapped (with Xen's default
/// `vwfi=trap` an SMP dom0 boots 5-20 times slower under TCG).
pub fn xen_args(cpus: u32) -> String {
    format!("console=dtuart dtuart=/pl011@9000000 dom0_mem=512M dom0_max_vcpus={cpus} bootscrub=0 vwfi=native")
}

/// Lines that mean the boot went wrong: Armature's and Xen's crash reports,
/// a Linux panic or oops, the U-Boot script failing.
pub const FAILURE_MARKERS: [&str; 8] = [
    "----[ Armature",
    "hardware domain crashed",
    "PANIC",
    "FATAL",
    "Kernel panic",
    "Unable to handle kernel",
    "Panic on CPU",
    "SCRIPT FAILED",
];

/// A dom0 run whose console is silent this long has hung: Linux under TCG
/// prints something every few seconds at most (the longest pauses, up to
/// 5 s, are Xen's `vwfi=trap` wake-ups on a loaded host).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The hypervisor under dom0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypervisor {
    /// Armature.
    Armature,
    /// Debian's Xen 4.17.
    Xen,
}

impl Hypervisor {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Hypervisor::Armature => "armature",
            Hypervisor::Xen => "xen",
        }
    }

    /// dom0's default command line under this hypervisor.
    pub fn dom0_args(self) -> &'static str {
        match self {
            Hypervisor::Armature => ARMATURE_DOM0_ARGS,
            Hypervisor::Xen => XEN_DOM0_ARGS,
        }
    }

    /// The hypervisor's default options on `cpus` CPUs.
    pub fn default_args(self, cpus: u32) -> String {
        match self {
            Hypervisor::Armature => String::new(),
            Hypervisor::Xen => xen_args(cpus),
        }
    }
}

impl fmt::Display for Hypervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Hypervisor {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "armature" => Ok(Hypervisor::Armature),
            "xen" => Ok(Hypervisor::Xen),
            _ => Err(crate::Error::new(format!("unknown hypervisor `{s}` (expected armature or xen)"))),
        }
    }
}

/// What dom0 boots: the kernel, the initramfs, the two command lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dom0 {
    /// The arm64 Image.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The hypervisor's options (`xen,xen-bootargs`); none when empty.
    pub hv_args: String,
    /// dom0's command line (`xen,dom0-bootargs`).
    pub dom0_args: String,
}

impl Dom0 {
    /// dom0 for `hv` with the default command lines on `cpus` CPUs.
    pub fn new(hv: Hypervisor, kernel: impl Into<PathBuf>, initrd: impl Into<PathBuf>, cpus: u32) -> Dom0 {
        Dom0 {
            kernel: kernel.into(),
            initrd: initrd.into(),
            hv_args: hv.default_args(cpus),
            dom0_args: hv.dom0_args().to_string(),
        }
    }

    /// Adds `armature.shell` to dom0's command line: `/init` starts a shell.
    pub fn shell(mut self) -> Dom0 {
        if !self.dom0_args.split_whitespace().any(|w| w == SHELL_WORD) {
            self.dom0_args = format!("{} {SHELL_WORD}", self.dom0_args).trim().to_string();
        }
        self
    }

    /// Where the kernel and the initramfs go when the kernel is at `kernel_addr`.
    pub fn layout(&self, kernel_addr: u64) -> Result<(u64, u64)> {
        let size = file_size(&self.kernel)?;
        Ok((kernel_addr, initrd_addr(kernel_addr, size)))
    }
}

/// The first [`MODULE_ALIGN`] boundary after a kernel of `size` bytes at `kernel_addr`.
pub fn initrd_addr(kernel_addr: u64, size: u64) -> u64 {
    (kernel_addr + size).next_multiple_of(MODULE_ALIGN)
}

fn file_size(p: &Path) -> Result<u64> {
    Ok(std::fs::metadata(p).context(|| format!("reading {}", p.display()))?.len())
}

/// The U-Boot script that boots `dom0` under the hypervisor loaded at
/// `kernel_addr_r` (named `image_file` on the disk).
pub fn uboot_script(dom0: &Dom0, image_file: &str) -> Result<BootScript> {
    let (kaddr, raddr) = dom0.layout(UBOOT_KERNEL_ADDR)?;
    let mut s = BootScript::new(Arch::Aarch64)
        .image_file(image_file)
        .dom0_bootargs(dom0.dom0_args.clone())
        .module(Module {
            source: dom0.kernel.clone(),
            name: KERNEL_FILE.into(),
            addr: kaddr,
            compatible: vec!["multiboot,kernel".into()],
        })
        .module(Module {
            source: dom0.initrd.clone(),
            name: INITRD_FILE.into(),
            addr: raddr,
            compatible: vec!["multiboot,ramdisk".into()],
        });
    if !dom0.hv_args.is_empty() {
        s = s.xen_bootargs(dom0.hv_args.clone());
    }
    Ok(s)
}

/// The U-Boot path: disk, script and environment in `dir` for booting
/// `hv_image` (named `image_file` on the disk) with `dom0`.
pub fn uboot(dir: &Path, hv_image: &Path, image_file: &str, dom0: &Dom0, env: Environment) -> Result<UbootBoot> {
    uboot::prepare(dir, hv_image, &uboot_script(dom0, image_file)?, env)
}

/// The direct path: `qemu` with `-kernel hv_image`, the machine's own DTB
/// (dumped into `dir`) with the dom0 nodes, and the kernel and initramfs
/// loaded by QEMU.
pub fn direct(qemu: Qemu, hv_image: &Path, dom0: &Dom0, dir: &Path) -> Result<Qemu> {
    let dtb = dir.join("dom0.dtb");
    qemu.dump_dtb(&dtb)?;
    let (kaddr, raddr) = dom0.layout(DIRECT_KERNEL_ADDR)?;
    crate::fdt::add_chosen_module(&dtb, kaddr, file_size(&dom0.kernel)?, &["multiboot,kernel"])?;
    crate::fdt::add_chosen_module(&dtb, raddr, file_size(&dom0.initrd)?, &["multiboot,ramdisk"])?;
    if !dom0.hv_args.is_empty() {
        crate::fdt::fdtput(&dtb, &["-t", "s", "/chosen", "xen,xen-bootargs", dom0.hv_args.as_str()])?;
    }
    crate::fdt::fdtput(&dtb, &["-t", "s", "/chosen", "xen,dom0-bootargs", dom0.dom0_args.as_str()])?;
    Ok(qemu.kernel(hv_image).dtb(&dtb).load_at(&dom0.kernel, kaddr).load_at(&dom0.initrd, raddr))
}

/// Size of the data disk of [`with_devices`].
pub const DATA_DISK_SIZE: usize = 1 << 20;
/// md5 of the first 4 KiB of [`data_disk`], which dom0 reads and prints.
pub const DATA_DISK_MD5: &str = "32cd0f7379e17e060f076419be748d9e";

/// The data disk's contents: each 512-byte sector says which it is
/// (`Armature dom0 data disk, sector 00000007`), then bytes of its number.
pub fn data_disk() -> Vec<u8> {
    let mut disk = Vec::with_capacity(DATA_DISK_SIZE);
    for sector in 0..DATA_DISK_SIZE / 512 {
        let start = disk.len();
        disk.extend_from_slice(format!("Armature dom0 data disk, sector {sector:08}\n").as_bytes());
        disk.resize(start + 512, sector as u8);
    }
    disk
}

/// Adds the devices dom0 must find and use to `qemu`: a virtio-blk disk on
/// virtio-mmio holding [`data_disk`] (written to `dir/data.img`) and a
/// virtio-rng on PCI (`virtio-rng-pci`: INTx, as dom0 has no MSI
/// controller under Armature). Checked by [`Report::device_problems`].
/// Add them before U-Boot's boot disk: QEMU gives the first virtio-mmio
/// device the highest transport, and U-Boot's `virtio 0` is the lowest.
pub fn with_devices(qemu: Qemu, dir: &Path) -> Result<Qemu> {
    let disk = dir.join("data.img");
    crate::paths::write_atomic(&disk, &data_disk()).context(|| format!("writing {}", disk.display()))?;
    Ok(qemu.drive(Drive::VirtioBlk(disk)).args(["-device", "virtio-rng-pci"]))
}

/// How `./x run` (`cargo xtask run`) boots a dom0.
#[derive(Clone, Debug)]
pub struct RunMachine<'a> {
    /// The hypervisor's image, and its name on U-Boot's disk.
    pub hv_image: &'a Path,
    /// [`crate::uboot::IMAGE_FILE`] for Armature, `xen` for Xen.
    pub image_file: &'a str,
    /// QEMU's `-kernel` and loader instead of U-Boot.
    pub direct: bool,
    /// U-Boot's environment.
    pub env: Environment,
    /// A person at a terminal: dom0 starts a shell and QEMU's console is
    /// the terminal ([`Qemu::interactive`], QEMU's escape key moved to
    /// [`crate::qemu::ESCAPE`]).
    pub interactive: bool,
    /// Names the scratch directory and the console log.
    pub name: &'a str,
}

/// `./x run`'s machine: `qemu` with dom0's devices and `dom0` booted the
/// way `m` says. Returns QEMU and where the console log goes. The tests
/// drive the same machine through a terminal (`tests/console_tty.rs`).
pub fn run_machine(mut qemu: Qemu, mut dom0: Dom0, m: &RunMachine<'_>) -> Result<(Qemu, PathBuf)> {
    if m.interactive {
        dom0 = dom0.shell();
    }
    let dir = crate::paths::scratch_dir(m.name)?;
    let log = crate::paths::log_path(m.name);
    if m.interactive {
        qemu = qemu.interactive(&log);
    }
    // The devices dom0 must use; before U-Boot's boot disk, which stays its
    // `virtio 0` (U-Boot numbers from the lowest transport, where QEMU puts
    // the last virtio-mmio device).
    qemu = with_devices(qemu, &dir)?;
    let qemu = if m.direct {
        direct(qemu, m.hv_image, &dom0, &dir)?
    } else {
        uboot(&dir, m.hv_image, m.image_file, &dom0, m.env)?.apply(qemu)
    };
    Ok((qemu, log))
}

/// Bare Linux: `-kernel`, `-initrd`, `-append`.
pub fn bare(qemu: Qemu, kernel: &Path, initrd: &Path, args: &str) -> Qemu {
    qemu.kernel(kernel).initrd(initrd).append(args)
}

/// A whole dom0 run: the userspace marker, the report, the done marker,
/// and QEMU exiting with 0 after dom0's power-off.
pub fn expect(timeout: Duration) -> Expect {
    expect_after(&[], timeout)
}

/// [`expect`] with `earlier` lines (the firmware's and the hypervisor's) first.
pub fn expect_after(earlier: &[&str], timeout: Duration) -> Expect {
    Expect::new()
        .markers(earlier.iter().copied())
        .markers([USERSPACE_MARKER, "dom0: cpus ", "--- interrupts ---", DONE_MARKER])
        .failure_markers(FAILURE_MARKERS)
        .clean_exit(true)
        .timeout(timeout)
        .idle_timeout(IDLE_TIMEOUT)
}

/// What dom0's `/init` reported, read from the console log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// `nproc`.
    pub nproc: Option<u32>,
    /// Processors in `/proc/cpuinfo`.
    pub cpus: Option<u32>,
    /// `/sys/devices/system/cpu/online` (`0-3`).
    pub online: Option<String>,
    /// `MemTotal` of `/proc/meminfo`, in KiB.
    pub mem_total_kib: Option<u64>,
    /// dom0's kernel command line (`/proc/cmdline`).
    pub cmdline: Option<String>,
    /// `/proc/interrupts`.
    pub interrupts: Vec<String>,
    /// The kernel's log lines about PSCI, the GIC and the arch timer.
    pub dmesg: Vec<String>,
    /// Virtio devices.
    pub virtio: Vec<String>,
    /// PCI devices.
    pub pci: Vec<String>,
    /// The `insmod` lines (`virtio_mmio.ko ok`).
    pub insmod: Vec<String>,
    /// The virtio and PCI lines of `/proc/interrupts` before the devices
    /// were used, and after.
    pub device_irqs_before: Vec<String>,
    /// See `device_irqs_before`.
    pub device_irqs_after: Vec<String>,
    /// The disk reads: `vda virtio0 read ok <md5>`.
    pub disk_reads: Vec<String>,
    /// The hwrng read: `virtio_rng.0 read ok <hex>`.
    pub hwrng: Option<String>,
    /// Whether the report was complete (the done marker was printed).
    pub done: bool,
}

impl Report {
    /// Parses the report out of a console log (only what follows the
    /// userspace marker counts).
    pub fn parse(log: &str) -> Report {
        let mut r = Report::default();
        let Some(start) = log.find(USERSPACE_MARKER) else { return r };
        let mut section: Option<&str> = None;
        for line in log[start..].lines() {
            let line = line.trim_end();
            if let Some(name) = line.strip_prefix("--- ").and_then(|l| l.strip_suffix(" ---")) {
                section = if name == "end" { None } else { Some(name) };
                continue;
            }
            match section {
                Some("interrupts") => r.interrupts.push(line.to_string()),
                Some(s) if s.starts_with("dmesg") => r.dmesg.push(line.to_string()),
                Some("virtio") => r.virtio.push(line.to_string()),
                Some("pci") => r.pci.push(line.to_string()),
                Some("device interrupts before use") => r.device_irqs_before.push(line.to_string()),
                Some("device interrupts after use") => r.device_irqs_after.push(line.to_string()),
                Some(_) => {}
                None => {
                    let value = |key: &str| line.strip_prefix(key).map(str::trim);
                    if let Some(v) = value("dom0: nproc ") {
                        r.nproc = v.parse().ok();
                    } else if let Some(v) = value("dom0: cpus ") {
                        r.cpus = v.parse().ok();
                    } else if let Some(v) = value("dom0: online ") {
                        r.online = Some(v.to_string());
                    } else if let Some(v) = value("dom0: memtotal ") {
                        r.mem_total_kib = v.strip_suffix("kB").and_then(|n| n.trim().parse().ok());
                    } else if let Some(v) = value("dom0: cmdline ") {
                        r.cmdline = Some(v.to_string());
                    } else if let Some(v) = value("dom0: insmod ") {
                        r.insmod.push(v.to_string());
                    } else if let Some(v) = value("dom0: hwrng ") {
                        r.hwrng = Some(v.to_string());
                    } else if let Some(v) = value("dom0: vd") {
                        r.disk_reads.push(format!("vd{v}"));
                    } else if line.contains(DONE_MARKER) {
                        r.done = true;
                    }
                }
            }
        }
        r
    }

    /// The CPUs of an online list such as `0-3` or `0,2-3`.
    pub fn online_cpus(&self) -> Option<Vec<u32>> {
        let mut cpus = Vec::new();
        for part in self.online.as_deref()?.split(',').filter(|p| !p.is_empty()) {
            match part.split_once('-') {
                Some((a, b)) => cpus.extend(a.trim().parse::<u32>().ok()?..=b.trim().parse::<u32>().ok()?),
                None => cpus.push(part.trim().parse().ok()?),
            }
        }
        Some(cpus)
    }

    /// The dmesg lines that contain `word` (case-insensitive).
    pub fn dmesg_with(&self, word: &str) -> Vec<&str> {
        let w = word.to_lowercase();
        self.dmesg.iter().filter(|l| l.to_lowercase().contains(&w)).map(String::as_str).collect()
    }

    /// The virtio devices: `virtio0 device 0x0002 vendor 0x554d4551 driver
    /// virtio_blk on a003e00.virtio_mmio`.
    pub fn virtio_devices(&self) -> Vec<VirtioDevice> {
        self.virtio
            .iter()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let at = |key: &str| w.iter().position(|x| *x == key).and_then(|i| w.get(i + 1)).map(|s| s.to_string());
                Some(VirtioDevice {
                    name: w.first().filter(|n| n.starts_with("virtio") && !n.ends_with(':'))?.to_string(),
                    device_id: u32::from_str_radix(at("device")?.trim_start_matches("0x"), 16).ok()?,
                    driver: at("driver").filter(|d| d != "-"),
                    parent: at("on").unwrap_or_default(),
                })
            })
            .collect()
    }

    /// The PCI devices: `0000:00:01.0 0x1af4:0x1005 class 0x00ff00 driver
    /// virtio-pci irq 37 msi no`.
    pub fn pci_devices(&self) -> Vec<PciDevice> {
        self.pci
            .iter()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let at = |key: &str| w.iter().position(|x| *x == key).and_then(|i| w.get(i + 1)).map(|s| s.to_string());
                let (vendor, device) = w.get(1)?.split_once(':')?;
                let hex = |s: &str| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok();
                Some(PciDevice {
                    address: w.first()?.to_string(),
                    vendor: hex(vendor)?,
                    device: hex(device)?,
                    driver: at("driver").filter(|d| d != "-"),
                    msi: at("msi").as_deref() == Some("yes"),
                })
            })
            .collect()
    }

    /// Interrupts of virtio device `name` (`virtio3`, or `virtio3-…` with
    /// MSI-X), summed over the CPUs and the lines, in `lines` of
    /// `/proc/interrupts`; None when it has no line.
    pub fn irq_count(lines: &[String], name: &str) -> Option<u64> {
        let mut total = None;
        for l in lines {
            let w: Vec<&str> = l.split_whitespace().collect();
            let Some(last) = w.last() else { continue };
            if *last != name && !last.starts_with(&format!("{name}-")) {
                continue;
            }
            let n: u64 = w.iter().skip(1).map_while(|x| x.parse::<u64>().ok()).sum();
            total = Some(total.unwrap_or(0) + n);
        }
        total
    }

    /// Every problem with dom0's use of the devices [`with_devices`] adds:
    /// a virtio-blk device bound to `virtio_blk` whose first 4 KiB read
    /// back as `disk_md5` (and no disk read failed), a virtio device on PCI
    /// bound to `virtio-pci`, the hwrng read, the interrupt count of the
    /// disk and of the entropy source increasing while they were read, and
    /// every module loaded. Empty when all is well.
    pub fn device_problems(&self, disk_md5: &str) -> Vec<String> {
        let mut p = Vec::new();
        // (not "ends with ok": the kernel's console messages may follow on the same line)
        for m in self.insmod.iter().filter(|l| !l.split_whitespace().nth(1).is_some_and(|w| w.starts_with("ok"))) {
            p.push(format!("insmod {m}"));
        }
        let virtio = self.virtio_devices();
        let pci = self.pci_devices();
        let counts = |name: &str| {
            (Self::irq_count(&self.device_irqs_before, name), Self::irq_count(&self.device_irqs_after, name))
        };
        let check_irqs = |what: &str, dev: &str, p: &mut Vec<String>| match counts(dev) {
            (Some(b), Some(a)) if a > b => {}
            (b, a) => p.push(format!(
                "{what}: the interrupt count of {dev} did not increase while it was read (before {b:?}, after {a:?})"
            )),
        };
        // The disk.
        let blk: Vec<&VirtioDevice> =
            virtio.iter().filter(|d| d.device_id == 2 && d.driver.as_deref() == Some("virtio_blk")).collect();
        if blk.is_empty() {
            p.push(format!("no virtio block device (ID 2) bound to virtio_blk: {:?}", self.virtio));
        }
        for r in self.disk_reads.iter().filter(|r| !r.contains(" read ok ")) {
            p.push(format!("disk read failed: {r}"));
        }
        let good = self.disk_reads.iter().find_map(|r| {
            let w: Vec<&str> = r.split_whitespace().collect();
            (w.get(2..4) == Some(&["read", "ok"][..]) && w.get(4) == Some(&disk_md5)).then(|| w.get(1).copied())?
        });
        match good {
            Some(dev) => check_irqs("the data disk", dev, &mut p),
            None => p.push(format!("no virtio disk read back with md5 {disk_md5}: {:?}", self.disk_reads)),
        }
        // The PCI virtio device and the entropy source.
        let on_pci: Vec<&PciDevice> =
            pci.iter().filter(|d| d.vendor == 0x1af4 && d.driver.as_deref() == Some("virtio-pci")).collect();
        if on_pci.is_empty() {
            p.push(format!("no PCI virtio device (vendor 0x1af4) bound to virtio-pci: {:?}", self.pci));
        }
        let rng = virtio.iter().find(|d| d.driver.as_deref() == Some("virtio_rng"));
        match rng {
            Some(r) if on_pci.iter().any(|d| d.address == r.parent) => {}
            Some(r) => {
                p.push(format!("the virtio entropy device {} is not on a virtio-pci device ({})", r.name, r.parent))
            }
            None => p.push(format!("no virtio device bound to virtio_rng: {:?}", self.virtio)),
        }
        match self.hwrng.as_deref() {
            Some(h) if h.contains(" read ok ") => {
                if let Some(r) = rng {
                    check_irqs("the hwrng", &r.name, &mut p);
                }
            }
            h => p.push(format!("the hwrng read failed: {h:?}")),
        }
        p
    }

    /// Every problem with the report for a machine with `cpus` CPUs: each
    /// CPU online, `/proc/interrupts` and the PSCI, GIC and arch timer lines
    /// present, the report complete. Empty when all is well.
    pub fn problems(&self, cpus: u32) -> Vec<String> {
        let mut p = Vec::new();
        let want: Vec<u32> = (0..cpus).collect();
        if self.cpus != Some(cpus) {
            p.push(format!("/proc/cpuinfo lists {:?} processors, expected {cpus}", self.cpus));
        }
        if self.nproc != Some(cpus) {
            p.push(format!("nproc is {:?}, expected {cpus}", self.nproc));
        }
        match self.online_cpus() {
            Some(online) if online == want => {}
            Some(online) => {
                let missing: Vec<_> = want.iter().filter(|c| !online.contains(c)).collect();
                p.push(format!("online CPUs {:?} (missing vCPUs {missing:?}), expected 0-{}", self.online, cpus - 1));
            }
            None => p.push(format!("no readable online CPU list ({:?})", self.online)),
        }
        if !self.interrupts.iter().any(|l| l.contains("CPU0")) {
            p.push("/proc/interrupts was not printed (no CPU0 header)".into());
        } else if let Some(header) = self.interrupts.iter().find(|l| l.contains("CPU0")) {
            let columns = header.split_whitespace().filter(|w| w.starts_with("CPU")).count();
            if columns != cpus as usize {
                p.push(format!("/proc/interrupts has {columns} CPU columns, expected {cpus}: {header:?}"));
            }
        }
        for (what, word) in [("PSCI", "psci"), ("GIC", "gic"), ("arch timer", "arch_timer")] {
            if self.dmesg_with(word).is_empty() {
                p.push(format!("no dmesg line about the {what} ({word})"));
            }
        }
        if !self.done {
            p.push(format!("the report did not end with {DONE_MARKER}"));
        }
        p
    }
}

/// A virtio device of dom0's report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtioDevice {
    /// `virtio0`.
    pub name: String,
    /// The virtio device ID (2: block, 4: entropy).
    pub device_id: u32,
    /// The bound driver.
    pub driver: Option<String>,
    /// The transport's device: `a003e00.virtio_mmio`, `0000:00:01.0`.
    pub parent: String,
}

/// A PCI device of dom0's report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciDevice {
    /// `0000:00:01.0`.
    pub address: String,
    /// Vendor ID.
    pub vendor: u32,
    /// Device ID.
    pub device: u32,
    /// The bound driver.
    pub driver: Option<String>,
    /// Whether MSI or MSI-X is in use (else INTx).
    pub msi: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
[    1.0] Booting Linux\n\
ARMATURE-DOM0-USERSPACE-OK\r\n\
dom0: insmod virtio_mmio.ko ok\n\
dom0: insmod virtio_rng.ko ok\n\
dom0: uptime 2.31 s\n\
dom0: cmdline console=ttyAMA0 rdinit=/init\n\
dom0: nproc 4\n\
dom0: cpus 4\n\
dom0: online 0-3\n\
dom0: memtotal 1978360 kB\n\
--- interrupts ---\n\
           CPU0       CPU1       CPU2       CPU3       \n\
 11:       1024        900        800        700     GICv3  27 Level     arch_timer\n\
--- end ---\n\
--- dmesg: psci, gic, arch_timer ---\n\
[    0.000000] psci: probing for conduit method from DT.\n\
[    0.000000] GICv3: 256 SPIs implemented\n\
[    0.000000] arch_timer: cp15 timer(s) running at 62.50MHz (virt).\n\
--- end ---\n\
--- virtio ---\n\
virtio-mmio transports: 32\n\
virtio0 device 0x0004 vendor 0x1af4 driver virtio_rng on 0000:00:01.0\n\
virtio1 device 0x0002 vendor 0x554d4551 driver virtio_blk on a003e00.virtio_mmio\n\
--- end ---\n\
--- pci ---\n\
0000:00:00.0 0x1b36:0x0008 class 0x060000 driver - irq 0 msi no\n\
0000:00:01.0 0x1af4:0x1005 class 0x00ff00 driver virtio-pci irq 13 msi no\n\
--- end ---\n\
--- device interrupts before use ---\n\
 13:         10          0          0          0     GICv3  37 Level     virtio0\n\
 14:          5          1          0          0     GICv3  79 Edge      virtio1\n\
--- end ---\n\
dom0: vda virtio1 read ok 32cd0f7379e17e060f076419be748d9e\n\
dom0: hwrng virtio_rng.0 read ok 00112233445566778899aabbccddeeff\n\
--- device interrupts after use ---\n\
 13:         12          3          0          0     GICv3  37 Level     virtio0\n\
 14:          6          1          0          0     GICv3  79 Edge      virtio1\n\
--- end ---\n\
ARMATURE-DOM0-DONE\n";

    #[test]
    fn report_is_read_back() {
        let r = Report::parse(LOG);
        assert_eq!((r.nproc, r.cpus, r.online.as_deref()), (Some(4), Some(4), Some("0-3")));
        assert_eq!(r.mem_total_kib, Some(1_978_360));
        assert_eq!(r.cmdline.as_deref(), Some("console=ttyAMA0 rdinit=/init"));
        assert_eq!(r.interrupts.len(), 2);
        assert_eq!(r.dmesg.len(), 3);
        assert_eq!(r.dmesg_with("GIC"), ["[    0.000000] GICv3: 256 SPIs implemented"]);
        assert_eq!(r.virtio.len(), 3);
        assert_eq!(r.pci.len(), 2);
        assert_eq!(r.insmod, ["virtio_mmio.ko ok", "virtio_rng.ko ok"]);
        assert_eq!(r.disk_reads, ["vda virtio1 read ok 32cd0f7379e17e060f076419be748d9e"]);
        assert_eq!(r.virtio_devices()[1].parent, "a003e00.virtio_mmio");
        assert_eq!(r.pci_devices()[1].driver.as_deref(), Some("virtio-pci"));
        assert_eq!(Report::irq_count(&r.device_irqs_before, "virtio0"), Some(10));
        assert_eq!(Report::irq_count(&r.device_irqs_after, "virtio0"), Some(15));
        assert_eq!(Report::irq_count(&r.device_irqs_after, "virtio2"), None);
        assert_eq!(r.device_problems(DATA_DISK_MD5), Vec::<String>::new());
        assert!(r.done);
        assert_eq!(r.problems(4), Vec::<String>::new());
        assert_eq!(r.online_cpus(), Some(vec![0, 1, 2, 3]));
    }

    #[test]
    fn a_missing_vcpu_is_named() {
        let log = LOG.replace("dom0: online 0-3", "dom0: online 0,2-3").replace("dom0: cpus 4", "dom0: cpus 3");
        let p = Report::parse(&log).problems(4);
        assert!(p.iter().any(|l| l.contains("missing vCPUs [1]")), "{p:?}");
        assert!(p.iter().any(|l| l.contains("lists Some(3) processors")), "{p:?}");
    }

    #[test]
    fn missing_sections_are_reported() {
        let log = "ARMATURE-DOM0-USERSPACE-OK\ndom0: cpus 4\ndom0: nproc 4\ndom0: online 0-3\n";
        let p = Report::parse(log).problems(4);
        for what in ["/proc/interrupts", "PSCI", "GIC", "arch timer", "ARMATURE-DOM0-DONE"] {
            assert!(p.iter().any(|l| l.contains(what)), "{what} not in {p:?}");
        }
        assert!(Report::parse("nothing here").problems(1).len() >= 5);
    }

    #[test]
    fn device_failures_are_named() {
        let cases = [
            ("driver virtio_blk on", "driver - on", "no virtio block device"),
            ("vda virtio1 read ok 32cd", "vda virtio1 read ok 42cd", "no virtio disk read back"),
            (
                "dom0: vda virtio1 read ok 32cd0f7379e17e060f076419be748d9e",
                "dom0: vda virtio1 read FAILED",
                "disk read failed",
            ),
            ("driver virtio-pci irq", "driver - irq", "no PCI virtio device"),
            ("hwrng virtio_rng.0 read ok 0011", "hwrng virtio_rng.0 read FAILED 0011", "hwrng read failed"),
            (
                "6          1          0          0     GICv3  79",
                "5          1          0          0     GICv3  79",
                "virtio1 did not increase",
            ),
            ("12          3          0", "10          0          0", "virtio0 did not increase"),
            ("virtio_rng.ko ok", "virtio_rng.ko FAILED", "insmod virtio_rng.ko FAILED"),
            ("virtio_mmio.ko ok", "virtio_mmio.ko ok[    3.98] random: crng init done", "%none%"),
        ];
        for (from, to, want) in cases {
            assert!(LOG.contains(from), "{from}");
            let p = Report::parse(&LOG.replace(from, to)).device_problems(DATA_DISK_MD5);
            if want == "%none%" {
                assert_eq!(p, Vec::<String>::new());
            } else {
                assert!(p.iter().any(|l| l.contains(want)), "{want:?} not in {p:?}");
            }
        }
        assert!(Report::parse("ARMATURE-DOM0-USERSPACE-OK\n").device_problems(DATA_DISK_MD5).len() >= 4);
    }

    #[test]
    fn data_disk_md5_is_right() {
        let disk = data_disk();
        assert_eq!(disk.len(), DATA_DISK_SIZE);
        assert_eq!(&disk[512..545], b"Armature dom0 data disk, sector 0");
        let Some(md5sum) = crate::paths::find_program("md5sum") else { return };
        let dir = crate::paths::scratch_dir("data-disk-unit-test").unwrap();
        std::fs::write(dir.join("head"), &disk[..4096]).unwrap();
        let out = std::process::Command::new(md5sum).arg(dir.join("head")).output().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).starts_with(DATA_DISK_MD5));
    }

    #[test]
    fn initrd_follows_the_kernel() {
        assert_eq!(initrd_addr(0x4500_0000, 32_954_880), 0x4700_0000);
        assert_eq!(initrd_addr(0x4a00_0000, 0x100_0000), 0x4b00_0000);
        assert_eq!(initrd_addr(0x4a00_0000, 0x100_0001), 0x4c00_0000);
    }

    #[test]
    fn shell_is_added_once() {
        let d = Dom0::new(Hypervisor::Armature, "/k", "/i", 4).shell().shell();
        assert_eq!(d.dom0_args, format!("{ARMATURE_DOM0_ARGS} armature.shell"));
        assert_eq!(d.hv_args, "");
        let x = Dom0::new(Hypervisor::Xen, "/k", "/i", 2);
        assert!(x.hv_args.contains("dom0_max_vcpus=2") && x.dom0_args.contains("console=hvc0"));
        assert_eq!("xen".parse::<Hypervisor>(), Ok(Hypervisor::Xen));
        assert!("kvm".parse::<Hypervisor>().is_err());
    }

    #[test]
    fn uboot_script_describes_both_modules() {
        let dir = crate::paths::scratch_dir("dom0-script-unit-test").unwrap();
        let (k, i) = (dir.join("Image"), dir.join("initrd"));
        std::fs::write(&k, vec![0u8; 0x180_0000]).unwrap();
        std::fs::write(&i, b"cpio").unwrap();
        let mut d = Dom0::new(Hypervisor::Xen, &k, &i, 4);
        d.hv_args = "console=dtuart".into();
        let s = uboot_script(&d, "xen").unwrap().render();
        let at = |line: &str| s.find(line).unwrap_or_else(|| panic!("no {line:?} in\n{s}"));
        let order = [
            at("${kernel_addr_r} xen\n"),
            at("fdt addr ${fdt_addr}\n"),
            at("fdt set /chosen xen,xen-bootargs \"console=dtuart\"\n"),
            at("fdt set /chosen xen,dom0-bootargs \"console=hvc0 earlycon=xenboot rdinit=/init panic=-1\"\n"),
            at("fdt set /chosen \\#address-cells <2>\n"),
            at("0x45000000 vmlinuz\n"),
            at("fdt set /chosen/module@45000000 compatible \"multiboot,kernel\" \"multiboot,module\"\n"),
            at("fdt set /chosen/module@45000000 reg <0x0 0x45000000 0x0 0x${filesize}>\n"),
            at("0x47000000 initrd\n"),
            at("fdt set /chosen/module@47000000 compatible \"multiboot,ramdisk\" \"multiboot,module\"\n"),
            at("booti ${kernel_addr_r} - ${fdt_addr}\n"),
        ];
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{s}");
        assert!(!s.contains("armature,bootargs"), "{s}");
    }
}
