//! Domains: Armature boots a test guest (tests/guests/) as dom0 from a
//! `/chosen` kernel module, runs it at EL1 under stage 2 and handles its
//! traps. The guest checks behaviours itself and prints PASS/FAIL lines
//! through the console hypercall; the hypervisor logs what it did. Memory
//! layout on 1 GiB (the page allocator hands out from the top): Armature at
//! 0x7fe00000, its 2 MiB heap at 0x7fc00000, dom0's 512 MiB right below.

mod common;

use common::{BOOT_TIMEOUT, image, scratch};
use std::path::Path;
use xtask::{Arch, Expect, Qemu};

/// Armature on a 1 GiB AArch64 machine with `gic` and `smp` CPUs, with the
/// test guest `guest` as dom0's kernel module.
fn dom0(test: &str, guest: &str, gic: u8, smp: u32) -> Qemu {
    let guest = xtask::guest::build(guest).unwrap_or_else(|e| panic!("{e}"));
    with_dom0_module(&guest, &scratch(test), gic, smp)
}

/// Armature on a 1 GiB AArch64 machine with `gic` and `smp` CPUs, with
/// `module` as dom0's kernel module (DTB in `dir`).
fn with_dom0_module(module: &Path, dir: &Path, gic: u8, smp: u32) -> Qemu {
    let img = image(Arch::Aarch64, &[]);
    let qemu = Qemu::aarch64().gic(gic).smp(smp).memory("1G");
    xtask::guest::as_dom0(qemu, module, dir).unwrap_or_else(|e| panic!("{e}")).kernel(&img.bin)
}

/// The basic guest: PSCI_VERSION, an abort injected for an access to
/// nothing, stage-2 isolation, then SYSTEM_OFF ends QEMU with status 0.
fn basic(test: &str, gic: u8, smp: u32) {
    let qemu = dom0(test, "basic", gic, smp);
    let expect = Expect::new()
        .markers([
            "d0: 512 MiB RAM at 0x00005fc00000-0x00007fbfffff (1:1)",
            "kernel module 0x00004a000000-",
            "d0v0: entering at 0x",
            "d0v0: basic guest: hello from EL1",
            "d0v0: PASS psci-version: 1.1",
            "d0v0: read of IPA 0xb000000 (VA 0xb000000) at PC 0x",
            "abort injected",
            "d0v0: PASS abort: the read of IPA 0xb000000 came back as a data abort",
            // Right above the domain's RAM (0x5fc00000 + 512 MiB on 1 GiB):
            // the hypervisor's heap, which the page allocator put there.
            "d0v0: read of IPA 0x7fc00000",
            "d0v0: PASS isolation: the hypervisor's memory above the domain is not mapped",
            "d0v0: basic guest: done, powering off",
            "d0: PSCI SYSTEM_OFF from the hardware domain: powering off",
        ])
        .failure_markers(["FAIL", "PANIC", "----[ Armature", "FATAL"])
        .timeout(BOOT_TIMEOUT);
    common::boot(test, &qemu, &expect);
}

/// Every combination the acceptance asks for: GICv2 and GICv3, 1, 2 and 4 CPUs.
const MATRIX: [(u8, u32); 6] = [(2, 1), (2, 2), (2, 4), (3, 1), (3, 2), (3, 4)];

#[test]
fn basic_guest_matrix() {
    for (gic, smp) in MATRIX {
        basic(&format!("aarch64-dom0-basic-gicv{gic}-smp{smp}"), gic, smp);
    }
}

/// The PSCI guest on `smp` physical CPUs (so `smp` vCPUs): CPU_ON of every
/// secondary vCPU, each on its own physical CPU, a refused second CPU_ON,
/// CPU_OFF and AFFINITY_INFO, an unknown call.
fn psci(test: &str, gic: u8, smp: u32) {
    let qemu = dom0(test, "psci", gic, smp);
    let mut markers = vec![
        format!("d0: {smp} vCPU(s), pinned one per physical CPU"),
        "d0v0: psci guest: vCPU 0 up".to_string(),
        "d0v0: PASS psci-features: CPU_ON supported".to_string(),
    ];
    markers.push(format!("d0v0: PASS cpu-on: {} vCPU(s) started, a second CPU_ON refused, all OFF again", smp - 1));
    markers.extend(["d0v0: PASS unknown-call: NOT_SUPPORTED".to_string(), "d0: PSCI SYSTEM_OFF".to_string()]);
    let expect = Expect::new()
        .markers(markers)
        .failure_markers(["FAIL", "PANIC", "----[ Armature", "FATAL", "crashed"])
        .timeout(BOOT_TIMEOUT);
    let outcome = common::boot(test, &qemu, &expect);
    for v in 1..smp {
        for line in [format!("d0v{v}: vCPU {v} online, MPIDR as targeted"), format!("d0v{v}: PSCI CPU_OFF")] {
            assert!(outcome.log.contains(&line), "missing {line:?}\n{}", outcome.log);
        }
    }
}

#[test]
fn psci_guest_matrix() {
    for (gic, smp) in MATRIX {
        psci(&format!("aarch64-dom0-psci-gicv{gic}-smp{smp}"), gic, smp);
    }
}

/// A kernel module with a valid arm64 Image header but no code after it
/// (zeros: a module of zeros alone is refused by name before entry): the
/// guest's exceptions fault again and again; the hypervisor says so and
/// resets the machine instead of looping forever.
#[test]
fn a_guest_that_cannot_run_crashes_loudly() {
    let test = "aarch64-dom0-garbage";
    let dir = scratch(test);
    let garbage = dir.join("zeros.bin");
    let mut bytes = vec![0u8; 4096];
    bytes[0..4].copy_from_slice(&xtask::shim::b(0x40).to_le_bytes());
    bytes[0x10..0x18].copy_from_slice(&4096u64.to_le_bytes());
    bytes[0x18..0x20].copy_from_slice(&0xau64.to_le_bytes());
    bytes[0x38..0x3c].copy_from_slice(b"ARM\x64");
    std::fs::write(&garbage, bytes).unwrap();
    let qemu = with_dom0_module(&garbage, &dir, 3, 1);
    let expect = Expect::new()
        .markers([
            "injected",
            "32 exceptions injected in a row without progress",
            "d0: hardware domain crashed: resetting the machine",
        ])
        .failure_markers(["PANIC", "----[ Armature"])
        .timeout(BOOT_TIMEOUT);
    common::boot(test, &qemu, &expect);
}

/// The vGIC guest: its distributor (and GICv3 redistributors) accesses trap
/// to Armature, are decoded from the syndrome and served by the vGIC model.
fn vgic(test: &str, gic: u8, smp: u32, lines: &[String]) {
    let qemu = dom0(test, "vgic", gic, smp);
    let mut markers =
        vec![format!("d0: vGICv{gic} with 288 lines: GICD 0x000008000000-"), "d0v0: vgic guest: up".to_string()];
    // `lines`: the version and TYPER lines, then the version's last check.
    markers.extend(lines[..2].iter().cloned());
    markers.extend(
        ["PASS enable: SPI 33 enabled", "PASS disable: SPI 33 disabled", "PASS priority: byte access"]
            .map(|l| format!("d0v0: {l}")),
    );
    markers.extend(lines[2..].iter().cloned());
    markers.push("d0: PSCI SYSTEM_OFF".to_string());
    let expect = Expect::new()
        .markers(markers)
        .failure_markers(["FAIL", "PANIC", "----[ Armature", "FATAL", "crashed", "abort injected"])
        .timeout(BOOT_TIMEOUT);
    common::boot(test, &qemu, &expect);
}

#[test]
fn vgic_guest_matrix() {
    // 288 lines: ITLinesNumber 8. GICv2: CPUNumber = vCPUs, ITARGETSR
    // masked to the existing vCPUs. GICv3: the first redistributor is vCPU
    // 0's, and the last one only with a single vCPU.
    for (gic, smp) in MATRIX {
        let test = format!("aarch64-dom0-vgic-gicv{gic}-smp{smp}");
        let lines: [String; 3] = if gic == 2 {
            [
                "d0v0: GICv2 distributor".into(),
                format!("d0v0: TYPER ITLinesNumber 0x8, CPUs {smp}"),
                format!("d0v0: ITARGETSR SPI 33 after writing 0xff: 0x{:x}", (1u32 << smp) - 1),
            ]
        } else {
            [
                "d0v0: GICv3 distributor".into(),
                "d0v0: TYPER ITLinesNumber 0x8".into(),
                format!("d0v0: GICR_TYPER affinity 0x0, Last {}", u32::from(smp == 1)),
            ]
        };
        vgic(&test, gic, smp, &lines);
    }
}

/// The irq guest: each vCPU takes its own virtual timer interrupt (the
/// physical PPI 27 linked to the vCPU's virtual one through a list
/// register), then vCPU 0's SGI (GICv3: a trapped `ICC_SGI1R_EL1` write;
/// GICv2: an emulated `GICD_SGIR` write; then the vGIC and a physical kick
/// to the other CPUs) reaches every other vCPU; and the PL031 RTC's alarm,
/// a real device passed through, reaches vCPU 0 as SPI 34.
fn irq(test: &str, gic: u8, smp: u32) {
    let qemu = dom0(test, "irq", gic, smp);
    let gic_line = format!("GIC: V{gic}, distributor 0x000008000000-0x00000800ffff");
    let expect = Expect::new()
        .markers([
            gic_line.as_str(),
            "SPI(s) passed through, each linked to the same physical SPI (routed to CPU 0): [34,",
            "d0v0: irq guest: vCPU 0 up",
            "d0v0: PASS timer: vCPU 0",
            "d0v0: PASS spi: the PL031 RTC alarm (SPI 34) reached vCPU 0",
            "d0v0: PASS spi: after a deactivation by hand (GICD_ICACTIVER1) the alarm came again",
            "d0v0: PASS irq: all vCPUs took their timer interrupt and the SGI",
            "d0: PSCI SYSTEM_OFF",
        ])
        .failure_markers(["FAIL", "PANIC", "----[ Armature", "FATAL", "crashed"])
        .timeout(BOOT_TIMEOUT);
    let outcome = common::boot(test, &qemu, &expect);
    for v in 1..smp {
        for line in [format!("d0v{v}: PASS timer: vCPU {v}"), format!("d0v{v}: PASS sgi: vCPU {v}")] {
            assert!(outcome.log.contains(&line), "missing {line:?}\n{}", outcome.log);
        }
    }
}

#[test]
fn irq_guest_matrix() {
    for (gic, smp) in MATRIX {
        irq(&format!("aarch64-dom0-irq-gicv{gic}-smp{smp}"), gic, smp);
    }
}

/// The smp guest, checks across every vCPU: concurrent CPU_ON of one
/// vCPU from all the others (exactly one SUCCESS per round, every other
/// call ALREADY_ON as under KVM, never ON_PENDING; only with 3
/// vCPUs or more, a SKIP line otherwise), each vCPU's virtual timer waking
/// it from WFI within 250 ms of its deadline, more SGIs pending at once than
/// there are list registers (the maintenance interrupt refills them), SGIs
/// from every vCPU to every other (target list, and all-but-self), and one
/// virtual counter offset for the domain (CNTVOFF_EL2), set when it was
/// built: between the "CPUs online" and "dom0 built" boot timings.
fn smp_guest(test: &str, gic: u8, smp: u32) {
    let qemu = dom0(test, "smp", gic, smp);
    let race = if smp >= 3 {
        format!(
            "d0v0: PASS cpu-on-race: 250 rounds of {} vCPUs calling CPU_ON on vCPU {} at once: one SUCCESS each round, \
             every other call ALREADY_ON (",
            smp - 1,
            smp - 1
        )
    } else {
        format!("d0v0: SKIP cpu-on-race: {smp} vCPU(s): a race needs two callers and a third vCPU as the target")
    };
    let mut markers = vec![
        "d0v0: smp guest: vCPU 0 up".to_string(),
        format!("d0v0: smp guest: {smp} vCPU(s), each OFF before its CPU_ON (AFFINITY_INFO)"),
        race,
        "d0v0: PASS timer: vCPU 0 woke from WFI by its virtual timer 8 times".to_string(),
        "d0v0: PASS lr-overflow: vCPU 0 took the 8 SGIs it had pending at once".to_string(),
        format!("d0v0: PASS sgi: vCPU 0 took SGIs from each of the other {} vCPU(s)", smp - 1),
        format!("d0v0: PASS sgi-matrix: {smp} x {} SGIs by target list and as many by all-but-self", smp - 1),
    ];
    if gic == 2 {
        markers.push("d0v0: PASS sgi-source: every GICv2 SGI came with its sender's CPU ID".to_string());
    }
    markers.extend([
        format!("d0v0: PASS cntvoff: CNTPCT - CNTVCT is one offset on all {smp} vCPU(s), between "),
        "d0v0: smp guest: done, powering off".to_string(),
        "d0: PSCI SYSTEM_OFF".to_string(),
    ]);
    let mut failures = vec!["FAIL", "PANIC", "----[ Armature", "FATAL", "crashed", "abort injected"];
    if smp >= 3 {
        failures.push("SKIP");
    }
    let expect = Expect::new().markers(markers).failure_markers(failures).timeout(BOOT_TIMEOUT);
    let outcome = common::boot(test, &qemu, &expect);
    for v in 1..smp {
        for line in [
            format!("d0v{v}: PASS timer: vCPU {v} woke from WFI by its virtual timer 8 times"),
            format!("d0v{v}: PASS lr-overflow: vCPU {v} took the 8 SGIs"),
            format!("d0v{v}: PASS sgi: vCPU {v} took SGIs from each of the other {} vCPU(s)", smp - 1),
        ] {
            assert!(outcome.log.contains(&line), "missing {line:?}\n{}", outcome.log);
        }
    }
    // The offset was taken when the domain was built: after the CPUs came
    // online, before the "dom0 built" stamp.
    let number_after = |what: &str| -> u64 {
        let line = outcome.line_with(what).unwrap_or_else(|| panic!("no {what:?} line\n{}", outcome.log));
        let rest = &line[line.find(what).unwrap() + what.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().unwrap_or_else(|_| panic!("no number after {what:?} in {line:?}"))
    };
    let online = number_after("timing: CPUs online at counter ");
    let built = number_after("timing: dom0 built at counter ");
    let low = number_after(" vCPU(s), between ");
    let high = number_after(&format!("between {low} and "));
    assert!(
        online <= high && low <= built,
        "the domain's counter offset [{low}, {high}] is not between the CPUs-online ({online}) and dom0-built \
         ({built}) counter values\n{}",
        outcome.log
    );
}

#[test]
fn smp_guest_matrix() {
    for (gic, smp) in MATRIX {
        smp_guest(&format!("aarch64-dom0-smp-gicv{gic}-smp{smp}"), gic, smp);
    }
}
