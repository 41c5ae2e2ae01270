//! Host tests of the vGIC: registers, SGIs, delivery through list registers.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use super::*;

const D: Frame = Frame::Distributor;
const R: Frame = Frame::Redistributors;

fn vgic(version: GicVersion, vcpus: usize) -> Vgic {
    Vgic::new(VgicConfig::new(version, vcpus, 128)).unwrap()
}

fn rd(g: &Vgic, frame: Frame, vcpu: usize, off: u64) -> u64 {
    g.read(frame, vcpu, off, 4).unwrap()
}

fn wr(g: &Vgic, frame: Frame, vcpu: usize, off: u64, value: u64) -> Outcome {
    g.write(frame, vcpu, off, 4, value).unwrap()
}

fn why(r: Result<impl core::fmt::Debug, VgicError>) -> Why {
    match r {
        Err(VgicError::Unhandled(u)) => u.why,
        other => panic!("expected an unhandled access, got {other:?}"),
    }
}

/// Enables both groups and every interrupt of every vCPU.
fn enable_all(g: &Vgic) {
    let _ = wr(g, D, 0, 0, 3);
    for v in 0..g.config().vcpus {
        match g.config().version {
            GicVersion::V2 => {
                let _ = wr(g, D, v, 0x100, 0xffff_ffff);
            }
            GicVersion::V3 => {
                let _ = wr(g, R, v, GICR_STRIDE * v as u64 + 0x1_0100, 0xffff_ffff);
            }
        }
    }
    for n in 1..4 {
        let _ = wr(g, D, 0, 0x100 + 4 * n, 0xffff_ffff);
    }
}

fn set_priority(g: &Vgic, vcpu: usize, intid: u32, p: u8) {
    let (frame, off) = match (g.config().version, intid) {
        (GicVersion::V3, 0..32) => (R, GICR_STRIDE * vcpu as u64 + 0x1_0400 + u64::from(intid)),
        _ => (D, 0x400 + u64::from(intid)),
    };
    let _ = g.write(frame, vcpu, off, 1, u64::from(p)).unwrap();
}

fn snap(g: &Vgic, irq: Virq) -> IrqSnapshot {
    g.snapshot(irq).unwrap()
}

// ---------------------------------------------------------------- config

#[test]
fn config_is_validated() {
    let ok = VgicConfig::new(GicVersion::V2, 8, 1024);
    assert!(ok.validate().is_ok());
    assert_eq!(VgicConfig::new(GicVersion::V2, 9, 64).validate(), Err(ConfigError::Vcpus { vcpus: 9, max: 8 }));
    assert_eq!(VgicConfig::new(GicVersion::V3, 0, 64).validate(), Err(ConfigError::Vcpus { vcpus: 0, max: 64 }));
    assert!(VgicConfig::new(GicVersion::V3, 64, 64).validate().is_ok());
    assert_eq!(VgicConfig::new(GicVersion::V3, 1, 48).validate(), Err(ConfigError::Lines(48)));
    assert_eq!(VgicConfig::new(GicVersion::V3, 1, 1056).validate(), Err(ConfigError::Lines(1056)));
    let six = VgicConfig { priority_bits: 6, ..VgicConfig::new(GicVersion::V2, 1, 64) };
    assert_eq!(six.validate(), Err(ConfigError::PriorityBits(6)));
    assert!(VgicConfig { version: GicVersion::V3, ..six }.validate().is_ok());
    assert!(Vgic::new(six).is_err());
    // 1024 lines: SPIs 32..1019 (988 of them).
    assert_eq!(ok.spi_end(), 1020);
    assert_eq!(ok.priority_mask(), 0xf8);
    assert_eq!(VgicConfig { priority_bits: 8, ..ok }.priority_mask(), 0xff);
    assert_eq!(format!("{}", ConfigError::Lines(48)), "vGIC: 48 interrupt lines (a multiple of 32 from 32 to 1024)");
}

#[test]
fn vcpu_affinities_round_trip() {
    assert_eq!(vcpu_affinity(0), 0);
    assert_eq!(vcpu_affinity(15), 0x0f);
    assert_eq!(vcpu_affinity(17), 0x0101);
    assert_eq!(vcpu_mpidr(33), 0x0201);
    for v in 0..MAX_VCPUS {
        assert_eq!(vcpu_of_affinity(vcpu_affinity(v), MAX_VCPUS), Some(v));
    }
    assert_eq!(vcpu_of_affinity(0x0101, 17), None);
    assert_eq!(vcpu_of_affinity(0x10, 64), None); // Aff0 16 is never used
    assert_eq!(vcpu_of_affinity(0x01_0000, 64), None); // Aff2 is always 0
}

// ---------------------------------------------------------------- GICv2 distributor

#[test]
fn v2_ctlr_typer_iidr_pidr2() {
    let g = vgic(GicVersion::V2, 4);
    assert_eq!(rd(&g, D, 0, 0x000), 0);
    let out = wr(&g, D, 0, 0x000, 0xffff_ffff);
    assert_eq!(rd(&g, D, 0, 0x000), 3, "only EnableGrp0 and EnableGrp1 exist");
    assert_eq!(out.kick, VcpuMask::all(4), "enabling the distributor re-evaluates every vCPU");
    // ITLinesNumber 3 (128 lines), CPUNumber 3 (4 vCPUs), no Security Extensions.
    assert_eq!(rd(&g, D, 2, 0x004), 0x63);
    assert_eq!(rd(&g, D, 0, 0x008), u64::from(IIDR));
    assert_eq!(rd(&g, D, 0, 0xfe8), 0x2b);
    assert_eq!(rd(&g, D, 0, 0xfe0), 0);
    assert_eq!(why(g.write(D, 0, 0x004, 4, 1)), Why::ReadOnly);
    assert_eq!(why(g.write(D, 0, 0xfe8, 4, 1)), Why::ReadOnly);
    let one = vgic(GicVersion::V2, 1);
    assert_eq!(rd(&one, D, 0, 0x004), 0x03);
}

#[test]
fn v2_enable_bits_are_write_one_to_set_and_clear() {
    let g = vgic(GicVersion::V2, 2);
    let _ = wr(&g, D, 0, 0x104, 0b101); // ISENABLER1: SPIs 32 and 34
    assert_eq!(rd(&g, D, 0, 0x104), 0b101);
    assert_eq!(rd(&g, D, 1, 0x184), 0b101, "ICENABLER reads the same, SPIs are shared");
    let _ = wr(&g, D, 1, 0x104, 0b010);
    assert_eq!(rd(&g, D, 0, 0x104), 0b111, "writing zeros changes nothing");
    let _ = wr(&g, D, 0, 0x184, 0b001);
    assert_eq!(rd(&g, D, 0, 0x104), 0b110);
    // ISENABLER0 is banked: vCPU 0 enabling PPI 27 leaves vCPU 1's alone.
    let _ = wr(&g, D, 0, 0x100, 1 << 27);
    assert_eq!(rd(&g, D, 0, 0x100), 1 << 27);
    assert_eq!(rd(&g, D, 1, 0x100), 0);
    assert!(snap(&g, Virq::Private { vcpu: 0, intid: 27 }).enabled);
    // Beyond the implemented lines: RAZ/WI.
    let _ = wr(&g, D, 0, 0x110, 0xffff_ffff); // ISENABLER4: INTIDs 128-159
    assert_eq!(rd(&g, D, 0, 0x110), 0);
}

#[test]
fn v2_pending_and_active_bits() {
    let g = vgic(GicVersion::V2, 2);
    let _ = wr(&g, D, 0, 0x204, 0x3); // ISPENDR1: SPIs 32, 33
    assert_eq!(rd(&g, D, 1, 0x204), 0x3);
    assert_eq!(rd(&g, D, 1, 0x284), 0x3);
    let _ = wr(&g, D, 0, 0x284, 0x1);
    assert_eq!(rd(&g, D, 0, 0x204), 0x2);
    // SGI pending bits ignore ISPENDR0/ICPENDR0 (SPENDSGIR does that); PPIs do not.
    let _ = wr(&g, D, 0, 0x200, 0xffff_ffff);
    assert_eq!(rd(&g, D, 0, 0x200), 0xffff_0000);
    assert_eq!(rd(&g, D, 1, 0x200), 0, "banked");
    let _ = wr(&g, D, 0, 0x280, 0xffff_ffff);
    assert_eq!(rd(&g, D, 0, 0x200), 0);
    // Active: what Linux does at boot, ICACTIVER all ones, works.
    let _ = wr(&g, D, 0, 0x304, 0x10);
    assert_eq!(rd(&g, D, 0, 0x384), 0x10);
    for n in 0..4 {
        let _ = wr(&g, D, 0, 0x380 + 4 * n, 0xffff_ffff);
    }
    assert_eq!(rd(&g, D, 0, 0x304), 0);
}

#[test]
fn v2_groups() {
    let g = vgic(GicVersion::V2, 1);
    assert_eq!(rd(&g, D, 0, 0x084), 0, "GICv2 interrupts reset to Group 0");
    let _ = wr(&g, D, 0, 0x084, 0xf0f0);
    assert_eq!(rd(&g, D, 0, 0x084), 0xf0f0);
    let _ = wr(&g, D, 0, 0x084, 0x0f00);
    assert_eq!(rd(&g, D, 0, 0x084), 0x0f00, "IGROUPR is read/write, not write-1-to-set");
}

#[test]
fn v2_priority_byte_and_word_access_keeps_implemented_bits() {
    let g = vgic(GicVersion::V2, 2);
    let _ = g.write(D, 0, 0x421, 1, 0xff).unwrap(); // INTID 33
    assert_eq!(g.read(D, 0, 0x421, 1).unwrap(), 0xf8, "5 priority bits");
    assert_eq!(rd(&g, D, 0, 0x420), 0xf800);
    let _ = wr(&g, D, 0, 0x420, 0x1234_5678);
    assert_eq!(rd(&g, D, 0, 0x420), 0x1030_5078);
    assert_eq!(g.read(D, 1, 0x423, 1).unwrap(), 0x10);
    // SGI/PPI priorities are banked.
    let _ = g.write(D, 1, 0x41b, 1, 0xa0).unwrap(); // PPI 27 of vCPU 1
    assert_eq!(g.read(D, 1, 0x41b, 1).unwrap(), 0xa0);
    assert_eq!(g.read(D, 0, 0x41b, 1).unwrap(), 0);
    assert_eq!(why(g.write(D, 0, 0x420, 2, 0)), Why::Width);
    assert_eq!(why(g.read(D, 0, 0x420, 8)), Why::Width);
    let four = Vgic::new(VgicConfig { priority_bits: 4, ..VgicConfig::new(GicVersion::V2, 1, 64) }).unwrap();
    let _ = four.write(D, 0, 0x420, 1, 0xff).unwrap();
    assert_eq!(four.read(D, 0, 0x420, 1).unwrap(), 0xf0);
}

#[test]
fn v2_itargetsr_is_masked_to_existing_vcpus() {
    let g = vgic(GicVersion::V2, 2);
    assert_eq!(g.read(D, 0, 0x828, 1).unwrap(), 1, "SPIs reset to vCPU 0");
    let _ = g.write(D, 0, 0x828, 1, 0xff).unwrap(); // SPI 40
    assert_eq!(g.read(D, 0, 0x828, 1).unwrap(), 0x03);
    assert_eq!(g.spi_targets(40).unwrap(), VcpuMask(0b11));
    let _ = wr(&g, D, 0, 0x82c, 0x0402_0106); // SPIs 44-47
    assert_eq!(rd(&g, D, 1, 0x82c), 0x0002_0102);
    assert_eq!(g.spi_targets(46).unwrap(), VcpuMask(0b10));
    assert_eq!(g.spi_targets(47).unwrap(), VcpuMask::EMPTY);
    // SGI/PPI bytes: read-only, the reader's own bit.
    assert_eq!(rd(&g, D, 0, 0x800), 0x0101_0101);
    assert_eq!(rd(&g, D, 1, 0x81c), 0x0202_0202);
    assert_eq!(g.read(D, 1, 0x803, 1).unwrap(), 0x02);
    let _ = wr(&g, D, 1, 0x800, 0xffff_ffff);
    assert_eq!(rd(&g, D, 1, 0x800), 0x0202_0202);
    // Eight vCPUs: every bit exists.
    let g8 = vgic(GicVersion::V2, 8);
    let _ = g8.write(D, 0, 0x828, 1, 0xff).unwrap();
    assert_eq!(g8.read(D, 0, 0x828, 1).unwrap(), 0xff);
    assert_eq!(g8.read(D, 7, 0x800, 1).unwrap(), 0x80);
}

#[test]
fn v2_icfgr_sgis_fixed_ppis_and_spis_programmable() {
    let g = vgic(GicVersion::V2, 2);
    assert_eq!(rd(&g, D, 0, 0xc00), 0xaaaa_aaaa, "SGIs are edge");
    let _ = wr(&g, D, 0, 0xc00, 0);
    assert_eq!(rd(&g, D, 0, 0xc00), 0xaaaa_aaaa, "and stay so");
    assert_eq!(rd(&g, D, 0, 0xc04), 0, "PPIs reset level");
    let _ = wr(&g, D, 0, 0xc04, 2 << 22); // PPI 27 edge
    assert_eq!(rd(&g, D, 0, 0xc04), 2 << 22);
    assert_eq!(rd(&g, D, 1, 0xc04), 0, "banked");
    assert!(snap(&g, Virq::Private { vcpu: 0, intid: 27 }).edge);
    let _ = wr(&g, D, 0, 0xc08, 0xffff_ffff); // SPIs 32-47: only the odd bits exist
    assert_eq!(rd(&g, D, 0, 0xc08), 0xaaaa_aaaa);
    let _ = wr(&g, D, 0, 0xc08, 0x5555_5555);
    assert_eq!(rd(&g, D, 0, 0xc08), 0);
    assert_eq!(why(g.read(D, 0, 0xc08, 1)), Why::Width);
}

#[test]
fn v2_sgir_target_list_filters() {
    let g = vgic(GicVersion::V2, 4);
    enable_all(&g);
    let sources = |target: usize, sgi: u64| g.read(D, target, 0xf20 + sgi, 1).unwrap();
    // Filter 0: the list, masked to existing vCPUs (bits 4-7 do not exist).
    let out = wr(&g, D, 1, 0xf00, (0xfd << 16) | 5);
    assert_eq!(out.kick, VcpuMask(0b1101));
    assert_eq!((sources(0, 5), sources(1, 5), sources(2, 5), sources(3, 5)), (0x02, 0, 0x02, 0x02));
    // Filter 1: all but the sender.
    let out = wr(&g, D, 2, 0xf00, (1 << 24) | (0x01 << 16) | 6);
    assert_eq!(out.kick, VcpuMask(0b1011), "the target list is ignored");
    assert_eq!((sources(0, 6), sources(1, 6), sources(2, 6), sources(3, 6)), (0x04, 0x04, 0, 0x04));
    // Filter 2: the sender only.
    let out = wr(&g, D, 3, 0xf00, (2 << 24) | (0x0f << 16) | 7);
    assert_eq!(out.kick, VcpuMask(0b1000));
    assert_eq!((sources(0, 7), sources(3, 7)), (0, 0x08));
    // Filter 3 is reserved.
    assert_eq!(why(g.write(D, 0, 0xf00, 4, (3 << 24) | 1)), Why::BadValue);
    assert_eq!(sources(0, 1), 0);
    // SGIR is write-only; its pending state shows in ISPENDR0 (banked).
    assert_eq!(why(g.read(D, 0, 0xf00, 4)), Why::WriteOnly);
    assert_eq!(rd(&g, D, 0, 0x200), (1 << 5) | (1 << 6));
    // A disabled SGI becomes pending but kicks nobody.
    let _ = wr(&g, D, 0, 0x180, 1 << 9);
    assert_eq!(wr(&g, D, 1, 0xf00, (1 << 16) | 9).kick, VcpuMask::EMPTY);
    assert!(snap(&g, Virq::Private { vcpu: 0, intid: 9 }).pending);
}

#[test]
fn v2_spendsgir_cpendsgir() {
    let g = vgic(GicVersion::V2, 3);
    let _ = g.write(D, 1, 0xf22, 1, 0xff).unwrap(); // SGI 2 of vCPU 1 from every source
    assert_eq!(g.read(D, 1, 0xf22, 1).unwrap(), 0x07, "masked to the 3 vCPUs");
    assert_eq!(rd(&g, D, 1, 0xf20), 0x0007_0000);
    assert_eq!(rd(&g, D, 1, 0xf10), 0x0007_0000, "CPENDSGIR reads the same");
    assert_eq!(rd(&g, D, 0, 0xf20), 0, "banked");
    assert_eq!(rd(&g, D, 1, 0x200) & 0xffff, 1 << 2);
    let _ = g.write(D, 1, 0xf12, 1, 0x01).unwrap();
    assert_eq!(g.read(D, 1, 0xf22, 1).unwrap(), 0x06);
    let _ = wr(&g, D, 1, 0xf10, 0x0006_0000);
    assert_eq!(rd(&g, D, 1, 0x200), 0, "no source left: not pending");
    let _ = wr(&g, D, 1, 0xf2c, 0x0100_0000); // SGI 15 from vCPU 0
    assert!(snap(&g, Virq::Private { vcpu: 1, intid: 15 }).pending);
}

#[test]
fn v2_unhandled_accesses() {
    let g = vgic(GicVersion::V2, 2);
    assert_eq!(why(g.read(D, 1, 0x00c, 4)), Why::Reserved);
    let e = g.read(D, 1, 0x00c, 4).unwrap_err();
    assert_eq!(
        format!("d0v1 {e}"),
        "d0v1 vGICD: unhandled word read at offset 0xc (reserved or unimplemented register)"
    );
    let e = g.write(D, 0, 0x004, 4, 0xffff_ffff).unwrap_err();
    assert_eq!(format!("{e}"), "vGICD: unhandled word write 0xffffffff to TYPER at offset 0x4 (read-only register)");
    let e = g.read(D, 0, 0x104, 1).unwrap_err();
    assert_eq!(format!("{e}"), "vGICD: unhandled byte read of ISENABLER1 at offset 0x104 (access size not allowed)");
    assert_eq!(why(g.read(D, 0, 0x102, 4)), Why::Unaligned);
    assert_eq!(why(g.read(D, 0, 0x100, 3)), Why::Width);
    assert_eq!(why(g.read(D, 0, 0xd00, 4)), Why::Reserved);
    assert_eq!(why(g.read(D, 0, 0x1000, 4)), Why::Reserved);
    assert_eq!(why(g.read(D, 0, u64::MAX - 3, 4)), Why::Reserved);
    assert_eq!(why(g.read(R, 0, 0, 4)), Why::Reserved, "GICv2 has no redistributors");
    assert_eq!(g.read(D, 2, 0, 4), Err(VgicError::NoSuchVcpu(2)));
    // Nothing changed on an error.
    assert!(g.write(D, 0, 0x102, 4, 0xffff_ffff).is_err());
    assert_eq!(rd(&g, D, 0, 0x100), 0);
}

// ---------------------------------------------------------------- GICv3 distributor

#[test]
fn v3_ctlr_typer_iidr_pidr2() {
    let g = vgic(GicVersion::V3, 4);
    assert_eq!(rd(&g, D, 0, 0x0000), 0x50, "ARE and DS read as one");
    // Linux: ARE_NS | EnableGrp1A | EnableGrp1.
    let _ = wr(&g, D, 0, 0x0000, 0x13);
    assert_eq!(rd(&g, D, 0, 0x0000), 0x53);
    let _ = wr(&g, D, 0, 0x0000, 0);
    assert_eq!(rd(&g, D, 0, 0x0000), 0x50, "ARE and DS cannot be cleared");
    // ITLinesNumber 3, IDbits 9, no LPIs or MBIs, No1N 0.
    assert_eq!(rd(&g, D, 0, 0x0004), 3 | (9 << 19));
    assert_eq!(rd(&g, D, 0, 0x0008), u64::from(IIDR));
    assert_eq!(rd(&g, D, 0, 0x000c), 0, "TYPER2 reads as zero");
    assert_eq!(rd(&g, D, 0, 0xffe8), 0x3b, "PIDR2.ArchRev = 3");
    assert_eq!(why(g.write(D, 0, 0x0004, 4, 0)), Why::ReadOnly);
    assert_eq!(why(g.read(D, 0, 0x0000, 1)), Why::Width);
    assert_eq!(why(g.read(D, 0, 0x0040, 4)), Why::Reserved, "no MBIs: SETSPI_NSR does not exist");
    assert_eq!(why(g.read(D, 0, 0x1000, 4)), Why::Reserved, "no extended SPIs");
}

#[test]
fn v3_distributor_private_and_legacy_registers_are_raz_wi() {
    let g = vgic(GicVersion::V3, 2);
    let _ = wr(&g, D, 0, 0x0100, 0xffff_ffff); // GICD_ISENABLER0
    assert_eq!(rd(&g, D, 0, 0x0100), 0);
    assert_eq!(rd(&g, R, 0, 0x1_0100), 0, "the redistributor's SGIs/PPIs are untouched");
    let _ = wr(&g, D, 0, 0x0400, 0xffff_ffff);
    assert_eq!(rd(&g, D, 0, 0x0400), 0);
    assert_eq!(rd(&g, D, 0, 0x0080), 0, "GICD_IGROUPR0");
    assert_eq!(rd(&g, D, 0, 0x0c04), 0, "GICD_ICFGR1");
    let _ = g.write(D, 0, 0x0820, 1, 0xff).unwrap(); // ITARGETSR: no effect under ARE
    assert_eq!(g.read(D, 0, 0x0820, 1).unwrap(), 0);
    let _ = wr(&g, D, 0, 0x0f00, (2 << 24) | 1); // GICD_SGIR: ignored under ARE
    assert!(!snap(&g, Virq::Private { vcpu: 0, intid: 1 }).pending);
    assert_eq!(rd(&g, D, 0, 0x0f20), 0);
    assert_eq!(rd(&g, D, 0, 0x0d04), 0, "IGRPMODR");
    assert_eq!(rd(&g, D, 0, 0x0e08), 0, "NSACR");
    // SPIs work as in GICv2; Group 1 after reset.
    assert_eq!(rd(&g, D, 0, 0x0084), 0xffff_ffff);
    let _ = wr(&g, D, 0, 0x0104, 1);
    assert_eq!(rd(&g, D, 0, 0x0104), 1);
    let _ = g.write(D, 0, 0x0420, 1, 0xff).unwrap();
    assert_eq!(g.read(D, 0, 0x0420, 1).unwrap(), 0xf8);
    let _ = wr(&g, D, 1, 0x0384, 0xffff_ffff); // ICACTIVER1
}

#[test]
fn v3_irouter() {
    let g = vgic(GicVersion::V3, 20);
    let irouter = |intid: u64| 0x6000 + 8 * intid;
    assert_eq!(g.read(D, 0, irouter(40), 8).unwrap(), 0, "resets to affinity 0.0.0.0");
    assert_eq!(g.spi_targets(40).unwrap(), VcpuMask::one(0));
    // 64-bit write: vCPU 17 is Aff1 1, Aff0 1.
    let _ = g.write(D, 0, irouter(40), 8, 0x0101).unwrap();
    assert_eq!(g.spi_targets(40).unwrap(), VcpuMask::one(17));
    assert_eq!(g.read(D, 0, irouter(40), 8).unwrap(), 0x0101);
    // 32-bit halves.
    let _ = wr(&g, D, 0, irouter(41), 0x0003);
    let _ = wr(&g, D, 0, irouter(41) + 4, 0);
    assert_eq!(g.spi_targets(41).unwrap(), VcpuMask::one(3));
    let _ = wr(&g, D, 0, irouter(41) + 4, 0xff);
    assert_eq!(rd(&g, D, 0, irouter(41) + 4), 0xff, "Aff3 is kept");
    assert_eq!(g.spi_targets(41).unwrap(), VcpuMask::EMPTY, "no vCPU has Aff3 0xff");
    // IRM = 1: any vCPU; reserved bits are masked.
    let _ = g.write(D, 0, irouter(42), 8, u64::MAX).unwrap();
    assert_eq!(g.read(D, 0, irouter(42), 8).unwrap(), 0xff_80ff_ffff);
    assert_eq!(g.spi_targets(42).unwrap(), VcpuMask::all(20));
    // Affinity of a vCPU that does not exist.
    let _ = g.write(D, 0, irouter(43), 8, 0x0105).unwrap(); // vCPU 21
    assert_eq!(g.spi_targets(43).unwrap(), VcpuMask::EMPTY);
    // INTIDs 0-31 and beyond the lines: RAZ/WI.
    let _ = g.write(D, 0, irouter(31), 8, 0x0101).unwrap();
    assert_eq!(g.read(D, 0, irouter(31), 8).unwrap(), 0);
    let _ = g.write(D, 0, irouter(200), 8, 0x0101).unwrap();
    assert_eq!(g.read(D, 0, irouter(200), 8).unwrap(), 0);
    assert_eq!(why(g.read(D, 0, irouter(40) + 4, 8)), Why::Unaligned);
    assert_eq!(why(g.read(D, 0, irouter(40), 1)), Why::Width);
    assert_eq!(g.spi_targets(20), Err(VgicError::NoSuchIrq(20)));
}

#[test]
fn v3_irouter_change_kicks_the_new_target() {
    let g = vgic(GicVersion::V3, 4);
    enable_all(&g);
    let _ = g.raise(Virq::Spi(40)).unwrap();
    let out = g.write(D, 0, 0x6000 + 8 * 40, 8, 2).unwrap();
    assert_eq!(out.kick, VcpuMask::one(2));
}

// ---------------------------------------------------------------- GICv3 redistributors

#[test]
fn v3_redistributor_rd_base() {
    let g = vgic(GicVersion::V3, 3);
    for v in 0..3u64 {
        let base = GICR_STRIDE * v;
        let typer = g.read(R, 0, base + 0x8, 8).unwrap();
        let last = u64::from(v == 2) << 4;
        assert_eq!(typer, (u64::from(vcpu_affinity(v as usize)) << 32) | (v << 8) | last, "frame {v}");
        assert_eq!(rd(&g, R, 0, base + 0x8), typer & 0xffff_ffff);
        assert_eq!(rd(&g, R, 0, base + 0xc), typer >> 32);
        assert_eq!(rd(&g, R, 0, base + 0xffe8), 0x3b);
        assert_eq!(rd(&g, R, 0, base + 0x4), u64::from(IIDR));
        assert_eq!(rd(&g, R, 0, base), 0, "GICR_CTLR: no LPIs, RWP 0");
    }
    // WAKER: asleep after reset; Linux clears ProcessorSleep, waits for ChildrenAsleep.
    assert_eq!(rd(&g, R, 1, GICR_STRIDE + 0x14), 0x6);
    let _ = wr(&g, R, 1, GICR_STRIDE + 0x14, 0);
    assert_eq!(rd(&g, R, 1, GICR_STRIDE + 0x14), 0);
    assert_eq!(rd(&g, R, 0, 0x14), 0x6, "per vCPU");
    let _ = wr(&g, R, 1, GICR_STRIDE + 0x14, 2);
    assert_eq!(rd(&g, R, 1, GICR_STRIDE + 0x14), 0x6);
    assert_eq!(why(g.write(R, 0, 0x8, 8, 0)), Why::ReadOnly);
    assert_eq!(why(g.read(R, 0, 0x70, 8)), Why::Reserved, "no LPIs: PROPBASER does not exist");
    assert_eq!(why(g.read(R, 0, 3 * GICR_STRIDE + 0xffe8, 4)), Why::Reserved, "past the last frame");
    let e = g.read(R, 2, 2 * GICR_STRIDE + 0x14, 1).unwrap_err();
    assert_eq!(
        format!("d0v2 {e}"),
        "d0v2 vGICR: unhandled byte read of WAKER at offset 0x40014 (access size not allowed)"
    );
}

/// Linux's `gic_iterate_rdists`: walk frames by the 2 × 64 KiB stride,
/// check PIDR2, stop at `Last`.
#[test]
fn v3_redistributors_found_by_stride_until_last() {
    for vcpus in [1, 2, 5, 17] {
        let g = vgic(GicVersion::V3, vcpus);
        let mut found = Vec::new();
        let mut base = 0;
        loop {
            assert_eq!(rd(&g, R, 0, base + 0xffe8) & 0xf0, 0x30, "a GICv3 redistributor at {base:#x}");
            let typer = g.read(R, 0, base + 0x8, 8).unwrap();
            found.push((typer >> 32) as u32);
            if typer & (1 << 4) != 0 {
                break;
            }
            base += GICR_STRIDE;
            assert!(found.len() <= vcpus, "Last bit missing");
        }
        let expected: Vec<u32> = (0..vcpus).map(vcpu_affinity).collect();
        assert_eq!(found, expected);
    }
}

#[test]
fn v3_redistributor_sgi_base() {
    let g = vgic(GicVersion::V3, 2);
    let sgi = |v: u64| GICR_STRIDE * v + 0x1_0000;
    assert_eq!(rd(&g, R, 0, sgi(1) + 0x080), 0xffff_ffff, "GICv3 resets to Group 1");
    let _ = wr(&g, R, 0, sgi(1) + 0x080, 0xffff_fffe);
    assert_eq!(rd(&g, R, 0, sgi(1) + 0x080), 0xffff_fffe);
    assert!(!snap(&g, Virq::Private { vcpu: 1, intid: 0 }).group1);
    // The frame decides whose interrupts: vCPU 0 writing vCPU 1's frame.
    let _ = wr(&g, R, 0, sgi(1) + 0x100, (1 << 27) | 1);
    assert_eq!(rd(&g, R, 0, sgi(1) + 0x100), (1 << 27) | 1);
    assert_eq!(rd(&g, R, 0, sgi(0) + 0x100), 0);
    let _ = wr(&g, R, 1, sgi(1) + 0x180, 1);
    assert_eq!(rd(&g, R, 1, sgi(1) + 0x100), 1 << 27);
    // Pending and active, including SGIs (GICv3 has no per-source state).
    let _ = wr(&g, R, 1, sgi(1) + 0x200, 0x8000_0002);
    assert_eq!(rd(&g, R, 1, sgi(1) + 0x280), 0x8000_0002);
    let _ = wr(&g, R, 1, sgi(1) + 0x280, 0x2);
    assert_eq!(rd(&g, R, 1, sgi(1) + 0x200), 0x8000_0000);
    let _ = wr(&g, R, 1, sgi(1) + 0x300, 0x4);
    assert_eq!(rd(&g, R, 1, sgi(1) + 0x380), 0x4);
    let _ = wr(&g, R, 1, sgi(1) + 0x380, 0xffff_ffff); // Linux at boot
    assert_eq!(rd(&g, R, 1, sgi(1) + 0x300), 0);
    // IPRIORITYR0-7, byte and word.
    let _ = g.write(R, 1, sgi(1) + 0x41b, 1, 0xa5).unwrap();
    assert_eq!(g.read(R, 1, sgi(1) + 0x41b, 1).unwrap(), 0xa0);
    assert_eq!(rd(&g, R, 1, sgi(1) + 0x418), 0xa000_0000);
    assert_eq!(rd(&g, R, 1, sgi(0) + 0x418), 0);
    // ICFGR0 fixed edge, ICFGR1 programmable.
    assert_eq!(rd(&g, R, 0, sgi(0) + 0xc00), 0xaaaa_aaaa);
    let _ = wr(&g, R, 0, sgi(0) + 0xc00, 0);
    assert_eq!(rd(&g, R, 0, sgi(0) + 0xc00), 0xaaaa_aaaa);
    let _ = wr(&g, R, 0, sgi(0) + 0xc04, 2 << 30);
    assert_eq!(rd(&g, R, 0, sgi(0) + 0xc04), 2 << 30);
    assert!(snap(&g, Virq::Private { vcpu: 0, intid: 31 }).edge);
    // IGRPMODR0 and NSACR: RAZ/WI.
    let _ = wr(&g, R, 0, sgi(0) + 0xd00, 0xffff_ffff);
    assert_eq!(rd(&g, R, 0, sgi(0) + 0xd00), 0);
    // Extended PPI registers and anything else: reserved.
    assert_eq!(why(g.read(R, 0, sgi(0) + 0x104, 4)), Why::Reserved);
    assert_eq!(why(g.read(R, 0, sgi(0) + 0x420, 4)), Why::Reserved);
    assert_eq!(why(g.read(R, 0, sgi(0) + 0x100, 1)), Why::Width);
}

// ---------------------------------------------------------------- GICv3 SGIs

#[test]
fn v3_sgi_target_list_and_affinity() {
    let g = vgic(GicVersion::V3, 20);
    enable_all(&g);
    // SGI 3 to Aff1 = 1, TargetList bits 0 and 3: vCPUs 16 and 19.
    let out = g.send_sgi_v3(0, (3 << 24) | (1 << 16) | 0b1001).unwrap();
    assert_eq!(out.kick, VcpuMask::one(16) | VcpuMask::one(19));
    for v in 0..20 {
        assert_eq!(snap(&g, Virq::Private { vcpu: v, intid: 3 }).pending, v == 16 || v == 19, "vCPU {v}");
    }
    // Aff1 = 0: vCPUs 0-15; bits for absent vCPUs (Aff1 1, Aff0 4-15) are ignored.
    let out = g.send_sgi_v3(5, (4 << 24) | (1 << 16) | 0xfff0).unwrap();
    assert_eq!(out.kick, VcpuMask::EMPTY);
    let out = g.send_sgi_v3(5, (4 << 24) | 0x8001).unwrap();
    assert_eq!(out.kick, VcpuMask::one(0) | VcpuMask::one(15));
    // RS = 1 means Aff0 16-31: no such vCPU. Aff2/Aff3 likewise.
    assert_eq!(g.send_sgi_v3(0, (1 << 44) | (5 << 24) | 0xffff).unwrap().kick, VcpuMask::EMPTY);
    assert_eq!(g.send_sgi_v3(0, (1 << 32) | (5 << 24) | 0xffff).unwrap().kick, VcpuMask::EMPTY);
    assert_eq!(g.send_sgi_v3(0, (1 << 48) | (5 << 24) | 0xffff).unwrap().kick, VcpuMask::EMPTY);
    assert!(!snap(&g, Virq::Private { vcpu: 0, intid: 5 }).pending);
}

#[test]
fn v3_sgi_broadcast_irm() {
    let g = vgic(GicVersion::V3, 4);
    enable_all(&g);
    // IRM = 1: everyone but the sender; the target list is ignored.
    let out = g.send_sgi_v3(2, (1 << 40) | (7 << 24) | 0x1).unwrap();
    assert_eq!(out.kick, VcpuMask(0b1011));
    for v in 0..4 {
        assert_eq!(snap(&g, Virq::Private { vcpu: v, intid: 7 }).pending, v != 2);
    }
    let one = vgic(GicVersion::V3, 1);
    assert_eq!(one.send_sgi_v3(0, 1 << 40).unwrap().kick, VcpuMask::EMPTY);
    assert_eq!(one.send_sgi_v3(1, 0), Err(VgicError::NoSuchVcpu(1)));
    assert!(matches!(vgic(GicVersion::V2, 1).send_sgi_v3(0, 0), Err(VgicError::NotAllowed { .. })));
}

#[test]
fn v3_sgi_groups() {
    let g = vgic(GicVersion::V3, 2);
    enable_all(&g);
    let _ = wr(&g, R, 0, GICR_STRIDE + 0x1_0080, !(1 << 2)); // vCPU 1: SGI 2 in Group 0
    // ICC_SGI0R reaches only a Group 0 SGI.
    let _ = g.send_sgi0_v3(0, (1 << 24) | 0b10).unwrap();
    assert!(!snap(&g, Virq::Private { vcpu: 1, intid: 1 }).pending);
    let _ = g.send_sgi0_v3(0, (2 << 24) | 0b10).unwrap();
    assert!(snap(&g, Virq::Private { vcpu: 1, intid: 2 }).pending);
    // ICC_SGI1R reaches either (single security state).
    let _ = g.send_sgi_v3(0, (1 << 24) | 0b10).unwrap();
    assert!(snap(&g, Virq::Private { vcpu: 1, intid: 1 }).pending);
    let _ = wr(&g, R, 0, GICR_STRIDE + 0x1_0280, 0xffff_ffff);
    let _ = g.send_sgi_v3(0, (2 << 24) | 0b10).unwrap();
    assert!(snap(&g, Virq::Private { vcpu: 1, intid: 2 }).pending);
}

// ---------------------------------------------------------------- delivery

/// One vCPU's list registers in a simulated CPU interface.
struct Entry {
    lrs: Vec<Lr>,
    info: FlushInfo,
}

fn enter(g: &Vgic, vcpu: usize, nr_lrs: usize) -> Entry {
    let mut lrs = vec![Lr::INVALID; nr_lrs];
    let info = g.flush(vcpu, &mut lrs, 0xff).unwrap();
    // What the arch code writes is what the hardware holds: round-trip the encoding.
    let lrs = match g.config().version {
        GicVersion::V2 => lrs.iter().map(|l| Lr::decode_v2(l.encode_v2())).collect(),
        GicVersion::V3 => lrs.iter().map(|l| Lr::decode_v3(l.encode_v3())).collect(),
    };
    Entry { lrs, info }
}

/// A guest that finishes what it was handling, then takes every pending
/// interrupt, highest priority first, handling each to the end. Returns
/// what it took (INTID, source) and whether a requested maintenance
/// interrupt fires (UIE: at most one valid LR; NPIE: none pending; EOI: an
/// LR asking for it was deactivated).
fn run_guest(e: &mut Entry) -> (Vec<(u32, u8)>, bool) {
    let mut taken = Vec::new();
    let mut eoi = false;
    let deactivate = |l: &mut Lr, eoi: &mut bool| {
        if let LrKind::Software { eoi: true, .. } = l.kind {
            *eoi = true;
        }
        l.state = if l.state == LrState::PendingActive { LrState::Pending } else { LrState::Invalid };
    };
    for l in e.lrs.iter_mut().filter(|l| l.state.active()) {
        deactivate(l, &mut eoi);
    }
    while let Some(l) = e.lrs.iter_mut().filter(|l| l.state == LrState::Pending).min_by_key(|l| (l.priority, l.vintid))
    {
        let source = match l.kind {
            LrKind::Software { source, .. } => source,
            LrKind::Hardware { .. } => 0,
        };
        taken.push((l.vintid, source));
        l.state = LrState::Active; // acknowledge
        deactivate(l, &mut eoi); // EOI
    }
    let m = e.info.maintenance;
    let valid = e.lrs.iter().filter(|l| l.state != LrState::Invalid).count();
    let fires =
        eoi || (m.underflow && valid <= 1) || (m.no_pending && !e.lrs.iter().any(|l| l.state == LrState::Pending));
    (taken, fires)
}

/// Runs vCPU `vcpu` until it goes idle without a maintenance interrupt;
/// returns everything it took, in order, and the number of entries.
fn run_until_idle(g: &Vgic, vcpu: usize, nr_lrs: usize) -> (Vec<(u32, u8)>, usize) {
    let mut all = Vec::new();
    for entries in 1..=64 {
        let mut e = enter(g, vcpu, nr_lrs);
        let (taken, fires) = run_guest(&mut e);
        all.extend(taken);
        let _ = g.fold(vcpu, &e.lrs).unwrap();
        if !fires {
            return (all, entries);
        }
    }
    panic!("maintenance interrupts never stopped");
}

#[test]
fn lrs_are_filled_by_priority_then_intid() {
    let g = vgic(GicVersion::V3, 1);
    enable_all(&g);
    for (intid, p) in [(40, 0x80), (41, 0x40), (42, 0x40), (33, 0xa0)] {
        set_priority(&g, 0, intid, p);
        let _ = g.raise(Virq::Spi(intid)).unwrap();
    }
    set_priority(&g, 0, 20, 0x40);
    let _ = g.raise(Virq::Private { vcpu: 0, intid: 20 }).unwrap();
    let mut lrs = [Lr::INVALID; 4];
    let info = g.flush(0, &mut lrs, 0xff).unwrap();
    let ids: Vec<u32> = lrs.iter().map(|l| l.vintid).collect();
    assert_eq!(ids, [20, 41, 42, 40]);
    assert_eq!((info.used, info.overflow), (4, 1));
    assert_eq!(info.maintenance, Maintenance { underflow: false, no_pending: true });
    assert_eq!(
        lrs[1],
        Lr {
            vintid: 41,
            state: LrState::Pending,
            priority: 0x40,
            group1: true,
            kind: LrKind::Software { source: 0, eoi: false }
        }
    );
    assert_eq!(lrs[1].encode_v3(), 0x5040_0000_0000_0029);
    assert_eq!(snap(&g, Virq::Spi(41)).listed_on, Some(0));
    assert!(snap(&g, Virq::Spi(41)).pending, "a listed interrupt still reads pending");
    assert!(snap(&g, Virq::Spi(33)).listed_on.is_none());
}

#[test]
fn lrs_beyond_the_used_ones_are_cleared() {
    let g = vgic(GicVersion::V2, 1);
    enable_all(&g);
    let _ = g.raise(Virq::Spi(32)).unwrap();
    let mut lrs = [Lr { vintid: 99, state: LrState::Active, ..Lr::INVALID }; 4];
    let info = g.flush(0, &mut lrs, 0xff).unwrap();
    assert_eq!(info.used, 1);
    assert_eq!(info.maintenance, Maintenance::default());
    assert_eq!(&lrs[1..], &[Lr::INVALID; 3]);
    // v2 encoding of what went in: pending, Group 0, priority 0, SPI 32.
    assert_eq!(lrs[0].encode_v2(), 0x1000_0020);
}

#[test]
fn fold_back_takes_the_guests_progress() {
    let g = vgic(GicVersion::V3, 1);
    enable_all(&g);
    for intid in [32, 33, 34] {
        let _ = g.raise(Virq::Spi(intid)).unwrap();
    }
    let mut lrs = [Lr::INVALID; 4];
    let _ = g.flush(0, &mut lrs, 0xff).unwrap();
    lrs[0].state = LrState::Active; // acknowledged, still being handled
    lrs[2].state = LrState::Invalid; // handled and deactivated
    let out = g.fold(0, &lrs).unwrap();
    assert_eq!(out, Outcome::default());
    let (a, b, c) = (snap(&g, Virq::Spi(32)), snap(&g, Virq::Spi(33)), snap(&g, Virq::Spi(34)));
    assert!(a.active && !a.pending && a.listed_on.is_none());
    assert!(!b.active && b.pending, "not taken yet: pending again");
    assert!(!c.active && !c.pending, "done");
    // Next entry: the active one again (so its deactivation reaches us), and the pending one.
    let _ = g.flush(0, &mut lrs, 0xff).unwrap();
    assert_eq!((lrs[0].vintid, lrs[0].state), (32, LrState::Active));
    assert_eq!((lrs[1].vintid, lrs[1].state), (33, LrState::Pending));
    assert_eq!(lrs[2], Lr::INVALID);
    // Fold with omitted LRs (ELRSR said empty): they count as done.
    let _ = g.fold(0, &lrs[..1]).unwrap();
    assert!(!snap(&g, Virq::Spi(33)).pending);
    assert!(snap(&g, Virq::Spi(32)).active);
}

#[test]
fn fold_finds_sgi_0_behind_empty_registers() {
    let g = vgic(GicVersion::V3, 1);
    enable_all(&g);
    let _ = g.raise(Virq::Private { vcpu: 0, intid: 0 }).unwrap();
    let mut lrs = [Lr::INVALID; 4];
    let _ = g.flush(0, &mut lrs, 0xff).unwrap();
    assert_eq!((lrs[0].vintid, lrs[0].state), (0, LrState::Pending));
    lrs.reverse(); // the empty ones (also INTID 0) first
    let _ = g.fold(0, &lrs).unwrap();
    assert!(snap(&g, Virq::Private { vcpu: 0, intid: 0 }).pending, "not taken: still pending");
}

#[test]
fn new_edge_while_active_gives_pending_active() {
    let g = vgic(GicVersion::V3, 1);
    enable_all(&g);
    let _ = g.raise(Virq::Spi(40)).unwrap();
    let mut lrs = [Lr::INVALID; 4];
    let _ = g.flush(0, &mut lrs, 0xff).unwrap();
    // While the vCPU runs, a second edge (from another CPU): kick the owner.
    let out = g.raise(Virq::Spi(40)).unwrap();
    assert_eq!(out.kick, VcpuMask::one(0));
    lrs[0].state = LrState::Active;
    let _ = g.fold(0, &lrs).unwrap();
    let _ = g.flush(0, &mut lrs, 0xff).unwrap();
    assert_eq!((lrs[0].vintid, lrs[0].state), (40, LrState::PendingActive));
}

#[test]
fn disabled_interrupts_wait_but_active_ones_are_listed() {
    let g = vgic(GicVersion::V2, 1);
    let _ = wr(&g, D, 0, 0, 1); // Group 0 only
    let _ = g.raise(Virq::Spi(40)).unwrap(); // disabled
    let mut lrs = [Lr::INVALID; 4];
    assert_eq!(g.flush(0, &mut lrs, 0xff).unwrap().used, 0);
    let out = wr(&g, D, 0, 0x104, 1 << 8);
    assert_eq!(out.kick, VcpuMask::one(0), "enabling a pending interrupt kicks its target");
    assert_eq!(g.flush(0, &mut lrs, 0xff).unwrap().used, 1);
    lrs[0].state = LrState::Active;
    let _ = g.fold(0, &lrs).unwrap();
    let _ = wr(&g, D, 0, 0x184, 1 << 8); // disabled while active
    let _ = g.flush(0, &mut lrs, 0xff).unwrap();
    assert_eq!((lrs[0].vintid, lrs[0].state), (40, LrState::Active), "still needs its deactivation");
    let _ = g.fold(0, &[]).unwrap();
    // Group 1 is disabled in GICD_CTLR: not forwarded.
    let _ = wr(&g, D, 0, 0x084, 1 << 9); // SPI 41 to Group 1
    let _ = wr(&g, D, 0, 0x104, 1 << 9);
    let _ = g.raise(Virq::Spi(41)).unwrap();
    assert_eq!(g.flush(0, &mut lrs, 0xff).unwrap().used, 0);
    let out = wr(&g, D, 0, 0, 3);
    assert!(out.kick.contains(0));
    let _ = g.flush(0, &mut lrs, 0xff).unwrap();
    assert_eq!((lrs[0].vintid, lrs[0].group1), (41, true));
}

#[test]
fn spis_go_to_their_targets() {
    let g = vgic(GicVersion::V2, 3);
    enable_all(&g);
    let _ = g.write(D, 0, 0x828, 1, 0b010).unwrap(); // SPI 40 -> vCPU 1
    let out = g.raise(Virq::Spi(40)).unwrap();
    assert_eq!(out.kick, VcpuMask::one(1));
    let mut lrs = [Lr::INVALID; 4];
    assert_eq!(g.flush(0, &mut lrs, 0xff).unwrap().used, 0);
    assert_eq!(g.flush(1, &mut lrs, 0xff).unwrap().used, 1);
    let _ = g.fold(1, &[]).unwrap();
    // Two targets: both are kicked, the first to enter takes it, the other does not see it.
    let _ = g.write(D, 0, 0x829, 1, 0b110).unwrap(); // SPI 41 -> vCPUs 1, 2
    assert_eq!(g.raise(Virq::Spi(41)).unwrap().kick, VcpuMask(0b110));
    let mut lrs2 = [Lr::INVALID; 4];
    assert_eq!(g.flush(2, &mut lrs2, 0xff).unwrap().used, 1);
    assert_eq!(g.flush(1, &mut lrs, 0xff).unwrap().used, 0);
    // vCPU 2 acknowledged it and exits: while active it belongs to vCPU 2 only.
    lrs2[0].state = LrState::Active;
    let _ = g.fold(2, &lrs2).unwrap();
    let _ = g.fold(1, &lrs).unwrap();
    assert_eq!(g.flush(1, &mut lrs, 0xff).unwrap().used, 0);
    let _ = g.flush(2, &mut lrs2, 0xff).unwrap();
    assert_eq!((lrs2[0].vintid, lrs2[0].state), (41, LrState::Active));
    // GICv3 IRM = 1: any vCPU takes it.
    let g3 = vgic(GicVersion::V3, 3);
    enable_all(&g3);
    let _ = g3.write(D, 0, 0x6000 + 8 * 50, 8, 1 << 31).unwrap();
    assert_eq!(g3.raise(Virq::Spi(50)).unwrap().kick, VcpuMask::all(3));
    assert_eq!(g3.flush(2, &mut lrs, 0xff).unwrap().used, 1);
}

/// More pending interrupts than list registers: every one is delivered,
/// over successive entries, each brought about by the maintenance
/// interrupt the previous entry asked for. Without that request (e.g.
/// `lr::maintenance` returning `Maintenance::default()`), the guest goes
/// idle after the first four and this test fails.
#[test]
fn overflow_all_delivered_over_successive_entries() {
    for version in [GicVersion::V2, GicVersion::V3] {
        let g = vgic(version, 1);
        enable_all(&g);
        let spis: Vec<u32> = (32..42).collect();
        for (i, &intid) in spis.iter().enumerate() {
            set_priority(&g, 0, intid, 0x80 - 8 * (i as u8 % 3)); // 0x80, 0x78, 0x70, 0x80, ...
            let _ = g.raise(Virq::Spi(intid)).unwrap();
        }
        let first = enter(&g, 0, 4);
        assert_eq!((first.info.used, first.info.overflow), (4, 6));
        assert!(first.info.maintenance.any(), "{version:?}: 10 pending, 4 LRs: a refill must be requested");
        let _ = g.fold(0, &first.lrs).unwrap(); // it never ran
        let (taken, entries) = run_until_idle(&g, 0, 4);
        let mut ids: Vec<u32> = taken.iter().map(|t| t.0).collect();
        // Highest priority first: the 0x70s, then 0x78s, then 0x80s, each by INTID.
        assert_eq!(ids, [34, 37, 40, 33, 36, 39, 32, 35, 38, 41], "{version:?}");
        assert_eq!(entries, 3, "{version:?}: 4 + 4 + 2");
        ids.sort_unstable();
        assert_eq!(ids, spis);
        for &intid in &spis {
            let s = snap(&g, Virq::Spi(intid));
            assert!(!s.pending && !s.active, "{version:?}: SPI {intid} left {s:?}");
        }
    }
}

/// List registers full of active interrupts: the pending ones wait for
/// underflow, then are delivered.
#[test]
fn overflow_behind_active_interrupts_uses_underflow() {
    let g = vgic(GicVersion::V3, 1);
    enable_all(&g);
    for intid in 32..36 {
        let _ = g.raise(Virq::Spi(intid)).unwrap();
    }
    let mut lrs = [Lr::INVALID; 2];
    let _ = g.flush(0, &mut lrs, 0xff).unwrap();
    for l in &mut lrs {
        l.state = LrState::Active; // the guest took both and was interrupted
    }
    let _ = g.fold(0, &lrs).unwrap();
    let info = g.flush(0, &mut lrs, 0xff).unwrap();
    assert!(lrs.iter().all(|l| l.state == LrState::Active));
    assert_eq!(info.maintenance, Maintenance { underflow: true, no_pending: false });
    let _ = g.fold(0, &lrs).unwrap();
    let (taken, _) = run_until_idle(&g, 0, 2);
    assert_eq!(taken.iter().map(|t| t.0).collect::<Vec<_>>(), [34, 35]);
    // One list register: the EOI maintenance of the active one stands in for underflow.
    let _ = g.raise(Virq::Spi(36)).unwrap();
    let _ = g.raise(Virq::Spi(37)).unwrap();
    let mut one = [Lr::INVALID; 1];
    let _ = g.flush(0, &mut one, 0xff).unwrap();
    one[0].state = LrState::Active;
    let _ = g.fold(0, &one).unwrap();
    let info = g.flush(0, &mut one, 0xff).unwrap();
    assert_eq!(info.maintenance, Maintenance::default());
    assert_eq!(one[0].kind, LrKind::Software { source: 0, eoi: true });
    let _ = g.fold(0, &one).unwrap();
    let (taken, _) = run_until_idle(&g, 0, 1);
    assert_eq!(taken.iter().map(|t| t.0).collect::<Vec<_>>(), [37]);
}

#[test]
fn v2_sgi_sources_are_delivered_one_by_one() {
    let g = vgic(GicVersion::V2, 3);
    enable_all(&g);
    let _ = wr(&g, D, 1, 0xf00, (1 << 16) | 3); // vCPU 1 -> vCPU 0, SGI 3
    let _ = wr(&g, D, 2, 0xf00, (1 << 16) | 3); // vCPU 2 -> vCPU 0, SGI 3
    let e = enter(&g, 0, 4);
    assert_eq!(e.info.used, 1, "one SGI ID in one list register at a time");
    assert_eq!(e.lrs[0].kind, LrKind::Software { source: 1, eoi: true }, "EOI maintenance: another source waits");
    assert_eq!(e.lrs[0].encode_v2() & (0x7 << 10), 1 << 10, "CPUID field");
    let _ = g.fold(0, &e.lrs).unwrap(); // it never ran
    let (taken, entries) = run_until_idle(&g, 0, 4);
    assert_eq!(taken, [(3, 1), (3, 2)]);
    assert_eq!(entries, 2);
    assert_eq!(g.read(D, 0, 0xf23, 1).unwrap(), 0);
    // Pending again from the same source while active: pending+active in one LR.
    let _ = wr(&g, D, 1, 0xf00, (1 << 16) | 4);
    let mut lrs = [Lr::INVALID; 4];
    let _ = g.flush(0, &mut lrs, 0xff).unwrap();
    lrs[0].state = LrState::Active;
    let _ = g.fold(0, &lrs).unwrap();
    let _ = wr(&g, D, 1, 0xf00, (1 << 16) | 4);
    let _ = wr(&g, D, 2, 0xf00, (1 << 16) | 4);
    let _ = g.flush(0, &mut lrs, 0xff).unwrap();
    assert_eq!(lrs[0].state, LrState::PendingActive);
    assert_eq!(lrs[0].kind, LrKind::Software { source: 1, eoi: true });
    // SGIs from the hypervisor come from the target itself.
    let _ = g.fold(0, &[]).unwrap();
    let _ = g.raise(Virq::Private { vcpu: 2, intid: 0 }).unwrap();
    assert_eq!(g.read(D, 2, 0xf20, 1).unwrap(), 1 << 2);
}

#[test]
fn v3_sgi_between_vcpus_is_delivered() {
    let g = vgic(GicVersion::V3, 2);
    enable_all(&g);
    let out = g.send_sgi_v3(0, (1 << 24) | 0b10).unwrap();
    assert_eq!(out.kick, VcpuMask::one(1));
    let (taken, _) = run_until_idle(&g, 1, 4);
    assert_eq!(taken, [(1, 0)]);
    let (taken, _) = run_until_idle(&g, 0, 4);
    assert!(taken.is_empty());
}

#[test]
fn level_interrupts_follow_their_line() {
    let g = vgic(GicVersion::V3, 1);
    enable_all(&g);
    let ppi = Virq::Private { vcpu: 0, intid: 27 };
    assert!(!snap(&g, ppi).edge);
    assert_eq!(g.set_level(ppi, true).unwrap().kick, VcpuMask::one(0));
    let mut lrs = [Lr::INVALID; 4];
    let _ = g.flush(0, &mut lrs, 0xff).unwrap();
    assert_eq!((lrs[0].vintid, lrs[0].state), (27, LrState::Pending));
    lrs[0].state = LrState::Active;
    let _ = g.fold(0, &lrs).unwrap();
    // Line still high while active: pending+active.
    let _ = g.flush(0, &mut lrs, 0xff).unwrap();
    assert_eq!(lrs[0].state, LrState::PendingActive);
    let _ = g.fold(0, &lrs).unwrap();
    // The device drops the line; the guest deactivates: nothing left.
    let _ = g.set_level(ppi, false).unwrap();
    let _ = g.flush(0, &mut lrs, 0xff).unwrap();
    assert_eq!(lrs[0].state, LrState::Active);
    let _ = g.fold(0, &[]).unwrap();
    assert!(!snap(&g, ppi).pending && !snap(&g, ppi).active);
    // ICPENDR cannot clear a level interrupt whose line is high.
    let _ = g.set_level(ppi, true).unwrap();
    let _ = wr(&g, R, 0, 0x1_0280, 1 << 27);
    assert!(snap(&g, ppi).pending);
    // An edge-triggered interrupt latches a rising level.
    let _ = g.set_level(ppi, false).unwrap();
    let _ = wr(&g, R, 0, 0x1_0c04, 2 << 22);
    let _ = g.set_level(ppi, true).unwrap();
    let _ = g.set_level(ppi, false).unwrap();
    assert!(snap(&g, ppi).pending);
    assert!(matches!(g.set_level(Virq::Private { vcpu: 0, intid: 3 }, true), Err(VgicError::NotAllowed { .. })));
    assert_eq!(g.set_level(Virq::Spi(128), true), Err(VgicError::NoSuchIrq(128)));
}

#[test]
fn guest_writes_while_listed_elsewhere_are_merged_at_fold() {
    let g = vgic(GicVersion::V2, 2);
    enable_all(&g);
    let _ = g.raise(Virq::Spi(40)).unwrap();
    let _ = g.raise(Virq::Spi(41)).unwrap();
    let mut lrs = [Lr::INVALID; 4];
    let _ = g.flush(0, &mut lrs, 0xff).unwrap(); // vCPU 0 runs with both listed
    // vCPU 1 clears 40's pending state and activates 41: vCPU 0 must exit.
    let out = wr(&g, D, 1, 0x284, 1 << 8);
    assert_eq!(out.kick, VcpuMask::one(0));
    assert_eq!(rd(&g, D, 1, 0x204) & (3 << 8), 1 << 9, "reads reflect the write at once");
    let _ = wr(&g, D, 1, 0x304, 1 << 9);
    assert_eq!(rd(&g, D, 1, 0x304) & (3 << 8), 1 << 9);
    // vCPU 0 exits without having taken either.
    let _ = g.fold(0, &lrs).unwrap();
    let (a, b) = (snap(&g, Virq::Spi(40)), snap(&g, Virq::Spi(41)));
    assert!(!a.pending && !a.active);
    assert!(b.pending && b.active);
    // Clearing active while listed active.
    let _ = g.flush(0, &mut lrs, 0xff).unwrap();
    assert_eq!((lrs[0].vintid, lrs[0].state), (41, LrState::PendingActive));
    let _ = wr(&g, D, 1, 0x384, 1 << 9);
    let _ = g.fold(0, &lrs).unwrap();
    let b = snap(&g, Virq::Spi(41));
    assert!(b.pending && !b.active);
}

#[test]
fn passed_through_interrupts_use_the_hw_bit() {
    let g = vgic(GicVersion::V2, 1);
    enable_all(&g);
    g.link_hw(Virq::Spi(40), Some(72)).unwrap();
    assert_eq!(snap(&g, Virq::Spi(40)).hw, Some(72));
    // The physical interrupt fired and was acknowledged (priority drop only).
    let out = g.raise(Virq::Spi(40)).unwrap();
    assert!(out.hw.as_slice().is_empty(), "the arch code has it active already");
    let mut lrs = [Lr::INVALID; 4];
    let _ = g.flush(0, &mut lrs, 0xff).unwrap();
    assert_eq!(lrs[0].kind, LrKind::Hardware { pintid: 72 });
    assert_eq!(lrs[0].encode_v2(), 0x9001_2028);
    // The guest handles it; its deactivation deactivated the physical one.
    assert!(g.fold(0, &[]).unwrap().hw.as_slice().is_empty());
    assert!(!snap(&g, Virq::Spi(40)).pending);
    // Active and pending again: never pending+active in the list register.
    let _ = g.raise(Virq::Spi(40)).unwrap();
    let _ = g.flush(0, &mut lrs, 0xff).unwrap();
    lrs[0].state = LrState::Active;
    let _ = g.fold(0, &lrs).unwrap();
    let _ = wr(&g, D, 0, 0x204, 1 << 8); // guest ISPENDR while active
    let _ = g.flush(0, &mut lrs, 0xff).unwrap();
    assert_eq!(lrs[0].state, LrState::Active);
    // The guest deactivates (physical too); the pending state is left: make the physical active again.
    let out = g.fold(0, &[]).unwrap();
    assert_eq!(out.hw.as_slice(), [HwOp { pintid: 72, action: HwAction::Activate }]);
    // The guest clears it instead of handling it: deactivate the physical one.
    let out = wr(&g, D, 0, 0x284, 1 << 8);
    assert_eq!(out.hw.as_slice(), [HwOp { pintid: 72, action: HwAction::Deactivate }]);
    // ISPENDR on an idle one: the physical becomes active, as if it had fired.
    let out = wr(&g, D, 0, 0x204, 1 << 8);
    assert_eq!(out.hw.as_slice(), [HwOp { pintid: 72, action: HwAction::Activate }]);
    // Cleared while listed on a running vCPU: decided at fold.
    let _ = g.flush(0, &mut lrs, 0xff).unwrap();
    let out = wr(&g, D, 0, 0x284, 1 << 8);
    assert!(out.hw.as_slice().is_empty());
    let out = g.fold(0, &lrs).unwrap();
    assert_eq!(out.hw.as_slice(), [HwOp { pintid: 72, action: HwAction::Deactivate }]);
    // GICv3 encoding of a hardware PPI.
    let g3 = vgic(GicVersion::V3, 1);
    enable_all(&g3);
    let timer = Virq::Private { vcpu: 0, intid: 27 };
    g3.link_hw(timer, Some(27)).unwrap();
    let _ = g3.raise(timer).unwrap();
    let _ = g3.flush(0, &mut lrs, 0xff).unwrap();
    assert_eq!(lrs[0].encode_v3(), 0x7000_001b_0000_001b);
    assert!(matches!(g3.set_level(timer, true), Err(VgicError::NotAllowed { .. })));
    assert!(matches!(g3.link_hw(Virq::Private { vcpu: 0, intid: 1 }, Some(40)), Err(VgicError::NotAllowed { .. })));
    assert!(matches!(g3.link_hw(Virq::Spi(40), Some(1020)), Err(VgicError::NotAllowed { .. })));
    g3.link_hw(timer, None).unwrap();
    assert_eq!(snap(&g3, timer).hw, None);
}

#[test]
fn priority_threshold_decides_signalled_and_wakeup() {
    let g = vgic(GicVersion::V3, 1);
    enable_all(&g);
    set_priority(&g, 0, 40, 0xa0);
    assert!(!g.has_pending(0, 0xff).unwrap());
    let _ = g.raise(Virq::Spi(40)).unwrap();
    assert!(g.has_pending(0, 0xff).unwrap());
    assert!(g.has_pending(0, 0xa8).unwrap());
    assert!(!g.has_pending(0, 0xa0).unwrap(), "masked by the priority mask");
    let mut lrs = [Lr::INVALID; 4];
    let info = g.flush(0, &mut lrs, 0xa0).unwrap();
    assert_eq!(info.used, 1, "masked interrupts are listed all the same");
    assert!(!info.signalled);
    let _ = g.fold(0, &lrs).unwrap();
    assert!(g.flush(0, &mut lrs, 0xf0).unwrap().signalled);
}

#[test]
fn flush_without_fold_takes_back_the_previous_listing() {
    let g = vgic(GicVersion::V3, 1);
    enable_all(&g);
    for intid in [32, 33, 34] {
        let _ = g.raise(Virq::Spi(intid)).unwrap();
    }
    let mut lrs = [Lr::INVALID; 2];
    let _ = g.flush(0, &mut lrs, 0xff).unwrap();
    let first = lrs;
    let info = g.flush(0, &mut lrs, 0xff).unwrap();
    assert_eq!(lrs, first);
    assert_eq!(info.overflow, 1);
    // Entries that were not listed are ignored by fold.
    let stray = Lr { vintid: 34, state: LrState::Active, ..Lr::INVALID };
    let _ = g.fold(0, &[lrs[0], lrs[1], stray]).unwrap();
    assert!(!snap(&g, Virq::Spi(34)).active);
    assert!(snap(&g, Virq::Spi(34)).pending);
}

#[test]
fn kicks_name_whoever_must_look_again() {
    let g = vgic(GicVersion::V3, 4);
    let _ = wr(&g, D, 0, 0, 3);
    // Nothing enabled: a pending SPI wakes nobody.
    assert_eq!(g.raise(Virq::Spi(40)).unwrap().kick, VcpuMask::EMPTY);
    let _ = g.write(D, 0, 0x6000 + 8 * 40, 8, 3).unwrap();
    assert_eq!(wr(&g, D, 0, 0x104, 1 << 8).kick, VcpuMask::one(3));
    // A priority change of a listed interrupt: its owner re-lists it.
    let mut lrs = [Lr::INVALID; 4];
    let _ = g.flush(3, &mut lrs, 0xff).unwrap();
    assert_eq!(g.write(D, 0, 0x428, 1, 0x10).unwrap().kick, VcpuMask::one(3));
    assert_eq!(g.write(D, 0, 0x428, 1, 0x10).unwrap().kick, VcpuMask::EMPTY, "no change, no kick");
    let _ = g.fold(3, &lrs).unwrap();
    // A private interrupt kicks its own vCPU only.
    let _ = wr(&g, R, 0, 2 * GICR_STRIDE + 0x1_0100, 1 << 27);
    assert_eq!(g.raise(Virq::Private { vcpu: 2, intid: 27 }).unwrap().kick, VcpuMask::one(2));
}

#[test]
fn injection_checks_its_arguments() {
    let g = vgic(GicVersion::V3, 2);
    assert_eq!(g.raise(Virq::Spi(128)), Err(VgicError::NoSuchIrq(128)));
    assert_eq!(g.raise(Virq::Spi(31)), Err(VgicError::NoSuchIrq(31)));
    assert_eq!(g.raise(Virq::Private { vcpu: 2, intid: 1 }), Err(VgicError::NoSuchVcpu(2)));
    assert_eq!(g.raise(Virq::Private { vcpu: 0, intid: 32 }), Err(VgicError::NoSuchIrq(32)));
    let mut lrs = [Lr::INVALID; 4];
    assert_eq!(g.flush(2, &mut lrs, 0xff), Err(VgicError::NoSuchVcpu(2)));
    assert_eq!(g.fold(2, &[]), Err(VgicError::NoSuchVcpu(2)));
    // 1024 lines: SPI 1019 exists, 1020 does not.
    let big = Vgic::new(VgicConfig::new(GicVersion::V3, 1, 1024)).unwrap();
    assert!(big.raise(Virq::Spi(1019)).is_ok());
    assert_eq!(big.raise(Virq::Spi(1020)), Err(VgicError::NoSuchIrq(1020)));
    let _ = wr(&big, D, 0, 0x17c, 0xffff_ffff); // ISENABLER31: INTIDs 992-1023
    assert_eq!(rd(&big, D, 0, 0x17c), 0x0fff_ffff);
}

/// A per-CPU timer linked to its physical PPI: its pending state is its
/// output as the hypervisor samples it before each fold, so a timer the
/// guest turned off, masked or moved on stops being pending and is not
/// delivered, and the physical PPI is deactivated (it was active since the
/// hypervisor took it); one whose output rose before its physical
/// interrupt was taken is pending at once, its PPI made active by hand.
#[test]
fn a_hardware_timer_is_pending_while_its_output_is_high() {
    for version in [GicVersion::V2, GicVersion::V3] {
        let g = vgic(version, 2);
        enable_all(&g);
        let timer = Virq::Private { vcpu: 1, intid: 27 };
        g.link_hw(timer, Some(27)).unwrap();
        let ispendr0 = |g: &Vgic| match version {
            GicVersion::V2 => rd(g, D, 1, 0x200),
            GicVersion::V3 => rd(g, R, 1, GICR_STRIDE + 0x1_0200),
        };
        let act = |p, a| [HwOp { pintid: p, action: a }];
        let mut lrs = [Lr::INVALID; 4];

        // It fires: the hypervisor took the physical PPI (now active) and
        // samples the output high; the guest gets it listed.
        let out = g.set_hw_level(timer, true).unwrap();
        assert_eq!(out.kick, VcpuMask::one(1));
        assert_eq!(ispendr0(&g) & (1 << 27), 1 << 27);
        let _ = g.flush(1, &mut lrs, 0xff).unwrap();
        assert_eq!((lrs[0].vintid, lrs[0].state, lrs[0].kind), (27, LrState::Pending, LrKind::Hardware { pintid: 27 }));
        // Before taking it the guest turns the timer off (or masks it, or
        // moves CVAL on) and exits: sampled low, then folded.
        assert!(g.set_hw_level(timer, false).unwrap().hw.as_slice().is_empty(), "listed: decided at fold");
        let out = g.fold(1, &lrs).unwrap();
        assert_eq!(out.hw.as_slice(), act(27, HwAction::Deactivate), "{version:?}");
        assert_eq!(ispendr0(&g) & (1 << 27), 0, "{version:?}: not pending once the output is low");
        let info = g.flush(1, &mut lrs, 0xff).unwrap();
        assert_eq!(info.used, 0, "{version:?}: nothing delivered");
        assert!(g.fold(1, &lrs).unwrap().hw.as_slice().is_empty());

        // The output rises before the physical interrupt is taken (sampled
        // at an exit): pending at once, the physical PPI made active so
        // that the guest's deactivation has something to deactivate.
        let out = g.set_hw_level(timer, true).unwrap();
        assert_eq!(out.hw.as_slice(), act(27, HwAction::Activate));
        assert_eq!(ispendr0(&g) & (1 << 27), 1 << 27);
        // Not listed (say the group is off) and the output falls: the
        // physical PPI is deactivated at once.
        let out = g.set_hw_level(timer, false).unwrap();
        assert_eq!(out.hw.as_slice(), act(27, HwAction::Deactivate));
        assert_eq!(ispendr0(&g) & (1 << 27), 0);

        // Taken by the guest (active in the list register) and then turned
        // off by its handler: still active until the guest deactivates it
        // (the physical PPI with it), and nothing to do by hand.
        let _ = g.set_hw_level(timer, true).unwrap();
        let _ = g.flush(1, &mut lrs, 0xff).unwrap();
        lrs[0].state = LrState::Active;
        let _ = g.set_hw_level(timer, false).unwrap();
        assert!(g.fold(1, &lrs).unwrap().hw.as_slice().is_empty());
        let s = snap(&g, timer);
        assert!(s.active && !s.pending);
        let _ = g.flush(1, &mut lrs, 0xff).unwrap();
        assert_eq!(lrs[0].state, LrState::Active);
        assert!(g.fold(1, &[]).unwrap().hw.as_slice().is_empty(), "deactivated through the HW bit");
        let s = snap(&g, timer);
        assert!(!s.active && !s.pending);

        // Re-armed: it fires again and is delivered again.
        let _ = g.set_hw_level(timer, true).unwrap();
        let _ = g.flush(1, &mut lrs, 0xff).unwrap();
        assert_eq!((lrs[0].vintid, lrs[0].state), (27, LrState::Pending));
        // The guest deactivated it while its output stayed high (no handler
        // turned it off): pending again, the physical PPI active again.
        let _ = g.fold(1, &lrs).unwrap();
        let _ = g.flush(1, &mut lrs, 0xff).unwrap();
        let out = g.fold(1, &[]).unwrap();
        assert_eq!(out.hw.as_slice(), act(27, HwAction::Activate));
        assert!(snap(&g, timer).pending);

        // vCPU 0's timer is its own; an unlinked interrupt refuses a sampled level.
        assert!(!snap(&g, Virq::Private { vcpu: 0, intid: 27 }).pending);
        assert!(matches!(
            g.set_hw_level(Virq::Private { vcpu: 0, intid: 30 }, true),
            Err(VgicError::NotAllowed { .. })
        ));
    }
}
