//! Helpers shared by the QEMU boot tests: building images, reading the
//! device tree QEMU really generates for a machine, the banner Armature must
//! print for it, and running a boot with its console log kept under
//! `target/armature/logs/<test>.log`.
//!
//! Every test binary includes this module and uses a different subset of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;
use xtask::fdt::Fdt;
use xtask::runner::{Expect, Outcome, RunOptions};
use xtask::uboot::{self, BootScript, Environment};
use xtask::{Arch, Image, Qemu, Variant, paths};

/// Time limit of one boot. Generous: tests run in parallel on small machines.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// The last line of a boot that ends well; QEMU must then exit with 0.
pub const POWER_OFF: &str = "Powering off via PSCI SYSTEM_OFF";

/// Where QEMU's loader puts the device tree on `virt` when there is no
/// initrd: RAM base + 128 MiB (for the RAM sizes used here, at least 256 MiB).
pub const QEMU_DTB_OFFSET: u64 = 128 << 20;

/// The image of `arch` with extra `features`, built once per test process.
pub fn image(arch: Arch, features: &[&str]) -> Image {
    let variant = Variant::new(arch).features(features);
    xtask::build::image(&variant).unwrap_or_else(|e| panic!("building {}: {e}", variant.name()))
}

/// Where QEMU's `-kernel` puts the image on `virt`: RAM base + 2 MiB for an
/// arm64 Image with text_offset 0, RAM base + 64 KiB for a 32-bit kernel.
pub fn qemu_kernel_offset(arch: Arch) -> u64 {
    match arch {
        Arch::Aarch64 => 2 << 20,
        Arch::Armv7 => 64 << 10,
    }
}

/// The privilege line Armature prints when entered at the hypervisor level.
pub fn hyp_privilege(arch: Arch) -> &'static str {
    match arch {
        Arch::Aarch64 => "CurrentEL=2 (EL2)",
        Arch::Armv7 => "mode=HYP",
    }
}

/// The device tree QEMU generates for `qemu`, dumped into the test's scratch directory.
pub fn machine_dtb(test: &str, qemu: &Qemu) -> Fdt {
    let dir = paths::scratch_dir(&format!("{test}-dtb")).unwrap_or_else(|e| panic!("{e}"));
    dump_machine_dtb(qemu, &dir.join("virt.dtb"))
}

/// QEMU's own device tree for `qemu`'s machine, dumped to `out` (to edit
/// it, say), checked against `-smp` like [`machine_dtb`].
pub fn dump_machine_dtb(qemu: &Qemu, out: &std::path::Path) -> Fdt {
    let dt = qemu.dump_dtb(out).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dt.cpu_count(), qemu.cpus() as usize, "QEMU's device tree disagrees with -smp");
    dt
}

/// A scratch directory for the test (emptied first).
pub fn scratch(test: &str) -> PathBuf {
    paths::scratch_dir(test).unwrap_or_else(|e| panic!("{e}"))
}

/// Where the DTB Armature is handed lies.
#[derive(Clone, Copy, Debug)]
pub enum DtbAt {
    /// Exactly here (QEMU's loader).
    Exactly(u64),
    /// Anywhere in RAM except here (U-Boot `booti` moves it away from `fdt_addr`).
    MovedFrom(u64),
}

/// What Armature's boot banner must say on a machine, derived from the
/// machine's real device tree.
#[derive(Clone, Debug)]
pub struct Banner {
    /// The architecture.
    pub arch: Arch,
    /// The privilege line (e.g. `CurrentEL=2 (EL2)`).
    pub privilege: String,
    /// Where the image was loaded.
    pub load: u64,
    /// Where the DTB is.
    pub dtb: DtbAt,
    /// The command line Armature must report.
    pub cmdline: String,
    /// RAM banks from the DT, `(base, size)`.
    pub banks: Vec<(u64, u64)>,
    /// `/chosen/stdout-path`.
    pub stdout_path: String,
    /// Enabled CPUs in `/cpus`.
    pub cpus: usize,
    /// `/psci` method, upper case as printed (`SMC`).
    pub psci_conduit: String,
    /// Lowest PSCI version the firmware may report: the DT's highest `arm,psci-X.Y`.
    pub psci_min: (u16, u16),
}

impl Banner {
    /// The banner for a boot of `arch` at the hypervisor level on the machine
    /// described by `dt`, loaded at `load` with the DTB at `dtb`.
    pub fn new(arch: Arch, dt: &Fdt, load: u64, dtb: DtbAt) -> Banner {
        let banks = dt.memory_banks();
        assert!(!banks.is_empty(), "the machine's DT has no memory");
        Banner {
            arch,
            privilege: hyp_privilege(arch).to_string(),
            load,
            dtb,
            cmdline: dt.node("/chosen").and_then(|c| c.string("bootargs")).unwrap_or("").to_string(),
            banks,
            stdout_path: dt.stdout_path().expect("the machine's DT has /chosen/stdout-path").to_string(),
            cpus: dt.cpu_count(),
            psci_conduit: dt.psci_method().expect("the machine's DT has /psci").to_uppercase(),
            psci_min: dt.psci_version().expect("the machine's DT names a PSCI version"),
        }
    }

    /// For QEMU's own loader (`-kernel`): image and DTB where QEMU puts them.
    pub fn direct(arch: Arch, dt: &Fdt) -> Banner {
        let ram = dt.memory_banks().first().expect("the machine's DT has memory").0;
        Banner::new(arch, dt, ram + qemu_kernel_offset(arch), DtbAt::Exactly(ram + QEMU_DTB_OFFSET))
    }

    /// Replaces the privilege line.
    pub fn privilege(mut self, line: &str) -> Banner {
        self.privilege = line.to_string();
        self
    }

    /// Replaces the expected command line.
    pub fn cmdline(mut self, cmdline: &str) -> Banner {
        self.cmdline = cmdline.to_string();
        self
    }

    /// The banner lines, in the order Armature prints them, up to the PSCI line.
    pub fn markers(&self) -> Vec<String> {
        let total: u64 = self.banks.iter().map(|b| b.1).sum();
        let mut m = vec![
            format!("Armature {} ({}, platform qemu-virt)", env!("CARGO_PKG_VERSION"), self.arch.name()),
            format!("Load address: {:#x} (", self.load),
            self.privilege.clone(),
            match self.dtb {
                DtbAt::Exactly(a) => format!("DTB address: {a:#x}\n"),
                DtbAt::MovedFrom(_) => "DTB address: 0x".to_string(),
            },
            "bytes, valid".to_string(),
            format!("Command line: \"{}\"", self.cmdline),
            format!("Memory: {} bank(s), {} MiB", self.banks.len(), total >> 20),
        ];
        for (i, (base, size)) in self.banks.iter().enumerate() {
            m.push(format!("  bank {i}: {base:#014x}-{:#014x} ({} MiB)", base + size - 1, size >> 20));
        }
        m.push(format!("Console: stdout-path \"{}\"", self.stdout_path));
        m.push(format!("CPUs: {} in /cpus", self.cpus));
        m.push("PSCI: firmware v".to_string());
        m.push(format!(" via {}", self.psci_conduit));
        m
    }

    /// A complete boot: the banner, then power-off and QEMU exiting with 0.
    pub fn boot_expect(&self) -> Expect {
        self.boot_expect_after(&[])
    }

    /// [`Banner::boot_expect`] with `earlier` lines (the firmware's) before the banner.
    pub fn boot_expect_after(&self, earlier: &[&str]) -> Expect {
        Expect::new()
            .markers(earlier.iter().copied())
            .markers(self.markers())
            .markers(["Boot complete: no domains to run yet", POWER_OFF])
            .clean_exit(true)
            .timeout(BOOT_TIMEOUT)
    }

    /// Checks what markers cannot: the DTB address of a moved DTB, and the
    /// PSCI version against the DT.
    pub fn check_values(&self, outcome: &Outcome) {
        let fail = |what: String| -> ! { panic!("{what}\n----- console log -----\n{}", outcome.log) };
        if let DtbAt::MovedFrom(old) = self.dtb {
            let line = outcome.line_with("DTB address: ").unwrap_or_else(|| fail("no DTB address line".into()));
            let addr = parse_hex_after(line, "DTB address: ").unwrap_or_else(|| fail(format!("bad line {line:?}")));
            assert_ne!(addr, old, "the DTB was expected to have been moved away from {old:#x}");
            let in_ram = self.banks.iter().any(|&(b, s)| addr >= b && addr < b + s);
            assert!(in_ram, "DTB address {addr:#x} is not in RAM {:x?}", self.banks);
        }
        let line = outcome.line_with("PSCI: firmware v").unwrap_or_else(|| fail("no PSCI line".into()));
        let version = line
            .split("PSCI: firmware v")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.split_once('.'))
            .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
            .unwrap_or_else(|| fail(format!("cannot read the PSCI version in {line:?}")));
        assert!(version >= self.psci_min, "PSCI v{version:?} is older than the DT's psci-{:?}: {line}", self.psci_min);
    }
}

/// Fails the test, with the whole console log, unless every line in `lines`
/// appears in the log in this order.
pub fn assert_lines_in_order(outcome: &Outcome, lines: &[&str]) {
    let mut rest = outcome.log.as_str();
    for line in lines {
        match rest.find(line) {
            Some(i) => rest = &rest[i + line.len()..],
            None => panic!("missing (in this order) {line:?}\n--- console log ---\n{}", outcome.log),
        }
    }
}

/// The `0x`-prefixed hex number right after `prefix` in `line`.
pub fn parse_hex_after(line: &str, prefix: &str) -> Option<u64> {
    let rest = line.split(prefix).nth(1)?;
    let hex = rest.trim().strip_prefix("0x")?;
    let digits: String = hex.chars().take_while(char::is_ascii_hexdigit).collect();
    u64::from_str_radix(&digits, 16).ok()
}

/// Boots `qemu`, keeps the log in `target/armature/logs/<test>.log`, and
/// fails the test with the whole console log unless `expect` is met.
pub fn boot(test: &str, qemu: &Qemu, expect: &Expect) -> Outcome {
    let options = RunOptions::default().log_to(paths::log_path(test));
    let outcome = qemu.run(expect, &options).unwrap_or_else(|e| panic!("{test}: {e}"));
    outcome.assert_passed();
    outcome
}

/// A direct (`-kernel`) boot of the default image of `arch` on `qemu` with
/// the banner checked against the machine's DT and a clean power-off.
pub fn direct_boot(test: &str, qemu: Qemu) -> Outcome {
    direct_boot_image(test, qemu, &[])
}

/// [`direct_boot`] of the image built with extra `features`.
pub fn direct_boot_image(test: &str, qemu: Qemu, features: &[&str]) -> Outcome {
    let arch = qemu.arch();
    let qemu = qemu.kernel(image(arch, features).bin);
    let dt = machine_dtb(test, &qemu);
    let banner = Banner::direct(arch, &dt);
    let outcome = boot(test, &qemu, &banner.boot_expect());
    banner.check_values(&outcome);
    outcome
}

/// Lines U-Boot and the generated boot script print before starting the image.
pub fn uboot_lines(arch: Arch) -> [&'static str; 3] {
    let boot = match arch {
        Arch::Aarch64 => "Armature boot.scr: booti",
        Arch::Armv7 => "Armature boot.scr: bootz",
    };
    ["U-Boot", "Armature boot.scr: running from virtio 0:1", boot]
}

/// A boot of the default image of `arch` through U-Boot (`-bios`, with the
/// environment `env`): distro
/// boot finds the generated `boot.scr` on a virtio disk, which sets
/// Armature's command line to `cmdline` and starts the image at
/// `kernel_addr_r`. The banner is checked against the machine's DT, with the
/// DTB where the loader is expected to leave it (`dtb`).
pub fn uboot_boot(test: &str, qemu: Qemu, env: Environment, cmdline: &str, dtb: DtbAt) -> Outcome {
    uboot_boot_image(test, qemu, env, cmdline, dtb, &[])
}

/// [`uboot_boot`] of the image built with extra `features`.
pub fn uboot_boot_image(
    test: &str,
    qemu: Qemu,
    env: Environment,
    cmdline: &str,
    dtb: DtbAt,
    features: &[&str],
) -> Outcome {
    let arch = qemu.arch();
    let image = image(arch, features);
    let script = BootScript::new(arch).bootargs(cmdline);
    let firmware = uboot::prepare(&scratch(test), &image.bin, &script, env).unwrap_or_else(|e| panic!("{e}"));
    let qemu = firmware.apply(qemu);
    let dt = machine_dtb(test, &qemu);
    let banner = Banner::new(arch, &dt, uboot::KERNEL_ADDR_R, dtb).cmdline(cmdline);
    let outcome = boot(test, &qemu, &banner.boot_expect_after(&uboot_lines(arch)));
    banner.check_values(&outcome);
    outcome
}

/// Edits a device tree blob in place with `fdtput` (device-tree-compiler).
pub fn fdtput(dtb: &std::path::Path, args: &[&str]) {
    xtask::fdt::fdtput(dtb, args).unwrap_or_else(|e| panic!("{e}"));
}

/// A 4 KiB paste for dom0's shell: a here-doc of 64 different lines of 64
/// bytes that the shell stores in `/tmp/p`, then `md5sum /tmp/p; wc -c <
/// /tmp/p`, each line ended by a carriage return (Enter, as a terminal
/// sends it). Returns what to type and what the shell must print back: the
/// MD5 (by the host's `md5sum`) and the size, each on its line.
pub fn paste_4k() -> (String, String) {
    use std::io::Write;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let lines: Vec<String> = (0..64)
        .map(|i| {
            let body: String = (0..58)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[(x % 62) as usize] as char
                })
                .collect();
            format!("L{i:03}-{body}")
        })
        .collect();
    let content: String = lines.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(content.len(), 4096);
    let mut md5sum = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("md5sum");
    md5sum.stdin.take().expect("md5sum's stdin").write_all(content.as_bytes()).expect("md5sum");
    let out = md5sum.wait_with_output().expect("md5sum");
    let sum = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string();
    assert_eq!(sum.len(), 32, "md5sum printed {:?}", String::from_utf8_lossy(&out.stdout));
    let typed: String = lines.iter().map(|l| format!("{l}\r")).collect();
    (format!("cat > /tmp/p <<'EOF'\r{typed}EOF\rmd5sum /tmp/p; wc -c < /tmp/p\r"), format!("\n{sum}  /tmp/p\n4096\n"))
}
