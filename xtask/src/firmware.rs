//! The spin-table test firmware: booting Armature on QEMU `virt` the way a
//! board with a spin-table boot-wrapper does, so that its spin-table CPU
//! bring-up runs for real (QEMU's own firmware offers only PSCI).
//!
//! # How QEMU starts the CPUs with `secure=on`
//!
//! With `-M virt,secure=on` *and* firmware (`-bios`, or a flash image in
//! bank 0), QEMU 7.2 assumes the firmware implements PSCI itself
//! (`hw/arm/virt.c`: `psci_conduit = QEMU_PSCI_CONDUIT_DISABLED` when
//! `secure && firmware_loaded`). Then it
//! - sets no CPU's `psci-conduit` and no CPU's `start-powered-off`
//!   (`hw/arm/boot.c` does that only with a PSCI conduit): **every** CPU
//!   comes out of reset running, at EL3 in AArch64, at its reset vector
//!   (RVBAR, 0x0: the flash, where `-bios` puts the file);
//! - writes no `/psci` node and no `enable-method` into the device tree it
//!   generates (and puts that DTB at the RAM base, 0x40000000, 1 MiB);
//! - maps flash bank 0 (and 16 MiB of RAM at 0x0e000000) in the Secure
//!   address space only; bank 1 (0x04000000, where U-Boot keeps its
//!   environment) stays visible to both.
//!
//! So nothing like `-device loader,…,cpu-num=` is needed to start the
//! secondaries. [`SpinTable::prepare`] checks this on the DTB QEMU really
//! generates (no `/psci`, no `enable-method`): if a future QEMU changed it,
//! the harness says so instead of hanging. The tests then show every
//! secondary coming online.
//!
//! # The firmware
//!
//! `tests/firmware/spintable/` (the assembly in `src/firmware.S` explains
//! itself): EL3 set-up for a non-secure AArch64 EL2, GICv3 secure set-up
//! (distributor, each CPU's redistributor, `ICC_SRE_EL3`), the boot CPU
//! enters Armature at EL2 with x0 = the DTB, the secondaries wait with `wfe`
//! on their release address and enter what is written there at EL2 with
//! x0-x3 = 0. At EL3 it answers SMCs as a minimal PSCI 1.1 (VERSION,
//! FEATURES, SYSTEM_OFF; everything else NOT_SUPPORTED). SYSTEM_OFF ends
//! QEMU with exit status 0 through semihosting (`SYS_EXIT`, so QEMU runs
//! with `-semihosting-config enable=on,target=native`); an unexpected
//! exception at EL3 prints a `FATAL` line and exits with status 1, so a test
//! fails rather than hangs.
//!
//! It is built once per process ([`build`]) for `aarch64-unknown-none-softfloat`
//! into `target/armature/firmware/`, outside the workspace (its own
//! `[workspace]` table: a `no_std` binary cannot be built for the host),
//! then flattened by [`crate::image::flatten`] (it carries an arm64 Image
//! header for that). One build serves every configuration: the harness
//! patches the `fw_config` block ([`Config`]) of a copy per boot.
//!
//! # A boot
//!
//! [`SpinTable::prepare`] makes everything one QEMU run needs:
//!
//! ```text
//!  0x00000000  flash: the configured firmware (-bios)
//!  0x40000000  QEMU's own DTB (1 MiB; unused, overwritable)
//!  0x40200000  Armature (-device loader,force-raw=on)           LOAD_ADDR
//!  0x48000000  the spin-table DTB (-device loader,force-raw=on)  DTB_ADDR
//!  top of RAM  the release page (last 4 KiB): per-CPU slots at +8*i, or the
//!              shared word at +0xff8; /reserved-memory/spin-table@… (no-map)
//! ```
//!
//! The DTB is QEMU's own for exactly that machine (`dumpdtb`), edited with
//! `fdtput`: every CPU node gets `enable-method = "spin-table"` and
//! `cpu-release-addr = <hi lo>`; `/psci` is added (`arm,psci-1.0`, method
//! `smc`) so that Armature finds the firmware's PSCI for SYSTEM_OFF; and
//! `/reserved-memory` gets the release page, so Armature never allocates it
//! (it relocates itself to the top of RAM, right below that page). The
//! firmware itself lives in flash and uses no RAM but that page (no stack,
//! no data), so nothing else needs reserving.
//!
//! # Through U-Boot
//!
//! [`SpinTable::prepare_uboot`] boots the way a board with a boot-wrapper
//! and U-Boot does: the firmware's payload is Debian's U-Boot
//! (`u-boot.bin`, position independent, see [`crate::uboot`]), loaded into
//! RAM and entered at EL2 on the boot CPU, while the secondaries wait in
//! the firmware. U-Boot's distro boot runs a `boot.scr` that loads Armature
//! and the spin-table DTB from the disk and `booti`s Armature with that DTB
//! (not QEMU's, which has neither PSCI nor spin tables with `secure=on`):
//!
//! ```text
//!  0x00000000  flash: the configured firmware (-bios)
//!  0x40000000  QEMU's own DTB: U-Boot's control DT (x0 of U-Boot's entry)
//!  0x40100000  U-Boot's early stack, data and heap (below 0x40200000)
//!  0x40200000  boot.scr (U-Boot's scriptaddr)
//!  0x40400000  Armature, loaded by boot.scr (kernel_addr_r)
//!  0x48000000  the spin-table DTB, loaded by boot.scr (DTB_ADDR); booti
//!              copies it below U-Boot's relocated copy
//!  0x4bfff000  the release page (UBOOT_RELEASE_PAGE), reserved in the DT
//!  0x4c000000  U-Boot (-device loader,force-raw=on)              UBOOT_ADDR
//!  top 64 MiB  U-Boot after relocating itself (page tables in the top
//!              64 KiB, code, heap, DT copy, stack), booti's DTB copy
//! ```
//!
//! The release page does not stay at the top of RAM here: U-Boot relocates
//! itself there without looking at `/reserved-memory` (it never sees the
//! spin-table DT before `booti`), and its page-table area is the top 64 KiB
//! (0x7fff0000-0x7fffffff with 1 GiB). With 1 GiB it happens to use only
//! the first pages of that area, so a release page in the last one survives,
//! but U-Boot owns that memory, and a non-zero word in a release slot sends
//! a secondary into it. Below U-Boot's load address nothing ever writes;
//! `booti`'s DTB copy avoids the page because the booted DTB reserves it,
//! and so does Armature. [`SpinTable::prepare_uboot`] checks that the
//! layout holds together for the RAM size, and refuses a release page in
//! the top [`UBOOT_TOP_SIZE`] of RAM.
//!
//! The DTB comes from the disk, as a board's boot script loads it; the
//! generic loader could put it in RAM instead (the script would then only
//! set `fdt_addr`). U-Boot cannot run from flash here: with `secure=on`
//! bank 0 (where `-bios` puts the firmware, and where the CPUs start) is
//! Secure-only, so a non-secure EL2 access to it aborts, and bank 1 holds
//! U-Boot's environment.

use crate::fdt::{Fdt, cells, fdtput};
use crate::paths::{self, write_atomic};
use crate::shim::{self, Region};
use crate::uboot::{self, BootScript, Environment, UbootBoot};
use crate::{Arch, Context, Error, Image, Qemu, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The firmware crate, relative to the workspace root.
pub const MANIFEST: &str = "tests/firmware/spintable/Cargo.toml";
/// The name of its binary.
pub const BIN_NAME: &str = "spintable-fw";

/// Where Armature is loaded: where QEMU's `-kernel` would put it.
pub const LOAD_ADDR: u64 = 0x4020_0000;
/// Where U-Boot is loaded (RAM + 192 MiB) for a boot through U-Boot.
pub const UBOOT_ADDR: u64 = 0x4c00_0000;
/// The release page of a boot through U-Boot: the page below U-Boot.
pub const UBOOT_RELEASE_PAGE: u64 = UBOOT_ADDR - RELEASE_PAGE_SIZE;
/// The top of RAM taken to be U-Boot's once it has relocated itself (it
/// uses about 35 MiB with 1 GiB of RAM, `lmb` included; see
/// [`crate::uboot`]).
pub const UBOOT_TOP_SIZE: u64 = 64 << 20;
/// What `fdt resize 4096` in the boot script may add to a DTB, in place.
const FDT_RESIZE_SLACK: u64 = 8192;
/// Where the spin-table DTB is loaded (RAM + 128 MiB, as with `-kernel`).
pub const DTB_ADDR: u64 = 0x4800_0000;
/// Size of the release page.
pub const RELEASE_PAGE_SIZE: u64 = 4096;
/// Per-CPU layout: bytes per release slot.
pub const SLOT_SIZE: u64 = 8;
/// Shared layout: offset of the one release address in the page (its last
/// word, like the FVP AEMv8 DT's 0x8000fff8).
pub const SHARED_OFFSET: u64 = RELEASE_PAGE_SIZE - SLOT_SIZE;
/// Node name of the release page under `/reserved-memory` (plus `@<addr>`).
pub const RESERVED_NODE: &str = "spin-table";
/// The QEMU options that turn semihosting on (the firmware's exit path).
pub const SEMIHOSTING: [&str; 2] = ["-semihosting-config", "enable=on,target=native"];

/// The `fw_config` block: magic, then eight-byte little-endian fields at
/// these offsets (`CFG_*` in `src/firmware.S`).
pub mod config {
    /// "ASPINFW1": spin-table firmware, layout 1.
    pub const MAGIC: &[u8; 8] = b"ASPINFW1";
    /// Armature's entry (load) address.
    pub const ENTRY: usize = 0x08;
    /// DTB address, passed in x0.
    pub const DTB: usize = 0x10;
    /// Release address (shared) or slot 0 (per-CPU).
    pub const RELEASE: usize = 0x18;
    /// 0: shared; 8: per-CPU slots.
    pub const STRIDE: usize = 0x20;
    /// PL011 for the firmware's messages (0: silent).
    pub const UART: usize = 0x28;
    /// GICv3 distributor.
    pub const GICD: usize = 0x30;
    /// First GICv3 redistributor.
    pub const GICR: usize = 0x38;
    /// Size of the block.
    pub const SIZE: usize = 0x40;
}

/// QEMU exit statuses the firmware produces through semihosting.
pub mod exit {
    /// PSCI SYSTEM_OFF.
    pub const SYSTEM_OFF: i32 = 0;
    /// An unexpected exception at EL3.
    pub const UNEXPECTED_EXCEPTION: i32 = 1;
    /// `fw_config` not patched.
    pub const UNCONFIGURED: i32 = 2;
    /// Not at EL3, no redistributor or release slot for a CPU, GIC stuck.
    pub const PLATFORM: i32 = 3;
}

/// What the firmware prints on a fatal error (a default failure marker of
/// the runner, too).
pub const FATAL: &str = "spin-table firmware: FATAL";

/// How the secondaries' release addresses are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReleaseLayout {
    /// One 8-byte slot per CPU: CPU i (i = Aff1 * 16 + Aff0) at page + 8 * i.
    PerCpu,
    /// One address for every CPU (page + 0xff8): one write releases all the
    /// secondaries, and the entry code must tell them apart by MPIDR.
    Shared,
}

impl ReleaseLayout {
    /// Both layouts.
    pub const ALL: [ReleaseLayout; 2] = [ReleaseLayout::PerCpu, ReleaseLayout::Shared];

    /// `per-cpu` or `shared`.
    pub fn name(self) -> &'static str {
        match self {
            ReleaseLayout::PerCpu => "per-cpu",
            ReleaseLayout::Shared => "shared",
        }
    }

    /// The firmware's `stride` field.
    pub fn stride(self) -> u64 {
        match self {
            ReleaseLayout::PerCpu => SLOT_SIZE,
            ReleaseLayout::Shared => 0,
        }
    }

    /// The first release address in the page at `page` (`fw_config.release`).
    pub fn base(self, page: u64) -> u64 {
        match self {
            ReleaseLayout::PerCpu => page,
            ReleaseLayout::Shared => page + SHARED_OFFSET,
        }
    }

    /// The release address of the CPU with affinity `mpidr` in the page at
    /// `page`, as the firmware computes it.
    pub fn release_address(self, page: u64, mpidr: u64) -> Result<u64> {
        match self {
            ReleaseLayout::Shared => Ok(self.base(page)),
            ReleaseLayout::PerCpu => Ok(page + SLOT_SIZE * slot_index(mpidr)?),
        }
    }
}

/// The per-CPU slot of a CPU: Aff1 * 16 + Aff0 (QEMU virt with GICv3 has 16
/// CPUs per Aff1 cluster); Aff2 and Aff3 must be 0 and Aff0 below 16.
pub fn slot_index(mpidr: u64) -> Result<u64> {
    let (aff0, aff1, high) = (mpidr & 0xff, (mpidr >> 8) & 0xff, mpidr >> 16);
    let index = aff1 * 16 + aff0;
    if high != 0 || aff0 >= 16 || index >= RELEASE_PAGE_SIZE / SLOT_SIZE {
        return Err(Error::new(format!("MPIDR {mpidr:#x} has no per-CPU release slot (Aff3 = Aff2 = 0, Aff0 < 16)")));
    }
    Ok(index)
}

/// What the firmware is told (the `fw_config` block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Armature's entry (load) address.
    pub entry: u64,
    /// The DTB address handed over in x0.
    pub dtb: u64,
    /// The release page.
    pub release_page: u64,
    /// How the release addresses are laid out in it.
    pub layout: ReleaseLayout,
    /// The PL011 for the firmware's messages.
    pub uart: u64,
    /// GICv3 distributor.
    pub gicd: u64,
    /// First GICv3 redistributor.
    pub gicr: u64,
}

/// The built firmware.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firmware {
    /// The flat binary, unconfigured (`target/armature/firmware/spintable-fw.bin`).
    pub bin: PathBuf,
    /// The ELF, with symbols.
    pub elf: PathBuf,
    /// The flat binary's bytes.
    pub bytes: Vec<u8>,
    /// Offset of `fw_config` in it.
    pub config_offset: usize,
}

impl Firmware {
    /// A copy of the binary with `config` patched into `fw_config`.
    pub fn configured(&self, config: &Config) -> Vec<u8> {
        let mut b = self.bytes.clone();
        let base = self.config_offset;
        let mut put = |off: usize, v: u64| b[base + off..base + off + 8].copy_from_slice(&v.to_le_bytes());
        put(config::ENTRY, config.entry);
        put(config::DTB, config.dtb);
        put(config::RELEASE, config.layout.base(config.release_page));
        put(config::STRIDE, config.layout.stride());
        put(config::UART, config.uart);
        put(config::GICD, config.gicd);
        put(config::GICR, config.gicr);
        b
    }
}

/// `target/armature/firmware`.
pub fn out_dir() -> PathBuf {
    paths::armature_dir().join("firmware")
}

/// The firmware, built at most once per process.
pub fn build() -> Result<Firmware> {
    static BUILT: OnceLock<Result<Firmware>> = OnceLock::new();
    BUILT.get_or_init(build_now).clone()
}

/// Builds the firmware now (cargo decides what is out of date) and
/// publishes `spintable-fw.{bin,elf}` in [`out_dir`].
fn build_now() -> Result<Firmware> {
    let dir = out_dir();
    let lock = paths::build_lock(&dir)?;

    let (elf, flat) = crate::payload::build(MANIFEST, BIN_NAME, &dir.join("cargo"), "the spin-table firmware")?;
    let config_offset = usize::try_from(crate::image::symbol(&elf, Arch::Aarch64, "fw_config")?)
        .map_err(|_| Error::new("fw_config: offset out of range"))?;
    check_config_block(&flat.bytes, config_offset)?;
    let (bin, elf_out) = (dir.join(format!("{BIN_NAME}.bin")), dir.join(format!("{BIN_NAME}.elf")));
    write_atomic(&elf_out, &elf)?;
    write_atomic(&bin, &flat.bytes)?;
    drop(lock);
    Ok(Firmware { bin, elf: elf_out, bytes: flat.bytes, config_offset })
}

/// Checks that `bytes` has the `fw_config` block at `offset`.
fn check_config_block(bytes: &[u8], offset: usize) -> Result<()> {
    match bytes.get(offset..offset + config::SIZE) {
        Some(block) if &block[..8] == config::MAGIC => Ok(()),
        Some(block) => Err(Error::new(format!(
            "fw_config at {offset:#x} starts with {:02x?}, expected {:?}",
            &block[..8],
            String::from_utf8_lossy(config::MAGIC)
        ))),
        None => Err(Error::new(format!("fw_config at {offset:#x} lies outside the {}-byte firmware", bytes.len()))),
    }
}

/// A CPU as the spin-table DTB describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpinCpu {
    /// Node name under `/cpus` (`cpu@1`).
    pub name: String,
    /// MPIDR affinity (the node's `reg`).
    pub mpidr: u64,
    /// Its `cpu-release-addr`.
    pub release: u64,
}

/// A spin-table machine: QEMU virt, GICv3, `secure=on`, the firmware.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpinTable {
    smp: u32,
    layout: ReleaseLayout,
    memory: String,
    load: Option<u64>,
    release_page: Option<u64>,
}

impl SpinTable {
    /// `smp` CPUs, release addresses laid out as `layout`, 1 GiB of RAM;
    /// the payload and the release page where the boot puts them (direct:
    /// Armature at [`LOAD_ADDR`], the release page at the top of RAM;
    /// through U-Boot: U-Boot at [`UBOOT_ADDR`], the release page at
    /// [`UBOOT_RELEASE_PAGE`]).
    pub fn new(smp: u32, layout: ReleaseLayout) -> Self {
        SpinTable { smp, layout, memory: "1G".into(), load: None, release_page: None }
    }

    /// RAM size in QEMU's syntax.
    pub fn memory(mut self, size: impl Into<String>) -> Self {
        self.memory = size.into();
        self
    }

    /// Where the firmware's payload (Armature, or U-Boot) is loaded and
    /// entered.
    pub fn load(mut self, addr: u64) -> Self {
        self.load = Some(addr);
        self
    }

    /// Where the release page is.
    pub fn release_page(mut self, addr: u64) -> Self {
        self.release_page = Some(addr);
        self
    }

    /// The machine without firmware or images: `secure=on`, GICv3,
    /// semihosting on.
    pub fn machine(&self) -> Qemu {
        Qemu::aarch64().gic(3).smp(self.smp).memory(self.memory.clone()).secure(true).args(SEMIHOSTING)
    }

    /// Builds the firmware and writes, into `dir`, the spin-table DTB and
    /// the configured firmware for booting `image` (an AArch64 build)
    /// directly: the firmware enters Armature.
    pub fn prepare(&self, dir: &Path, image: &Image) -> Result<SpinTableBoot> {
        let m = self.spin_table_dt(dir, image, |ram_base, ram_size| ram_base + ram_size - RELEASE_PAGE_SIZE)?;
        let load = self.load.unwrap_or(LOAD_ADDR);
        // Nothing loaded may overlap (QEMU refuses), and the release page
        // must stay clear of every file (it must be zero at power on).
        let occupied = [
            Region { name: "QEMU's own DTB", start: m.ram_base, size: shim::QEMU_DTB_SIZE },
            Region { name: "the spin-table DTB", start: DTB_ADDR, size: m.dtb_size },
            Region { name: "the release page", start: m.page, size: RELEASE_PAGE_SIZE },
        ];
        check_layout(&occupied, m.ram_base, m.ram_size)?;
        shim::check_placement(load, image.image_end, m.ram_base, m.ram_size, &occupied)?;

        let (config, firmware) = m.configure(dir, load, DTB_ADDR)?;
        let qemu = self.machine().bios(&firmware).load_at(&image.bin, load).load_at(&m.dtb, DTB_ADDR);
        Ok(m.boot(qemu, firmware, config, Payload::Armature))
    }

    /// [`SpinTable::prepare`] with U-Boot as the firmware's payload (see
    /// "Through U-Boot" in the module documentation): Debian's U-Boot is
    /// loaded at [`UBOOT_ADDR`] and entered at EL2 on the boot CPU; the
    /// disk holds `script` (AArch64), made to load the spin-table DTB from
    /// the disk to [`DTB_ADDR`] and to `booti` Armature with it, the image
    /// and the DTB; `env` is U-Boot's environment.
    pub fn prepare_uboot(
        &self,
        dir: &Path,
        image: &Image,
        script: BootScript,
        env: Environment,
    ) -> Result<SpinTableBoot> {
        if script.arch() != Arch::Aarch64 {
            return Err(Error::new("U-Boot boots Armature with booti here: the boot script must be for AArch64"));
        }
        let m = self.spin_table_dt(dir, image, |_, _| UBOOT_RELEASE_PAGE)?;
        let load = self.load.unwrap_or(UBOOT_ADDR);
        let u_boot = uboot::firmware(Arch::Aarch64);
        let u_boot_size = fs::metadata(&u_boot)
            .context(|| format!("{} (install u-boot-qemu, `./x setup` does)", u_boot.display()))?
            .len();
        let kernel_addr_r = script.load_address();
        let script = script.dtb_file(&m.dtb, DTB_ADDR);

        // What U-Boot, its script and the loaded files occupy, before and
        // after U-Boot relocates itself: none of it may overlap.
        let ram_end = m.ram_base + m.ram_size;
        let occupied = [
            Region { name: "QEMU's own DTB (U-Boot's control DT)", start: m.ram_base, size: shim::QEMU_DTB_SIZE },
            Region {
                name: "U-Boot's early stack and data",
                start: uboot::INIT_SP_ADDR - uboot::EARLY_DATA_SIZE,
                size: uboot::EARLY_DATA_SIZE,
            },
            Region { name: "boot.scr (U-Boot's scriptaddr)", start: uboot::SCRIPT_ADDR, size: uboot::SCRIPT_SIZE },
            Region { name: "the spin-table DTB", start: DTB_ADDR, size: m.dtb_size + FDT_RESIZE_SLACK },
            Region { name: "U-Boot", start: load, size: u_boot_size },
            Region { name: "the release page", start: m.page, size: RELEASE_PAGE_SIZE },
            Region {
                name: "U-Boot's relocated copy (top of RAM)",
                start: ram_end.saturating_sub(UBOOT_TOP_SIZE),
                size: UBOOT_TOP_SIZE,
            },
        ];
        if !load.is_multiple_of(4096) {
            return Err(Error::new(format!("U-Boot at {load:#x}: it runs only from a 4 KiB-aligned address")));
        }
        check_layout(&occupied, m.ram_base, m.ram_size)?;
        shim::check_placement(kernel_addr_r, image.image_end, m.ram_base, m.ram_size, &occupied)?;

        let boot = uboot::prepare(dir, &image.bin, &script, env)?;
        // U-Boot is handed QEMU's DT in x0, as from QEMU itself; it reads
        // its control DT from the RAM base anyway.
        let (config, firmware) = m.configure(dir, load, m.ram_base)?;
        let qemu = boot.attach(self.machine().bios(&firmware).load_at(&u_boot, load));
        Ok(m.boot(qemu, firmware, config, Payload::UBoot { boot, kernel_addr_r }))
    }

    /// What both kinds of boot share: builds the firmware, dumps QEMU's DT
    /// for this machine and makes the spin-table DTB from it in `dir`, with
    /// the release page where [`SpinTable::release_page`] says, else at
    /// `default_page(ram_base, ram_size)`.
    fn spin_table_dt(
        &self,
        dir: &Path,
        image: &Image,
        default_page: impl FnOnce(u64, u64) -> u64,
    ) -> Result<SpinTableDt> {
        if image.variant.arch() != Arch::Aarch64 {
            return Err(Error::new(format!(
                "the spin-table firmware boots AArch64 images, not {}",
                image.variant.name()
            )));
        }
        let fw = build()?;
        // The DT QEMU generates for exactly this machine: with firmware and
        // secure=on (both change it).
        let base = self.machine().bios(&fw.bin);
        let qemu_dtb = dir.join("qemu-virt.dtb");
        let qemu_dt = base.dump_dtb(&qemu_dtb)?;
        check_qemu_starts_every_cpu(&qemu_dt)?;

        let banks = qemu_dt.memory_banks();
        let &[(ram_base, ram_size)] = banks.as_slice() else {
            return Err(Error::new(format!("expected one RAM bank on QEMU virt, found {banks:x?}")));
        };
        let page = self.release_page.unwrap_or_else(|| default_page(ram_base, ram_size));
        if !page.is_multiple_of(RELEASE_PAGE_SIZE) || page < ram_base || page + RELEASE_PAGE_SIZE > ram_base + ram_size
        {
            return Err(Error::new(format!("release page {page:#x} is not a 4 KiB page in RAM")));
        }

        let cpus = cpu_nodes(&qemu_dt)?
            .into_iter()
            .map(|(name, mpidr)| Ok(SpinCpu { release: self.layout.release_address(page, mpidr)?, name, mpidr }))
            .collect::<Result<Vec<_>>>()?;
        if cpus.len() != self.smp as usize {
            return Err(Error::new(format!("QEMU's DT lists {} CPUs for -smp {}", cpus.len(), self.smp)));
        }
        if cpus.first().map(|c| c.mpidr) != Some(0) {
            return Err(Error::new(
                "the firmware enters its payload on the CPU with MPIDR 0: the DT must list it first",
            ));
        }

        let dtb = dir.join(format!("spin-table-{}-smp{}.dtb", self.layout.name(), self.smp));
        fs::copy(&qemu_dtb, &dtb).context(|| format!("copying {} to {}", qemu_dtb.display(), dtb.display()))?;
        edit_dtb(&dtb, &cpus, page)?;
        let dt = Fdt::parse(&paths::read(&dtb)?).context(|| format!("parsing {}", dtb.display()))?;
        check_spin_dt(&dt, &cpus, page)?;
        let dtb_size = fs::metadata(&dtb).context(|| format!("reading {}", dtb.display()))?.len();
        let (gicd, gicr) = gic_v3(&qemu_dt)?;
        Ok(SpinTableDt {
            fw,
            layout: self.layout,
            smp: self.smp,
            ram_base,
            ram_size,
            page,
            cpus,
            dtb,
            dtb_size,
            dt,
            uart: stdout_uart(&qemu_dt)?,
            gicd,
            gicr,
        })
    }
}

/// The spin-table DTB of a machine and what the firmware needs to know
/// about the machine ([`SpinTable::spin_table_dt`]).
struct SpinTableDt {
    fw: Firmware,
    layout: ReleaseLayout,
    smp: u32,
    ram_base: u64,
    ram_size: u64,
    page: u64,
    cpus: Vec<SpinCpu>,
    dtb: PathBuf,
    dtb_size: u64,
    dt: Fdt,
    uart: u64,
    gicd: u64,
    gicr: u64,
}

impl SpinTableDt {
    /// Writes the firmware configured to enter `entry` with `dtb` in x0
    /// into `dir`.
    fn configure(&self, dir: &Path, entry: u64, dtb: u64) -> Result<(Config, PathBuf)> {
        let config = Config {
            entry,
            dtb,
            release_page: self.page,
            layout: self.layout,
            uart: self.uart,
            gicd: self.gicd,
            gicr: self.gicr,
        };
        let firmware = dir.join(format!("{BIN_NAME}-{}-smp{}.bin", self.layout.name(), self.smp));
        write_atomic(&firmware, &self.fw.configured(&config))?;
        Ok((config, firmware))
    }

    fn boot(self, qemu: Qemu, firmware: PathBuf, config: Config, payload: Payload) -> SpinTableBoot {
        SpinTableBoot {
            qemu,
            firmware,
            dtb: self.dtb,
            dt: self.dt,
            config,
            cpus: self.cpus,
            layout: self.layout,
            payload,
        }
    }
}

/// What the firmware enters on the boot CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Armature, with the spin-table DTB in x0.
    Armature,
    /// U-Boot, whose `boot.scr` loads Armature to `kernel_addr_r` and the
    /// spin-table DTB to [`DTB_ADDR`] from the disk, and `booti`s them.
    UBoot {
        /// The disk and U-Boot's environment.
        boot: UbootBoot,
        /// Where the script loads Armature.
        kernel_addr_r: u64,
    },
}

/// Everything one spin-table boot needs, ready to run.
#[derive(Clone, Debug)]
pub struct SpinTableBoot {
    /// The machine with the firmware (`-bios`), the payload and semihosting
    /// (direct: Armature and the DTB through the generic loader; through
    /// U-Boot: U-Boot through the generic loader, the disk, the
    /// environment flash).
    pub qemu: Qemu,
    /// The configured firmware.
    pub firmware: PathBuf,
    /// The spin-table DTB.
    pub dtb: PathBuf,
    /// The spin-table DT, parsed.
    pub dt: Fdt,
    /// What the firmware was told.
    pub config: Config,
    /// The CPUs, boot CPU first, with their release addresses.
    pub cpus: Vec<SpinCpu>,
    /// The release-address layout.
    pub layout: ReleaseLayout,
    /// What the firmware enters.
    pub payload: Payload,
}

impl SpinTableBoot {
    /// The line the firmware prints before entering its payload.
    pub fn firmware_line(&self) -> String {
        let c = &self.config;
        let wait = match self.layout {
            ReleaseLayout::PerCpu => "per-CPU release addresses from",
            ReleaseLayout::Shared => "the shared release address",
        };
        format!(
            "spin-table firmware: CPU 0x0 at EL3: entering {:#x} at EL2 with DTB {:#x}; secondaries wait on {wait} {:#x}\n",
            c.entry,
            c.dtb,
            self.layout.base(c.release_page)
        )
    }

    /// Where Armature runs from: its load address.
    pub fn armature_load(&self) -> u64 {
        match &self.payload {
            Payload::Armature => self.config.entry,
            Payload::UBoot { kernel_addr_r, .. } => *kernel_addr_r,
        }
    }

    /// Where the spin-table DTB is when the payload starts (through U-Boot,
    /// `booti` then hands Armature a copy elsewhere).
    pub fn dtb_addr(&self) -> u64 {
        match &self.payload {
            Payload::Armature => self.config.dtb,
            Payload::UBoot { .. } => DTB_ADDR,
        }
    }

    /// The secondaries (every CPU but the boot CPU).
    pub fn secondaries(&self) -> &[SpinCpu] {
        &self.cpus[1..]
    }

    /// The `/reserved-memory` node holding the release page.
    pub fn reserved_node(&self) -> String {
        format!("{RESERVED_NODE}@{:x}", self.config.release_page)
    }
}

/// QEMU did not emulate PSCI on this machine: no `/psci`, no CPU with an
/// `enable-method`. Only then does it start every CPU at the reset vector.
pub fn check_qemu_starts_every_cpu(dt: &Fdt) -> Result<()> {
    if dt.node("/psci").is_some() {
        return Err(Error::new(
            "QEMU's DT has /psci: QEMU emulates PSCI and holds the secondaries powered off, \
             so the spin-table firmware would never see them (it needs -M virt,secure=on with -bios)",
        ));
    }
    let cpus = dt.node("/cpus").ok_or_else(|| Error::new("QEMU's DT has no /cpus"))?;
    if let Some(c) = cpus.children.iter().find(|c| c.prop("enable-method").is_some()) {
        return Err(Error::new(format!("QEMU's DT gives /cpus/{} an enable-method: QEMU emulates PSCI", c.name)));
    }
    Ok(())
}

/// The CPU nodes under `/cpus`: name and MPIDR, in blob order.
fn cpu_nodes(dt: &Fdt) -> Result<Vec<(String, u64)>> {
    let cpus = dt.node("/cpus").ok_or_else(|| Error::new("the DT has no /cpus"))?;
    cpus.children
        .iter()
        .filter(|c| c.string("device_type") == Some("cpu"))
        .map(|c| {
            let reg = dt.reg(&format!("/cpus/{}", c.name));
            match reg.as_slice() {
                [(mpidr, _)] => Ok((c.name.clone(), *mpidr)),
                _ => Err(Error::new(format!("/cpus/{}: expected one reg entry, found {reg:x?}", c.name))),
            }
        })
        .collect()
}

/// The PL011 `/chosen/stdout-path` names.
fn stdout_uart(dt: &Fdt) -> Result<u64> {
    let path = dt.stdout_path().ok_or_else(|| Error::new("the DT has no /chosen/stdout-path"))?;
    let path = path.split(':').next().unwrap_or(path);
    let path = dt.resolve_alias(path).unwrap_or(path).to_string();
    dt.reg(&path).first().map(|r| r.0).ok_or_else(|| Error::new(format!("stdout-path {path}: no reg")))
}

/// GICD and the first GICR of the DT's `arm,gic-v3` node.
fn gic_v3(dt: &Fdt) -> Result<(u64, u64)> {
    let node = dt
        .root
        .children
        .iter()
        .find(|n| n.strings("compatible").contains(&"arm,gic-v3"))
        .ok_or_else(|| Error::new("the DT has no arm,gic-v3 node (the firmware needs GICv3)"))?;
    match dt.reg(&format!("/{}", node.name)).as_slice() {
        [gicd, gicr, ..] => Ok((gicd.0, gicr.0)),
        regs => Err(Error::new(format!("/{}: expected GICD and GICR in reg, found {regs:x?}", node.name))),
    }
}

/// Makes QEMU's DTB a spin-table DTB (see the module documentation).
fn edit_dtb(dtb: &Path, cpus: &[SpinCpu], page: u64) -> Result<()> {
    for c in cpus {
        let node = format!("/cpus/{}", c.name);
        fdtput(dtb, &["-t", "s", &node, "enable-method", "spin-table"])?;
        let [hi, lo] = cells(c.release);
        fdtput(dtb, &["-t", "x", &node, "cpu-release-addr", &hi, &lo])?;
    }
    fdtput(dtb, &["-c", "/psci"])?;
    fdtput(dtb, &["-t", "s", "/psci", "compatible", "arm,psci-1.0", "arm,psci-0.2", "arm,psci"])?;
    fdtput(dtb, &["-t", "s", "/psci", "method", "smc"])?;
    fdtput(dtb, &["-c", "/reserved-memory"])?;
    fdtput(dtb, &["-t", "x", "/reserved-memory", "#address-cells", "2"])?;
    fdtput(dtb, &["-t", "x", "/reserved-memory", "#size-cells", "2"])?;
    fdtput(dtb, &["/reserved-memory", "ranges"])?; // empty: identity
    let node = format!("/reserved-memory/{RESERVED_NODE}@{page:x}");
    fdtput(dtb, &["-c", &node])?;
    let ([ah, al], [sh, sl]) = (cells(page), cells(RELEASE_PAGE_SIZE));
    fdtput(dtb, &["-t", "x", &node, "reg", &ah, &al, &sh, &sl])?;
    fdtput(dtb, &[node.as_str(), "no-map"])
}

/// Reads the edited DT back: every CPU has the method and address it
/// should, there is `/psci` and the reservation.
fn check_spin_dt(dt: &Fdt, cpus: &[SpinCpu], page: u64) -> Result<()> {
    for c in cpus {
        let node = dt.node(&format!("/cpus/{}", c.name)).ok_or_else(|| Error::new(format!("/cpus/{} lost", c.name)))?;
        let addr = node.prop("cpu-release-addr").and_then(|v| <[u8; 8]>::try_from(v).ok()).map(u64::from_be_bytes);
        if node.string("enable-method") != Some("spin-table") || addr != Some(c.release) {
            return Err(Error::new(format!("/cpus/{}: spin-table properties not as written", c.name)));
        }
    }
    if dt.psci_method() != Some("smc") {
        return Err(Error::new("/psci: method is not smc"));
    }
    let reserved = dt.reg(&format!("/reserved-memory/{RESERVED_NODE}@{page:x}"));
    if reserved != [(page, RELEASE_PAGE_SIZE)] {
        return Err(Error::new(format!("/reserved-memory: release page reads back as {reserved:x?}")));
    }
    Ok(())
}

/// Fails when one of `regions` is not in RAM, or two overlap.
fn check_layout(regions: &[Region], ram_base: u64, ram_size: u64) -> Result<()> {
    for r in regions {
        if r.start < ram_base || r.start + r.size > ram_base + ram_size {
            return Err(Error::new(format!(
                "{} at {:#x} (+{:#x}) is not inside RAM {ram_base:#x}-{:#x}",
                r.name,
                r.start,
                r.size,
                ram_base + ram_size - 1
            )));
        }
    }
    check_disjoint(regions)
}

/// Fails when two of `regions` overlap.
fn check_disjoint(regions: &[Region]) -> Result<()> {
    for (i, a) in regions.iter().enumerate() {
        for b in &regions[i + 1..] {
            if a.start < b.start + b.size && b.start < a.start + a.size {
                return Err(Error::new(format!(
                    "{} at {:#x} (+{:#x}) overlaps {} at {:#x} (+{:#x})",
                    a.name, a.start, a.size, b.name, b.start, b.size
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_addresses_per_layout() {
        let page = 0x7fff_f000;
        let per = ReleaseLayout::PerCpu;
        assert_eq!(per.release_address(page, 0).unwrap(), page);
        assert_eq!(per.release_address(page, 3).unwrap(), page + 0x18);
        // Aff1 = 1: CPU 16 on QEMU virt with GICv3.
        assert_eq!(per.release_address(page, 0x100).unwrap(), page + 16 * 8);
        assert!(per.release_address(page, 0x10).unwrap_err().message().contains("no per-CPU release slot"));
        assert!(per.release_address(page, 0x1_0000).is_err());
        let shared = ReleaseLayout::Shared;
        for mpidr in [0, 1, 0x10, 0x1_0000] {
            assert_eq!(shared.release_address(page, mpidr).unwrap(), 0x7fff_fff8);
        }
        assert_eq!((per.stride(), shared.stride()), (8, 0));
        assert_eq!((per.base(page), shared.base(page)), (page, page + 0xff8));
    }

    #[test]
    fn config_is_patched_at_its_offsets() {
        let mut bytes = vec![0u8; 0x100];
        bytes[0x40..0x48].copy_from_slice(config::MAGIC);
        check_config_block(&bytes, 0x40).unwrap();
        assert!(check_config_block(&bytes, 0x48).unwrap_err().message().contains("expected \"ASPINFW1\""));
        assert!(check_config_block(&bytes, 0xf0).unwrap_err().message().contains("outside"));
        let fw = Firmware { bin: "/f.bin".into(), elf: "/f.elf".into(), bytes, config_offset: 0x40 };
        let cfg = Config {
            entry: 0x4020_0000,
            dtb: 0x4800_0000,
            release_page: 0x7fff_f000,
            layout: ReleaseLayout::Shared,
            uart: 0x0900_0000,
            gicd: 0x0800_0000,
            gicr: 0x080a_0000,
        };
        let b = fw.configured(&cfg);
        let q = |off: usize| u64::from_le_bytes(b[0x40 + off..0x48 + off].try_into().unwrap());
        assert_eq!(&b[0x40..0x48], config::MAGIC);
        assert_eq!(
            [q(config::ENTRY), q(config::DTB), q(config::RELEASE), q(config::STRIDE)],
            [0x4020_0000, 0x4800_0000, 0x7fff_fff8, 0]
        );
        assert_eq!([q(config::UART), q(config::GICD), q(config::GICR)], [0x0900_0000, 0x0800_0000, 0x080a_0000]);
        assert!(b[..0x40].iter().chain(&b[0x80..]).all(|&x| x == 0), "only fw_config changes");
    }

    #[test]
    fn overlaps_are_named() {
        let r = |name, start, size| Region { name, start, size };
        check_disjoint(&[r("a", 0x1000, 0x1000), r("b", 0x2000, 0x1000)]).unwrap();
        let e = check_disjoint(&[r("a", 0x1000, 0x1000), r("b", 0x3000, 1), r("c", 0x1fff, 2)]).unwrap_err();
        assert_eq!(e.message(), "a at 0x1000 (+0x1000) overlaps c at 0x1fff (+0x2)");
    }

    #[test]
    fn qemu_emulating_psci_is_refused() {
        // QEMU's DT for a machine where it emulates PSCI (no secure=on).
        let path = paths::workspace_root().join("tests/fixtures/dtb/qemu-virt-gicv3-smp4.dtb");
        let with_psci = Fdt::parse(&paths::read(&path).unwrap()).unwrap();
        let e = check_qemu_starts_every_cpu(&with_psci).unwrap_err();
        assert!(e.message().contains("emulates PSCI"), "{e}");
    }
}
