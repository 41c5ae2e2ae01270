//! Secondary CPUs started by PSCI CPU_ON through QEMU's firmware, straight
//! into the relocated image: every CPU of `-smp` must check in, on GICv2 and
//! GICv3, loaded by QEMU and by U-Boot; and a CPU that cannot start is named
//! while boot goes on with the others. (Spin-table: tests/spin_table.rs.)

mod common;

use common::{BOOT_TIMEOUT, DtbAt, assert_lines_in_order, direct_boot, image, scratch, uboot_boot_image};
use std::path::PathBuf;
use xtask::runner::Outcome;
use xtask::uboot::{Environment, FDT_ADDR};
use xtask::{Arch, Expect, Qemu};

/// Every secondary of an `smp`-CPU machine came online via PSCI, in order.
fn all_online(outcome: &Outcome, smp: usize) {
    let lines: Vec<String> = (1..smp)
        .map(|i| format!("CPU {i} (MPIDR {i:#x}) online via psci"))
        .chain([format!("CPUs online: {smp} of {smp}")])
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_lines_in_order(outcome, &refs);
    assert!(!outcome.log.contains("did not come online"), "{}", outcome.log);
}

/// QEMU's DTB for `qemu`, dumped into the test's scratch directory, with a
/// CPU node `/cpus/<node>` added: a Cortex-A57 with `reg` = `mpidr`,
/// `enable-method` = `method`, and the cell properties `extra_props`
/// (name, hex cells).
fn dtb_with_cpu(
    test: &str,
    qemu: &Qemu,
    node: &str,
    mpidr: u64,
    method: &str,
    extra_props: &[(&str, &[&str])],
) -> PathBuf {
    let dtb = scratch(test).join(format!("with-{node}.dtb"));
    qemu.dump_dtb(&dtb).unwrap_or_else(|e| panic!("{e}"));
    let path = format!("/cpus/{node}");
    let reg = format!("{mpidr:x}");
    common::fdtput(&dtb, &["-c", &path]);
    common::fdtput(&dtb, &["-t", "s", &path, "device_type", "cpu"]);
    common::fdtput(&dtb, &["-t", "s", &path, "compatible", "arm,cortex-a57"]);
    common::fdtput(&dtb, &["-t", "x", &path, "reg", &reg]);
    common::fdtput(&dtb, &["-t", "s", &path, "enable-method", method]);
    for (name, cells) in extra_props {
        let mut args = vec!["-t", "x", path.as_str(), name];
        args.extend_from_slice(cells);
        common::fdtput(&dtb, &args);
    }
    dtb
}

#[test]
fn psci_direct_matrix() {
    for (gic, smp) in [(2, 1), (2, 2), (2, 4), (3, 1), (3, 2), (3, 4), (3, 8)] {
        let test = format!("aarch64-smp-psci-gicv{gic}-smp{smp}");
        let memory = if smp == 8 { "2G" } else { "1G" };
        let outcome = direct_boot(&test, Qemu::aarch64().gic(gic).smp(smp).memory(memory));
        all_online(&outcome, smp as usize);
    }
}

#[test]
fn psci_through_uboot() {
    for gic in [2, 3] {
        let outcome = uboot_boot_image(
            &format!("aarch64-smp-uboot-gicv{gic}-smp4"),
            Qemu::aarch64().gic(gic).smp(4).memory("1G"),
            Environment::Fast,
            "loglvl=info",
            DtbAt::MovedFrom(FDT_ADDR),
            &[],
        );
        all_online(&outcome, 4);
    }
}

/// The device tree lists a CPU that does not exist (MPIDR 7 on a 2-CPU
/// machine): PSCI refuses it, the log names it, and the real CPUs come up.
#[test]
fn a_cpu_that_does_not_exist_is_named_and_skipped() {
    let test = "aarch64-smp-missing-cpu";
    let img = image(Arch::Aarch64, &[]);
    let qemu = Qemu::aarch64().gic(3).smp(2).memory("1G");
    let dtb = dtb_with_cpu(test, &qemu, "cpu@7", 7, "psci", &[]);
    let expect = Expect::new()
        .markers([
            "cpu@7, MPIDR 0x7): PSCI CPU_ON via SMC failed: INVALID_PARAMETERS",
            "(MPIDR 0x1) online via psci",
            "CPUs online: 2 of 3",
            "Powering off via PSCI SYSTEM_OFF",
        ])
        .failure_markers(["PANIC", "----[ Armature", "FATAL"])
        .timeout(BOOT_TIMEOUT);
    common::boot(test, &qemu.kernel(&img.bin).dtb(&dtb), &expect);
}

/// A spin-table CPU that never comes: the device tree lists a third CPU
/// (MPIDR 5, absent) with a release address nobody polls. Armature writes
/// the entry there, waits its 1 s, names the CPU and boots on.
#[test]
fn a_cpu_that_never_checks_in_times_out() {
    let test = "aarch64-smp-no-check-in";
    let img = image(Arch::Aarch64, &[]);
    let qemu = Qemu::aarch64().gic(3).smp(2).memory("1G");
    let dtb = dtb_with_cpu(test, &qemu, "cpu@5", 5, "spin-table", &[("cpu-release-addr", &["0", "4fff0000"])]);
    let expect = Expect::new()
        .markers([
            "PSCI: CPU_ON (0xc4000003) supported (PSCI_FEATURES)",
            // `fdtput -c` put cpu@5 first in /cpus, so it is tried first.
            "(cpu@5, MPIDR 0x5) did not come online within 1000 ms (via spin-table)",
            "(MPIDR 0x1) online via psci",
            "CPUs online: 2 of 3",
            "Powering off via PSCI SYSTEM_OFF",
        ])
        .failure_markers(["PANIC", "----[ Armature", "FATAL"])
        .timeout(BOOT_TIMEOUT);
    common::boot(test, &qemu.kernel(&img.bin).dtb(&dtb), &expect);
}
