//! Fuzz target: dom0's device tree writer (`src/dt/dom0.rs`).
//!
//! Input: a [`PREFIX`]-byte configuration (dom0's memory banks, vCPUs,
//! command line, initrd, console, hypervisor regions), then a host DTB
//! (seeds: real trees from `tests/fixtures/dtb/`). The host tree is read as
//! the boot path reads it; dom0's tree is generated from it, then read back
//! by an independent parser (the `fdt` crate, walking every node and
//! property) and by our own reader. Invariants on a generated tree: it
//! parses both ways; its memory is exactly the banks given, in order; its
//! GIC is the version and frames given, with no GICH/GICV regions, no
//! maintenance interrupt, no MSI frames; its CPUs are the vCPUs' MPIDRs, in
//! order, started by PSCI through HVC; `/chosen` holds the command line,
//! initrd and stdout-path given and no boot modules; no node directly under
//! the root other than memory, the GIC and the timer has a `reg` overlapping
//! the hypervisor's regions; the host timer's node, when readable, is
//! readable in dom0's tree. A refused
//! configuration or tree is an error that formats, never a panic.

#![no_main]

use arbitrary::Unstructured;
use armature::dt::{Conduit, CpuBoot, DeviceTree, Dom0Dt, Dom0Gic, GicVersion, Region, Regions};
use libfuzzer_sys::fuzz_target;

/// Configuration bytes before the DTB.
const PREFIX: usize = 48;

const BOOTARGS: [&str; 4] = ["console=ttyAMA0 earlycon root=/dev/vda rw", "", "a\u{e9}\u{2603} x=y", "bad\0nul"];

fn region(u: &mut Unstructured<'_>) -> arbitrary::Result<Region> {
    let page: u32 = u.arbitrary()?;
    let pages: u16 = u.arbitrary()?;
    let shift = u.int_in_range(0..=20)?;
    Ok(Region { base: u64::from(page) << 12 << (shift % 9), size: (u64::from(pages) + 1) << 12 })
}

fn be64(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

fn overlaps(a: Region, b: Region) -> bool {
    a.base < b.end() && b.base < a.end()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < PREFIX {
        return;
    }
    let (cfg_bytes, dtb) = data.split_at(PREFIX);
    let Ok(host) = DeviceTree::new(dtb) else { return };
    let plan = host.boot_plan();
    let Ok(host_gic) = plan.gic.as_ref() else { return };
    let Ok(gic) = Dom0Gic::from_host(host_gic) else { return };
    let mut u = Unstructured::new(cfg_bytes);
    let mode: u8 = u.arbitrary().unwrap_or(0);

    // Memory: the host's first bank (up to 256 MiB of it), or made-up banks.
    let mut memory = Vec::new();
    match (mode & 3, plan.memory.as_ref()) {
        (0, Ok(banks)) => {
            let b = banks.as_slice()[0];
            memory.push(Region { base: b.base, size: b.size.min(256 << 20) });
        }
        _ => {
            for _ in 0..1 + (mode >> 2 & 1) {
                memory.push(region(&mut u).unwrap_or(Region { base: 0x4000_0000, size: 0x1000_0000 }));
            }
        }
    }
    let nvcpus = 1 + usize::from(u.arbitrary::<u8>().unwrap_or(0) % 8);
    let mpidrs: Vec<u64> = if mode & 8 == 0 {
        (0..nvcpus).map(armature::vgic::vcpu_mpidr).collect()
    } else {
        (0..nvcpus).map(|_| u.arbitrary::<u64>().unwrap_or(0) & 0xff_00ff_ffff).collect()
    };
    let bootargs = (mode & 16 != 0).then(|| BOOTARGS[usize::from(u.arbitrary::<u8>().unwrap_or(0) % 4)]);
    let initrd = (mode & 32 != 0).then(|| region(&mut u).unwrap_or(Region { base: 0x4c00_0000, size: 0x1000 }));
    let console_path = plan.console.as_ref().ok().map(|c| c.node.as_str().to_string());
    let stdout_path = match u.arbitrary::<u8>().unwrap_or(0) % 4 {
        0 | 1 => console_path.as_deref(),
        2 => Some("serial0:115200n8"),
        _ => None,
    };
    let mut hypervisor = Vec::new();
    for _ in 0..u.arbitrary::<u8>().unwrap_or(0) % 3 {
        hypervisor.push(region(&mut u).unwrap_or_default());
    }
    let cfg =
        Dom0Dt { memory: &memory, vcpu_mpidrs: &mpidrs, bootargs, initrd, stdout_path, gic, hypervisor: &hypervisor };

    let _ = host.dom0_pass_through(&hypervisor).map_err(|e| e.to_string());
    let blob = match host.dom0_device_tree(&cfg) {
        Ok(b) => b,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };

    // The independent parser: every node and property.
    let f = fdt::Fdt::new(&blob).expect("the fdt crate refuses dom0's tree");
    let root = f.find_node("/").expect("dom0's tree has no root");
    fn visit(n: fdt::node::FdtNode<'_, '_>, depth: usize, count: &mut usize) {
        *count += 1;
        assert!(depth < 64);
        for p in n.properties() {
            let _ = (p.name.len(), p.value.len());
        }
        for c in n.children() {
            visit(c, depth + 1, count);
        }
    }
    let mut nodes = 0;
    visit(root, 0, &mut nodes);
    let chosen = root.children().find(|n| n.name == "chosen").expect("no /chosen");
    let prop = |name: &str| chosen.properties().find(|p| p.name == name).map(|p| p.value);
    let text = |v: &[u8]| v.strip_suffix(b"\0").and_then(|s| std::str::from_utf8(s).ok()).map(str::to_string);
    assert_eq!(prop("bootargs").and_then(text).as_deref(), bootargs, "/chosen/bootargs");
    assert_eq!(prop("stdout-path").and_then(text).as_deref(), stdout_path, "/chosen/stdout-path");
    let (start, end) = (prop("linux,initrd-start").and_then(be64), prop("linux,initrd-end").and_then(be64));
    assert_eq!((start, end), initrd.map_or((None, None), |r| (Some(r.base), Some(r.end()))), "initrd");
    assert!(chosen.children().next().is_none(), "boot modules left in dom0's /chosen");

    // Our own reader.
    let dom0 = DeviceTree::new(&blob).unwrap_or_else(|e| panic!("our reader refuses dom0's tree: {e}"));
    assert_eq!(dom0.memory_banks(), Ok(Regions::from_slice(&memory)), "dom0's memory");
    let g = dom0.gic().unwrap_or_else(|e| panic!("dom0's GIC: {e}"));
    assert_eq!(g.version, host_gic.version);
    assert!(g.hyp_if.is_none() && g.vcpu_if.is_none(), "GICH/GICV in dom0's tree: {g:?}");
    assert!(g.maintenance.is_none(), "maintenance interrupt in dom0's tree");
    assert!(g.msi.as_slice().is_empty(), "MSI frames in dom0's tree");
    match gic {
        Dom0Gic::V2 { dist, cpu_if } => {
            assert_eq!(g.version, GicVersion::V2);
            assert_eq!((g.dist, g.cpu_if), (dist, Some(cpu_if)), "dom0's GICv2 frames");
        }
        Dom0Gic::V3 { dist, redist } => {
            assert_eq!(g.dist, dist, "dom0's GICD");
            assert_eq!(g.redist.as_slice(), redist, "dom0's GICR regions");
            assert!(g.cpu_if.is_none(), "a GICv3 dom0 with a GICC frame");
        }
    }
    let cpus = dom0.cpus().unwrap_or_else(|e| panic!("dom0's CPUs: {e}"));
    let got: Vec<Option<u64>> = cpus.as_slice().iter().map(|c| c.mpidr).collect();
    let want: Vec<Option<u64>> = mpidrs.iter().map(|m| Some(*m)).collect();
    assert_eq!(got, want, "dom0's CPU MPIDRs");
    assert!(cpus.as_slice().iter().all(|c| c.boot == CpuBoot::Psci), "a dom0 CPU not started by PSCI");
    let psci = dom0.psci().unwrap_or_else(|e| panic!("dom0's PSCI: {e}")).expect("dom0 has no PSCI node");
    assert_eq!(psci.conduit, Conduit::Hvc);
    assert_eq!(dom0.bootargs(), bootargs);
    assert_eq!(dom0.dom0_modules(), Ok(None));
    assert!(dom0.boot_modules().is_ok_and(|m| m.as_slice().is_empty()));
    // (A timer under a node dom0's tree generates anew, such as /cpus, is
    // not copied: the generated nodes are the hypervisor's.)
    let generated = ["/cpus/", "/chosen/", "/psci/", "/hypervisor/", "/memory"];
    if let Ok(t) = host.timer()
        && !generated.iter().any(|g| t.node.as_str().starts_with(g))
    {
        let d = dom0.timer().unwrap_or_else(|e| panic!("host timer {:?} readable, dom0's not: {e}", t.node));
        assert_eq!(d.virt.intid(), t.virt.intid(), "dom0's virtual timer interrupt");
    }
    let gic_path = g.node.as_str().to_string();
    let timer_path = dom0.timer().ok().map(|t| t.node.as_str().to_string());
    for n in root.children() {
        let path = format!("/{}", n.name);
        let generated = n.name == "memory" || n.name.starts_with("memory@");
        // (The properties of /aliases and /__symbols__ are paths, whatever their names.)
        let paths = n.name == "aliases" || n.name == "__symbols__";
        if generated || paths || path == gic_path || Some(&path) == timer_path.as_ref() {
            continue;
        }
        let mut i = 0;
        while let Ok(r) = dom0.reg(&path, i) {
            if r.size != 0 {
                assert!(!hypervisor.iter().any(|h| overlaps(*h, r)), "{path} reg {r} overlaps the hypervisor");
            }
            i += 1;
        }
    }
});
