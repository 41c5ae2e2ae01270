//! Host tests of dom0's generated device tree ([`super::dom0`]) and of the
//! pass-through plan, against real QEMU, FVP, Juno and Arndale trees and
//! small trees written here with `vm-fdt` for the error cases. Every
//! generated blob is read back with the `fdt` crate and with
//! [`DeviceTree::new`], and checked with `dtc`.

extern crate std;
use super::*;
use std::borrow::ToOwned;
use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

const GICV3: &[u8] = include_bytes!("../../tests/fixtures/dtb/qemu-virt-gicv3-smp4.dtb");
const GICV2: &[u8] = include_bytes!("../../tests/fixtures/dtb/qemu-virt-gicv2-smp4.dtb");
const XEN_MODULES: &[u8] = include_bytes!("../../tests/fixtures/dtb/qemu-virt-gicv3-xen-modules.dtb");
const ARM32: &[u8] = include_bytes!("../../tests/fixtures/dtb/qemu-virt-arm32-smp2.dtb");
const FVP: &[u8] = include_bytes!("../../tests/fixtures/dtb/fvp-base-revc.dtb");
const JUNO: &[u8] = include_bytes!("../../tests/fixtures/dtb/juno.dtb");
const ARNDALE: &[u8] = include_bytes!("../../tests/fixtures/dtb/exynos5250-arndale.dtb");
const FOUNDATION: &[u8] = include_bytes!("../../tests/fixtures/dtb/foundation-v8-gicv3-psci.dtb");
const AEMV8: &[u8] = include_bytes!("../../tests/fixtures/dtb/rtsm_ve-aemv8a.dtb");

const BANKS: [Region; 2] =
    [Region { base: 0x4800_0000, size: 0x0800_0000 }, Region { base: 0x5800_0000, size: 0x0200_0000 }];
const INITRD: Region = Region { base: 0x4c00_0000, size: 0x12_3456 };
const BOOTARGS: &str = "console=ttyAMA0 earlycon root=/dev/vda rw";

fn r(base: u64, size: u64) -> Region {
    Region { base, size }
}

/// A node of a parsed tree: full path and properties in order.
#[derive(Clone, Debug, PartialEq)]
struct Flat {
    path: String,
    props: Vec<(String, Vec<u8>)>,
}

impl Flat {
    fn prop(&self, name: &str) -> Option<&[u8]> {
        self.props.iter().find(|p| p.0 == name).map(|p| p.1.as_slice())
    }
    fn names(&self) -> Vec<&str> {
        self.props.iter().map(|p| p.0.as_str()).collect()
    }
}

/// Every node of a blob, depth-first, read with the `fdt` crate.
fn flatten(blob: &[u8]) -> Vec<Flat> {
    fn rec(node: fdt::node::FdtNode<'_, '_>, path: String, out: &mut Vec<Flat>) {
        let props = node.properties().map(|p| (p.name.to_string(), p.value.to_vec())).collect();
        out.push(Flat { path: path.clone(), props });
        for c in node.children() {
            let p = if path == "/" { format!("/{}", c.name) } else { format!("{path}/{}", c.name) };
            rec(c, p, out);
        }
    }
    let f = fdt::Fdt::new(blob).expect("the fdt crate parses the blob");
    let mut out = Vec::new();
    rec(f.find_node("/").expect("root"), "/".to_string(), &mut out);
    out
}

fn node<'f>(nodes: &'f [Flat], path: &str) -> &'f Flat {
    nodes.iter().find(|n| n.path == path).unwrap_or_else(|| panic!("no node {path}"))
}

fn has(nodes: &[Flat], path: &str) -> bool {
    nodes.iter().any(|n| n.path == path)
}

fn cells(v: &[u8]) -> Vec<u32> {
    v.chunks_exact(4).map(|c| u32::from_be_bytes(c.try_into().unwrap())).collect()
}

fn strs(v: &[u8]) -> Vec<&str> {
    walk::strings(v).collect()
}

/// The settings every test starts from, for the host tree `dt`.
fn cfg<'c>(gic: &'c Gic, mpidrs: &'c [u64]) -> Dom0Dt<'c> {
    Dom0Dt {
        memory: &BANKS,
        vcpu_mpidrs: mpidrs,
        bootargs: Some(BOOTARGS),
        initrd: Some(INITRD),
        stdout_path: Some("/pl011@9000000"),
        gic: Dom0Gic::from_host(gic).unwrap(),
        hypervisor: &[],
    }
}

/// Generates dom0's tree from `host` and checks it is valid for the
/// project's reader too.
fn generate(host: &[u8], mpidrs: &[u64], stdout: Option<&str>) -> Vec<u8> {
    let dt = DeviceTree::new(host).unwrap();
    let gic = dt.gic().unwrap();
    let mut c = cfg(&gic, mpidrs);
    c.stdout_path = stdout;
    let out = dt.dom0_device_tree(&c).unwrap_or_else(|e| panic!("dom0 tree: {e}"));
    DeviceTree::new(&out).unwrap_or_else(|e| panic!("generated tree refused: {e}"));
    out
}

/// Runs `dtc -I dtb -O dts` on a blob, with the checks dtc leaves off by
/// default that apply to a flattened tree turned on too
/// (`unique_unit_address`, `avoid_unnecessary_addr_size`); returns its
/// warnings (stderr lines). Callers treat them as errors: none for the
/// generated trees, none the host tree did not already have for boards.
fn dtc(blob: &[u8], tag: &str) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("armature-dom0dt-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("in.dtb");
    std::fs::write(&file, blob).unwrap();
    let out = std::process::Command::new("dtc")
        .args(["-I", "dtb", "-O", "dts", "-o", "/dev/null", "-W", "unique_unit_address"])
        .args(["-W", "avoid_unnecessary_addr_size"])
        .arg(&file)
        .output()
        .expect("dtc (Debian package device-tree-compiler) must be installed");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "dtc failed on {tag}: {stderr}");
    assert!(!stderr.contains("ERROR"), "dtc reports errors on {tag}: {stderr}");
    // "<stdout>: Warning (check): /path: text" -> "Warning (check): /path: text"
    stderr.lines().map(|l| l.split_once(": ").map_or(l, |(_, w)| w).to_owned()).collect()
}

/// The host nodes dom0's tree is expected to keep unchanged: all but the
/// root, the regenerated ones, memory, PMUs, and the special nodes.
fn copied_unchanged(host: &[Flat], gic_path: &str, timer_path: &str) -> Vec<Flat> {
    let regenerated = ["/chosen", "/cpus", "/psci"];
    host.iter()
        .filter(|n| n.path != "/" && n.path != gic_path && n.path != timer_path && n.path != "/aliases")
        .filter(|n| !regenerated.iter().any(|g| n.path == *g || n.path.starts_with(&format!("{g}/"))))
        .filter(|n| n.prop("device_type") != Some(b"memory\0"))
        .filter(|n| !n.path.starts_with(&format!("{gic_path}/")))
        .filter(|n| {
            let compat = n.prop("compatible").map(strs).unwrap_or_default();
            !compat.iter().any(|c| c.ends_with("-pmu") || *c == "arm,armv8-pmuv3")
        })
        .cloned()
        .collect()
}

/// The checks every generated tree passes, whatever the host: memory,
/// chosen, CPUs, PSCI, timer, every other node copied unchanged (but for
/// MSI properties), phandles referenced by `interrupt-parent` present.
fn check_common(host_blob: &[u8], out: &[u8], mpidrs: &[u64], stdout: Option<&str>) {
    let host = flatten(host_blob);
    let dom0 = flatten(out);
    let hdt = DeviceTree::new(host_blob).unwrap();
    let ddt = DeviceTree::new(out).unwrap();

    // Root: only the listed properties, with the host's values.
    let root = node(&dom0, "/");
    for (name, value) in &root.props {
        assert!(
            ["compatible", "model", "#address-cells", "#size-cells", "interrupt-parent"].contains(&name.as_str()),
            "unexpected root property {name}"
        );
        assert_eq!(Some(value.as_slice()), node(&host, "/").prop(name), "root {name}");
    }
    assert_eq!(node(&host, "/").prop("interrupt-parent"), root.prop("interrupt-parent"));

    // Memory: one node, dom0's banks only.
    let mems: Vec<&Flat> = dom0.iter().filter(|n| n.prop("device_type") == Some(b"memory\0")).collect();
    assert_eq!(mems.len(), 1, "one memory node");
    assert_eq!(mems[0].path, format!("/memory@{:x}", BANKS[0].base));
    assert_eq!(ddt.memory_banks().unwrap().as_slice(), &BANKS);

    // Chosen: exactly these three properties, no subnodes.
    let chosen = node(&dom0, "/chosen");
    let mut expected = vec!["bootargs", "linux,initrd-start", "linux,initrd-end"];
    if stdout.is_some() {
        expected.push("stdout-path");
    }
    assert_eq!(chosen.names(), expected);
    assert_eq!(chosen.prop("bootargs"), Some(format!("{BOOTARGS}\0").as_bytes()));
    assert_eq!(chosen.prop("linux,initrd-start"), Some(&INITRD.base.to_be_bytes()[..]));
    assert_eq!(chosen.prop("linux,initrd-end"), Some(&INITRD.end().to_be_bytes()[..]));
    if let Some(sp) = stdout {
        assert_eq!(chosen.prop("stdout-path"), Some(format!("{sp}\0").as_bytes()));
    }
    assert!(!dom0.iter().any(|n| n.path.starts_with("/chosen/")), "no nodes under /chosen");
    assert_eq!(ddt.bootargs(), Some(BOOTARGS));

    // CPUs: one per vCPU, reg = the virtual MPIDR, PSCI, the host's compatible.
    let cpus = node(&dom0, "/cpus");
    let wide = mpidrs.iter().any(|m| m >> 32 != 0);
    assert_eq!(cpus.names(), ["#address-cells", "#size-cells"]);
    assert_eq!(cells(cpus.prop("#address-cells").unwrap()), [if wide { 2 } else { 1 }]);
    assert_eq!(cells(cpus.prop("#size-cells").unwrap()), [0]);
    let cpu_nodes: Vec<&Flat> = dom0.iter().filter(|n| n.path.starts_with("/cpus/")).collect();
    assert_eq!(cpu_nodes.len(), mpidrs.len(), "only the vCPUs under /cpus (no cpu-map, idle states, caches)");
    let host_cpus: Vec<&Flat> = host
        .iter()
        .filter(|n| {
            n.path.starts_with("/cpus/") && n.prop("device_type") == Some(b"cpu\0") && n.prop("status").is_none()
        })
        .collect();
    let host_cpu = host_cpus[0];
    for (i, (c, &m)) in cpu_nodes.iter().zip(mpidrs).enumerate() {
        assert_eq!(c.path, format!("/cpus/cpu@{m:x}"));
        assert_eq!(c.names()[..4], ["device_type", "compatible", "reg", "enable-method"]);
        // vCPU i stands for host CPU i where other nodes name it.
        let mut extra = Vec::new();
        for p in ["#cooling-cells", "phandle"] {
            if let Some(v) = host_cpus.get(i).and_then(|h| h.prop(p)) {
                assert_eq!(c.prop(p), Some(v), "{} {p}", c.path);
                extra.push(p);
            }
        }
        assert_eq!(c.names()[4..], extra, "{}", c.path);
        assert_eq!(c.prop("device_type"), Some(&b"cpu\0"[..]));
        assert_eq!(c.prop("compatible"), host_cpu.prop("compatible"));
        assert_eq!(c.prop("enable-method"), Some(&b"psci\0"[..]));
    }
    let parsed = ddt.cpus().unwrap();
    assert_eq!(
        parsed.as_slice().iter().map(|c| c.mpidr).collect::<Vec<_>>(),
        mpidrs.iter().map(|m| Some(*m)).collect::<Vec<_>>()
    );
    assert!(parsed.as_slice().iter().all(|c| c.boot == CpuBoot::Psci));

    // PSCI 1.0/0.2 by HVC, no function IDs.
    let psci = node(&dom0, "/psci");
    assert_eq!(psci.names(), ["compatible", "method"]);
    assert_eq!(strs(psci.prop("compatible").unwrap()), ["arm,psci-1.0", "arm,psci-0.2"]);
    assert_eq!(ddt.psci_conduit().unwrap(), Conduit::Hvc);
    assert_eq!(
        dom0.iter()
            .filter(|n| n.prop("compatible").is_some_and(|c| strs(c).iter().any(|s| s.starts_with("arm,psci"))))
            .count(),
        1
    );

    // Timer: every PPI the host lists (the binding's four, at least), in
    // the host's order.
    let host_timer = hdt.timer().unwrap();
    let tpath = host_timer.node.as_str();
    let (ht, dt0) = (node(&host, tpath), node(&dom0, tpath));
    let hi = cells(ht.prop("interrupts").unwrap());
    let di = cells(dt0.prop("interrupts").unwrap());
    assert_eq!(di.len(), hi.len(), "the host's specifiers, all of them");
    assert!(di.len() >= 12, "at least the binding's four 3-cell specifiers");
    for (d, h) in di.chunks(3).zip(hi.chunks(3)) {
        assert_eq!(d[..2], h[..2], "type and number");
        assert_eq!(d[2] & 0xff, h[2] & 0xff, "trigger");
    }
    let dtimer = ddt.timer().unwrap();
    assert_eq!(
        [dtimer.secure_phys, dtimer.nonsecure_phys, dtimer.virt, dtimer.hyp_phys].map(|i| i.number),
        [host_timer.secure_phys, host_timer.nonsecure_phys, host_timer.virt, host_timer.hyp_phys].map(|i| i.number)
    );
    assert_eq!(ht.names(), dt0.names(), "timer keeps its other properties");
    for (name, value) in &ht.props {
        if name != "interrupts" {
            assert_eq!(dt0.prop(name), Some(value.as_slice()), "timer {name}");
        }
    }

    // GIC: same name, phandle and properties but reg and interrupts.
    let hgic = hdt.gic().unwrap();
    let gpath = hgic.node.as_str();
    let (hg, dg) = (node(&host, gpath), node(&dom0, gpath));
    assert!(dg.prop("interrupts").is_none(), "no maintenance interrupt");
    for (name, value) in &hg.props {
        if !["reg", "interrupts"].contains(&name.as_str()) {
            assert_eq!(dg.prop(name), Some(value.as_slice()), "GIC {name}");
        }
    }
    let dgic = ddt.gic().unwrap();
    assert_eq!((dgic.dist, dgic.redist, dgic.maintenance), (hgic.dist, hgic.redist, None));
    assert!(dgic.msi.as_slice().is_empty(), "no ITS / v2m frames");
    assert!(!dom0.iter().any(|n| {
        n.prop("compatible")
            .is_some_and(|c| strs(c).iter().any(|s| *s == "arm,gic-v3-its" || *s == "arm,gic-v2m-frame"))
    }));

    // Everything else: present, unchanged, but for MSI properties naming
    // the dropped frames.
    for h in copied_unchanged(&host, gpath, tpath) {
        let Some(d) = dom0.iter().find(|n| n.path == h.path) else { panic!("{} is missing from dom0's tree", h.path) };
        let kept: Vec<&(String, Vec<u8>)> =
            h.props.iter().filter(|p| p.0 != "msi-parent" && p.0 != "msi-map").collect();
        let dkept: Vec<&(String, Vec<u8>)> =
            d.props.iter().filter(|p| p.0 != "msi-parent" && p.0 != "msi-map").collect();
        assert_eq!(kept, dkept, "{} copied unchanged", h.path);
    }
    // The bindings of what dom0's tree carries, checked strictly.
    assert_eq!(super::binding_check::check(out), Vec::<String>::new(), "binding violations");
    // And nothing else appears.
    for d in &dom0 {
        assert!(
            d.path == "/"
                || d.path.starts_with("/cpus")
                || d.path == "/chosen"
                || d.path == "/psci"
                || d.path.starts_with("/memory@")
                || has(&host, &d.path),
            "{} is not a host node",
            d.path
        );
    }

    // Every phandle an interrupt-parent (or msi-parent) names exists.
    let phandles: Vec<u32> = dom0.iter().filter_map(|n| n.prop("phandle")).map(|p| cells(p)[0]).collect();
    for n in &dom0 {
        for prop in ["interrupt-parent", "msi-parent"] {
            if let Some(v) = n.prop(prop) {
                assert!(phandles.contains(&cells(v)[0]), "{}: {prop} names a missing phandle", n.path);
            }
        }
    }
    assert!(phandles.contains(&cells(root.prop("interrupt-parent").unwrap())[0]));
}

#[test]
fn qemu_virt_gicv3_dom0_tree() {
    let mpidrs = [0, 1];
    let out = generate(GICV3, &mpidrs, Some("/pl011@9000000"));
    check_common(GICV3, &out, &mpidrs, Some("/pl011@9000000"));
    let d = flatten(&out);
    let gic = node(&d, "/intc@8000000");
    // GICD + one GICR region, the host's values.
    assert_eq!(cells(gic.prop("reg").unwrap()), [0, 0x0800_0000, 0, 0x10000, 0, 0x080a_0000, 0, 0x00f6_0000]);
    assert_eq!(cells(gic.prop("phandle").unwrap()), [0x8005]);
    assert_eq!(cells(gic.prop("#redistributor-regions").unwrap()), [1]);
    assert!(!has(&d, "/intc@8000000/its@8080000"));
    // 32 virtio-mmio transports, the PCIe bridge without msi-map.
    let virtio = d.iter().filter(|n| n.prop("compatible") == Some(b"virtio,mmio\0")).count();
    assert_eq!(virtio, 32);
    let pcie = node(&d, "/pcie@10000000");
    assert!(pcie.prop("msi-map").is_none() && pcie.prop("msi-parent").is_none());
    assert!(pcie.prop("interrupt-map").is_some() && pcie.prop("ranges").is_some());
    for path in [
        "/pl011@9000000",
        "/pl031@9010000",
        "/pl061@9030000",
        "/fw-cfg@9020000",
        "/flash@0",
        "/gpio-keys/poweroff",
        "/apb-pclk",
        "/platform-bus@c000000",
    ] {
        assert!(has(&d, path), "{path}");
    }
    assert!(!has(&d, "/pmu") && !has(&d, "/memory@40000000") && !has(&d, "/cpus/cpu-map"));
    // Timer: secure phys 13, non-secure phys 14, virtual 11, hyp 10: the
    // binding's four, as the host has them.
    assert_eq!(cells(node(&d, "/timer").prop("interrupts").unwrap()), [1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]);
    assert_eq!(dtc(&out, "gicv3"), Vec::<String>::new(), "dtc warnings");
}

#[test]
fn qemu_virt_gicv2_dom0_tree() {
    let mpidrs = [0, 1];
    let out = generate(GICV2, &mpidrs, Some("/pl011@9000000"));
    check_common(GICV2, &out, &mpidrs, Some("/pl011@9000000"));
    let d = flatten(&out);
    let gic = node(&d, "/intc@8000000");
    // GICD + GICC; no GICH (0x8030000) or GICV (0x8040000).
    assert_eq!(cells(gic.prop("reg").unwrap()), [0, 0x0800_0000, 0, 0x10000, 0, 0x0801_0000, 0, 0x10000]);
    assert!(!has(&d, "/intc@8000000/v2m@8020000"));
    assert!(node(&d, "/pcie@10000000").prop("msi-parent").is_none());
    let dgic = DeviceTree::new(&out).unwrap().gic().unwrap();
    assert_eq!((dgic.cpu_if, dgic.hyp_if, dgic.vcpu_if), (Some(r(0x0801_0000, 0x10000)), None, None));
    // The PPI CPU mask names the two vCPUs (host: 0xf04 for four CPUs).
    assert_eq!(
        cells(node(&d, "/timer").prop("interrupts").unwrap()),
        [1, 13, 0x304, 1, 14, 0x304, 1, 11, 0x304, 1, 10, 0x304]
    );
    assert_eq!(dtc(&out, "gicv2"), Vec::<String>::new(), "dtc warnings");
}

#[test]
fn xen_boot_modules_and_bootargs_are_not_passed_on() {
    let mpidrs = [0];
    let host = flatten(XEN_MODULES);
    assert!(host.iter().any(|n| n.path.starts_with("/chosen/module@")), "the fixture has modules");
    let out = generate(XEN_MODULES, &mpidrs, Some("/pl011@9000000"));
    check_common(XEN_MODULES, &out, &mpidrs, Some("/pl011@9000000"));
    assert_eq!(dtc(&out, "xen"), Vec::<String>::new());
}

#[test]
fn arm32_dom0_tree() {
    let mpidrs = [0, 1];
    let out = generate(ARM32, &mpidrs, Some("/pl011@9000000"));
    check_common(ARM32, &out, &mpidrs, Some("/pl011@9000000"));
    assert_eq!(dtc(&out, "arm32"), Vec::<String>::new());
}

/// Real boards: FVP (GICv3 with the legacy GICC/GICH/GICV frames and an
/// ITS), Juno (GIC-400 with v2m frames, nested buses), the Foundation model
/// and AEMv8 (SPI PMU), Arndale (GIC-400 under /soc, a combiner).
#[test]
fn board_dom0_trees() {
    for (name, blob, stdout) in [
        ("fvp", FVP, None),
        ("juno", JUNO, None),
        ("foundation", FOUNDATION, None),
        ("aemv8", AEMV8, None),
        ("arndale", ARNDALE, Some("serial2:115200n8")),
    ] {
        let mpidrs = [0, 1, 0x100, 0x101];
        let out = generate(blob, &mpidrs, stdout);
        check_common(blob, &out, &mpidrs, stdout);
        // dtc says nothing it did not already say about the host tree.
        let host_warnings = dtc(blob, &format!("{name}-host"));
        for w in dtc(&out, name) {
            assert!(host_warnings.contains(&w), "{name}: new dtc warning: {w}");
        }
        let hgic = DeviceTree::new(blob).unwrap().gic().unwrap();
        let dgic = DeviceTree::new(&out).unwrap().gic().unwrap();
        assert_eq!(dgic.dist, hgic.dist, "{name}");
        match hgic.version {
            GicVersion::V3 => {
                assert_eq!(dgic.redist, hgic.redist, "{name}");
                assert_eq!((dgic.cpu_if, dgic.hyp_if, dgic.vcpu_if), (None, None, None), "{name}: no legacy frames");
            }
            GicVersion::V2 => {
                assert_eq!((dgic.cpu_if, dgic.hyp_if, dgic.vcpu_if), (hgic.cpu_if, None, None), "{name}");
            }
        }
    }
}

#[test]
fn fvp_gicv3_keeps_only_gicd_and_gicr() {
    let out = generate(FVP, &[0], None);
    let d = flatten(&out);
    let gic = d.iter().find(|n| n.prop("compatible").is_some_and(|c| strs(c).contains(&"arm,gic-v3"))).unwrap();
    // Host: GICD 0x2f000000, GICR 0x2f100000, GICC, GICH, GICV.
    assert_eq!(cells(gic.prop("reg").unwrap()), [0, 0x2f00_0000, 0, 0x10000, 0, 0x2f10_0000, 0, 0x0020_0000]);
    assert!(!d.iter().any(|n| n.path.starts_with(&format!("{}/", gic.path))), "no ITS");
}

#[test]
fn aff3_mpidrs_get_two_address_cells() {
    let mpidrs = [0, 0x1_0000_0000, 0x1_0000_0100];
    let out = generate(GICV3, &mpidrs, None);
    check_common(GICV3, &out, &mpidrs, None);
    let d = flatten(&out);
    assert_eq!(cells(node(&d, "/cpus/cpu@100000100").prop("reg").unwrap()), [1, 0x100]);
    assert_eq!(dtc(&out, "aff3"), Vec::<String>::new());
}

/// The hypervisor's own regions: a device there is left out (here the
/// PL031) and so is an alias naming it; the stdout-path may not name it.
#[test]
fn nodes_in_hypervisor_regions_are_dropped() {
    let dt = DeviceTree::new(GICV3).unwrap();
    let gic = dt.gic().unwrap();
    let hyp = [r(0x0901_0800, 0x10), r(0x7fe0_0000, 0x20_0000)];
    let mut c = cfg(&gic, &[0]);
    c.hypervisor = &hyp;
    let out = dt.dom0_device_tree(&c).unwrap();
    let d = flatten(&out);
    assert!(!has(&d, "/pl031@9010000"));
    assert!(has(&d, "/pl061@9030000") && has(&d, "/pl011@9000000"));
    let plan = dt.dom0_pass_through(&hyp).unwrap();
    assert!(!plan.mmio.iter().any(|m| m.node == "/pl031@9010000"));
    assert!(!plan.spis.contains(&34));
    c.stdout_path = Some("/pl031@9010000");
    assert_eq!(dt.dom0_device_tree(&c), Err(Dom0DtError::StdoutPath("/pl031@9010000".into())));
}

/// Checked against `dtc -I dtb -O dts tests/fixtures/dtb/qemu-virt-gicv3-smp4.dtb`.
#[test]
fn qemu_virt_gicv3_pass_through_plan() {
    let dt = DeviceTree::new(GICV3).unwrap();
    let plan = dt.dom0_pass_through(&[]).unwrap();
    let mmio = |node: &str| -> Vec<Region> { plan.mmio.iter().filter(|m| m.node == node).map(|m| m.region).collect() };
    assert_eq!(mmio("/pl031@9010000"), [r(0x0901_0000, 0x1000)]);
    assert_eq!(mmio("/pl061@9030000"), [r(0x0903_0000, 0x1000)]);
    assert_eq!(mmio("/fw-cfg@9020000"), [r(0x0902_0000, 0x18)]);
    assert_eq!(mmio("/flash@0"), [r(0, 0x400_0000), r(0x400_0000, 0x400_0000)]);
    // ECAM, then the windows by address: 32-bit MMIO, I/O, 64-bit MMIO.
    assert_eq!(
        mmio("/pcie@10000000"),
        [
            r(0x1000_0000, 0x2eff_0000),
            r(0x3eff_0000, 0x10000),
            r(0x40_1000_0000, 0x1000_0000),
            r(0x80_0000_0000, 0x80_0000_0000)
        ]
    );
    let virtio: Vec<&PassThroughMmio> = plan.mmio.iter().filter(|m| m.node.starts_with("/virtio_mmio@")).collect();
    assert_eq!(virtio.len(), 32);
    for (i, m) in virtio.iter().enumerate() {
        let base = 0x0a00_0000 + 0x200 * i as u64;
        assert_eq!((m.node.as_str(), m.region), (format!("/virtio_mmio@{base:x}").as_str(), r(base, 0x200)));
    }
    assert_eq!(plan.mmio.len(), 3 + 2 + 4 + 32, "nothing else: no GIC, ITS, UART, memory");
    // PL031 SPI 2, PCIe INTx SPIs 3..6, PL061 SPI 7, virtio SPIs 16..47.
    let mut spis = vec![34, 35, 36, 37, 38, 39];
    spis.extend(48..80);
    assert_eq!(plan.spis, spis);
    assert_eq!(
        plan.uarts,
        [PassThroughUart {
            node: "/pl011@9000000".into(),
            compatible: "arm,pl011".into(),
            regions: vec![r(0x0900_0000, 0x1000)],
            spis: vec![33],
        }]
    );
    assert!(plan.reserved_memory.is_empty());
}

#[test]
fn qemu_virt_gicv2_pass_through_plan_has_no_gic_frames() {
    let plan = DeviceTree::new(GICV2).unwrap().dom0_pass_through(&[]).unwrap();
    assert!(!plan.mmio.iter().any(|m| m.region.base >= 0x0800_0000 && m.region.base < 0x0900_0000), "{:?}", plan.mmio);
    assert_eq!(plan.mmio.len(), 41);
    assert!(plan.spis.iter().all(|&s| s >= 32));
}

/// Boards: the plan is computed without error, every region is non-empty,
/// and neither the GIC's frames nor memory are in it.
#[test]
fn board_pass_through_plans() {
    for (name, blob) in
        [("fvp", FVP), ("juno", JUNO), ("arndale", ARNDALE), ("foundation", FOUNDATION), ("aemv8", AEMV8)]
    {
        let dt = DeviceTree::new(blob).unwrap();
        let plan = dt.dom0_pass_through(&[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let gic = dt.gic().unwrap();
        let banks = dt.memory_banks().unwrap();
        assert!(!plan.mmio.is_empty() && !plan.spis.is_empty(), "{name}");
        for m in &plan.mmio {
            assert!(m.region.size > 0, "{name}: {m:?}");
            let clash = |x: Region| m.region.base < x.end() && x.base < m.region.end();
            assert!(!clash(gic.dist), "{name}: {m:?} overlaps GICD");
            assert!(!banks.as_slice().iter().any(|b| clash(*b)), "{name}: {m:?} is RAM");
        }
        assert!(plan.spis.windows(2).all(|w| w[0] < w[1]), "{name}: sorted, no duplicates");
        assert!(plan.spis.iter().all(|&s| (32..1020).contains(&s) || (4096..5120).contains(&s)), "{name}");
        assert!(!plan.uarts.is_empty(), "{name}: UARTs listed apart");
    }
    // Juno: devices behind the motherboard's interrupt-map get their SPIs.
    let juno = DeviceTree::new(JUNO).unwrap().dom0_pass_through(&[]).unwrap();
    assert!(juno.uarts.iter().any(|u| u.compatible == "arm,pl011"));
    // AEMv8: the PMU's SPIs (60..63) stay with the hypervisor.
    let aem = DeviceTree::new(AEMV8).unwrap().dom0_pass_through(&[]).unwrap();
    assert!(!aem.spis.iter().any(|s| (92..96).contains(s)), "{:?}", aem.spis);
}

// ---- Small trees written here, for the error paths. ----

#[derive(Clone, Copy)]
struct Synth {
    cells: u32,
    gic: bool,
    cpus: bool,
    cpu_compatible: bool,
    timer: bool,
    reserved: bool,
}

const SYNTH: Synth = Synth { cells: 1, gic: true, cpus: true, cpu_compatible: true, timer: true, reserved: true };

fn reg(cells: u32, entries: &[(u64, u64)]) -> Vec<u8> {
    let mut v = Vec::new();
    for &(a, s) in entries {
        for x in [a, s] {
            if cells == 1 {
                v.extend_from_slice(&(x as u32).to_be_bytes());
            } else {
                v.extend_from_slice(&x.to_be_bytes());
            }
        }
    }
    v
}

/// A little ARMv7 board: GIC-400 at 0x2c001000, PL011 at 0x1c090000.
fn synth(s: Synth) -> Vec<u8> {
    let mut w = vm_fdt::FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    w.property_string("compatible", "test,board").unwrap();
    w.property_u32("#address-cells", s.cells).unwrap();
    w.property_u32("#size-cells", s.cells).unwrap();
    w.property_u32("interrupt-parent", 1).unwrap();
    let n = w.begin_node("chosen").unwrap();
    w.property_string("stdout-path", "/uart@1c090000").unwrap();
    w.end_node(n).unwrap();
    let n = w.begin_node("memory@80000000").unwrap();
    w.property_string("device_type", "memory").unwrap();
    w.property("reg", &reg(s.cells, &[(0x8000_0000, 0x4000_0000)])).unwrap();
    w.end_node(n).unwrap();
    if s.cpus {
        let n = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        let c = w.begin_node("cpu@0").unwrap();
        w.property_string("device_type", "cpu").unwrap();
        if s.cpu_compatible {
            w.property_string("compatible", "arm,cortex-a15").unwrap();
        }
        w.property_u32("reg", 0).unwrap();
        w.end_node(c).unwrap();
        w.end_node(n).unwrap();
    }
    if s.gic {
        let n = w.begin_node("interrupt-controller@2c001000").unwrap();
        w.property_string("compatible", "arm,gic-400").unwrap();
        w.property_null("interrupt-controller").unwrap();
        w.property_u32("#interrupt-cells", 3).unwrap();
        w.property_u32("#address-cells", 0).unwrap();
        let frames = [(0x2c00_1000, 0x1000), (0x2c00_2000, 0x2000), (0x2c00_4000, 0x2000), (0x2c00_6000, 0x2000)];
        w.property("reg", &reg(s.cells, &frames)).unwrap();
        w.property_array_u32("interrupts", &[1, 9, 0xf04]).unwrap();
        w.property_phandle(1).unwrap();
        w.end_node(n).unwrap();
    }
    if s.timer {
        let n = w.begin_node("timer").unwrap();
        w.property_string("compatible", "arm,armv7-timer").unwrap();
        w.property_array_u32("interrupts", &[1, 13, 0xf08, 1, 14, 0xf08, 1, 11, 0xf08, 1, 10, 0xf08]).unwrap();
        w.end_node(n).unwrap();
    }
    let n = w.begin_node("uart@1c090000").unwrap();
    w.property_string("compatible", "arm,pl011").unwrap();
    w.property("reg", &reg(s.cells, &[(0x1c09_0000, 0x1000)])).unwrap();
    w.property_array_u32("interrupts", &[0, 5, 4]).unwrap();
    w.end_node(n).unwrap();
    if s.reserved {
        let n = w.begin_node("reserved-memory").unwrap();
        w.property_u32("#address-cells", s.cells).unwrap();
        w.property_u32("#size-cells", s.cells).unwrap();
        w.property_null("ranges").unwrap();
        for (name, base) in [("hyp@bfe00000", 0xbfe0_0000u64), ("fb@b0000000", 0xb000_0000)] {
            let c = w.begin_node(name).unwrap();
            w.property("reg", &reg(s.cells, &[(base, 0x10_0000)])).unwrap();
            w.property_null("no-map").unwrap();
            w.end_node(c).unwrap();
        }
        w.end_node(n).unwrap();
    }
    w.end_node(root).unwrap();
    w.finish().unwrap()
}

const SYNTH_GIC: Dom0Gic<'static> = Dom0Gic::V2 {
    dist: Region { base: 0x2c00_1000, size: 0x1000 },
    cpu_if: Region { base: 0x2c00_2000, size: 0x2000 },
};

fn synth_cfg() -> Dom0Dt<'static> {
    Dom0Dt {
        memory: &[Region { base: 0x8800_0000, size: 0x0800_0000 }],
        vcpu_mpidrs: &[0],
        bootargs: None,
        initrd: None,
        stdout_path: Some("/uart@1c090000"),
        gic: SYNTH_GIC,
        hypervisor: &[Region { base: 0xbfe0_0000, size: 0x20_0000 }],
    }
}

#[test]
fn small_tree_with_reserved_memory() {
    let host = synth(SYNTH);
    let dt = DeviceTree::new(&host).unwrap();
    let out = dt.dom0_device_tree(&synth_cfg()).unwrap();
    let d = flatten(&out);
    assert!(has(&d, "/reserved-memory/fb@b0000000"), "a reserved region outside the hypervisor stays");
    assert!(!has(&d, "/reserved-memory/hyp@bfe00000"), "the one inside the hypervisor goes");
    assert_eq!(
        cells(node(&d, "/interrupt-controller@2c001000").prop("reg").unwrap()),
        [0x2c00_1000, 0x1000, 0x2c00_2000, 0x2000]
    );
    assert_eq!(cells(node(&d, "/memory@88000000").prop("reg").unwrap()), [0x8800_0000, 0x0800_0000]);
    assert_eq!(node(&d, "/chosen").names(), ["stdout-path"]);
    assert_eq!(dtc(&out, "synth"), Vec::<String>::new());
    let plan = dt.dom0_pass_through(synth_cfg().hypervisor).unwrap();
    assert_eq!(
        plan.reserved_memory,
        [PassThroughMmio { node: "/reserved-memory/fb@b0000000".into(), region: r(0xb000_0000, 0x10_0000) }]
    );
    assert!(plan.mmio.is_empty() && plan.spis.is_empty());
    assert_eq!(plan.uarts.len(), 1);
    assert_eq!(plan.uarts[0].spis, [37]);
}

/// A GIC under the root may show dom0 frames of its own; one-cell trees
/// refuse numbers that need two.
#[test]
fn gic_frames_and_cell_widths() {
    let host = synth(SYNTH);
    let dt = DeviceTree::new(&host).unwrap();
    let mut c = synth_cfg();
    c.gic = Dom0Gic::V2 { dist: r(0x2c00_1000, 0x1000), cpu_if: r(0x2c00_6000, 0x2000) };
    let d = flatten(&dt.dom0_device_tree(&c).unwrap());
    assert_eq!(
        cells(node(&d, "/interrupt-controller@2c001000").prop("reg").unwrap()),
        [0x2c00_1000, 0x1000, 0x2c00_6000, 0x2000]
    );
    c.memory = &[Region { base: 0x1_0000_0000, size: 0x1000 }];
    let e = dt.dom0_device_tree(&c).unwrap_err();
    assert_eq!(
        e,
        Dom0DtError::TooWide { node: "/memory@100000000".into(), prop: "reg", value: 0x1_0000_0000, cells: 1 }
    );
    assert_eq!(e.to_string(), "/memory@100000000: property reg: 0x100000000 does not fit in 1 cell(s)");
    // Arndale's GIC sits under /soc: frames must be the host's.
    let dt = DeviceTree::new(ARNDALE).unwrap();
    let gic = dt.gic().unwrap();
    let mut c = cfg(&gic, &[0]);
    c.stdout_path = None;
    c.gic = Dom0Gic::V2 { dist: gic.dist, cpu_if: r(0x1049_0000, 0x2000) };
    assert_eq!(
        dt.dom0_device_tree(&c).err(),
        Some(Dom0DtError::GicFrame {
            node: "/soc/interrupt-controller@10481000".into(),
            frame: "GICC",
            region: r(0x1049_0000, 0x2000)
        })
    );
}

#[test]
fn missing_host_nodes_are_named() {
    let cases = [
        (Synth { gic: false, ..SYNTH }, "interrupt controller"),
        (Synth { cpus: false, ..SYNTH }, "/cpus"),
        (Synth { timer: false, ..SYNTH }, "timer"),
    ];
    for (s, what) in cases {
        let host = synth(s);
        let dt = DeviceTree::new(&host).unwrap();
        let e = dt.dom0_device_tree(&synth_cfg()).unwrap_err();
        assert!(matches!(e, Dom0DtError::Host(DtError::MissingNode(n)) if n.contains(what)), "{e:?}");
        assert!(e.to_string().contains(what), "{e}");
    }
    let host = synth(Synth { cpu_compatible: false, ..SYNTH });
    let e = DeviceTree::new(&host).unwrap().dom0_device_tree(&synth_cfg()).unwrap_err();
    assert_eq!(e, Dom0DtError::Host(DtError::prop("/cpus/cpu@0", "compatible", Problem::Missing)));
    assert_eq!(e.to_string(), "host device tree: /cpus/cpu@0: property compatible is missing");
    // The plan needs the GIC but not the timer or CPUs.
    let host = synth(Synth { gic: false, ..SYNTH });
    assert!(DeviceTree::new(&host).unwrap().dom0_pass_through(&[]).is_err());
    let host = synth(Synth { timer: false, cpus: false, ..SYNTH });
    assert!(DeviceTree::new(&host).unwrap().dom0_pass_through(&[]).is_ok());
}

#[test]
fn bad_settings_are_refused() {
    let host = synth(SYNTH);
    let dt = DeviceTree::new(&host).unwrap();
    let try_with = |f: &dyn Fn(&mut Dom0Dt<'static>)| {
        let mut c = synth_cfg();
        f(&mut c);
        dt.dom0_device_tree(&c).unwrap_err()
    };
    assert_eq!(try_with(&|c| c.memory = &[]), Dom0DtError::NoMemory);
    assert_eq!(
        try_with(&|c| c.memory = &[Region { base: 0x8000_0000, size: 0 }]),
        Dom0DtError::BadBank(r(0x8000_0000, 0))
    );
    assert_eq!(try_with(&|c| c.vcpu_mpidrs = &[]), Dom0DtError::NoVcpus);
    assert_eq!(try_with(&|c| c.vcpu_mpidrs = &[0, 0x8000_0001]), Dom0DtError::BadMpidr { vcpu: 1, mpidr: 0x8000_0001 });
    assert_eq!(try_with(&|c| c.vcpu_mpidrs = &[0, 1, 1]), Dom0DtError::DuplicateMpidr { vcpu: 2, mpidr: 1 });
    assert_eq!(
        try_with(&|c| c.initrd = Some(Region { base: u64::MAX, size: 2 })),
        Dom0DtError::BadInitrd(r(u64::MAX, 2))
    );
    assert_eq!(try_with(&|c| c.stdout_path = Some("/nowhere")), Dom0DtError::StdoutPath("/nowhere".into()));
    assert_eq!(try_with(&|c| c.stdout_path = Some("serial9")), Dom0DtError::StdoutPath("serial9".into()));
    assert_eq!(
        try_with(&|c| c.stdout_path = Some("/memory@80000000")),
        Dom0DtError::StdoutPath("/memory@80000000".into())
    );
    let e = try_with(&|c| c.bootargs = Some("a\0b"));
    assert_eq!(
        e,
        Dom0DtError::Write {
            node: "/chosen".into(),
            prop: Some("bootargs".into()),
            error: vm_fdt::Error::InvalidString
        }
    );
    assert_eq!(e.to_string(), "/chosen: property bootargs cannot be written: Strings cannot contain NUL");
    let e = try_with(&|c| c.gic = Dom0Gic::V3 { dist: r(0x2c00_1000, 0x1000), redist: &[] });
    assert_eq!(
        e,
        Dom0DtError::GicVersion {
            node: "/interrupt-controller@2c001000".into(),
            host: GicVersion::V2,
            dom0: GicVersion::V3
        }
    );
    assert!(e.to_string().starts_with("/interrupt-controller@2c001000: the host GIC is V2"), "{e}");
}

/// Every single-byte corruption of a real tree: no panic, and whatever
/// tree is generated is valid.
#[test]
fn single_byte_corruptions_never_panic() {
    let mpidrs = [0, 1];
    let mut generated = 0;
    for i in 0..GICV3.len() {
        for v in [0x00u8, 0xff, 0x03, 0x09] {
            let mut b = GICV3.to_vec();
            b[i] = v;
            generated += exercise(&b, &mpidrs) as usize;
        }
    }
    // Most bytes are property values: most corruptions still give a tree.
    assert!(generated > GICV3.len(), "only {generated} trees generated");
}

/// Builds the plan and dom0's tree from `blob`; true if a tree came out
/// (and then it is valid).
fn exercise(blob: &[u8], mpidrs: &[u64]) -> bool {
    let Ok(dt) = DeviceTree::new(blob) else { return false };
    let _ = dt.dom0_pass_through(&[r(0x4000_0000, 0x1000)]);
    let Ok(gic) = dt.gic() else { return false };
    let Ok(g) = Dom0Gic::from_host(&gic) else { return false };
    let c = Dom0Dt {
        memory: &BANKS,
        vcpu_mpidrs: mpidrs,
        bootargs: Some("x"),
        initrd: Some(INITRD),
        stdout_path: None,
        gic: g,
        hypervisor: &[r(0x7fe0_0000, 0x20_0000)],
    };
    match dt.dom0_device_tree(&c) {
        Ok(out) => {
            if let Err(e) = DeviceTree::new(&out) {
                panic!("generated tree refused: {e}");
            }
            true
        }
        Err(e) => {
            let _ = std::format!("{e}");
            false
        }
    }
}

/// `vm-fdt` refuses property names over 31 characters; real trees have
/// them (Exynos5250's SATA PHY) and they come through unchanged.
#[test]
fn long_property_names_survive() {
    let out = generate(ARNDALE, &[0, 1], None);
    let d = flatten(&out);
    let host = flatten(ARNDALE);
    let name = "samsung,exynos-sataphy-i2c-phandle";
    let path = "/soc/sata-phy@12170000";
    assert!(name.len() > 31);
    assert_eq!(node(&d, path).prop(name), node(&host, path).prop(name));
    assert_eq!(node(&d, path).names(), node(&host, path).names());
    assert!(!d.iter().any(|n| n.props.iter().any(|p| p.0.starts_with('?'))), "no placeholder left");
}

/// Stage 2 maps pages: the 32 virtio-mmio transports (0x200 each) make one
/// 4-page span, neighbours merge, and an emulated device's page is cut out.
#[test]
fn pass_through_pages_merge_and_exclude() {
    let r = |base, size| Region { base, size };
    let m = |base, size| PassThroughMmio { node: alloc::string::String::from("n"), region: r(base, size) };
    let plan = PassThroughPlan {
        mmio: (0..32).map(|i| m(0xa00_0000 + 0x200 * i, 0x200)).chain([m(0x902_0000, 0x18), m(0x903_0000, 0x1000)]).collect(),
        spis: alloc::vec![],
        uarts: alloc::vec![],
        reserved_memory: alloc::vec![],
    };
    assert_eq!(
        plan.pages(&[r(0x900_0000, 0x1000), r(0x901_0000, 0x1000), r(0x903_1000, 0x10)], &[]),
        [
            r(0x900_0000, 0x1000),
            r(0x901_0000, 0x1000),
            r(0x902_0000, 0x1000), // fw-cfg: 0x18 bytes, one page
            r(0x903_0000, 0x2000), // pl061 + an adjacent page: merged
            r(0xa00_0000, 0x4000), // 32 x 0x200: one span
        ]
    );
    // The emulated UART page is cut out of a span that covers it.
    let pages = plan.pages(&[r(0x900_0000, 0x4000)], &[r(0x900_0000, 0x1000)]);
    assert_eq!(pages[0], r(0x900_1000, 0x3000));
    assert!(pages.iter().all(|p| p.base % 0x1000 == 0 && p.size % 0x1000 == 0));
    assert!(!pages.iter().any(|p| p.base <= 0x900_0000 && 0x900_0000 < p.end()));
}

/// dtschema's core schemas (`dt-validate`, pip-installed by xtask) for the
/// nodes dom0's tree is generated with: the root, `/chosen`, `/memory`,
/// `/cpus` and its CPUs, on every host tree. A tree that breaks them (a
/// `/cpus` with `#size-cells = <1>` and an unknown `/chosen` property) is
/// reported, so the check is known to run.
#[test]
fn dom0_trees_pass_the_dt_schema_core_checks() {
    let dir = std::env::temp_dir().join(format!("armature-dom0-dtschema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for (name, blob, stdout) in [
        ("gicv3", GICV3, Some("/pl011@9000000")),
        ("gicv2", GICV2, Some("/pl011@9000000")),
        ("xen", XEN_MODULES, Some("/pl011@9000000")),
        ("arm32", ARM32, Some("/pl011@9000000")),
        ("fvp", FVP, None),
        ("juno", JUNO, None),
        ("foundation", FOUNDATION, None),
        ("aemv8", AEMV8, None),
        ("arndale", ARNDALE, Some("serial2:115200n8")),
    ] {
        let mpidrs: &[u64] =
            if name.starts_with("gic") || name == "xen" || name == "arm32" { &[0, 1] } else { &[0, 1, 0x100] };
        let file = dir.join(format!("dom0-{name}.dtb"));
        std::fs::write(&file, generate(blob, mpidrs, stdout)).unwrap();
        files.push(file);
    }
    let bad = dir.join("broken.dtb");
    let mut w = vm_fdt::FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    w.property_string("compatible", "test,board").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    let n = w.begin_node("chosen").unwrap();
    w.property_string("armature,not-a-chosen-property", "x").unwrap();
    w.end_node(n).unwrap();
    let n = w.begin_node("cpus").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 1).unwrap();
    w.end_node(n).unwrap();
    w.end_node(root).unwrap();
    std::fs::write(&bad, w.finish().unwrap()).unwrap();

    let paths: Vec<&std::path::Path> = files.iter().map(|f| f.as_path()).collect();
    let problems = xtask::dtschema::validate(&paths, &xtask::dtschema::DOM0_SCHEMAS).unwrap_or_else(|e| panic!("{e}"));
    let broken =
        xtask::dtschema::validate(&[bad.as_path()], &xtask::dtschema::DOM0_SCHEMAS).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(problems, Vec::<String>::new(), "dt-validate on dom0's trees");
    assert!(broken.iter().any(|l| l.contains("cpus: #size-cells: 0 was expected")), "{broken:?}");
    assert!(broken.iter().any(|l| l.contains("chosen: 'armature,not-a-chosen-property'")), "{broken:?}");
}
