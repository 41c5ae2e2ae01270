//! Host tests of the DT reader against QEMU's real device trees (dumped with
//! `-M virt,dumpdtb=`) and a hand-written tree with nested buses.

extern crate std;
use super::*;
use std::vec::Vec;

const GICV3: &[u8] = include_bytes!("../../tests/fixtures/dtb/qemu-virt-gicv3-smp4.dtb");
const GICV2: &[u8] = include_bytes!("../../tests/fixtures/dtb/qemu-virt-gicv2-smp4.dtb");
const ARM32: &[u8] = include_bytes!("../../tests/fixtures/dtb/qemu-virt-arm32-smp2.dtb");
const NESTED: &[u8] = include_bytes!("../../tests/fixtures/dtb/nested-ranges.dtb");

#[test]
fn qemu_virt_memory_console_cpus_psci() {
    for (blob, cpus) in [(GICV3, 4), (GICV2, 4), (ARM32, 2)] {
        let dt = DeviceTree::new(blob).unwrap();
        let banks = dt.memory_banks().unwrap();
        assert_eq!(banks.as_slice(), &[Region { base: 0x4000_0000, size: 0x4000_0000 }]);
        let out = dt.stdout().unwrap();
        assert_eq!(out.raw, "/pl011@9000000");
        assert_eq!(out.path, "/pl011@9000000");
        assert_eq!(out.compatible, "arm,pl011");
        assert_eq!(out.base, 0x0900_0000);
        assert_eq!(dt.cpu_count().unwrap(), cpus);
        // virtualization=on: QEMU's PSCI is reached by SMC.
        assert_eq!(dt.psci_conduit().unwrap(), Conduit::Smc);
        assert_eq!(dt.bootargs(), None);
    }
}

#[test]
fn nested_buses_are_translated_through_every_ranges() {
    let dt = DeviceTree::new(NESTED).unwrap();
    let out = dt.stdout().unwrap();
    assert_eq!(out.raw, "serial0:115200n8");
    assert_eq!(out.path, "/bus@10000000/motherboard-bus@0/iofpga-bus@300000000/serial@90000");
    assert_eq!(out.compatible, "arm,pl011");
    // 0x90000 -> 0x3_0009_0000 (iofpga) -> 0x0c09_0000 (motherboard) -> 0x1c09_0000.
    assert_eq!(out.base, 0x1c09_0000);
    assert_eq!(dt.reg(out.path, 0).unwrap().size, 0x1000);
}

#[test]
fn bus_without_ranges_is_untranslatable() {
    let dt = DeviceTree::new(NESTED).unwrap();
    assert_eq!(dt.reg("/bus-noranges/dev@10", 0), Err(DtError::prop("/bus-noranges", "ranges", Problem::Missing)));
    assert_eq!(dt.reg("/nowhere", 0), Err(DtError::prop("/nowhere", "reg", Problem::NoSuchNode)));
    let serial = "/bus@10000000/motherboard-bus@0/iofpga-bus@300000000/serial@90000";
    assert_eq!(dt.reg(serial, 1), Err(DtError::prop(serial, "reg", Problem::TooFew { have: 1, need: 2 })));
}

#[test]
fn disabled_nodes_are_skipped_and_banks_kept_in_order() {
    let dt = DeviceTree::new(NESTED).unwrap();
    let banks = dt.memory_banks().unwrap();
    assert_eq!(
        banks.as_slice(),
        &[Region { base: 0x8000_0000, size: 0x8000_0000 }, Region { base: 0x8_8000_0000, size: 0x8000_0000 },]
    );
    assert_eq!(banks.total(), 4 << 30);
    // cpu@0, cpu@100, cpu@2 (cpu@1 is disabled, cpu-map is not a cpu).
    assert_eq!(dt.cpu_count().unwrap(), 3);
    assert_eq!(dt.psci_conduit().unwrap(), Conduit::Hvc);
}

#[test]
fn armature_and_xen_bootargs_win_over_plain_bootargs() {
    let dt = DeviceTree::new(NESTED).unwrap();
    assert_eq!(dt.bootargs(), Some("loglvl=debug"));
}

#[test]
fn parent_paths() {
    assert_eq!(parent_path("/a/b/c"), "/a/b");
    assert_eq!(parent_path("/a"), "/");
    assert_eq!(parent_path("/"), "/");
}

fn with_u32(blob: &[u8], off: usize, v: u32) -> Vec<u8> {
    let mut b = blob.to_vec();
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
    b
}

#[test]
fn header_errors_name_the_problem() {
    assert_eq!(DeviceTree::new(&GICV3[..20]).err(), Some(DtError::Truncated { have: 20, need: 40 }));
    assert_eq!(DeviceTree::new(&with_u32(GICV3, 0, 0xdeadbeef)).err(), Some(DtError::BadMagic(0xdeadbeef)));
    assert_eq!(DeviceTree::new(&with_u32(GICV3, 4, 8)).err(), Some(DtError::BadSize(8)));
    assert_eq!(DeviceTree::new(&with_u32(GICV3, 4, 64 << 20)).err(), Some(DtError::BadSize(64 << 20)));
    assert_eq!(
        DeviceTree::new(&GICV3[..GICV3.len() - 1]).err(),
        Some(DtError::Truncated { have: GICV3.len() - 1, need: GICV3.len() })
    );
    assert_eq!(DeviceTree::new(&with_u32(GICV3, 20, 15)).err(), Some(DtError::BadVersion(15)));
    // size_dt_struct running past totalsize.
    assert!(matches!(DeviceTree::new(&with_u32(GICV3, 36, 0x10_0000)).err(), Some(DtError::BadBlock(_))));
    let msg = std::format!("{}", DtError::BadMagic(0));
    assert!(msg.contains("bad magic 0x00000000"), "{msg}");
}

#[test]
fn structure_errors_are_caught_before_the_parser_sees_them() {
    let off_struct = u32::from_be_bytes(GICV3[8..12].try_into().unwrap()) as usize;
    // First token must be a node; make it garbage.
    let b = with_u32(GICV3, off_struct, 0x77);
    assert_eq!(DeviceTree::new(&b).err(), Some(DtError::BadStructure { offset: off_struct, what: "unknown token" }));
    // Find the first property and give it a huge length.
    let mut pos = off_struct;
    loop {
        let t = u32::from_be_bytes(GICV3[pos..pos + 4].try_into().unwrap());
        if t == 3 {
            break;
        }
        pos += 4;
    }
    let b = with_u32(GICV3, pos + 4, 0x00ff_ffff);
    assert_eq!(
        DeviceTree::new(&b).err(),
        Some(DtError::BadStructure { offset: pos, what: "property value runs past the structure block" })
    );
    // And a name offset beyond the strings block.
    let b = with_u32(GICV3, pos + 8, 0x00ff_ffff);
    assert_eq!(
        DeviceTree::new(&b).err(),
        Some(DtError::BadStructure { offset: pos, what: "property name offset outside the strings block" })
    );
}

/// Every single-byte corruption of a real tree is either accepted or refused
/// with an error: the parser behind the wrapper never panics, and neither
/// does any reader, the boot plan included (see also `plan_tests`).
#[test]
fn single_byte_corruptions_never_panic() {
    for blob in [GICV2, NESTED] {
        for i in 0..blob.len() {
            for v in [0x00u8, 0xff, 0x03, 0x09] {
                let mut b = blob.to_vec();
                b[i] = v;
                super::plan_tests::exercise(&b);
            }
        }
    }
}

/// A QEMU tree with the two `/chosen` module nodes a Xen boot script adds
/// (made with `fdtput`, see tests/fixtures/dtb/README.md).
#[test]
fn boot_modules_from_chosen() {
    let blob = include_bytes!("../../tests/fixtures/dtb/qemu-virt-gicv3-xen-modules.dtb");
    let dt = DeviceTree::new(blob).unwrap();
    let m = dt.boot_modules().unwrap();
    assert_eq!(
        m.as_slice(),
        // In tree order: `fdtput -c` put the later node first.
        &[Region { base: 0x4c00_0000, size: 0x12345 }, Region { base: 0x4a00_0000, size: 0x1f6_da00 }]
    );
    assert!(DeviceTree::new(GICV3).unwrap().boot_modules().unwrap().as_slice().is_empty());
}

/// Dom0's modules and command line with Xen's binding: kernel, ramdisk,
/// `xen,dom0-bootargs` overriding the module's own `bootargs`, and the
/// hypervisor's options from `xen,xen-bootargs`.
#[test]
fn dom0_modules_with_the_xen_binding() {
    let dt = DeviceTree::new(include_bytes!("../../tests/fixtures/dtb/qemu-virt-gicv3-xen-boot.dtb")).unwrap();
    let m = dt.dom0_modules().unwrap().expect("a kernel module");
    assert_eq!(m.kernel, Region { base: 0x4a00_0000, size: 0x1f6_da00 });
    assert_eq!(m.ramdisk, Some(Region { base: 0x4c00_0000, size: 0x12345 }));
    assert_eq!(m.bootargs, Some("console=ttyAMA0 rdinit=/init"));
    assert_eq!(dt.bootargs(), Some("dom0_mem=512M loglvl=debug"));

    // Without xen,dom0-bootargs the kernel module's own bootargs are used;
    // without either, there are none.
    let dt = DeviceTree::new(include_bytes!("../../tests/fixtures/dtb/qemu-virt-gicv3-xen-modules.dtb")).unwrap();
    let m = dt.dom0_modules().unwrap().expect("a kernel module");
    assert_eq!((m.bootargs, m.ramdisk.map(|r| r.base)), (None, Some(0x4c00_0000)));
    assert_eq!(DeviceTree::new(GICV3).unwrap().dom0_modules().unwrap(), None);
}

/// libfdt editors leave FDT_NOP tokens (`fdt_nop_property` overwrites a
/// property with them; QEMU does this to a `-dtb` it patches): such a tree is
/// refused as it is, parsed once copied without them, and the copy says the
/// same as the original minus the removed property.
#[test]
fn nops_are_removed_by_the_normalizing_copy() {
    let be = |b: &[u8], o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap()) as usize;
    let mut blob = GICV3.to_vec();
    // The root's first property: FDT_BEGIN_NODE "\0" (8 bytes), then FDT_PROP.
    let prop = be(&blob, 8) + 8;
    assert_eq!(be(&blob, prop), 3, "expected a property right after the root node");
    let len = 12 + be(&blob, prop + 4).div_ceil(4) * 4;
    for w in (prop..prop + len).step_by(4) {
        blob[w..w + 4].copy_from_slice(&4u32.to_be_bytes());
    }
    assert_eq!(
        DeviceTree::new(&blob).err(),
        Some(DtError::BadStructure { offset: prop + len, what: "FDT_NOP before a property or node is not supported" })
    );
    let mut buf = std::vec![0u8; 64 << 10];
    let copy = normalize_into(&blob, &mut buf).unwrap();
    assert_eq!(copy.len(), GICV3.len() - len);
    let dt = DeviceTree::new(copy).unwrap();
    assert_eq!(dt.cpu_count().unwrap(), 4);
    assert_eq!(dt.stdout().unwrap().base, 0x0900_0000);
    assert_eq!(dt.memory_banks().unwrap().as_slice(), &[Region { base: 0x4000_0000, size: 0x4000_0000 }]);
    // A NOP-free tree copies to the same size; a buffer too small is an error.
    assert_eq!(normalize_into(GICV3, &mut buf).unwrap().len(), GICV3.len());
    assert!(matches!(normalize_into(GICV3, &mut buf[..1024]), Err(DtError::TooLargeToCopy { .. })));
}

/// Devices handed to a guest: QEMU virt's PL031 RTC with its SPI.
#[test]
fn device_by_compatible_with_its_interrupt() {
    for blob in [GICV3, GICV2] {
        let dt = DeviceTree::new(blob).unwrap();
        let (reg, irq) = dt.device("arm,pl031").unwrap().expect("QEMU virt has a PL031");
        assert_eq!(reg, Region { base: 0x0901_0000, size: 0x1000 });
        let irq = irq.expect("the PL031 has an interrupt");
        assert_eq!((irq.intid(), irq.level()), (34, true));
        assert_eq!(dt.device("arm,no-such-device").unwrap(), None);
    }
}
