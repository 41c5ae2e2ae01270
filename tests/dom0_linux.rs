//! Linux as dom0: Armature boots Debian's arm64 kernel with the busybox
//! initramfs of `xtask::initramfs` (4 vCPUs, 2 GiB, GICv2 and GICv3),
//! loaded by U-Boot (`boot.scr` with Xen's `/chosen` module nodes) or by
//! QEMU (`-kernel`, `-dtb`, `-device loader`). Each boot must reach dom0's
//! userspace, whose `/init` reports what Linux found: every vCPU online,
//! `/proc/interrupts`, the kernel's PSCI, GIC and arch timer lines; then
//! dom0 powers off and QEMU must exit with 0.
//!
//! Each machine also has a data disk on virtio-mmio (1 MiB of known
//! content) and a `virtio-rng-pci` on the PCIe host bridge
//! (`dom0::with_devices`), both passed through to dom0: its `/init` loads
//! the virtio modules, and must find the disk bound to `virtio_blk` and
//! read its first 4 KiB back with the right md5, find the PCI device bound
//! to `virtio-pci` and read `/dev/hwrng`, and the interrupt counts of both
//! must increase while they are read (`Report::device_problems`).
//!
//! The kernel, busybox and Xen come from Debian (`xtask::debian`, fetched
//! with apt into the download cache on first use). The same recipes and
//! checks boot Xen 4.17 in the `#[ignore]`d `xen_*` tests, which prove the
//! harness itself: `cargo test --test dom0_linux -- --ignored`.

mod common;

use common::scratch;
use std::io::Write;
use std::time::Duration;
use xtask::dom0::{self, Dom0, Hypervisor, Report};
use xtask::runner::Outcome;
use xtask::uboot::{Environment, IMAGE_FILE};
use xtask::{Arch, Qemu, paths};

/// Time limit of one boot: Linux under TCG takes 5-10 s alone, but tests
/// run side by side on small machines. A boot whose console stays silent
/// for `dom0::IDLE_TIMEOUT` (30 s) ends earlier.
const TIMEOUT: Duration = Duration::from_secs(120);
/// vCPUs (one per physical CPU) and RAM.
const CPUS: u32 = 4;
const MEMORY: &str = "2G";

/// How the hypervisor and dom0 are loaded.
#[derive(Clone, Copy, Debug)]
enum Loader {
    /// U-Boot's distro boot runs a generated `boot.scr`.
    Uboot,
    /// QEMU's `-kernel`, `-dtb` and `-device loader`.
    Direct,
}

/// Boots Linux as dom0 of `hv` with `gic`, checks the whole run and dom0's
/// report, and records the report in the test's log.
fn dom0_linux(test: &str, hv: Hypervisor, loader: Loader, gic: u8) -> Outcome {
    let fail = |e: xtask::Error| -> ! { panic!("{test}: {e}") };
    let kernel = xtask::debian::kernel().unwrap_or_else(|e| fail(e));
    let (_, busybox) = xtask::debian::busybox().unwrap_or_else(|e| fail(e));
    let initrd = xtask::initramfs::dom0_initramfs(&busybox, &kernel.modules).unwrap_or_else(|e| fail(e));
    let (image, image_file, first) = match hv {
        Hypervisor::Armature => {
            (common::image(Arch::Aarch64, &[]).bin, IMAGE_FILE, format!("Armature {}", env!("CARGO_PKG_VERSION")))
        }
        Hypervisor::Xen => (xtask::debian::xen().unwrap_or_else(|e| fail(e)).1, "xen", "(XEN) Xen version".into()),
    };
    let d = Dom0::new(hv, &kernel.image, &initrd, CPUS);
    let dir = scratch(test);
    let qemu = Qemu::aarch64().gic(gic).smp(CPUS).memory(MEMORY);
    // Before U-Boot's boot disk: QEMU gives the first virtio-mmio device the
    // highest transport and U-Boot numbers disks from the lowest, so the
    // boot disk stays U-Boot's `virtio 0`.
    let qemu = dom0::with_devices(qemu, &dir).unwrap_or_else(|e| fail(e));
    let (qemu, earlier) = match loader {
        Loader::Uboot => {
            let boot = dom0::uboot(&dir, &image, image_file, &d, Environment::Fast).unwrap_or_else(|e| fail(e));
            (boot.apply(qemu), common::uboot_lines(Arch::Aarch64).to_vec())
        }
        Loader::Direct => (dom0::direct(qemu, &image, &d, &dir).unwrap_or_else(|e| fail(e)), Vec::new()),
    };
    let mut earlier: Vec<&str> = earlier;
    earlier.push(&first);
    let outcome = common::boot(test, &qemu, &dom0::expect_after(&earlier, TIMEOUT));
    check_report(test, &outcome);
    outcome
}

/// Checks dom0's report (every vCPU, interrupts, PSCI/GIC/timer lines) and
/// appends what it found to the test's log.
fn check_report(test: &str, outcome: &Outcome) {
    let report = Report::parse(&outcome.log);
    let mut summary = format!(
        "\n# dom0 report: cpuinfo {:?}, nproc {:?}, online {:?}, virtio {:?}, pci {} device(s)\n",
        report.cpus,
        report.nproc,
        report.online,
        report.virtio,
        report.pci.len()
    );
    for l in report.interrupts.iter().take(3) {
        summary.push_str(&format!("# interrupts: {l}\n"));
    }
    for l in report.virtio.iter().filter(|l| !l.contains("driver -")).chain(&report.pci) {
        summary.push_str(&format!("# device: {l}\n"));
    }
    for l in report.disk_reads.iter().chain(&report.hwrng) {
        summary.push_str(&format!("# used: {l}\n"));
    }
    for (when, lines) in [("before", &report.device_irqs_before), ("after", &report.device_irqs_after)] {
        for l in lines {
            summary.push_str(&format!("# irqs {when}: {l}\n"));
        }
    }
    for l in &report.dmesg {
        summary.push_str(&format!("# dmesg: {l}\n"));
    }
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(paths::log_path(test)) {
        let _ = f.write_all(summary.as_bytes());
    }
    eprint!("{test}:{summary}");
    let mut problems = report.problems(CPUS);
    problems.extend(report.device_problems(dom0::DATA_DISK_MD5));
    assert!(
        problems.is_empty(),
        "{test}: dom0's report is wrong:\n  - {}\n----- console log -----\n{}",
        problems.join("\n  - "),
        outcome.log
    );
}

#[test]
fn armature_uboot_gicv3_smp4() {
    dom0_linux("dom0-linux-armature-uboot-gicv3", Hypervisor::Armature, Loader::Uboot, 3);
}

#[test]
fn armature_uboot_gicv2_smp4() {
    dom0_linux("dom0-linux-armature-uboot-gicv2", Hypervisor::Armature, Loader::Uboot, 2);
}

#[test]
fn armature_direct_gicv3_smp4() {
    dom0_linux("dom0-linux-armature-direct-gicv3", Hypervisor::Armature, Loader::Direct, 3);
}

#[test]
fn armature_direct_gicv2_smp4() {
    dom0_linux("dom0-linux-armature-direct-gicv2", Hypervisor::Armature, Loader::Direct, 2);
}

/// The same recipes and checks with Xen 4.17: proves the harness, not Armature.
#[test]
#[ignore = "Xen, not Armature: checks the harness; cargo test --test dom0_linux -- --ignored"]
fn xen_uboot_gicv3_smp4() {
    dom0_linux("dom0-linux-xen-uboot-gicv3", Hypervisor::Xen, Loader::Uboot, 3);
}

#[test]
#[ignore = "Xen, not Armature: checks the harness; cargo test --test dom0_linux -- --ignored"]
fn xen_uboot_gicv2_smp4() {
    dom0_linux("dom0-linux-xen-uboot-gicv2", Hypervisor::Xen, Loader::Uboot, 2);
}

#[test]
#[ignore = "Xen, not Armature: checks the harness; cargo test --test dom0_linux -- --ignored"]
fn xen_direct_gicv3_smp4() {
    dom0_linux("dom0-linux-xen-direct-gicv3", Hypervisor::Xen, Loader::Direct, 3);
}

#[test]
#[ignore = "Xen, not Armature: checks the harness; cargo test --test dom0_linux -- --ignored"]
fn xen_direct_gicv2_smp4() {
    dom0_linux("dom0-linux-xen-direct-gicv2", Hypervisor::Xen, Loader::Direct, 2);
}
