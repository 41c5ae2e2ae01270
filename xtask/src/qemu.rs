//! The QEMU command line for the machines Armature runs on.
//!
//! [`Qemu`] is a builder for QEMU's `virt` board: `qemu-system-aarch64`
//! (cortex-a57, GICv2 or GICv3) or `qemu-system-arm` (cortex-a15,
//! `highmem=off`). Every command it makes has the fixed part the harness
//! relies on: the serial console on stdio and nothing else (`-display none
//! -monitor none -nic none`), `-no-reboot` (a reset ends QEMU instead of
//! looping; note QEMU then exits 0, so success is decided by markers), and
//! `dtb-randomness=off` so the generated device tree is the same every run.
//! Running it and watching the console is [`crate::runner`]'s job.

use crate::fdt::Fdt;
use crate::runner::{self, Expect, Outcome, RunOptions};
use crate::{Arch, Context, Error, Result};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A disk or flash attached to the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drive {
    /// A raw image as a virtio-blk (MMIO) disk: U-Boot's `virtio 0`, …
    VirtioBlk(PathBuf),
    /// A raw image as parallel flash bank `index` (the U-Boot environment
    /// lives in bank 1); the file must be 64 MiB.
    Pflash {
        /// Flash bank (0 holds the firmware when `-bios` is not used).
        index: u8,
        /// The image.
        file: PathBuf,
    },
}

/// A key of QEMU's terminal multiplexer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EscapeKey {
    /// The byte the terminal sends.
    pub byte: u8,
    /// How a person presses it.
    pub name: &'static str,
}

/// QEMU's escape key on interactive consoles ([`Qemu::interactive`]):
/// Ctrl-] (as telnet's and `virsh console`'s), not QEMU's default Ctrl-A,
/// which is Armature's input switch (Ctrl-A three times) and would be
/// eaten by QEMU (Ctrl-A Ctrl-A sends one Ctrl-A, a third one waits for a
/// command key). `Ctrl-] x` quits QEMU, `Ctrl-] h` lists its keys.
pub const ESCAPE: EscapeKey = EscapeKey { byte: 0x1d, name: "Ctrl-]" };

/// A QEMU `virt` machine to boot Armature on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qemu {
    arch: Arch,
    gic: u8,
    virtualization: bool,
    secure: bool,
    smp: u32,
    memory: String,
    cpu: String,
    kernel: Option<PathBuf>,
    dtb: Option<PathBuf>,
    append: Option<String>,
    initrd: Option<PathBuf>,
    interactive_log: Option<PathBuf>,
    bios: Option<PathBuf>,
    drives: Vec<Drive>,
    loads: Vec<(PathBuf, u64)>,
    extra: Vec<OsString>,
}

impl Qemu {
    /// `virt` for `arch` with the virtualization extensions (entry at
    /// EL2/HYP), 1 GiB of RAM; aarch64: cortex-a57, GICv3, 4 CPUs; armv7:
    /// cortex-a15, GICv2, 2 CPUs, `highmem=off`.
    pub fn new(arch: Arch) -> Self {
        let (gic, smp, cpu) = match arch {
            Arch::Aarch64 => (3, 4, "cortex-a57"),
            Arch::Armv7 => (2, 2, "cortex-a15"),
        };
        Qemu {
            arch,
            gic,
            virtualization: true,
            secure: false,
            smp,
            memory: "1G".into(),
            cpu: cpu.into(),
            kernel: None,
            dtb: None,
            append: None,
            initrd: None,
            interactive_log: None,
            bios: None,
            drives: Vec::new(),
            loads: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// [`Qemu::new`] for AArch64.
    pub fn aarch64() -> Self {
        Self::new(Arch::Aarch64)
    }

    /// [`Qemu::new`] for ARMv7.
    pub fn armv7() -> Self {
        Self::new(Arch::Armv7)
    }

    /// GIC version, 2 or 3.
    pub fn gic(mut self, version: u8) -> Self {
        assert!(matches!(version, 2 | 3), "GIC version must be 2 or 3, not {version}");
        self.gic = version;
        self
    }

    /// Virtualization extensions on (enter at EL2/HYP) or off (EL1/SVC).
    pub fn virtualization(mut self, on: bool) -> Self {
        self.virtualization = on;
        self
    }

    /// The security extensions on (`secure=on`: EL3 exists, and with
    /// firmware (`-bios`) QEMU neither emulates PSCI nor holds the
    /// secondaries: every CPU starts at EL3 at the reset vector; see
    /// [`crate::firmware`]) or off (the default: entry at EL2/HYP).
    pub fn secure(mut self, on: bool) -> Self {
        self.secure = on;
        self
    }

    /// Number of CPUs.
    pub fn smp(mut self, cpus: u32) -> Self {
        self.smp = cpus;
        self
    }

    /// RAM size in QEMU's syntax (`512M`, `2G`).
    pub fn memory(mut self, size: impl Into<String>) -> Self {
        self.memory = size.into();
        self
    }

    /// The image QEMU loads itself (`-kernel`).
    pub fn kernel(mut self, image: impl Into<PathBuf>) -> Self {
        self.kernel = Some(image.into());
        self
    }

    /// A device tree to use instead of QEMU's (`-dtb`).
    pub fn dtb(mut self, dtb: impl Into<PathBuf>) -> Self {
        self.dtb = Some(dtb.into());
        self
    }

    /// Command line (`-append`): QEMU puts it in `/chosen/bootargs`, which
    /// Armature reads when no `armature,bootargs` is there.
    pub fn append(mut self, cmdline: impl Into<String>) -> Self {
        self.append = Some(cmdline.into());
        self
    }

    /// An initial ramdisk QEMU loads for the kernel (`-initrd`).
    pub fn initrd(mut self, file: impl Into<PathBuf>) -> Self {
        self.initrd = Some(file.into());
        self
    }

    /// An interactive console: the serial port on a multiplexed stdio
    /// chardev (`-chardev stdio,mux=on,signal=off,logfile=<log>`), so that
    /// the terminal's input reaches the guest (Ctrl-C included) and QEMU
    /// itself keeps the console log in `log`. QEMU's escape key moves from
    /// Ctrl-A, Armature's input switch, to [`ESCAPE`] (`-echr`): `Ctrl-] x`
    /// quits QEMU. For QEMU run in the foreground with the terminal as
    /// stdin, not by the runner.
    pub fn interactive(mut self, log: impl Into<PathBuf>) -> Self {
        self.interactive_log = Some(log.into());
        self
    }

    /// Firmware (`-bios`), e.g. U-Boot.
    pub fn bios(mut self, firmware: impl Into<PathBuf>) -> Self {
        self.bios = Some(firmware.into());
        self
    }

    /// Attaches a drive.
    pub fn drive(mut self, drive: Drive) -> Self {
        self.drives.push(drive);
        self
    }

    /// Copies `file` as is to physical address `addr` with QEMU's generic
    /// loader (`-device loader,file=…,addr=…,force-raw=on`). Unlike
    /// `-kernel` this sets no CPU's PC (no `cpu-num`) and writes no boot
    /// stub: something else must jump there (see [`crate::shim`]). QEMU
    /// refuses to start if the file overlaps another loaded file.
    pub fn load_at(mut self, file: impl Into<PathBuf>, addr: u64) -> Self {
        self.loads.push((file.into(), addr));
        self
    }

    /// Extra QEMU arguments, appended as given.
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.extra.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The number of CPUs.
    pub fn cpus(&self) -> u32 {
        self.smp
    }

    /// The QEMU program.
    pub fn program(&self) -> &'static str {
        match self.arch {
            Arch::Aarch64 => "qemu-system-aarch64",
            Arch::Armv7 => "qemu-system-arm",
        }
    }

    /// The `-M` value.
    pub fn machine(&self) -> String {
        let mut m = format!(
            "virt,gic-version={},virtualization={}{},dtb-randomness=off",
            self.gic,
            if self.virtualization { "on" } else { "off" },
            if self.secure { ",secure=on" } else { "" }
        );
        if self.arch == Arch::Armv7 {
            m.push_str(",highmem=off");
        }
        m
    }

    /// Every argument after the program name.
    pub fn arguments(&self) -> Vec<OsString> {
        self.arguments_with_machine(self.machine())
    }

    fn arguments_with_machine(&self, machine: String) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |args: &[&OsStr]| a.extend(args.iter().map(|s| s.to_os_string()));
        push(&["-M".as_ref(), machine.as_ref(), "-cpu".as_ref(), self.cpu.as_ref()]);
        push(&["-smp".as_ref(), self.smp.to_string().as_ref(), "-m".as_ref(), self.memory.as_ref()]);
        match &self.interactive_log {
            None => push(&["-display".as_ref(), "none".as_ref(), "-serial".as_ref(), "stdio".as_ref()]),
            Some(log) => {
                let chardev = format!("stdio,id=console,mux=on,signal=off,logfile={}", option_value(log));
                push(&["-display".as_ref(), "none".as_ref(), "-chardev".as_ref(), chardev.as_ref()]);
                push(&["-serial".as_ref(), "chardev:console".as_ref()]);
                push(&["-echr".as_ref(), format!("{:#x}", ESCAPE.byte).as_ref()]);
            }
        }
        for fixed in ["-monitor", "none", "-no-reboot", "-nic", "none"] {
            push(&[fixed.as_ref()]);
        }
        if let Some(b) = &self.bios {
            push(&["-bios".as_ref(), b.as_os_str()]);
        }
        if let Some(k) = &self.kernel {
            push(&["-kernel".as_ref(), k.as_os_str()]);
        }
        if let Some(i) = &self.initrd {
            push(&["-initrd".as_ref(), i.as_os_str()]);
        }
        if let Some(d) = &self.dtb {
            push(&["-dtb".as_ref(), d.as_os_str()]);
        }
        if let Some(c) = &self.append {
            push(&["-append".as_ref(), c.as_ref()]);
        }
        for (i, d) in self.drives.iter().enumerate() {
            let spec = match d {
                Drive::VirtioBlk(file) => {
                    let id = format!("hd{i}");
                    push(&["-device".as_ref(), format!("virtio-blk-device,drive={id}").as_ref()]);
                    format!("if=none,format=raw,id={id},file={}", file.display())
                }
                Drive::Pflash { index, file } => format!("if=pflash,format=raw,index={index},file={}", file.display()),
            };
            push(&["-drive".as_ref(), spec.as_ref()]);
        }
        for (file, addr) in &self.loads {
            let spec = format!("loader,file={},addr={addr:#x},force-raw=on", option_value(file));
            push(&["-device".as_ref(), spec.as_ref()]);
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// The command, ready to spawn (stdin null; the runner sets the rest).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(self.program());
        cmd.args(self.arguments()).stdin(Stdio::null());
        cmd
    }

    /// The command line as a shell would show it.
    pub fn command_line(&self) -> String {
        shell_words(self.program(), &self.arguments())
    }

    /// Dumps the device tree QEMU generates for exactly this machine
    /// (`-M …,dumpdtb=`) to `out` and parses it.
    pub fn dump_dtb(&self, out: &Path) -> Result<Fdt> {
        let machine = format!("{},dumpdtb={}", self.machine(), out.display());
        let output = Command::new(self.program())
            .args(self.arguments_with_machine(machine))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| missing_qemu(self.program(), e))?;
        if !output.status.success() {
            return Err(Error::new(format!(
                "{} -M …,dumpdtb failed ({}): {}",
                self.program(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Fdt::parse(&crate::paths::read(out)?).context(|| format!("parsing {}", out.display()))
    }

    /// Boots the machine and watches its console (see [`crate::runner`]).
    pub fn run(&self, expect: &Expect, options: &RunOptions) -> Result<Outcome> {
        if crate::paths::find_program(self.program()).is_none() {
            return Err(missing_qemu(self.program(), "not found"));
        }
        runner::run(self.command(), &self.command_line(), expect, options)
    }
}

fn missing_qemu(program: &str, e: impl std::fmt::Display) -> Error {
    Error::new(format!("cannot run {program} ({e}); install QEMU with `./x setup`"))
}

/// A path as the value of a QEMU `-device` option: commas are doubled.
fn option_value(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// Quotes a command line for display.
pub fn shell_words(program: &str, args: &[OsString]) -> String {
    let quote = |s: &str| {
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:@+".contains(c)) {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    std::iter::once(program.to_string())
        .chain(args.iter().map(|a| quote(&a.to_string_lossy())))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aarch64_command_line() {
        let q = Qemu::aarch64().gic(2).smp(1).memory("512M").kernel("/x/armature.bin").append("a b");
        assert_eq!(
            q.command_line(),
            "qemu-system-aarch64 -M virt,gic-version=2,virtualization=on,dtb-randomness=off -cpu cortex-a57 \
             -smp 1 -m 512M -display none -serial stdio -monitor none -no-reboot -nic none \
             -kernel /x/armature.bin -append 'a b'"
        );
    }

    #[test]
    fn armv7_machine_and_drives() {
        let q = Qemu::armv7()
            .virtualization(false)
            .bios("/u-boot.bin")
            .drive(Drive::VirtioBlk("/d.img".into()))
            .drive(Drive::Pflash { index: 1, file: "/f.img".into() })
            .args(["-s"]);
        assert_eq!(q.program(), "qemu-system-arm");
        assert_eq!(q.machine(), "virt,gic-version=2,virtualization=off,dtb-randomness=off,highmem=off");
        let line = q.command_line();
        assert!(line.contains("-cpu cortex-a15 -smp 2 -m 1G"), "{line}");
        assert!(
            line.ends_with(
                "-bios /u-boot.bin -device virtio-blk-device,drive=hd0 -drive if=none,format=raw,id=hd0,file=/d.img \
                 -drive if=pflash,format=raw,index=1,file=/f.img -s"
            ),
            "{line}"
        );
    }

    #[test]
    fn secure_adds_secure_on_to_the_machine() {
        let q = Qemu::aarch64().secure(true);
        assert_eq!(q.machine(), "virt,gic-version=3,virtualization=on,secure=on,dtb-randomness=off");
        assert_eq!(q.clone().secure(false).machine(), Qemu::aarch64().machine());
        assert!(q.command_line().contains("-M virt,gic-version=3,virtualization=on,secure=on,dtb-randomness=off "));
    }

    #[test]
    fn interactive_console_and_initrd() {
        let q = Qemu::aarch64().kernel("/k").initrd("/i.cpio").interactive("/l/run.log");
        let line = q.command_line();
        assert!(
            line.contains(
                "-display none -chardev stdio,id=console,mux=on,signal=off,logfile=/l/run.log \
                 -serial chardev:console -echr 0x1d -monitor none -no-reboot -nic none -kernel /k -initrd /i.cpio"
            ),
            "{line}"
        );
        assert!(!line.contains("-serial stdio"), "{line}");
    }

    #[test]
    fn raw_loads_use_the_generic_loader() {
        let q = Qemu::aarch64().kernel("/s/shim.bin").load_at("/x/a,b.bin", 0x1_3ffa_d000).load_at("/y", 0x4000_1000);
        assert!(
            q.command_line().ends_with(
                "-kernel /s/shim.bin -device loader,file=/x/a,,b.bin,addr=0x13ffad000,force-raw=on \
                 -device loader,file=/y,addr=0x40001000,force-raw=on"
            ),
            "{}",
            q.command_line()
        );
    }
}
