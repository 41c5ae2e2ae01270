//! Booting through U-Boot, the way a board boots: QEMU runs Debian's U-Boot
//! as `-bios`; its distro boot finds `boot.scr` on the first partition of a
//! virtio disk by itself, and the script loads the image and starts it with
//! `booti` (AArch64 Image) or `bootz` (ARMv7 zImage), passing QEMU's device
//! tree, or a device tree of its own from the disk ([`BootScript::dtb_file`]).
//!
//! The pieces: [`BootScript`] renders the script (the hypervisor's command
//! line, dom0's in `xen,dom0-bootargs`, and `/chosen/module@…` nodes for
//! domain images: the Xen-compatible multiboot protocol, so the same script
//! boots Xen, see [`crate::dom0`]); [`prepare`] makes `boot.scr` with `mkimage`, the disk
//! with [`crate::disk`], and optionally a flash image holding a U-Boot
//! environment with `bootdelay=0` and `boot_targets=virtio0`, which skips the
//! 2 s countdown and the other boot targets. [`UbootBoot::apply`] runs
//! U-Boot as `-bios`; [`UbootBoot::attach`] only adds the disk and the
//! environment, for U-Boot started by other firmware (the spin-table
//! firmware, [`crate::firmware::SpinTable::prepare_uboot`]).
//!
//! # Debian's qemu_arm64 `u-boot.bin` (2023.01)
//!
//! Facts the harness relies on, checked on the binary (`uboot.elf` next to
//! it) and by booting it:
//! - it is position independent (`CONFIG_POSITION_INDEPENDENT`): linked at
//!   0, it starts by applying its own `.rela.dyn` for wherever it runs, so
//!   it also runs from RAM, from any 4 KiB-aligned address (it parks in
//!   `wfi` otherwise), entered at EL2 (or EL3 or EL1) with the MMU off;
//! - before relocating, its stack, global data and early heap lie below
//!   `CONFIG_SYS_INIT_SP_ADDR` = 0x40200000 ([`INIT_SP_ADDR`]); then it
//!   moves itself to the top of RAM (with 1 GiB: page tables in the top
//!   64 KiB, code at 0x7fef7000, its DT copy and stack at 0x7edb6xxx, and
//!   `lmb` reserves everything from about 16 MiB below its stack to the
//!   top). It does not look at `/reserved-memory` when it picks that place;
//! - its control DT is whatever lies at the RAM base, 0x40000000 (the QEMU
//!   board code says so), not the DTB in x0 (entered with x0 pointing to
//!   another DTB, it still uses the one at the RAM base);
//! - `booti` copies the DTB it boots with to the top of the free RAM below
//!   4 GiB (`fdt_high=0xffffffff`; 0x7dda4000 with 1 GiB), avoiding the
//!   `/reserved-memory` nodes and `/memreserve/` entries of *that* DTB
//!   (one that overlaps U-Boot's own reservation is refused with "ERROR:
//!   reserving fdt memory region failed" and ignored), and enters the image
//!   at EL2; it has no `CONFIG_ARMV8_SPIN_TABLE`, so it leaves
//!   `cpu-release-addr` and `enable-method` alone.

use crate::disk;
use crate::process::{run_checked, tool};
use crate::qemu::{Drive, Qemu};
use crate::{Arch, Context, Error, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// U-Boot's `kernel_addr_r` on QEMU virt (both architectures): where the
/// script loads the image. `booti` runs a 2 MiB-aligned Image in place.
pub const KERNEL_ADDR_R: u64 = 0x4040_0000;
/// U-Boot's `fdt_addr` on QEMU virt: where QEMU put its device tree for
/// `-bios` boots (RAM base). On AArch64 `booti` moves it before starting
/// the image.
pub const FDT_ADDR: u64 = 0x4000_0000;
/// U-Boot's `CONFIG_SYS_INIT_SP_ADDR` on QEMU virt (arm64): before it
/// relocates itself, its stack, global data and early heap lie below this.
pub const INIT_SP_ADDR: u64 = 0x4020_0000;
/// What is taken to be U-Boot's below [`INIT_SP_ADDR`] before it relocates
/// itself (it uses a few KiB there).
pub const EARLY_DATA_SIZE: u64 = 1 << 20;
/// U-Boot's `scriptaddr` on QEMU virt: where distro boot loads `boot.scr`.
pub const SCRIPT_ADDR: u64 = 0x4020_0000;
/// The room for `boot.scr` at [`SCRIPT_ADDR`] (up to `pxefile_addr_r`).
pub const SCRIPT_SIZE: u64 = 1 << 20;
/// Size of the U-Boot environment in flash (`CONFIG_ENV_SIZE`).
const ENV_SIZE: u64 = 0x40000;
/// QEMU virt flash banks are 64 MiB each; the environment is at the start of bank 1.
const FLASH_BANK_SIZE: u64 = 64 << 20;
/// Name of the image in the boot partition.
pub const IMAGE_FILE: &str = "armature.bin";
/// Name of the device tree in the boot partition ([`BootScript::dtb_file`]).
pub const DTB_FILE: &str = "armature.dtb";

/// Debian's U-Boot build for QEMU virt (package `u-boot-qemu`).
pub fn firmware(arch: Arch) -> PathBuf {
    PathBuf::from(match arch {
        Arch::Aarch64 => "/usr/lib/u-boot/qemu_arm64/u-boot.bin",
        Arch::Armv7 => "/usr/lib/u-boot/qemu_arm/u-boot.bin",
    })
}

/// A file loaded next to the image and described to Armature in
/// `/chosen/module@<addr>` (compatible e.g. `multiboot,kernel`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Where it comes from on the host.
    pub source: PathBuf,
    /// Its name in the boot partition.
    pub name: String,
    /// Load address; keep modules clear of U-Boot, the image and the DTB.
    pub addr: u64,
    /// `compatible` strings, most specific first (`multiboot,module` is added).
    pub compatible: Vec<String>,
}

/// A device tree of the harness's own, put on the disk and booted with
/// instead of QEMU's ([`BootScript::dtb_file`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DtbFile {
    /// Where it comes from on the host.
    pub source: PathBuf,
    /// Where the script loads it (and edits it, in place).
    pub addr: u64,
}

/// The U-Boot script that boots Armature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootScript {
    arch: Arch,
    bootargs: Option<String>,
    xen_bootargs: Option<String>,
    dom0_bootargs: Option<String>,
    image_file: String,
    kernel_addr_r: Option<u64>,
    dtb: Option<DtbFile>,
    modules: Vec<Module>,
}

/// Quotes `s` for a double-quoted U-Boot hush string.
fn hush_quote(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '$') {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

impl BootScript {
    /// A script that loads and starts the image with no command line.
    pub fn new(arch: Arch) -> Self {
        BootScript {
            arch,
            bootargs: None,
            xen_bootargs: None,
            dom0_bootargs: None,
            image_file: IMAGE_FILE.to_string(),
            kernel_addr_r: None,
            dtb: None,
            modules: Vec::new(),
        }
    }

    /// The hypervisor's options as `/chosen/xen,xen-bootargs` (Xen's binding;
    /// Armature reads it when there is no `armature,bootargs`).
    pub fn xen_bootargs(mut self, args: impl Into<String>) -> Self {
        self.xen_bootargs = Some(args.into());
        self
    }

    /// dom0's command line as `/chosen/xen,dom0-bootargs` (Xen's binding).
    pub fn dom0_bootargs(mut self, args: impl Into<String>) -> Self {
        self.dom0_bootargs = Some(args.into());
        self
    }

    /// The image's name on the disk (default [`IMAGE_FILE`]), e.g. `xen`
    /// when the same script boots Xen.
    pub fn image_file(mut self, name: impl Into<String>) -> Self {
        self.image_file = name.into();
        self
    }

    /// The image's name on the disk.
    pub fn image_name(&self) -> &str {
        &self.image_file
    }

    /// Armature's command line, set as `/chosen/armature,bootargs` (which
    /// Armature prefers to `bootargs`, and which `booti` leaves alone).
    pub fn bootargs(mut self, args: impl Into<String>) -> Self {
        self.bootargs = Some(args.into());
        self
    }

    /// Loads the image at `addr` instead of the environment's
    /// `kernel_addr_r` ([`KERNEL_ADDR_R`]): the script sets `kernel_addr_r`
    /// first. `booti` runs an Image whose address is not 2 MiB aligned from
    /// the next 2 MiB boundary (it moves it there, U-Boot 2023.01).
    pub fn kernel_addr_r(mut self, addr: u64) -> Self {
        self.kernel_addr_r = Some(addr);
        self
    }

    /// Boots with the device tree `source` instead of QEMU's: it goes on the
    /// disk as [`DTB_FILE`], and the script sets `fdt_addr` to `addr` and
    /// loads it there before editing it and passing it to `booti`/`bootz`
    /// (which may move it: keep `addr` clear of the image and modules).
    pub fn dtb_file(mut self, source: impl Into<PathBuf>, addr: u64) -> Self {
        self.dtb = Some(DtbFile { source: source.into(), addr });
        self
    }

    /// The device tree from the disk, if any.
    pub fn dtb(&self) -> Option<&DtbFile> {
        self.dtb.as_ref()
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Where the script loads the image: [`BootScript::kernel_addr_r`], else
    /// [`KERNEL_ADDR_R`].
    pub fn load_address(&self) -> u64 {
        self.kernel_addr_r.unwrap_or(KERNEL_ADDR_R)
    }

    /// Adds a module.
    pub fn module(mut self, module: Module) -> Self {
        self.modules.push(module);
        self
    }

    /// The modules.
    pub fn modules(&self) -> &[Module] {
        &self.modules
    }

    /// The script text (`boot.cmd`).
    pub fn render(&self) -> String {
        let dev = "${devtype} ${devnum}:${distro_bootpart}";
        let mut s = String::from("# Armature boot script, generated by cargo xtask.\n");
        let _ = writeln!(s, "echo \"Armature boot.scr: running from {dev}\"");
        if let Some(addr) = self.kernel_addr_r {
            let _ = writeln!(s, "setenv kernel_addr_r {addr:#x}");
        }
        let _ = writeln!(s, "load {dev} ${{kernel_addr_r}} {}", self.image_file);
        if let Some(dtb) = &self.dtb {
            let _ = writeln!(s, "setenv fdt_addr {:#x}", dtb.addr);
            let _ = writeln!(s, "load {dev} ${{fdt_addr}} {DTB_FILE}");
        }
        s.push_str("fdt addr ${fdt_addr}\nfdt resize 4096\n");
        if let Some(args) = &self.bootargs {
            let _ = writeln!(s, "fdt set /chosen armature,bootargs {}", hush_quote(args));
        }
        if let Some(args) = &self.xen_bootargs {
            let _ = writeln!(s, "fdt set /chosen xen,xen-bootargs {}", hush_quote(args));
        }
        if let Some(args) = &self.dom0_bootargs {
            let _ = writeln!(s, "fdt set /chosen xen,dom0-bootargs {}", hush_quote(args));
        }
        if !self.modules.is_empty() {
            s.push_str("fdt set /chosen \\#address-cells <2>\nfdt set /chosen \\#size-cells <2>\n");
        }
        for m in &self.modules {
            let node = format!("/chosen/module@{:x}", m.addr);
            let _ = writeln!(s, "load {dev} {:#x} {}", m.addr, m.name);
            let _ = writeln!(s, "fdt mknode /chosen module@{:x}", m.addr);
            let compatible: Vec<String> = m
                .compatible
                .iter()
                .map(String::as_str)
                .chain(std::iter::once("multiboot,module"))
                .map(hush_quote)
                .collect();
            let _ = writeln!(s, "fdt set {node} compatible {}", compatible.join(" "));
            let [hi, lo] = crate::fdt::cells(m.addr);
            let _ = writeln!(s, "fdt set {node} reg <0x{hi} 0x{lo} 0x0 0x${{filesize}}>");
        }
        let boot = match self.arch {
            Arch::Aarch64 => "booti",
            Arch::Armv7 => "bootz",
        };
        let _ = writeln!(s, "echo \"Armature boot.scr: {boot} ${{kernel_addr_r}} - ${{fdt_addr}}\"");
        let _ = writeln!(s, "{boot} ${{kernel_addr_r}} - ${{fdt_addr}}");
        let _ = writeln!(s, "echo \"Armature boot.scr: FATAL: {boot} returned\"");
        s
    }
}

/// The complete U-Boot environment for the flash: a saved environment
/// replaces the built-in one, so this is the default one of Debian's
/// qemu_arm64/qemu_arm builds with `bootdelay=0` and `boot_targets=virtio0`.
pub fn fast_environment(arch: Arch) -> String {
    let cpu = match arch {
        Arch::Aarch64 => "armv8",
        Arch::Armv7 => "armv7",
    };
    let vars = [
        "arch=arm".to_string(),
        "baudrate=115200".into(),
        "board=qemu-arm".into(),
        "board_name=qemu-arm".into(),
        "boot_a_script=load ${devtype} ${devnum}:${distro_bootpart} ${scriptaddr} ${prefix}${script}; source ${scriptaddr}".into(),
        "boot_prefixes=/ /boot/".into(),
        "boot_scripts=boot.scr.uimg boot.scr".into(),
        "boot_targets=virtio0".into(),
        "bootcmd=run distro_bootcmd".into(),
        "bootcmd_virtio0=devnum=0; run virtio_boot".into(),
        "bootdelay=0".into(),
        format!("cpu={cpu}"),
        "distro_bootcmd=virtio_need_init=; for target in ${boot_targets}; do run bootcmd_${target}; done".into(),
        format!("fdt_addr={FDT_ADDR:#x}"),
        "fdt_high=0xffffffff".into(),
        "initrd_high=0xffffffff".into(),
        format!("kernel_addr_r={KERNEL_ADDR_R:#x}"),
        "loadaddr=0x40200000".into(),
        "pxefile_addr_r=0x40300000".into(),
        "ramdisk_addr_r=0x44000000".into(),
        "scan_dev_for_boot=echo Scanning ${devtype} ${devnum}:${distro_bootpart}...; for prefix in ${boot_prefixes}; do run scan_dev_for_scripts; done".into(),
        "scan_dev_for_boot_part=part list ${devtype} ${devnum} -bootable devplist; env exists devplist || setenv devplist 1; for distro_bootpart in ${devplist}; do if fstype ${devtype} ${devnum}:${distro_bootpart} bootfstype; then run scan_dev_for_boot; fi; done; setenv devplist".into(),
        "scan_dev_for_scripts=for script in ${boot_scripts}; do if test -e ${devtype} ${devnum}:${distro_bootpart} ${prefix}${script}; then echo Found U-Boot script ${prefix}${script}; run boot_a_script; echo SCRIPT FAILED: continuing...; fi; done".into(),
        "scriptaddr=0x40200000".into(),
        "vendor=emulation".into(),
        "virtio_boot=run virtio_init; if virtio dev ${devnum}; then devtype=virtio; run scan_dev_for_boot_part; fi".into(),
        "virtio_init=if ${virtio_need_init}; then virtio_need_init=false; virtio scan; fi".into(),
    ];
    vars.join("\n") + "\n"
}

/// Which U-Boot environment the machine starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    /// [`fast_environment`] in flash: no countdown, only `virtio0` is tried.
    Fast,
    /// U-Boot's built-in one: a 2 s countdown, then every boot target in turn.
    BuiltIn,
}

/// Files that make U-Boot boot the image by itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UbootBoot {
    /// The architecture.
    pub arch: Arch,
    /// The boot disk (virtio-blk).
    pub disk: PathBuf,
    /// Flash bank 1 with the fast environment, if made.
    pub env_flash: Option<PathBuf>,
}

impl UbootBoot {
    /// Adds U-Boot (`-bios`), the disk and the environment flash to `qemu`.
    pub fn apply(&self, qemu: Qemu) -> Qemu {
        self.attach(qemu.bios(firmware(self.arch)))
    }

    /// Adds the disk and the environment flash (bank 1) to `qemu`, for a
    /// U-Boot that something else loads and starts.
    pub fn attach(&self, qemu: Qemu) -> Qemu {
        let mut q = qemu.drive(Drive::VirtioBlk(self.disk.clone()));
        if let Some(flash) = &self.env_flash {
            q = q.drive(Drive::Pflash { index: 1, file: flash.clone() });
        }
        q
    }
}

/// Writes `boot.cmd`, `boot.scr`, the disk (script, image, device tree,
/// modules) and,
/// for [`Environment::Fast`], the environment flash into `dir`.
pub fn prepare(dir: &Path, image: &Path, script: &BootScript, env: Environment) -> Result<UbootBoot> {
    let arch = script.arch;
    let firmware = firmware(arch);
    if !firmware.is_file() {
        return Err(Error::new(format!("{} not found: install u-boot-qemu (`./x setup` does)", firmware.display())));
    }
    let cmd_path = dir.join("boot.cmd");
    let scr_path = dir.join("boot.scr");
    std::fs::write(&cmd_path, script.render()).context(|| format!("writing {}", cmd_path.display()))?;
    let uarch = match arch {
        Arch::Aarch64 => "arm64",
        Arch::Armv7 => "arm",
    };
    run_checked(
        tool("mkimage", "u-boot-tools")?
            .args(["-A", uarch, "-O", "linux", "-T", "script", "-C", "none", "-n", "armature boot script", "-d"])
            .arg(&cmd_path)
            .arg(&scr_path),
        "mkimage of boot.scr",
    )?;

    let mut files: Vec<(&str, &Path)> = vec![("boot.scr", &scr_path), (script.image_file.as_str(), image)];
    if let Some(dtb) = &script.dtb {
        files.push((DTB_FILE, &dtb.source));
    }
    files.extend(script.modules.iter().map(|m| (m.name.as_str(), m.source.as_path())));
    let mut total = 0;
    for (_, source) in &files {
        total += std::fs::metadata(source).context(|| format!("reading {}", source.display()))?.len();
    }
    let disk_path = dir.join("disk.img");
    disk::make_fat_disk(&disk_path, (total >> 20) + 64, &files)?;

    let env_flash = if env == Environment::Fast {
        let txt = dir.join("env.txt");
        let bin = dir.join("env.bin");
        std::fs::write(&txt, fast_environment(arch)).context(|| format!("writing {}", txt.display()))?;
        run_checked(
            tool("mkenvimage", "u-boot-tools")?.arg("-s").arg(format!("{ENV_SIZE:#x}")).arg("-o").arg(&bin).arg(&txt),
            "mkenvimage",
        )?;
        let env = crate::paths::read(&bin)?;
        let flash = dir.join("flash1.img");
        let mut data = env;
        data.resize(ENV_SIZE as usize, 0xff);
        std::fs::write(&flash, &data).context(|| format!("writing {}", flash.display()))?;
        let f =
            std::fs::OpenOptions::new().write(true).open(&flash).context(|| format!("opening {}", flash.display()))?;
        f.set_len(FLASH_BANK_SIZE).context(|| format!("sizing {}", flash.display()))?;
        Some(flash)
    } else {
        None
    };
    Ok(UbootBoot { arch, disk: disk_path, env_flash })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aarch64_script_boots_with_booti() {
        let s = BootScript::new(Arch::Aarch64).bootargs("loglvl=debug crashtest=\"x\"").render();
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines.contains(&"load ${devtype} ${devnum}:${distro_bootpart} ${kernel_addr_r} armature.bin"), "{s}");
        assert!(lines.contains(&"fdt addr ${fdt_addr}"), "{s}");
        assert!(lines.contains(&r#"fdt set /chosen armature,bootargs "loglvl=debug crashtest=\"x\"""#), "{s}");
        assert!(lines.contains(&"booti ${kernel_addr_r} - ${fdt_addr}"), "{s}");
        assert!(!s.contains("module@"), "{s}");
        assert!(!s.contains("setenv kernel_addr_r"), "{s}");
    }

    #[test]
    fn kernel_addr_r_is_set_before_the_image_is_loaded() {
        let s = BootScript::new(Arch::Aarch64).kernel_addr_r(0x5000_1000).render();
        let set = s.find("setenv kernel_addr_r 0x50001000\n").unwrap_or_else(|| panic!("{s}"));
        let load = s.find("load ${devtype}").unwrap_or_else(|| panic!("{s}"));
        assert!(set < load, "{s}");
        assert!(s.contains("booti ${kernel_addr_r} - ${fdt_addr}\n"), "{s}");
    }

    #[test]
    fn a_dtb_file_is_loaded_to_fdt_addr_and_booted() {
        let script = BootScript::new(Arch::Aarch64).dtb_file("/tmp/spin.dtb", 0x4800_0000).bootargs("x");
        assert_eq!(script.dtb(), Some(&DtbFile { source: "/tmp/spin.dtb".into(), addr: 0x4800_0000 }));
        let s = script.render();
        let at = |line: &str| s.find(line).unwrap_or_else(|| panic!("no {line:?} in\n{s}"));
        let set = at("setenv fdt_addr 0x48000000\n");
        let load = at("load ${devtype} ${devnum}:${distro_bootpart} ${fdt_addr} armature.dtb\n");
        let addr = at("fdt addr ${fdt_addr}\n");
        let args = at("fdt set /chosen armature,bootargs \"x\"\n");
        let boot = at("booti ${kernel_addr_r} - ${fdt_addr}\n");
        assert!(set < load && load < addr && addr < args && args < boot, "{s}");
        // Without it, QEMU's DT at the environment's fdt_addr.
        assert!(!BootScript::new(Arch::Aarch64).render().contains("fdt_addr 0x"));
    }

    #[test]
    fn load_address_is_kernel_addr_r() {
        let script = BootScript::new(Arch::Aarch64);
        assert_eq!((script.arch(), script.load_address()), (Arch::Aarch64, KERNEL_ADDR_R));
        assert_eq!(script.kernel_addr_r(0x5000_0000).load_address(), 0x5000_0000);
    }

    #[test]
    fn armv7_script_uses_bootz_and_modules() {
        let s = BootScript::new(Arch::Armv7)
            .module(Module {
                source: "/tmp/vmlinuz".into(),
                name: "vmlinuz".into(),
                addr: 0x4500_0000,
                compatible: vec!["multiboot,kernel".into()],
            })
            .render();
        assert!(s.contains("bootz ${kernel_addr_r} - ${fdt_addr}\n"), "{s}");
        assert!(s.contains("fdt set /chosen \\#address-cells <2>\n"), "{s}");
        assert!(s.contains("load ${devtype} ${devnum}:${distro_bootpart} 0x45000000 vmlinuz\n"), "{s}");
        assert!(s.contains("fdt mknode /chosen module@45000000\n"), "{s}");
        assert!(
            s.contains(r#"fdt set /chosen/module@45000000 compatible "multiboot,kernel" "multiboot,module""#),
            "{s}"
        );
        assert!(s.contains("fdt set /chosen/module@45000000 reg <0x0 0x45000000 0x0 0x${filesize}>\n"), "{s}");
    }

    #[test]
    fn fast_environment_boots_virtio_at_once() {
        let env = fast_environment(Arch::Aarch64);
        assert!(env.lines().any(|l| l == "bootdelay=0"));
        assert!(env.lines().any(|l| l == "boot_targets=virtio0"));
        assert!(env.lines().any(|l| l == "kernel_addr_r=0x40400000"));
        assert!(env.lines().any(|l| l == "fdt_addr=0x40000000"));
        assert!(fast_environment(Arch::Armv7).lines().any(|l| l == "cpu=armv7"));
    }
}
