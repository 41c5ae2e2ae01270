//! Host tests of the boot plan against real device trees: Debian bookworm's
//! board DTBs (FVP Base RevC, AEMv8 RTSM, Foundation v8, Juno r0, Arndale),
//! QEMU virt dumps, and hand-written trees for the error paths. Expected
//! values come from `dtc -I dtb -O dts` of each fixture (and agree with
//! /work/shared/refstack/README.md §7); every test compares whole structs.
//! tests/fixtures/dtb/README.md says where each fixture comes from.

extern crate std;
use super::*;
use std::string::String;
use std::vec::Vec;

const FVP: &[u8] = include_bytes!("../../tests/fixtures/dtb/fvp-base-revc.dtb");
const AEMV8: &[u8] = include_bytes!("../../tests/fixtures/dtb/rtsm_ve-aemv8a.dtb");
const FOUNDATION: &[u8] = include_bytes!("../../tests/fixtures/dtb/foundation-v8-gicv3-psci.dtb");
const JUNO: &[u8] = include_bytes!("../../tests/fixtures/dtb/juno.dtb");
const ARNDALE: &[u8] = include_bytes!("../../tests/fixtures/dtb/exynos5250-arndale.dtb");
const QEMU_V3_4: &[u8] = include_bytes!("../../tests/fixtures/dtb/qemu-virt-gicv3-smp4.dtb");
const QEMU_V3_8: &[u8] = include_bytes!("../../tests/fixtures/dtb/qemu-virt-gicv3-smp8.dtb");
const QEMU_V2_4: &[u8] = include_bytes!("../../tests/fixtures/dtb/qemu-virt-gicv2-smp4.dtb");
const QEMU_V2_1: &[u8] = include_bytes!("../../tests/fixtures/dtb/qemu-virt-gicv2-smp1.dtb");
const QEMU_V2_NOVIRT: &[u8] = include_bytes!("../../tests/fixtures/dtb/qemu-virt-gicv2-novirt-smp2.dtb");
const QEMU_ARM32: &[u8] = include_bytes!("../../tests/fixtures/dtb/qemu-virt-arm32-smp2.dtb");
const NESTED: &[u8] = include_bytes!("../../tests/fixtures/dtb/nested-ranges.dtb");
const PLAN_CPUS: &[u8] = include_bytes!("../../tests/fixtures/dtb/plan-cpus.dtb");
const PLAN_MALFORMED: &[u8] = include_bytes!("../../tests/fixtures/dtb/plan-malformed.dtb");
const PLAN_GICV3: &[u8] = include_bytes!("../../tests/fixtures/dtb/plan-gicv3.dtb");

/// Every fixture, for the properties that hold on all of them.
const ALL: [(&str, &[u8]); 15] = [
    ("fvp", FVP),
    ("aemv8", AEMV8),
    ("foundation", FOUNDATION),
    ("juno", JUNO),
    ("arndale", ARNDALE),
    ("qemu-v3-4", QEMU_V3_4),
    ("qemu-v3-8", QEMU_V3_8),
    ("qemu-v2-4", QEMU_V2_4),
    ("qemu-v2-1", QEMU_V2_1),
    ("qemu-v2-novirt", QEMU_V2_NOVIRT),
    ("qemu-arm32", QEMU_ARM32),
    ("nested", NESTED),
    ("plan-cpus", PLAN_CPUS),
    ("plan-malformed", PLAN_MALFORMED),
    ("plan-gicv3", PLAN_GICV3),
];

fn dt(blob: &[u8]) -> DeviceTree<'_> {
    DeviceTree::new(blob).unwrap()
}

const fn r(base: u64, size: u64) -> Region {
    Region { base, size }
}

fn regions(rs: &[Region]) -> Regions {
    Regions::from_slice(rs)
}

fn path(s: &str) -> NodePath {
    NodePath::new(s)
}

const fn ppi(number: u32, flags: u32) -> Irq {
    Irq { kind: IrqKind::Ppi, number, flags }
}

fn cpu(name: &'static str, mpidr: u64, boot: CpuBoot<'static>) -> Cpu<'static> {
    Cpu { name, mpidr: Some(mpidr), boot }
}

fn psci_cpus(list: &[(&'static str, u64)]) -> Cpus<'static> {
    let v: Vec<Cpu<'static>> = list.iter().map(|&(n, m)| cpu(n, m, CpuBoot::Psci)).collect();
    Cpus::from_slice(&v)
}

/// The generic timer as nearly every board lists it: PPIs 13, 14, 11, 10.
fn timer(node: &str, kind: TimerKind, flags: u32, clock_frequency: Option<u32>, always_on: bool) -> Timer {
    Timer {
        node: path(node),
        kind,
        secure_phys: ppi(13, flags),
        nonsecure_phys: ppi(14, flags),
        virt: ppi(11, flags),
        hyp_phys: ppi(10, flags),
        hyp_virt: None,
        clock_frequency,
        always_on,
    }
}

/// Compares part by part (for a readable failure), then the whole plan.
fn check(name: &str, got: &BootPlan<'_>, want: &BootPlan<'_>) {
    assert_eq!(got.memory, want.memory, "{name}: memory");
    assert_eq!(got.reserved, want.reserved, "{name}: reserved");
    assert_eq!(got.console, want.console, "{name}: console");
    assert_eq!(got.cpus, want.cpus, "{name}: cpus");
    assert_eq!(got.psci, want.psci, "{name}: psci");
    assert_eq!(got.gic, want.gic, "{name}: gic");
    assert_eq!(got.timer, want.timer, "{name}: timer");
    assert_eq!(got, want, "{name}: whole plan");
}

/// The Versatile Express memory map shared by FVP, AEMv8 and Foundation:
/// 2 GiB at 2 GiB and 2 GiB at 34 GiB; /memreserve/ of the first 64 KiB
/// (the boot-wrapper's spin table and mailbox).
const VEXPRESS_BANKS: [Region; 2] = [r(0x8000_0000, 0x8000_0000), r(0x8_8000_0000, 0x8000_0000)];
const VEXPRESS_MEMRESERVE: [Region; 1] = [r(0x8000_0000, 0x1_0000)];
const VRAM: ReservedRegion<'static> =
    ReservedRegion { name: "vram@18000000", region: r(0x1800_0000, 0x80_0000), no_map: true };

/// FVP/Foundation GICv3: GICD, one GICR region of 2 MiB (8 CPUs x 256 KiB),
/// the legacy GICC/GICH/GICV frames, one ITS, maintenance PPI 9.
fn fvp_gicv3(node: &str) -> Gic {
    Gic {
        node: path(node),
        compatible: "arm,gic-v3",
        version: GicVersion::V3,
        interrupt_cells: 3,
        dist: r(0x2f00_0000, 0x1_0000),
        redist: regions(&[r(0x2f10_0000, 0x20_0000)]),
        redist_stride: None,
        cpu_if: Some(r(0x2c00_0000, 0x2000)),
        hyp_if: Some(r(0x2c01_0000, 0x2000)),
        vcpu_if: Some(r(0x2c02_f000, 0x2000)),
        maintenance: Some(ppi(9, 4)),
        msi: regions(&[r(0x2f02_0000, 0x2_0000)]),
    }
}

/// A GIC-400 in the common 4 KiB-spaced layout (RTSM/AEMv8, Exynos5250):
/// GICD at `base`, GICC +0x1000, GICH +0x3000, GICV +0x5000, all 8 CPUs'
/// maintenance PPI 9.
fn gic400(node: &str, base: u64) -> Gic {
    Gic {
        node: path(node),
        compatible: "arm,gic-400",
        version: GicVersion::V2,
        interrupt_cells: 3,
        dist: r(base, 0x1000),
        redist: Regions::default(),
        redist_stride: None,
        cpu_if: Some(r(base + 0x1000, 0x2000)),
        hyp_if: Some(r(base + 0x3000, 0x2000)),
        vcpu_if: Some(r(base + 0x5000, 0x2000)),
        maintenance: Some(ppi(9, 0xf04)),
        msi: Regions::default(),
    }
}

#[test]
fn fvp_base_revc() {
    let want = BootPlan {
        memory: Ok(regions(&VEXPRESS_BANKS)),
        reserved: Ok(Reserved::new(regions(&VEXPRESS_MEMRESERVE), &[VRAM])),
        // No stdout-path (its /chosen is empty): the serial0 alias, behind
        // three buses: 0x90000 -> 0x3_0009_0000 -> 0x1c09_0000.
        console: Ok(Console {
            source: ConsoleSource::Serial0Alias,
            node: path("/bus@8000000/motherboard-bus@8000000/iofpga-bus@300000000/serial@90000"),
            compatible: "arm,pl011",
            region: r(0x1c09_0000, 0x1000),
            options: None,
        }),
        cpus: Ok(psci_cpus(&[
            ("cpu@0", 0x0),
            ("cpu@100", 0x100),
            ("cpu@200", 0x200),
            ("cpu@300", 0x300),
            ("cpu@10000", 0x1_0000),
            ("cpu@10100", 0x1_0100),
            ("cpu@10200", 0x1_0200),
            ("cpu@10300", 0x1_0300),
        ])),
        psci: Ok(Some(Psci {
            node: path("/psci"),
            version: PsciVersion::V0_2,
            conduit: Conduit::Smc,
            dt_ids: PsciIds::default(),
        })),
        gic: Ok(fvp_gicv3("/interrupt-controller@2f000000")),
        // Level-low (8), no CPU mask (GICv3).
        timer: Ok(timer("/timer", TimerKind::Armv8, 0x8, None, false)),
    };
    check("fvp", &dt(FVP).boot_plan(), &want);
}

#[test]
fn aemv8_rtsm_spin_table() {
    let release = CpuBoot::SpinTable { release_addr: 0x8000_fff8 };
    let want = BootPlan {
        memory: Ok(regions(&VEXPRESS_BANKS)),
        reserved: Ok(Reserved::new(regions(&VEXPRESS_MEMRESERVE), &[VRAM])),
        console: Ok(Console {
            source: ConsoleSource::Serial0Alias,
            node: path("/bus@8000000/motherboard-bus@8000000/iofpga-bus@300000000/serial@90000"),
            compatible: "arm,pl011",
            region: r(0x1c09_0000, 0x1000),
            options: None,
        }),
        // All four CPUs share one release address, inside the /memreserve/.
        cpus: Ok(Cpus::from_slice(&[
            cpu("cpu@0", 0, release),
            cpu("cpu@1", 1, release),
            cpu("cpu@2", 2, release),
            cpu("cpu@3", 3, release),
        ])),
        psci: Ok(None),
        gic: Ok(gic400("/interrupt-controller@2c001000", 0x2c00_1000)),
        timer: Ok(timer("/timer", TimerKind::Armv8, 0xf08, Some(100_000_000), false)),
    };
    check("aemv8", &dt(AEMV8).boot_plan(), &want);
}

#[test]
fn foundation_v8_gicv3_psci() {
    let want = BootPlan {
        memory: Ok(regions(&VEXPRESS_BANKS)),
        reserved: Ok(Reserved::new(regions(&VEXPRESS_MEMRESERVE), &[])),
        // Two buses here (no motherboard-bus): 0x90000 -> 0x3_0009_0000 -> 0x1c09_0000.
        console: Ok(Console {
            source: ConsoleSource::Serial0Alias,
            node: path("/bus@8000000/iofpga-bus@300000000/serial@90000"),
            compatible: "arm,pl011",
            region: r(0x1c09_0000, 0x1000),
            options: None,
        }),
        cpus: Ok(psci_cpus(&[("cpu@0", 0), ("cpu@1", 1), ("cpu@2", 2), ("cpu@3", 3)])),
        psci: Ok(Some(Psci {
            node: path("/psci"),
            version: PsciVersion::V1_0,
            conduit: Conduit::Smc,
            dt_ids: PsciIds::default(),
        })),
        // Same frames as FVP, but the ITS child sits at 0x20000 in the GIC's
        // own address space and is translated through the GIC's ranges.
        gic: Ok(fvp_gicv3("/interrupt-controller@2f000000")),
        timer: Ok(timer("/timer", TimerKind::Armv8, 0xf08, Some(100_000_000), false)),
    };
    check("foundation", &dt(FOUNDATION).boot_plan(), &want);
}

#[test]
fn juno_r0() {
    let want = BootPlan {
        // The firmware keeps the last 16 MiB below 4 GiB: the first bank
        // simply stops there (no /memreserve/, no /reserved-memory).
        memory: Ok(regions(&[r(0x8000_0000, 0x7f00_0000), r(0x8_8000_0000, 0x1_8000_0000)])),
        reserved: Ok(Reserved::new(Regions::default(), &[])),
        console: Ok(Console {
            source: ConsoleSource::StdoutPath,
            node: path("/serial@7ff80000"),
            compatible: "arm,pl011",
            region: r(0x7ff8_0000, 0x1000),
            options: Some("115200n8"),
        }),
        // Big.LITTLE: two Cortex-A57 in cluster 0, four Cortex-A53 in cluster 1.
        cpus: Ok(psci_cpus(&[
            ("cpu@0", 0x0),
            ("cpu@1", 0x1),
            ("cpu@100", 0x100),
            ("cpu@101", 0x101),
            ("cpu@102", 0x102),
            ("cpu@103", 0x103),
        ])),
        psci: Ok(Some(Psci {
            node: path("/psci"),
            version: PsciVersion::V0_2,
            conduit: Conduit::Smc,
            dt_ids: PsciIds::default(),
        })),
        // GIC-400 with the four GICv2m frames as children, translated through
        // the GIC's ranges (0 -> 0x2c1c0000).
        gic: Ok(Gic {
            node: path("/interrupt-controller@2c010000"),
            compatible: "arm,gic-400",
            version: GicVersion::V2,
            interrupt_cells: 3,
            dist: r(0x2c01_0000, 0x1000),
            redist: Regions::default(),
            redist_stride: None,
            cpu_if: Some(r(0x2c02_f000, 0x2000)),
            hyp_if: Some(r(0x2c04_f000, 0x2000)),
            vcpu_if: Some(r(0x2c06_f000, 0x2000)),
            maintenance: Some(ppi(9, 0x3f04)),
            msi: regions(&[
                r(0x2c1c_0000, 0x1_0000),
                r(0x2c1d_0000, 0x1_0000),
                r(0x2c1e_0000, 0x1_0000),
                r(0x2c1f_0000, 0x1_0000),
            ]),
        }),
        timer: Ok(timer("/timer", TimerKind::Armv8, 0x3f08, None, false)),
    };
    check("juno", &dt(JUNO).boot_plan(), &want);
}

#[test]
fn arndale_exynos5250() {
    let want = BootPlan {
        memory: Ok(regions(&[r(0x4000_0000, 0x8000_0000)])),
        reserved: Ok(Reserved::new(Regions::default(), &[])),
        // stdout-path = "serial2:115200n8": a Samsung UART, not a PL011.
        console: Ok(Console {
            source: ConsoleSource::StdoutPath,
            node: path("/soc/serial@12c20000"),
            compatible: "samsung,exynos4210-uart",
            region: r(0x12c2_0000, 0x100),
            options: Some("115200n8"),
        }),
        // One-cell reg, no enable-method: the SYSRAM mailbox is platform code.
        cpus: Ok(Cpus::from_slice(&[cpu("cpu@0", 0, CpuBoot::NoMethod), cpu("cpu@1", 1, CpuBoot::NoMethod)])),
        psci: Ok(None),
        gic: Ok(gic400("/soc/interrupt-controller@10481000", 0x1048_1000)),
        // 24 MHz in the DT: the firmware does not program CNTFRQ.
        timer: Ok(timer("/timer", TimerKind::Armv7, 0xf08, Some(24_000_000), false)),
    };
    check("arndale", &dt(ARNDALE).boot_plan(), &want);
}

/// QEMU 7.2 virt: RAM at 1 GiB, the PL011 at 0x9000000 named by a full
/// stdout-path, PSCI 1.0 listing the 0.1 IDs for old kernels.
fn qemu(cpus: Cpus<'static>, conduit: Conduit, ids: PsciIds, gic: Gic, timer: Timer) -> BootPlan<'static> {
    BootPlan {
        memory: Ok(regions(&[r(0x4000_0000, 0x4000_0000)])),
        reserved: Ok(Reserved::new(Regions::default(), &[])),
        console: Ok(Console {
            source: ConsoleSource::StdoutPath,
            node: path("/pl011@9000000"),
            compatible: "arm,pl011",
            region: r(0x0900_0000, 0x1000),
            options: None,
        }),
        cpus: Ok(cpus),
        psci: Ok(Some(Psci { node: path("/psci"), version: PsciVersion::V1_0, conduit, dt_ids: ids })),
        gic: Ok(gic),
        timer: Ok(timer),
    }
}

const QEMU_IDS_64: PsciIds = PsciIds {
    cpu_suspend: Some(0xc400_0001),
    cpu_off: Some(0x8400_0002),
    cpu_on: Some(0xc400_0003),
    migrate: Some(0xc400_0005),
};
const QEMU_IDS_32: PsciIds = PsciIds {
    cpu_suspend: Some(0x8400_0001),
    cpu_off: Some(0x8400_0002),
    cpu_on: Some(0x8400_0003),
    migrate: Some(0x8400_0005),
};

fn qemu_gicv3() -> Gic {
    Gic {
        node: path("/intc@8000000"),
        compatible: "arm,gic-v3",
        version: GicVersion::V3,
        interrupt_cells: 3,
        dist: r(0x0800_0000, 0x1_0000),
        redist: regions(&[r(0x080a_0000, 0xf6_0000)]),
        redist_stride: None,
        cpu_if: None,
        hyp_if: None,
        vcpu_if: None,
        maintenance: Some(ppi(9, 4)),
        msi: regions(&[r(0x0808_0000, 0x2_0000)]),
    }
}

/// GICv2 with the virtualization frames (QEMU adds them with virtualization=on).
fn qemu_gicv2() -> Gic {
    Gic {
        node: path("/intc@8000000"),
        compatible: "arm,cortex-a15-gic",
        version: GicVersion::V2,
        interrupt_cells: 3,
        dist: r(0x0800_0000, 0x1_0000),
        redist: Regions::default(),
        redist_stride: None,
        cpu_if: Some(r(0x0801_0000, 0x1_0000)),
        hyp_if: Some(r(0x0803_0000, 0x1_0000)),
        vcpu_if: Some(r(0x0804_0000, 0x1_0000)),
        maintenance: Some(ppi(9, 4)),
        msi: regions(&[r(0x0802_0000, 0x1000)]),
    }
}

#[test]
fn qemu_virt_gicv3_smp4_and_smp8() {
    let want = qemu(
        psci_cpus(&[("cpu@0", 0), ("cpu@1", 1), ("cpu@2", 2), ("cpu@3", 3)]),
        Conduit::Smc,
        QEMU_IDS_64,
        qemu_gicv3(),
        timer("/timer", TimerKind::Armv8, 0x4, None, true),
    );
    check("qemu-v3-4", &dt(QEMU_V3_4).boot_plan(), &want);
    let want = qemu(
        psci_cpus(&[
            ("cpu@0", 0),
            ("cpu@1", 1),
            ("cpu@2", 2),
            ("cpu@3", 3),
            ("cpu@4", 4),
            ("cpu@5", 5),
            ("cpu@6", 6),
            ("cpu@7", 7),
        ]),
        Conduit::Smc,
        QEMU_IDS_64,
        qemu_gicv3(),
        timer("/timer", TimerKind::Armv8, 0x4, None, true),
    );
    check("qemu-v3-8", &dt(QEMU_V3_8).boot_plan(), &want);
}

#[test]
fn qemu_virt_gicv2_smp4_smp1_and_arm32() {
    // GICv2 timer flags carry the PPI CPU mask: 0xf for 4 CPUs, 0x3 for 2, 0x1 for 1.
    let want = qemu(
        psci_cpus(&[("cpu@0", 0), ("cpu@1", 1), ("cpu@2", 2), ("cpu@3", 3)]),
        Conduit::Smc,
        QEMU_IDS_64,
        qemu_gicv2(),
        timer("/timer", TimerKind::Armv8, 0xf04, None, true),
    );
    check("qemu-v2-4", &dt(QEMU_V2_4).boot_plan(), &want);
    // With -smp 1 QEMU gives the CPU no enable-method at all.
    let want = qemu(
        Cpus::from_slice(&[cpu("cpu@0", 0, CpuBoot::NoMethod)]),
        Conduit::Smc,
        QEMU_IDS_64,
        qemu_gicv2(),
        timer("/timer", TimerKind::Armv8, 0x104, None, true),
    );
    check("qemu-v2-1", &dt(QEMU_V2_1).boot_plan(), &want);
    // qemu-system-arm: SMC32 IDs, armv7-timer.
    let want = qemu(
        psci_cpus(&[("cpu@0", 0), ("cpu@1", 1)]),
        Conduit::Smc,
        QEMU_IDS_32,
        qemu_gicv2(),
        timer("/timer", TimerKind::Armv7, 0x304, None, true),
    );
    check("qemu-arm32", &dt(QEMU_ARM32).boot_plan(), &want);
}

#[test]
fn qemu_virt_without_virtualization_has_no_vgic_frames() {
    // Without virtualization=on QEMU starts at EL1: PSCI over HVC, and a
    // GICv2 with only GICD and GICC and no maintenance interrupt.
    let gic = Gic { hyp_if: None, vcpu_if: None, maintenance: None, ..qemu_gicv2() };
    let want = qemu(
        psci_cpus(&[("cpu@0", 0), ("cpu@1", 1)]),
        Conduit::Hvc,
        QEMU_IDS_64,
        gic,
        timer("/timer", TimerKind::Armv8, 0x304, None, true),
    );
    let plan = dt(QEMU_V2_NOVIRT).boot_plan();
    check("qemu-v2-novirt", &plan, &want);
    assert!(!plan.gic.unwrap().supports_vgic());
}

#[test]
fn vgic_support_per_fixture() {
    for (name, blob, vgic) in [
        ("fvp", FVP, true),
        ("aemv8", AEMV8, true),
        ("foundation", FOUNDATION, true),
        ("juno", JUNO, true),
        ("arndale", ARNDALE, true),
        ("qemu-v3-4", QEMU_V3_4, true),
        ("qemu-v2-4", QEMU_V2_4, true),
        ("qemu-arm32", QEMU_ARM32, true),
        ("qemu-v2-novirt", QEMU_V2_NOVIRT, false),
        ("plan-cpus", PLAN_CPUS, false),
        ("plan-gicv3", PLAN_GICV3, true),
    ] {
        assert_eq!(dt(blob).gic().unwrap().supports_vgic(), vgic, "{name}");
    }
}

#[test]
fn nested_ranges_tree() {
    let want = BootPlan {
        memory: Ok(regions(&[r(0x8000_0000, 0x8000_0000), r(0x8_8000_0000, 0x8000_0000)])),
        reserved: Ok(Reserved::new(Regions::default(), &[])),
        console: Ok(Console {
            source: ConsoleSource::StdoutPath,
            node: path("/bus@10000000/motherboard-bus@0/iofpga-bus@300000000/serial@90000"),
            compatible: "arm,pl011",
            region: r(0x1c09_0000, 0x1000),
            options: Some("115200n8"),
        }),
        cpus: Ok(Cpus::from_slice(&[
            cpu("cpu@0", 0, CpuBoot::Psci),
            cpu("cpu@1", 1, CpuBoot::Disabled),
            cpu("cpu@100", 0x100, CpuBoot::Psci),
            cpu("cpu@2", 2, CpuBoot::SpinTable { release_addr: 0x8000_fff8 }),
        ])),
        psci: Ok(Some(Psci {
            node: path("/psci"),
            version: PsciVersion::V0_2,
            conduit: Conduit::Hvc,
            dt_ids: PsciIds::default(),
        })),
        gic: Err(DtError::MissingNode("interrupt controller (arm,gic-v3, arm,gic-400, arm,cortex-a15-gic, ...)")),
        timer: Err(DtError::MissingNode("timer (arm,armv8-timer or arm,armv7-timer)")),
    };
    check("nested", &dt(NESTED).boot_plan(), &want);
}

#[test]
fn per_cpu_reports_and_fallbacks() {
    let broken = |prop, problem| CpuBoot::Broken(CpuIssue { prop, problem });
    let want = BootPlan {
        memory: Ok(regions(&[r(0x8000_0000, 0x4000_0000)])),
        reserved: Ok(Reserved::new(
            regions(&[r(0x8000_0000, 0x1_0000), r(0x8fe0_0000, 0x20_0000)]),
            &[
                ReservedRegion { name: "secure@8e000000", region: r(0x8e00_0000, 0x100_0000), no_map: true },
                ReservedRegion { name: "shm@8f000000", region: r(0x8f00_0000, 0x10_0000), no_map: false },
                ReservedRegion { name: "shm@8f000000", region: r(0x8f80_0000, 0x10_0000), no_map: false },
            ],
        )),
        // No /chosen, no /aliases: the first *enabled* PL011.
        console: Ok(Console {
            source: ConsoleSource::FirstPl011,
            node: path("/soc@10000000/serial@10000"),
            compatible: "arm,pl011",
            region: r(0x1001_0000, 0x1000),
            options: None,
        }),
        cpus: Ok(Cpus::from_slice(&[
            cpu("cpu@0", 0, CpuBoot::Psci),
            Cpu { name: "cpu@1", mpidr: None, boot: broken("reg", Problem::Length { len: 4, expected: 8 }) },
            cpu("cpu@2", 2, broken("cpu-release-addr", Problem::Missing)),
            cpu("cpu@3", 3, CpuBoot::Unknown("acme,sysram-mailbox")),
            cpu("cpu@4", 4, CpuBoot::Disabled),
            cpu("cpu@5", 5, CpuBoot::SpinTable { release_addr: 0x8000_fff8 }),
            cpu("cpu@6", 6, CpuBoot::NoMethod),
            Cpu { name: "cpu@7", mpidr: None, boot: broken("reg", Problem::ReservedBits(0x100_0007)) },
            Cpu { name: "cpu@8", mpidr: None, boot: broken("reg", Problem::Duplicate(0)) },
            cpu("cpu@9", 9, broken("cpu-release-addr", Problem::NotOneOrTwoCells { len: 12 })),
            cpu("cpu@100000000", 0x1_0000_0000, CpuBoot::SpinTable { release_addr: 0x8_0000_0000 }),
        ])),
        psci: Ok(Some(Psci {
            node: path("/psci"),
            version: PsciVersion::V0_1,
            conduit: Conduit::Hvc,
            dt_ids: PsciIds {
                cpu_suspend: Some(0x95c1_0000),
                cpu_off: Some(0x95c1_0001),
                cpu_on: Some(0x95c1_0002),
                migrate: None,
            },
        })),
        // The root's interrupt-parent wins over the decoy GIC that comes
        // first in the blob; with two reg entries there is no GICH/GICV.
        gic: Ok(Gic {
            node: path("/interrupt-controller@2c001000"),
            compatible: "arm,cortex-a15-gic",
            version: GicVersion::V2,
            interrupt_cells: 3,
            dist: r(0x2c00_1000, 0x1000),
            redist: Regions::default(),
            redist_stride: None,
            cpu_if: Some(r(0x2c00_2000, 0x2000)),
            hyp_if: None,
            vcpu_if: None,
            maintenance: None,
            msi: Regions::default(),
        }),
        timer: Ok(Timer {
            hyp_virt: Some(ppi(12, 0xf08)),
            ..timer("/timer", TimerKind::Armv8, 0xf08, Some(50_000_000), true)
        }),
    };
    let d = dt(PLAN_CPUS);
    let plan = d.boot_plan();
    check("plan-cpus", &plan, &want);

    let cpus = plan.cpus.unwrap();
    assert_eq!(cpus.summary(), CpuSummary { psci: 1, spin_table: 2, no_method: 1, unknown: 1, disabled: 1, broken: 5 });
    // The legacy cpu_count counts enabled CPU nodes, broken or not.
    assert_eq!(d.cpu_count().unwrap(), 10);
    // Per-CPU errors name the node and the property.
    let errors: Vec<String> = cpus.as_slice().iter().filter_map(|c| c.error()).map(|e| std::format!("{e}")).collect();
    assert_eq!(
        errors,
        [
            "/cpus/cpu@1: property reg is 4 bytes long, expected 8",
            "/cpus/cpu@2: property cpu-release-addr is missing",
            "/cpus/cpu@7: property reg MPIDR 0x1000007 has bits set outside Aff3..Aff0",
            "/cpus/cpu@8: property reg MPIDR 0x0 is already used by another CPU",
            "/cpus/cpu@9: property cpu-release-addr is 12 bytes long, expected 4 or 8 (one or two cells)",
        ]
    );
    assert_eq!(
        cpus.as_slice()[1].error(),
        Some(DtError::prop("/cpus/cpu@1", "reg", Problem::Length { len: 4, expected: 8 }))
    );
    // Only PSCI and spin-table CPUs with a valid MPIDR are startable.
    let startable: Vec<&str> = cpus.secondaries(0).map(|c| c.name).collect();
    assert_eq!(startable, ["cpu@5", "cpu@100000000"]);
}

#[test]
fn gicv3_behind_a_bus_with_two_redistributor_regions() {
    let want = BootPlan {
        memory: Ok(regions(&[r(0x8000_0000, 0x8000_0000)])),
        reserved: Ok(Reserved::new(Regions::default(), &[])),
        console: Ok(Console {
            source: ConsoleSource::StdoutPath,
            node: path("/bus@10000000/serial@c090000"),
            compatible: "arm,pl011",
            region: r(0x1c09_0000, 0x1000),
            options: None,
        }),
        // One-cell reg on a 64-bit tree: Aff2..Aff0 only.
        cpus: Ok(psci_cpus(&[("cpu@0", 0), ("cpu@10100", 0x1_0100)])),
        psci: Ok(Some(Psci {
            node: path("/psci"),
            version: PsciVersion::V1_0,
            conduit: Conduit::Smc,
            dt_ids: PsciIds::default(),
        })),
        // bus: child 0 -> 0x1000_0000; the GIC's own ranges: 0 -> 0x1f00_0000 (bus space).
        gic: Ok(Gic {
            node: path("/bus@10000000/interrupt-controller@1f000000"),
            compatible: "arm,gic-v3",
            version: GicVersion::V3,
            interrupt_cells: 4,
            dist: r(0x2f00_0000, 0x1_0000),
            redist: regions(&[r(0x2f10_0000, 0x8_0000), r(0x2f20_0000, 0x8_0000)]),
            redist_stride: Some(0x4_0000),
            cpu_if: None,
            hyp_if: None,
            vcpu_if: None,
            maintenance: Some(ppi(9, 4)),
            // The disabled ITS is left out.
            msi: regions(&[r(0x2f02_0000, 0x2_0000)]),
        }),
        // Four-cell specifiers, from the interrupt parent's #interrupt-cells.
        timer: Ok(timer("/timer", TimerKind::Armv8, 0x8, None, false)),
    };
    check("plan-gicv3", &dt(PLAN_GICV3).boot_plan(), &want);
}

#[test]
fn malformed_parts_are_errors_naming_node_and_property() {
    let want = BootPlan {
        memory: Err(DtError::prop("/memory@40000000", "reg", Problem::NotMultiple { len: 12, stride: 16 })),
        reserved: Err(DtError::prop(
            "/reserved-memory/bad@50000000",
            "reg",
            Problem::NotMultiple { len: 8, stride: 16 },
        )),
        console: Err(DtError::prop("/chosen", "stdout-path", Problem::NoSuchNode)),
        cpus: Err(DtError::prop("/cpus", "#address-cells", Problem::Value(3))),
        psci: Err(DtError::prop("/psci", "method", Problem::Missing)),
        gic: Err(DtError::prop("/interrupt-controller@8000000", "reg", Problem::TooFew { have: 1, need: 2 })),
        timer: Err(DtError::prop("/timer", "interrupts", Problem::TooFew { have: 3, need: 4 })),
    };
    let plan = dt(PLAN_MALFORMED).boot_plan();
    check("plan-malformed", &plan, &want);
    let mut lines = Vec::new();
    plan.report(&mut |a| lines.push(std::format!("{a}")));
    assert_eq!(
        lines,
        [
            "memory: /memory@40000000: property reg is 12 bytes long, not a non-zero multiple of the 16-byte entry",
            "reserved: /reserved-memory/bad@50000000: property reg is 8 bytes long, not a non-zero multiple of the 16-byte entry",
            "console: /chosen: property stdout-path names no node",
            "cpus: /cpus: property #address-cells has unsupported value 0x3",
            "psci: /psci: property method is missing",
            "gic: /interrupt-controller@8000000: property reg has 1 entries where at least 2 are required",
            "timer: /timer: property interrupts has 3 entries where at least 4 are required",
        ]
    );
}

#[test]
fn report_of_arndale() {
    let mut lines = Vec::new();
    dt(ARNDALE).boot_plan().report(&mut |a| lines.push(std::format!("{a}")));
    assert_eq!(
        lines,
        [
            "memory: 0x000040000000-0x0000bfffffff (2048 MiB)",
            "console: /soc/serial@12c20000 (samsung,exynos4210-uart) at 0x12c20000 [stdout-path]",
            "cpus: 2 node(s): 0 PSCI, 0 spin-table, 2 without enable-method, 0 unknown, 0 disabled, 0 broken",
            "cpu: cpu@0 (MPIDR 0x0): no enable-method (board-specific bring-up)",
            "cpu: cpu@1 (MPIDR 0x1): no enable-method (board-specific bring-up)",
            "psci: none",
            "gic: v2 /soc/interrupt-controller@10481000 (arm,gic-400), GICD 0x000010481000-0x000010481fff",
            "gic: GICC 0x000010482000-0x000010483fff",
            "gic: GICH 0x000010484000-0x000010485fff",
            "gic: GICV 0x000010486000-0x000010487fff",
            "gic: maintenance PPI 9 (INTID 25, flags 0xf04)",
            "timer: armv7 INTIDs secure 29 non-secure 30 virtual 27 hyp 26",
            "timer: clock-frequency 24000000 Hz (CNTFRQ not set by firmware)",
        ]
    );
}

#[test]
fn psci_function_ids() {
    let qemu = dt(QEMU_V3_4).psci().unwrap().unwrap();
    // PSCI 1.0: standard IDs, SMC64 where they exist; the DT's 0.1 IDs are ignored.
    assert_eq!(qemu.function_id(PsciFunction::CpuOn, true), Some(0xc400_0003));
    assert_eq!(qemu.function_id(PsciFunction::CpuOn, false), Some(0x8400_0003));
    assert_eq!(qemu.function_id(PsciFunction::CpuOff, true), Some(0x8400_0002));
    assert_eq!(qemu.function_id(PsciFunction::CpuSuspend, true), Some(0xc400_0001));
    assert_eq!(qemu.function_id(PsciFunction::Migrate, false), Some(0x8400_0005));
    assert_eq!(qemu.function_id(PsciFunction::CpuOn, true), Some(crate::psci::fid::CPU_ON_64));
    assert_eq!(qemu.function_id(PsciFunction::CpuOn, false), Some(crate::psci::fid::CPU_ON_32));
    // PSCI 0.1: exactly the DT's IDs, whatever the width; unlisted = absent.
    let legacy = dt(PLAN_CPUS).psci().unwrap().unwrap();
    assert_eq!(legacy.function_id(PsciFunction::CpuOn, true), Some(0x95c1_0002));
    assert_eq!(legacy.function_id(PsciFunction::CpuOff, false), Some(0x95c1_0001));
    assert_eq!(legacy.function_id(PsciFunction::CpuSuspend, true), Some(0x95c1_0000));
    assert_eq!(legacy.function_id(PsciFunction::Migrate, true), None);
}

#[test]
fn secondaries_and_mpidr_lookup() {
    let cpus = dt(FVP).cpus().unwrap();
    let names = |boot: u64| -> Vec<&str> { cpus.secondaries(boot).map(|c| c.name).collect() };
    assert_eq!(names(0), ["cpu@100", "cpu@200", "cpu@300", "cpu@10000", "cpu@10100", "cpu@10200", "cpu@10300"]);
    // MPIDR_EL1 has RES1 bit 31 (and MT/U bits): only affinity is compared.
    assert_eq!(names(0x8001_0100), ["cpu@0", "cpu@100", "cpu@200", "cpu@300", "cpu@10000", "cpu@10200", "cpu@10300"]);
    assert_eq!(cpus.by_mpidr(0x8000_0200).map(|c| c.name), Some("cpu@200"));
    assert_eq!(cpus.by_mpidr(0x2_0000), None);
    // Arndale: nothing the DT describes can start its CPUs.
    assert_eq!(dt(ARNDALE).cpus().unwrap().secondaries(0).count(), 0);
    // AEMv8: three spin-table secondaries.
    assert_eq!(dt(AEMV8).cpus().unwrap().secondaries(0).count(), 3);
}

#[test]
fn cpu_count_agrees_with_the_plan() {
    for (name, blob) in ALL {
        let d = dt(blob);
        match d.cpus() {
            Ok(cpus) => {
                let enabled = cpus.as_slice().iter().filter(|c| c.boot != CpuBoot::Disabled).count();
                assert_eq!(d.cpu_count().unwrap(), enabled, "{name}");
            }
            Err(e) => assert_eq!(name, "plan-malformed", "{e}"),
        }
    }
}

#[test]
fn console_falls_back_but_stdout_does_not() {
    // The older stdout() only follows stdout-path; console() falls back.
    assert_eq!(dt(FVP).stdout().err(), Some(DtError::BadProperty { node: "/chosen", prop: "stdout-path" }));
    assert_eq!(dt(FVP).console().unwrap().source, ConsoleSource::Serial0Alias);
    let juno = dt(JUNO).stdout().unwrap();
    assert_eq!(
        (juno.raw, juno.path, juno.compatible, juno.base),
        ("serial0:115200n8", "/serial@7ff80000", "arm,pl011", 0x7ff8_0000)
    );
    let arndale = dt(ARNDALE).stdout().unwrap();
    assert_eq!((arndale.path, arndale.base), ("/soc/serial@12c20000", 0x12c2_0000));
    assert!(!dt(ARNDALE).console().unwrap().is_pl011());
    assert!(dt(JUNO).console().unwrap().is_pl011());
}

/// A copy of `blob` with the value of `prop` of the node at `path` changed
/// in place (same length), to derive malformed trees from real ones.
fn patched(blob: &[u8], path: &str, prop: &str, f: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let d = dt(blob);
    let value = d.locate(path).unwrap().prop(prop).unwrap();
    let off = value.as_ptr() as usize - blob.as_ptr() as usize;
    let mut out = blob.to_vec();
    f(&mut out[off..off + value.len()]);
    out
}

#[test]
fn patched_real_trees_give_precise_errors() {
    // FVP timer: the hypervisor timer (4th specifier) turned into an SPI.
    let b = patched(FVP, "/timer", "interrupts", |v| v[36..40].copy_from_slice(&0u32.to_be_bytes()));
    assert_eq!(dt(&b).timer(), Err(DtError::prop("/timer", "interrupts", Problem::NotPpi)));
    // ... or given an interrupt type that does not exist.
    let b = patched(FVP, "/timer", "interrupts", |v| v[0..4].copy_from_slice(&7u32.to_be_bytes()));
    assert_eq!(dt(&b).timer(), Err(DtError::prop("/timer", "interrupts", Problem::Value(7))));
    // Juno cpu@101: "psci" -> "pscj": an unknown method, reported per CPU.
    let b = patched(JUNO, "/cpus/cpu@101", "enable-method", |v| v[3] = b'j');
    let cpus = dt(&b).cpus().unwrap();
    assert_eq!(cpus.as_slice()[3], cpu("cpu@101", 0x101, CpuBoot::Unknown("pscj")));
    assert_eq!(cpus.secondaries(0).count(), 4);
    // AEMv8 cpu@2: an MPIDR with Aff3 set in the first cell is fine...
    let b = patched(AEMV8, "/cpus/cpu@2", "reg", |v| v[3] = 0x01);
    assert_eq!(dt(&b).cpus().unwrap().as_slice()[2].mpidr, Some(0x1_0000_0002));
    // ... but bits 63:40 are not affinity.
    let b = patched(AEMV8, "/cpus/cpu@2", "reg", |v| v[2] = 0x01);
    assert_eq!(
        dt(&b).cpus().unwrap().as_slice()[2].error(),
        Some(DtError::prop("/cpus/cpu@2", "reg", Problem::ReservedBits(0x100_0000_0002)))
    );
    // FVP iofpga bus: its ranges no longer cover the UART's 0x90000.
    let iofpga = "/bus@8000000/motherboard-bus@8000000/iofpga-bus@300000000";
    let b = patched(FVP, iofpga, "ranges", |v| v[12..16].copy_from_slice(&0x1000u32.to_be_bytes()));
    assert_eq!(dt(&b).console(), Err(DtError::prop(iofpga, "ranges", Problem::NotCovered { addr: 0x9_0000 })));
    // Arndale: the GIC's #interrupt-cells = 2 (like the Exynos combiner).
    let gic = "/soc/interrupt-controller@10481000";
    let b = patched(ARNDALE, gic, "#interrupt-cells", |v| v[3] = 2);
    assert_eq!(dt(&b).gic(), Err(DtError::prop(gic, "#interrupt-cells", Problem::Value(2))));
    // ... which the timer, whose interrupt parent it is, reports too.
    assert_eq!(dt(&b).timer(), Err(DtError::prop("/timer", "interrupts", Problem::InterruptCells(2))));
    // Juno: a v2m frame outside the GIC's ranges.
    let b = patched(JUNO, "/interrupt-controller@2c010000/v2m@30000", "reg", |v| v[0] = 0x10);
    assert_eq!(
        dt(&b).gic(),
        Err(DtError::prop("/interrupt-controller@2c010000", "ranges", Problem::NotCovered { addr: 0x1003_0000 }))
    );
    // QEMU PSCI method "smc" -> "smd".
    let b = patched(QEMU_V3_4, "/psci", "method", |v| v[2] = b'd');
    assert_eq!(dt(&b).psci(), Err(DtError::prop("/psci", "method", Problem::UnknownString)));
    // Juno psci compatible "arm,psci-0.2" -> "arm,psci-9.2": a node named
    // psci that no known compatible matches.
    let b = patched(JUNO, "/psci", "compatible", |v| v[9] = b'9');
    assert_eq!(dt(&b).psci(), Err(DtError::prop("/psci", "compatible", Problem::UnknownString)));
}

#[test]
fn an_alias_naming_itself_does_not_recurse() {
    // The `fdt` crate's find_node resolves unknown paths as aliases and would
    // recurse forever on serial0 = "serial0"; the lookups here do not.
    let b = patched(NESTED, "/aliases", "serial0", |v| {
        v.fill(0);
        v[..7].copy_from_slice(b"serial0");
    });
    let d = dt(&b);
    assert_eq!(d.console(), Err(DtError::prop("/chosen", "stdout-path", Problem::NoSuchNode)));
    assert_eq!(d.stdout(), Err(DtError::prop("/chosen", "stdout-path", Problem::NoSuchNode)));
    assert_eq!(d.resolve_alias("serial0"), Some("serial0"));
}

#[test]
fn capacities_count_what_does_not_fit() {
    let many: Vec<Cpu<'static>> = (0..MAX_CPUS as u64 + 2).map(|i| cpu("cpu", i, CpuBoot::Psci)).collect();
    let cpus = Cpus::from_slice(&many);
    assert_eq!((cpus.as_slice().len(), cpus.dropped()), (MAX_CPUS, 2));
    let rs: Vec<Region> = (0..MAX_BANKS as u64 + 1).map(|i| r(i << 30, 1 << 30)).collect();
    let banks = Regions::from_slice(&rs);
    assert_eq!((banks.as_slice().len(), banks.dropped()), (MAX_BANKS, 1));
    let nodes: Vec<ReservedRegion<'static>> = (0..MAX_RESERVED as u64 + 3)
        .map(|i| ReservedRegion { name: "x", region: r(i << 20, 1 << 20), no_map: false })
        .collect();
    let res = Reserved::new(Regions::default(), &nodes);
    assert_eq!((res.nodes().len(), res.dropped(), res.regions().count()), (MAX_RESERVED, 3, MAX_RESERVED));
}

#[test]
fn node_paths_keep_their_end_when_cut() {
    // Up to the capacity a path is kept whole.
    let fits = std::format!("/{}", "a".repeat(NODE_PATH_CAP - 1));
    assert_eq!(NodePath::new(&fits), fits.as_str());
    // Beyond it, the end (the node's own name) survives, shown after "…".
    let long = "/bus@8000000/motherboard-bus@8000000/iofpga-bus@300000000/clcd@1f0000/port/endpoint";
    let p = NodePath::new(long);
    assert!(p.is_truncated() && long.len() > NODE_PATH_CAP);
    assert_eq!(p.as_str(), &long[long.len() - NODE_PATH_CAP..]);
    assert_eq!(std::format!("{p}"), std::format!("…{}", &long[long.len() - NODE_PATH_CAP..]));
    assert_ne!(p, long);
    // Built from node names (as a walk does), the result is the same.
    let names = ["bus@8000000", "motherboard-bus@8000000", "iofpga-bus@300000000", "clcd@1f0000", "port", "endpoint"];
    assert_eq!(NodePath::from_names(names.into_iter()), p);
    assert_eq!(NodePath::from_names(["cpus", "cpu@1"].into_iter()), "/cpus/cpu@1");
    assert_eq!(NodePath::from_names([].into_iter()), "/");
    // A cut inside a multi-byte character keeps only whole characters.
    let wide = std::format!("/x{}", "é".repeat(NODE_PATH_CAP));
    let p = NodePath::new(&wide);
    assert!(wide.ends_with(p.as_str()) && p.as_str().len() == NODE_PATH_CAP);
    let even = "é".repeat(NODE_PATH_CAP);
    let q = NodePath::from_names([even.as_str()].into_iter());
    assert!(even.ends_with(q.as_str()) && q.as_str().len() == NODE_PATH_CAP);
    // Here the last 80 bytes start in the middle of an "é": 79 are kept.
    let odd = std::format!("{even}z");
    let q = NodePath::from_names(["soc", odd.as_str()].into_iter());
    assert!(odd.ends_with(q.as_str()) && q.as_str().len() == NODE_PATH_CAP - 1 && q.is_truncated());
    assert_eq!(NodePath::new(&std::format!("/soc/{odd}")), q);
}

#[test]
fn errors_stay_small() {
    // Errors are returned by value on the boot path: keep them within
    // clippy's large-error limit.
    assert!(core::mem::size_of::<DtError>() <= 128, "{}", core::mem::size_of::<DtError>());
}

/// A sink that discards text (formats without allocating).
struct Null;

impl core::fmt::Write for Null {
    fn write_str(&mut self, _: &str) -> core::fmt::Result {
        Ok(())
    }
}

/// Runs every reader on `blob`; whatever it holds, nothing may panic.
pub(super) fn exercise(blob: &[u8]) {
    use core::fmt::Write;
    let Ok(d) = DeviceTree::new(blob) else { return };
    let _ = d.memory_banks();
    let _ = d.stdout();
    let _ = d.cpu_count();
    let _ = d.psci_conduit();
    let _ = d.bootargs();
    let plan = d.boot_plan();
    plan.report(&mut |a| {
        let _ = Null.write_fmt(a);
    });
    if let Ok(cpus) = &plan.cpus {
        for c in cpus.as_slice() {
            let _ = write!(Null, "{c} {:?}", c.error());
        }
        let _ = cpus.secondaries(0).count();
    }
    if let Ok(Some(p)) = &plan.psci {
        let _ = p.function_id(PsciFunction::CpuOn, true);
    }
    if let Ok(g) = &plan.gic {
        let _ = g.supports_vgic();
        let _ = g.maintenance.map(|m| m.intid());
    }
}

const VALUES: [u8; 7] = [0x00, 0xff, 0x03, 0x09, 0x01, 0x02, 0x80];

/// Large real trees: every header byte with every value, then an odd-stride
/// sample of the rest (odd, so every byte position within a cell is hit)
/// with the values in rotation. A full sweep of the 46 KiB Arndale tree
/// would take minutes, because the `fdt` crate re-parses subtrees.
fn sampled(blob: &[u8], samples: usize) -> usize {
    let mut runs = 0;
    for i in 0..HEADER_SIZE {
        for v in VALUES {
            let mut b = blob.to_vec();
            b[i] = v;
            exercise(&b);
            runs += 1;
        }
    }
    let stride = (blob.len() / samples) | 1;
    for (k, i) in (HEADER_SIZE..blob.len()).step_by(stride).enumerate() {
        let mut b = blob.to_vec();
        b[i] = VALUES[k % VALUES.len()];
        exercise(&b);
        runs += 1;
    }
    runs
}

#[test]
fn corruptions_of_board_trees_never_panic() {
    for blob in [FVP, AEMV8, FOUNDATION, JUNO, ARNDALE] {
        assert!(sampled(blob, 1200) > 1200);
    }
}

#[test]
fn corruptions_of_qemu_trees_never_panic() {
    for blob in [QEMU_V3_4, QEMU_V3_8, QEMU_V2_1, QEMU_V2_NOVIRT, QEMU_ARM32] {
        assert!(sampled(blob, 1200) > 1200);
    }
}

/// The small hand-written trees: every byte, every value.
#[test]
fn every_corruption_of_the_plan_trees_never_panics() {
    for blob in [PLAN_CPUS, PLAN_MALFORMED, PLAN_GICV3] {
        for i in 0..blob.len() {
            for v in VALUES {
                let mut b = blob.to_vec();
                b[i] = v;
                exercise(&b);
            }
        }
    }
}

/// A spin-table release address must be a 64-bit slot: the AEMv8 tree with
/// its shared `cpu-release-addr` moved to 0x8000fffc is refused per CPU,
/// naming the property, instead of reaching the bring-up code.
#[test]
fn misaligned_release_address_is_a_broken_cpu() {
    let needle = [0u8, 0, 0, 0, 0x80, 0x00, 0xff, 0xf8];
    let mut blob = AEMV8.to_vec();
    let mut patched = 0;
    let mut i = 0;
    while i + 8 <= blob.len() {
        if blob[i..i + 8] == needle {
            blob[i + 7] = 0xfc;
            patched += 1;
        }
        i += 4;
    }
    assert_eq!(patched, 4, "one cpu-release-addr per AEMv8 CPU");
    let dt = DeviceTree::new(&blob).unwrap();
    let cpus = dt.cpus().unwrap();
    for c in cpus.as_slice() {
        assert_eq!(
            c.boot,
            CpuBoot::Broken(CpuIssue {
                prop: "cpu-release-addr",
                problem: Problem::Misaligned { addr: 0x8000_fffc, align: 8 }
            }),
            "{}",
            c.name
        );
    }
}

/// A device's interrupts are decoded with its own interrupt parent's
/// `#interrupt-cells`, not the GIC's: Arndale's FIMD sits behind the
/// Exynos interrupt combiner (two cells: not a GIC specifier), its RTC
/// behind the PMU (three cells, like the GIC).
#[test]
fn device_interrupts_use_the_interrupt_parent_cells() {
    let d = dt(ARNDALE);
    let cells_2 = |node: &str| DtError::prop(node, "interrupts", Problem::InterruptCells(2));
    assert_eq!(d.device("samsung,exynos5250-fimd"), Err(cells_2("/soc/fimd@14400000")));
    let (reg, irq) = d.device("samsung,s3c6410-rtc").unwrap().expect("Arndale has an RTC");
    assert_eq!(reg, r(0x101e_0000, 0x100));
    assert_eq!(irq.map(|i| i.intid()), Some(32 + 0x2b));
}
